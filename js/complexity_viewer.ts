// ComplexityViewer: a feature split into components of increasing complexity (Ren et al. 2021).
// Pure render from model state. The order slider, the channel picker and the per-order scaling act
// locally (no kernel message); clicking an order (a bar or a component) selects it and tells Python.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { type ColorScale, formatValue } from "./lib/colormap";
import { colorFooter, connect, h, injectStyle, offscreen, sizeCanvas, viewRoot } from "./lib/dom";
import { colorize, imageRGBA } from "./lib/raster";
import { decodeTensor, type Tensor, type WireTensor } from "./lib/tensor";

interface State {
  kind: "images" | "bars";
  layer: string;
  family: string;
  orders: number[];
  order_index: number;
  selected_order: number;
  titles: string[];
  channels: number[];
  channel_index: number;
  feature: WireTensor;
  recon: WireTensor;
  components: WireTensor;
  inputs: WireTensor;
  metrics: WireTensor;
  metric_names: string[];
  metric_valid: boolean[][];
  cell_size: number;
  theme: string;
}

const CHARTED = ["energy", "reliability", "effectiveness", "overfitting"];
const CHART_HELP: Record<string, string> = {
  energy: "Var(c) / Var(f)",
  reliability: "share also carried by a second network",
  effectiveness: "Shapley value: decrease of training loss",
  overfitting: "Shapley value: test − train loss gap",
};
const SVG = "http://www.w3.org/2000/svg";

const CSS = `
.nbx-complexity-viewer .nbx-cv-header { font-weight: 600; margin-bottom: 4px; }
.nbx-complexity-viewer .nbx-charts { display: flex; flex-wrap: wrap; gap: 14px; margin: 6px 0 10px; }
.nbx-complexity-viewer .nbx-chart-box { display: flex; flex-direction: column; gap: 2px; }
.nbx-complexity-viewer .nbx-chart-title { color: var(--nbx-fg); font-size: 0.95em; }
.nbx-complexity-viewer .nbx-chart-help { color: var(--nbx-muted); font-size: 0.82em; }
.nbx-complexity-viewer svg.nbx-chart text { fill: var(--nbx-muted); font-size: 10px; font-family: inherit;
  pointer-events: none; }
.nbx-complexity-viewer svg.nbx-chart .nbx-axis { stroke: var(--nbx-border); stroke-width: 1; pointer-events: none; }
.nbx-complexity-viewer svg.nbx-chart .nbx-bar-hit { fill: transparent; cursor: pointer; }
.nbx-complexity-viewer svg.nbx-chart .nbx-bar-hit:hover { fill: var(--nbx-bg2); }
.nbx-complexity-viewer svg.nbx-chart .nbx-bar { fill: var(--nbx-accent); opacity: 0.55; cursor: pointer; }
.nbx-complexity-viewer svg.nbx-chart .nbx-bar.nbx-bar-current { opacity: 0.8; }
.nbx-complexity-viewer svg.nbx-chart .nbx-bar.nbx-bar-selected { opacity: 1; stroke: var(--nbx-fg); stroke-width: 1.5; }
.nbx-complexity-viewer svg.nbx-chart .nbx-bar.nbx-bar-missing { fill: var(--nbx-bg2); }
.nbx-complexity-viewer .nbx-cv-table { display: grid; gap: 4px 8px; align-items: end; overflow-x: auto; max-width: 100%; }
.nbx-complexity-viewer .nbx-cv-head { color: var(--nbx-muted); font-size: 0.85em; text-align: center; max-width: 14em; }
.nbx-complexity-viewer .nbx-cv-head.nbx-order-head { cursor: pointer; }
.nbx-complexity-viewer .nbx-cv-head.nbx-selected { color: var(--nbx-accent); font-weight: 600; }
.nbx-complexity-viewer .nbx-cv-rowtitle { color: var(--nbx-muted); font-size: 0.85em; align-self: center; }
.nbx-complexity-viewer .nbx-cell.nbx-component-cell { padding: 1px; }
.nbx-complexity-viewer .nbx-sep { border-left: 1px solid var(--nbx-border); align-self: stretch; }
`;


/** Largest |value| of a channel (images) or of every bar, over the leading dims. Exported for tests. */
export function maxAbs(t: Tensor, channel: number, kind: "images" | "bars", lead: number): number {
  const shape = t.shape;
  let m = 0;
  if (kind === "bars") {
    for (let i = 0; i < t.data.length; i++) m = Math.max(m, Math.abs(t.data[i]));
    return m;
  }
  // shape = [...lead dims, K, H, W]
  const K = shape[lead];
  const hw = shape[lead + 1] * shape[lead + 2];
  const outer = t.data.length / (K * hw);
  for (let o = 0; o < outer; o++) {
    const base = (o * K + channel) * hw;
    for (let i = 0; i < hw; i++) m = Math.max(m, Math.abs(t.data[base + i]));
  }
  return m;
}

/** The (H·W) map of channel k of sample n (and order l when the tensor has an order axis). */
export function mapOf(t: Tensor, l: number, n: number, k: number, hasOrder: boolean): Float32Array {
  const s = t.shape;
  const off = hasOrder ? 1 : 0;
  const N = s[off];
  const K = s[off + 1];
  const hw = s[off + 2] * s[off + 3];
  const idx = ((hasOrder ? l * N : 0) + n) * K + k;
  return (t.data as Float32Array).subarray(idx * hw, (idx + 1) * hw);
}

/** The K bar values of sample n (and order l). */
export function barsOf(t: Tensor, l: number, n: number, hasOrder: boolean): Float32Array {
  const s = t.shape;
  const off = hasOrder ? 1 : 0;
  const N = s[off];
  const K = s[off + 1];
  const idx = (hasOrder ? l * N : 0) + n;
  return (t.data as Float32Array).subarray(idx * K, (idx + 1) * K);
}

function drawBars(canvas: HTMLCanvasElement, w: number, hgt: number, vals: ArrayLike<number>, vmax: number,
  outline: ArrayLike<number> | null, fill: string, line: string) {
  const ctx = sizeCanvas(canvas, w, hgt);
  if (!ctx) return;
  const W = canvas.width;
  const H = canvas.height;
  ctx.clearRect(0, 0, W, H);
  const n = vals.length;
  const mid = H / 2;
  const scale = vmax > 0 ? (H / 2 - 1) / vmax : 0;
  const bw = W / Math.max(n, 1);
  ctx.fillStyle = fill;
  for (let i = 0; i < n; i++) {
    const v = vals[i] * scale;
    ctx.fillRect(i * bw + bw * 0.1, v >= 0 ? mid - v : mid, Math.max(1, bw * 0.8), Math.abs(v));
  }
  ctx.strokeStyle = line;
  ctx.lineWidth = Math.max(1, W / 200);
  ctx.beginPath();
  ctx.moveTo(0, mid);
  ctx.lineTo(W, mid);
  ctx.stroke();
  if (outline) {
    ctx.beginPath();
    for (let i = 0; i < n; i++) {
      const y = mid - outline[i] * scale;
      ctx.moveTo(i * bw, y);
      ctx.lineTo((i + 1) * bw, y);
    }
    ctx.stroke();
  }
}

function render({ model, el }: RenderProps<State>) {
  const root = viewRoot("complexity-viewer", model.get("theme"));
  injectStyle(el, CSS);
  el.appendChild(root);

  const header = h("div", "nbx-cv-header");
  const controls = h("div", "nbx-controls");
  const sliderLabel = h("label", "nbx-control");
  const sliderText = h("span", "nbx-order-label", "reconstruction up to order");
  const slider = h("input", "nbx-order-slider");
  slider.type = "range";
  slider.min = "0";
  slider.step = "1";
  const orderValue = h("span", "nbx-order-value");
  sliderLabel.append(sliderText, slider, orderValue);
  const channelLabel = h("label", "nbx-control", "channel");
  const channelSelect = h("select", "nbx-channel");
  channelLabel.appendChild(channelSelect);
  const normLabel = h("label", "nbx-control", "scale each order separately");
  const normBox = h("input", "nbx-normalize");
  normBox.type = "checkbox";
  normLabel.prepend(normBox);
  controls.append(sliderLabel, channelLabel, normLabel);
  const charts = h("div", "nbx-charts");
  const table = h("div", "nbx-cv-table");
  const { footer, readout, setScale } = colorFooter();
  root.append(header, controls, charts, table, footer);

  // local view state (never sent to the kernel)
  let orderIndex = 0;
  let channelIndex = 0;
  let perOrder = false;

  let feature: Tensor = decodeTensor(null);
  let recon: Tensor = decodeTensor(null);
  let comps: Tensor = decodeTensor(null);
  let inputs: Tensor = decodeTensor(null);
  let metrics: Tensor = decodeTensor(null);
  let featCanvases: HTMLCanvasElement[] = [];
  let reconCanvases: HTMLCanvasElement[] = [];
  let selCanvases: HTMLCanvasElement[] = [];
  let compCanvases: HTMLCanvasElement[][] = [];
  let inputCanvases: HTMLCanvasElement[] = [];
  let selHead: HTMLDivElement | null = null;
  let reconHead: HTMLDivElement | null = null;
  let orderHeads: HTMLDivElement[] = [];
  let chartBars: SVGRectElement[][] = [];

  const orders = () => model.get("orders");
  const n = () => (feature.shape.length >= 2 ? feature.shape[0] : 0);
  const kind = () => model.get("kind");
  const accent = () => getComputedStyle(root).getPropertyValue("--nbx-accent").trim() || "#1976d2";
  const fg = () => getComputedStyle(root).getPropertyValue("--nbx-fg").trim() || "#333";

  function featureScale(): ColorScale {
    const m = Math.max(maxAbs(feature, channelIndex, kind(), 1), maxAbs(recon, channelIndex, kind(), 2));
    return { kind: "diverging", vmin: -m, vmax: m };
  }

  function componentScale(l: number): ColorScale {
    let m = 0;
    if (perOrder) {
      const L = orders().length;
      const N = n();
      for (let s = 0; s < N; s++) {
        const vals = kind() === "images" ? mapOf(comps, l, s, channelIndex, true) : barsOf(comps, l, s, true);
        for (let i = 0; i < vals.length; i++) m = Math.max(m, Math.abs(vals[i]));
      }
      if (L === 0) m = 0;
    } else {
      m = maxAbs(comps, channelIndex, kind(), 2);
    }
    return { kind: "diverging", vmin: -m, vmax: m };
  }

  function paint(canvas: HTMLCanvasElement, t: Tensor, l: number, s: number, hasOrder: boolean, sc: ColorScale,
    outline: ArrayLike<number> | null = null) {
    const size = model.get("cell_size");
    if (kind() === "images") {
      const off = hasOrder ? 1 : 0;
      const hm = t.shape[off + 2];
      const wm = t.shape[off + 3];
      const ch = Math.max(1, Math.round((size * hm) / wm));
      const ctx = sizeCanvas(canvas, size, ch);
      if (!ctx) return;
      const img = offscreen(colorize(mapOf(t, l, s, channelIndex, hasOrder), hm, wm, sc), wm, hm);
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    } else {
      drawBars(canvas, size, Math.round(size * 0.6), barsOf(t, l, s, hasOrder), sc.vmax, outline, accent(), fg());
    }
  }

  function drawRecon() {
    const sc = featureScale();
    for (let s = 0; s < reconCanvases.length; s++) {
      const outline = kind() === "bars" ? barsOf(feature, 0, s, false) : null;
      paint(reconCanvases[s], recon, orderIndex, s, true, sc, outline);
    }
    const o = orders()[orderIndex];
    orderValue.textContent = String(o);
    const fitRow = model.get("metric_names").indexOf("fit_quality");
    const fit = fitRow >= 0 && metrics.shape.length === 2 ? metrics.data[fitRow * metrics.shape[1] + orderIndex] : NaN;
    if (reconHead) reconHead.textContent = `reconstruction ≤ ${o}` + (Number.isFinite(fit) ? ` (R² ${formatValue(fit)})` : "");
    root.dataset.order = String(o);
    root.dataset.orderIndex = String(orderIndex);
    for (const bars of chartBars) bars.forEach((b, i) => b.classList.toggle("nbx-bar-current", i === orderIndex));
  }

  function drawSelected() {
    const l = Math.min(model.get("selected_order"), Math.max(orders().length - 1, 0));
    const sc = componentScale(l);
    for (let s = 0; s < selCanvases.length; s++) paint(selCanvases[s], comps, l, s, true, sc);
    if (selHead) selHead.textContent = `component of order ${orders()[l]}`;
    orderHeads.forEach((hd, i) => hd.classList.toggle("nbx-selected", i === l));
    compCanvases.forEach((row) => row.forEach((c, i) => c.parentElement?.classList.toggle("nbx-selected", i === l)));
    for (const bars of chartBars) bars.forEach((b, i) => b.classList.toggle("nbx-bar-selected", i === l));
    root.dataset.selectedOrder = String(orders()[l]);
  }

  function drawStatic() {
    const fsc = featureScale();
    for (let s = 0; s < featCanvases.length; s++) {
      paint(featCanvases[s], feature, 0, s, false, fsc);
    }
    const L = orders().length;
    for (let s = 0; s < compCanvases.length; s++) {
      for (let l = 0; l < L; l++) paint(compCanvases[s][l], comps, l, s, true, componentScale(l));
    }
    if (inputs.shape.length === 4) {
      const [, hi, wi, ci] = inputs.shape;
      const size = model.get("cell_size");
      for (let s = 0; s < inputCanvases.length; s++) {
        const ctx = sizeCanvas(inputCanvases[s], size, Math.max(1, Math.round((size * hi) / wi)));
        if (!ctx) continue;
        const per = hi * wi * ci;
        const img = offscreen(imageRGBA(inputs.data.subarray(s * per, (s + 1) * per), hi, wi, ci), wi, hi);
        ctx.drawImage(img, 0, 0, inputCanvases[s].width, inputCanvases[s].height);
      }
    }
    const ch = model.get("channels")[channelIndex];
    setScale(fsc, kind() === "images" ? `feature, channel ${ch}` : "feature");
    root.dataset.channel = String(ch);
  }

  function drawAll() {
    drawStatic();
    drawRecon();
    drawSelected();
  }

  function selectOrder(l: number) {
    model.set("selected_order", l);
    drawSelected(); // immediate; Python learns the choice but is not needed to draw it
    model.save_changes();
  }

  function buildCharts() {
    charts.replaceChildren();
    chartBars = [];
    const names = model.get("metric_names");
    const valid = model.get("metric_valid");
    const L = orders().length;
    if (metrics.shape.length !== 2 || L === 0) return;
    for (const name of CHARTED) {
      const row = names.indexOf(name);
      if (row < 0) continue;
      const vals = Array.from(metrics.data.subarray(row * L, (row + 1) * L));
      const ok = valid[row] ?? vals.map(() => true);
      const box = h("div", "nbx-chart-box");
      box.dataset.metric = name;
      box.append(h("span", "nbx-chart-title", name), h("span", "nbx-chart-help", CHART_HELP[name] ?? ""));
      const W = 170;
      const H = 96;
      const top = 12;
      const bottom = 16;
      const left = 6;
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("class", "nbx-chart");
      svg.setAttribute("width", String(W));
      svg.setAttribute("height", String(H));
      svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", `${name} per order`);
      const shown = vals.map((v, i) => (ok[i] ? v : 0));
      const hi = Math.max(0, ...shown);
      const lo = Math.min(0, ...shown);
      const span = hi - lo || 1;
      const plotH = H - top - bottom;
      const y = (v: number) => top + ((hi - v) / span) * plotH;
      const bw = (W - left * 2) / L;
      const bars: SVGRectElement[] = [];
      for (let i = 0; i < L; i++) {
        const v = shown[i];
        // a full-height column behind the bar, so that tiny bars are easy to click
        const hit = document.createElementNS(SVG, "rect");
        hit.setAttribute("class", "nbx-bar-hit");
        hit.setAttribute("x", String(left + i * bw));
        hit.setAttribute("width", String(bw));
        hit.setAttribute("y", "0");
        hit.setAttribute("height", String(H));
        hit.dataset.index = String(i);
        hit.addEventListener("click", () => selectOrder(i));
        svg.appendChild(hit);
        const rect = document.createElementNS(SVG, "rect");
        const y0 = y(Math.max(v, 0));
        const y1 = y(Math.min(v, 0));
        rect.setAttribute("x", String(left + i * bw + bw * 0.15));
        rect.setAttribute("width", String(bw * 0.7));
        rect.setAttribute("y", String(y0));
        rect.setAttribute("height", String(Math.max(ok[i] ? 1 : plotH, y1 - y0)));
        if (!ok[i]) {
          rect.setAttribute("y", String(top));
        }
        rect.setAttribute("class", "nbx-bar" + (ok[i] ? "" : " nbx-bar-missing"));
        rect.dataset.index = String(i);
        rect.dataset.value = ok[i] ? String(vals[i]) : "NaN";
        const title = document.createElementNS(SVG, "title");
        title.textContent = `order ${orders()[i]}: ${ok[i] ? formatValue(vals[i]) : "not computed"}`;
        rect.appendChild(title);
        rect.addEventListener("click", () => selectOrder(i));
        const show = () => {
          readout.textContent = `${name}, order ${orders()[i]}: ${ok[i] ? formatValue(vals[i]) : "not computed"}`;
        };
        rect.addEventListener("pointerenter", show);
        hit.addEventListener("pointerenter", show);
        svg.appendChild(rect);
        bars.push(rect);
        const label = document.createElementNS(SVG, "text");
        label.setAttribute("x", String(left + (i + 0.5) * bw));
        label.setAttribute("y", String(H - 4));
        label.setAttribute("text-anchor", "middle");
        label.textContent = String(orders()[i]);
        svg.appendChild(label);
        if (ok[i]) {
          const val = document.createElementNS(SVG, "text");
          val.setAttribute("x", String(left + (i + 0.5) * bw));
          val.setAttribute("y", String(Math.max(9, y(vals[i]) - 2 + (vals[i] < 0 ? 11 : 0))));
          val.setAttribute("text-anchor", "middle");
          val.textContent = formatValue(Number(vals[i].toPrecision(2)));
          svg.appendChild(val);
        }
      }
      const axis = document.createElementNS(SVG, "line");
      axis.setAttribute("class", "nbx-axis");
      axis.setAttribute("x1", String(left));
      axis.setAttribute("x2", String(W - left));
      axis.setAttribute("y1", String(y(0)));
      axis.setAttribute("y2", String(y(0)));
      svg.appendChild(axis);
      box.appendChild(svg);
      charts.appendChild(box);
      chartBars.push(bars);
    }
  }

  function build() {
    feature = decodeTensor(model.get("feature"));
    recon = decodeTensor(model.get("recon"));
    comps = decodeTensor(model.get("components"));
    inputs = decodeTensor(model.get("inputs"));
    metrics = decodeTensor(model.get("metrics"));
    const L = orders().length;
    const N = n();
    orderIndex = Math.min(model.get("order_index"), Math.max(L - 1, 0));
    const chans = model.get("channels");
    channelIndex = Math.min(model.get("channel_index"), Math.max(chans.length - 1, 0));
    header.textContent = `${model.get("layer")} · ${model.get("family")} disentanglers · orders ${orders().join(", ")}`;
    slider.max = String(Math.max(L - 1, 0));
    slider.value = String(orderIndex);
    channelSelect.replaceChildren();
    chans.forEach((c, i) => {
      const opt = h("option", "", String(c));
      opt.value = String(i);
      channelSelect.appendChild(opt);
    });
    channelSelect.value = String(channelIndex);
    channelLabel.style.display = kind() === "images" && chans.length > 1 ? "" : "none";
    buildCharts();

    table.replaceChildren();
    const hasInputs = inputs.shape.length === 4 && inputs.shape[0] === N;
    const cols = ["", ...(hasInputs ? ["input"] : []), "feature", "reconstruction", "selected", "|",
      ...orders().map((o) => `order ${o}`)];
    table.style.gridTemplateColumns = cols.map((c) => (c === "|" ? "1px" : c === "" ? "auto" : "max-content")).join(" ");
    orderHeads = [];
    reconHead = null;
    selHead = null;
    cols.forEach((c, j) => {
      if (c === "|") {
        table.appendChild(h("div", "nbx-sep"));
        return;
      }
      const hd = h("div", "nbx-cv-head", c === "selected" ? "" : c);
      if (c === "reconstruction") reconHead = hd;
      if (c === "selected") selHead = hd;
      if (c.startsWith("order ")) {
        const l = j - (cols.length - L);
        hd.classList.add("nbx-order-head");
        hd.dataset.index = String(l);
        hd.addEventListener("click", () => selectOrder(l));
        orderHeads.push(hd);
      }
      table.appendChild(hd);
    });
    featCanvases = [];
    reconCanvases = [];
    selCanvases = [];
    compCanvases = [];
    inputCanvases = [];
    const titles = model.get("titles");
    for (let s = 0; s < N; s++) {
      table.appendChild(h("div", "nbx-cv-rowtitle", titles[s] ?? String(s)));
      const cell = (cls: string) => {
        const wrap = h("div", "nbx-cell");
        const c = h("canvas", `nbx-canvas ${cls}`);
        c.dataset.sample = String(s);
        wrap.appendChild(c);
        table.appendChild(wrap);
        return c;
      };
      if (hasInputs) inputCanvases.push(cell("nbx-input"));
      featCanvases.push(cell("nbx-feature"));
      reconCanvases.push(cell("nbx-recon"));
      selCanvases.push(cell("nbx-selected-component"));
      table.appendChild(h("div", "nbx-sep"));
      const row: HTMLCanvasElement[] = [];
      for (let l = 0; l < L; l++) {
        const c = cell("nbx-component");
        c.dataset.index = String(l);
        c.parentElement?.classList.add("nbx-component-cell");
        c.parentElement?.addEventListener("click", () => selectOrder(l));
        row.push(c);
      }
      compCanvases.push(row);
    }
    readout.textContent = "slide to rebuild the feature order by order · click an order to compare its component";
    root.dataset.kind = kind();
    root.dataset.n = String(N);
    root.dataset.orders = orders().join(",");
    root.dataset.layer = model.get("layer");
    drawAll();
    root.dataset.ready = "true";
  }

  slider.addEventListener("input", () => {
    orderIndex = Number(slider.value);
    drawRecon();
  });
  channelSelect.addEventListener("change", () => {
    channelIndex = Number(channelSelect.value);
    drawAll();
  });
  normBox.addEventListener("change", () => {
    perOrder = normBox.checked;
    root.dataset.perOrder = String(perOrder);
    drawStatic();
    drawSelected();
  });

  const rebuild = () => build();
  const onOrder = () => {
    orderIndex = Math.min(model.get("order_index"), Math.max(orders().length - 1, 0));
    slider.value = String(orderIndex);
    drawRecon();
  };
  const onChannel = () => {
    channelIndex = Math.min(model.get("channel_index"), Math.max(model.get("channels").length - 1, 0));
    channelSelect.value = String(channelIndex);
    drawAll();
  };
  const onTheme = () => {
    root.dataset.theme = model.get("theme");
    drawAll();
  };
  const events: Array<[string, () => void]> = [
    ["change:feature", rebuild], ["change:recon", rebuild], ["change:components", rebuild],
    ["change:inputs", rebuild], ["change:metrics", rebuild], ["change:orders", rebuild],
    ["change:titles", rebuild], ["change:channels", rebuild], ["change:kind", rebuild],
    ["change:cell_size", rebuild], ["change:order_index", onOrder], ["change:channel_index", onChannel],
    ["change:selected_order", drawSelected], ["change:theme", onTheme],
  ];
  build();
  return connect(el, root, model, events, drawAll);
}

export default { render };
export type { AnyModel };
