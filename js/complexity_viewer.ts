// ComplexityViewer: a feature split into components of increasing complexity (Ren et al. 2021).
// Pure render from model state. The order slider, the channel picker and the per-order scaling act
// locally (no kernel message); clicking an order (a bar, a component or its column heading, or Enter/Space on
// the heading) selects it and tells Python. Colour bars always describe what is drawn: one for the feature and
// its reconstruction, one for the components (or one per order when each order is scaled separately). Limits
// set from Python (`feature_limit`, `component_limit`, `chart_limits`) put several viewers on one scale.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { type ColorScale } from "./lib/colormap";
import { activate, applyScale, connect, fitBitmap, h, injectStyle, offscreen, onBackground, onThemeChange, scaleOf, svgPlot, themeHandler, viewRoot } from "./lib/dom";
import { formatNumber, formatTick, niceCeil, niceTicks } from "./lib/nice_ticks";
import { keepNavigationKeys } from "./lib/keys";
import { colorize, imageRGBA } from "./lib/raster";
import { scaleBar } from "./lib/scalebar";
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
  feature_limit: number;
  component_limit: number;
  chart_limits: Record<string, number[]>;
  cell_size: number;
  theme: string;
  scale: number;
}

const CHARTED = ["energy", "reliability", "effectiveness", "overfitting"];
const CHART_HELP: Record<string, string> = {
  energy: "Var(component) / Var(feature)",
  reliability: "share also carried by a second network",
  effectiveness: "Shapley value: decrease of the training loss",
  overfitting: "Shapley value: test − train loss gap",
};
const SVG = "http://www.w3.org/2000/svg";

// Every label at the view's font size (≥ 13 px, times `scale`); SVG text in CSS px (no viewBox shrinks it).
const CSS = `
.nbx-complexity-viewer .nbx-cv-header { font-weight: 600; margin-bottom: 4px; overflow-wrap: anywhere; }
.nbx-complexity-viewer .nbx-control { color: var(--nbx-fg); flex-wrap: wrap; max-width: 100%; }
.nbx-complexity-viewer select, .nbx-complexity-viewer input { font: inherit; }
.nbx-complexity-viewer select:focus-visible, .nbx-complexity-viewer input:focus-visible {
  outline: 2px solid var(--nbx-accent); outline-offset: 1px; }
.nbx-complexity-viewer .nbx-charts { display: flex; flex-wrap: wrap; gap: 10px 18px; margin: 6px 0 10px; }
.nbx-complexity-viewer .nbx-chart-box { display: flex; flex-direction: column; gap: 2px; max-width: 100%; }
.nbx-complexity-viewer .nbx-chart-title { color: var(--nbx-fg); font-weight: 600; }
.nbx-complexity-viewer .nbx-chart-help { color: var(--nbx-muted); overflow-wrap: anywhere; }
.nbx-complexity-viewer svg.nbx-chart { max-width: 100%; overflow: visible; }
.nbx-complexity-viewer svg.nbx-chart text { fill: var(--nbx-fg); font-size: 1em; font-family: inherit;
  pointer-events: none; }
.nbx-complexity-viewer svg.nbx-chart .nbx-axis { stroke: var(--nbx-fg); stroke-width: 1; pointer-events: none; }
.nbx-complexity-viewer svg.nbx-chart .nbx-grid-line { stroke: var(--nbx-border); stroke-width: 1; pointer-events: none; }
.nbx-complexity-viewer svg.nbx-chart .nbx-bar-hit { fill: transparent; cursor: pointer; }
.nbx-complexity-viewer svg.nbx-chart .nbx-bar-hit:hover { fill: var(--nbx-bg2); }
.nbx-complexity-viewer svg.nbx-chart .nbx-bar { fill: var(--nbx-accent); opacity: 0.55; cursor: pointer; }
.nbx-complexity-viewer svg.nbx-chart .nbx-bar.nbx-bar-current { opacity: 0.8; }
.nbx-complexity-viewer svg.nbx-chart .nbx-bar.nbx-bar-selected { opacity: 1; stroke: var(--nbx-fg); stroke-width: 1.5; }
.nbx-complexity-viewer svg.nbx-chart .nbx-bar.nbx-bar-missing { fill: var(--nbx-bg2); }
.nbx-complexity-viewer .nbx-cv-tables { display: flex; flex-wrap: wrap; gap: 10px 18px; align-items: flex-start; }
.nbx-complexity-viewer .nbx-cv-table { display: grid; gap: 4px 6px; align-items: end; width: max-content; max-width: 100%; }
.nbx-complexity-viewer .nbx-cv-head { color: var(--nbx-fg); text-align: center; overflow-wrap: break-word;
  line-height: 1.25; min-width: 0; }
.nbx-complexity-viewer .nbx-cv-head.nbx-order-head { cursor: pointer; border-radius: 3px; }
.nbx-complexity-viewer .nbx-cv-head.nbx-order-head:focus-visible { outline: 3px solid var(--nbx-accent); outline-offset: 1px; }
.nbx-complexity-viewer .nbx-cv-head.nbx-selected { color: var(--nbx-accent); font-weight: 600; }
.nbx-complexity-viewer .nbx-cv-rowtitle { color: var(--nbx-fg); align-self: center; }
.nbx-complexity-viewer .nbx-cv-table .nbx-cell { min-width: 0; }
.nbx-complexity-viewer .nbx-cv-table .nbx-canvas { width: 100%; height: auto; border: 1px solid var(--nbx-border); }
.nbx-complexity-viewer .nbx-cell.nbx-component-cell { padding: 1px; }
.nbx-complexity-viewer .nbx-bars-note { color: var(--nbx-fg); overflow-wrap: anywhere; }
.nbx-complexity-viewer .nbx-footer { align-items: flex-start; }
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

/** An axis: its ends, the spacing of its ticks, and the ticks (nice values). */
export interface NiceAxis {
  lo: number;
  hi: number;
  step: number;
  ticks: number[];
}

/**
 * The symmetric colour axis −L … 0 … L of data with largest |value| `maxAbs`: L the nice value at or above it
 * (`niceCeil`: at most 4/3 of it), ticks at −L, −L/2, 0, L/2, L. No data (or all zero): L = 1.
 */
export function symmetricAxis(maxAbs: number): NiceAxis {
  const limit = niceCeil(maxAbs > 0 && Number.isFinite(maxAbs) ? maxAbs : 1);
  const half = Number((limit / 2).toPrecision(12));
  return { lo: -limit, hi: limit, step: half, ticks: [-limit, -half, 0, half, limit] };
}

/**
 * The y axis of a metric chart: a nice axis over the valid values and 0, or over the shared `[lo, hi]` range
 * set from Python (so that two viewers' charts use one scale); the shared range is widened to the values if
 * they fall outside it.
 */
export function chartAxis(values: ArrayLike<number>, valid: ArrayLike<boolean>, shared?: number[]): NiceAxis {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < values.length; i++) {
    if (!valid[i] || !Number.isFinite(values[i])) continue;
    lo = Math.min(lo, values[i]);
    hi = Math.max(hi, values[i]);
  }
  if (shared && shared.length === 2 && Number.isFinite(shared[0]) && Number.isFinite(shared[1])) {
    lo = Math.min(lo, shared[0]);
    hi = Math.max(hi, shared[1]);
  }
  const ticks = niceTicks(lo, hi, 5);
  return { lo: ticks[0], hi: ticks[ticks.length - 1], step: ticks.length > 1 ? ticks[1] - ticks[0] : 1, ticks };
}

function drawBars(canvas: HTMLCanvasElement, vals: ArrayLike<number>, vmax: number,
  outline: ArrayLike<number> | null, fill: string, line: string) {
  const ctx = canvas.getContext("2d");
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

/** Size a canvas's pixels for `w × hgt` CSS px; CSS lets it shrink with its column (width 100 %, height auto). */
function sizeFluid(canvas: HTMLCanvasElement, w: number, hgt: number): CanvasRenderingContext2D | null {
  const dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
  const ctx = fitBitmap(canvas, Math.round(w * dpr), Math.round(hgt * dpr));
  canvas.style.maxWidth = `${w}px`;
  canvas.style.minWidth = `${Math.round(0.7 * w)}px`; // shrinks with the view down to 70 %, then the table reflows
  return ctx;
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
  const tables = h("div", "nbx-cv-tables");
  const footer = h("div", "nbx-footer");
  const bars = h("div", "nbx-cv-bars nbx-controls");
  const readout = h("div", "nbx-readout");
  readout.setAttribute("aria-live", "polite");
  footer.append(bars, readout);
  root.append(header, controls, charts, tables, footer);

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
  const cellPx = () => Math.round(model.get("cell_size") * scaleOf(root));
  const accent = () => getComputedStyle(root).getPropertyValue("--nbx-accent").trim() || "#1976d2";
  const fg = () => getComputedStyle(root).getPropertyValue("--nbx-fg").trim() || "#333";
  const channelText = () => (kind() === "images" ? `, channel ${model.get("channels")[channelIndex]}` : "");

  /** The nice symmetric axis of the feature and its reconstructions (shared limit when set from Python). */
  function featureAxis(): NiceAxis {
    const shared = Number(model.get("feature_limit")) || 0;
    const m = shared > 0 ? shared : Math.max(maxAbs(feature, channelIndex, kind(), 1), maxAbs(recon, channelIndex, kind(), 2));
    return symmetricAxis(m);
  }

  /** The nice symmetric axis of the components of order index l (each order's own when scaled separately). */
  function componentAxis(l: number): NiceAxis {
    let m = 0;
    if (perOrder) {
      for (let s = 0; s < n(); s++) {
        const vals = kind() === "images" ? mapOf(comps, l, s, channelIndex, true) : barsOf(comps, l, s, true);
        for (let i = 0; i < vals.length; i++) m = Math.max(m, Math.abs(vals[i]));
      }
    } else {
      const shared = Number(model.get("component_limit")) || 0;
      m = shared > 0 ? shared : maxAbs(comps, channelIndex, kind(), 2);
    }
    return symmetricAxis(m);
  }

  // on a dark background RdBu's darkest ends are cut (onBackground), so the strongest values are not the page's colour
  const asScale = (ax: NiceAxis): ColorScale => onBackground(root, { kind: "diverging", vmin: ax.lo, vmax: ax.hi });

  /** What a set of canvases on axis `ax` is drawn with: read once per set (reading styles after sizing a canvas
   * forces a style recalculation, once per canvas on the order slider's path otherwise). */
  const look = (ax: NiceAxis) => ({ ax, scale: asScale(ax), fill: accent(), line: fg() });
  type Look = ReturnType<typeof look>;

  function paint(canvas: HTMLCanvasElement, t: Tensor, l: number, s: number, hasOrder: boolean, lk: Look,
    outline: ArrayLike<number> | null = null) {
    const ax = lk.ax;
    const size = cellPx();
    canvas.dataset.vmax = String(ax.hi);
    if (kind() === "images") {
      const off = hasOrder ? 1 : 0;
      const hm = t.shape[off + 2];
      const wm = t.shape[off + 3];
      const ctx = sizeFluid(canvas, size, Math.max(1, Math.round((size * hm) / wm)));
      if (!ctx) return;
      const img = offscreen(colorize(mapOf(t, l, s, channelIndex, hasOrder), hm, wm, lk.scale), wm, hm);
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    } else {
      sizeFluid(canvas, size, Math.round(size * 0.6));
      drawBars(canvas, barsOf(t, l, s, hasOrder), ax.hi, outline, lk.fill, lk.line);
    }
  }

  /** The colour bars (or, for bar features, the axis note): exactly the scales drawn now. */
  function drawScaleBars() {
    bars.replaceChildren();
    const fax = featureAxis();
    const L = orders().length;
    root.dataset.featureLimit = String(fax.hi);
    if (kind() === "bars") {
      const note = h("div", "nbx-bars-note");
      const shared = perOrder ? null : componentAxis(0);
      const comp = shared ? `components from ${formatTick(-shared.hi)} to ${formatTick(shared.hi)}` : "each order's components on their own axis";
      note.textContent = `Bars: one per feature dimension, the line through the middle is 0. Feature and ` +
        `reconstruction from ${formatTick(fax.lo)} to ${formatTick(fax.hi)} (top of a chart); ${comp}.`;
      bars.appendChild(note);
      return;
    }
    const fbar = scaleBar(asScale(fax), fax.step, `feature and reconstruction${channelText()}`);
    fbar.dataset.role = "feature";
    bars.appendChild(fbar);
    if (!perOrder) {
      const cax = componentAxis(0);
      const cbar = scaleBar(asScale(cax), cax.step, `components, every order${channelText()}`);
      cbar.dataset.role = "components";
      bars.appendChild(cbar);
    } else {
      for (let l = 0; l < L; l++) {
        const cax = componentAxis(l);
        const cbar = scaleBar(asScale(cax), cax.step, `component of order ${orders()[l]}${channelText()}`);
        cbar.dataset.role = "components";
        cbar.dataset.order = String(orders()[l]);
        bars.appendChild(cbar);
      }
    }
  }

  function drawRecon() {
    const lk = look(featureAxis());
    for (let s = 0; s < reconCanvases.length; s++) {
      const outline = kind() === "bars" ? barsOf(feature, 0, s, false) : null;
      paint(reconCanvases[s], recon, orderIndex, s, true, lk, outline);
    }
    const o = orders()[orderIndex];
    orderValue.textContent = String(o);
    slider.setAttribute("aria-valuetext", `order ${o}`);
    const fitRow = model.get("metric_names").indexOf("fit_quality");
    const fit = fitRow >= 0 && metrics.shape.length === 2 ? metrics.data[fitRow * metrics.shape[1] + orderIndex] : NaN;
    if (reconHead) {
      reconHead.textContent = `rebuilt from orders ≤ ${o}` + (Number.isFinite(fit) ? ` (fit R² ${formatTick(fit)})` : "");
    }
    reconCanvases.forEach((c, s) => c.setAttribute("aria-label", `${model.get("titles")[s] ?? `sample ${s}`}: reconstruction up to order ${o}${channelText()}`));
    root.dataset.order = String(o);
    root.dataset.orderIndex = String(orderIndex);
    for (const row of chartBars) row.forEach((b, i) => b.classList.toggle("nbx-bar-current", i === orderIndex));
  }

  function drawSelected() {
    const l = Math.min(model.get("selected_order"), Math.max(orders().length - 1, 0));
    const lk = look(componentAxis(l));
    for (let s = 0; s < selCanvases.length; s++) paint(selCanvases[s], comps, l, s, true, lk);
    if (selHead) selHead.textContent = `component of order ${orders()[l]}`;
    selCanvases.forEach((c, s) => c.setAttribute("aria-label", `${model.get("titles")[s] ?? `sample ${s}`}: component of order ${orders()[l]}${channelText()}`));
    orderHeads.forEach((hd, i) => {
      hd.classList.toggle("nbx-selected", i === l);
      hd.setAttribute("aria-pressed", String(i === l));
    });
    compCanvases.forEach((row) => row.forEach((c, i) => c.parentElement?.classList.toggle("nbx-selected", i === l)));
    for (const row of chartBars) row.forEach((b, i) => b.classList.toggle("nbx-bar-selected", i === l));
    root.dataset.selectedOrder = String(orders()[l]);
  }

  function drawStatic() {
    const flk = look(featureAxis());
    for (let s = 0; s < featCanvases.length; s++) paint(featCanvases[s], feature, 0, s, false, flk);
    const L = orders().length;
    const shared = perOrder ? null : look(componentAxis(0)); // one scan of every order's components, not one per order
    for (let l = 0; l < L; l++) {
      const lk = shared ?? look(componentAxis(l));
      for (let s = 0; s < compCanvases.length; s++) paint(compCanvases[s][l], comps, l, s, true, lk);
    }
    if (inputs.shape.length === 4) {
      const [, hi, wi, ci] = inputs.shape;
      const size = cellPx();
      for (let s = 0; s < inputCanvases.length; s++) {
        const ctx = sizeFluid(inputCanvases[s], size, Math.max(1, Math.round((size * hi) / wi)));
        if (!ctx) continue;
        const per = hi * wi * ci;
        const img = offscreen(imageRGBA(inputs.data.subarray(s * per, (s + 1) * per), hi, wi, ci), wi, hi);
        ctx.drawImage(img, 0, 0, inputCanvases[s].width, inputCanvases[s].height);
      }
    }
    drawScaleBars();
    root.dataset.channel = String(model.get("channels")[channelIndex]);
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

  /** One metric chart: bars per order on a labelled y axis (nice ticks, 0 drawn), orders on the x axis. */
  function buildChart(name: string, vals: number[], ok: boolean[], shared: number[] | undefined): void {
    const L = vals.length;
    const fpx = parseFloat(getComputedStyle(root).fontSize) || 13 * scaleOf(root);
    const ax = chartAxis(vals, ok, shared);
    const tickText = ax.ticks.map(formatTick);
    const labelW = Math.max(...tickText.map((t) => t.length)) * 0.62 * fpx;
    const left = Math.ceil(labelW + 8);
    const top = Math.ceil(fpx * 1.3);
    const plotW = Math.round(Math.max(150 * scaleOf(root), L * 2.8 * fpx));
    const plotH = Math.round(96 * scaleOf(root));
    const bottom = Math.ceil(fpx * 2.8);
    const W = left + plotW + 6;
    const H = top + plotH + bottom;
    const box = h("div", "nbx-chart-box");
    box.dataset.metric = name;
    box.append(h("span", "nbx-chart-title", name), h("span", "nbx-chart-help", CHART_HELP[name] ?? ""));
    const { svg, mk } = svgPlot("nbx-chart", { left: 0, top: 0, width: W, height: H, padRight: 0, padBottom: 0 });
    svg.setAttribute("role", "img");
    const said = vals.map((v, i) => `order ${orders()[i]} ${ok[i] ? formatTick(v) : "not computed"}`).join(", ");
    svg.setAttribute("aria-label", `${name} per order (axis ${formatTick(ax.lo)} to ${formatTick(ax.hi)}): ${said}`);
    svg.dataset.ticks = ax.ticks.join(",");
    svg.dataset.lo = String(ax.lo);
    svg.dataset.hi = String(ax.hi);
    const span = ax.hi - ax.lo || 1;
    const y = (v: number) => top + ((ax.hi - v) / span) * plotH;
    // y axis: nice ticks with grid lines and labels
    ax.ticks.forEach((t, i) => {
      mk("line", { class: "nbx-grid-line", x1: String(left), x2: String(left + plotW), y1: String(y(t)), y2: String(y(t)) });
      mk("text", { class: "nbx-ytick", x: String(left - 5), y: String(y(t)), "text-anchor": "end", "dominant-baseline": "middle" }, tickText[i]);
    });
    mk("line", { class: "nbx-axis", x1: String(left), x2: String(left), y1: String(top), y2: String(top + plotH) });
    const bw = plotW / L;
    const rects: SVGRectElement[] = [];
    for (let i = 0; i < L; i++) {
      const v = ok[i] ? vals[i] : 0;
      // a full-height column behind the bar, so that tiny bars are easy to click
      const hit = mk("rect", { class: "nbx-bar-hit", x: String(left + i * bw), width: String(bw), y: String(top), height: String(plotH) });
      hit.dataset.index = String(i);
      hit.addEventListener("click", () => selectOrder(i));
      const y0 = y(Math.max(v, 0));
      const y1 = y(Math.min(v, 0));
      const rect = mk("rect", {
        class: "nbx-bar" + (ok[i] ? "" : " nbx-bar-missing"),
        x: String(left + i * bw + bw * 0.15), width: String(bw * 0.7),
        y: String(ok[i] ? y0 : top), height: String(ok[i] ? Math.max(1, y1 - y0) : plotH),
      }) as SVGRectElement;
      rect.dataset.index = String(i);
      rect.dataset.value = ok[i] ? String(vals[i]) : "NaN";
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${name}, order ${orders()[i]}: ${ok[i] ? formatNumber(vals[i]) : "not computed"}`;
      rect.appendChild(title);
      rect.addEventListener("click", () => selectOrder(i));
      const show = () => {
        readout.textContent = `${name}, order ${orders()[i]}: ${ok[i] ? formatNumber(vals[i]) : "not computed"}`;
      };
      rect.addEventListener("pointerenter", show);
      hit.addEventListener("pointerenter", show);
      rects.push(rect);
      mk("text", { class: "nbx-xtick", x: String(left + (i + 0.5) * bw), y: String(top + plotH + fpx * 1.1), "text-anchor": "middle" },
        String(orders()[i]));
      const valueText = ok[i] ? formatTick(vals[i]) : "";
      if (ok[i] && valueText.length * 0.62 * fpx + 4 <= bw) { // only a value that fits above its own bar
        const above = vals[i] >= 0;
        mk("text", {
          class: "nbx-bar-value", x: String(left + (i + 0.5) * bw),
          y: String(above ? y(vals[i]) - 3 : y(vals[i]) + fpx), "text-anchor": "middle",
        }, valueText);
      }
    }
    mk("line", { class: "nbx-axis nbx-zero", x1: String(left), x2: String(left + plotW), y1: String(y(0)), y2: String(y(0)) });
    mk("text", { class: "nbx-xtitle", x: String(left + plotW / 2), y: String(top + plotH + fpx * 2.4), "text-anchor": "middle" }, "order");
    box.appendChild(svg);
    charts.appendChild(box);
    chartBars.push(rects);
  }

  function buildCharts() {
    charts.replaceChildren();
    chartBars = [];
    const names = model.get("metric_names");
    const valid = model.get("metric_valid");
    const limits = model.get("chart_limits") ?? {};
    const L = orders().length;
    if (metrics.shape.length !== 2 || L === 0) return;
    for (const name of CHARTED) {
      const row = names.indexOf(name);
      if (row < 0) continue;
      const vals = Array.from(metrics.data.subarray(row * L, (row + 1) * L));
      buildChart(name, vals, valid[row] ?? vals.map(() => true), limits[name]);
    }
  }

  /** One column of the table: its heading and one cell per sample. */
  interface Column {
    head: HTMLDivElement;
    cells: HTMLDivElement[];
  }
  let groups: Column[][] = []; // [feature columns, order columns]: never mixed in one grid
  let laidOutFor = -1;

  function orderHead(l: number): HTMLDivElement {
    const hd = h("div", "nbx-cv-head nbx-order-head", `order ${orders()[l]}`);
    hd.dataset.index = String(l);
    hd.tabIndex = 0;
    hd.setAttribute("role", "button");
    hd.setAttribute("aria-label", `order ${orders()[l]}: show its component beside the reconstruction`);
    activate(hd, () => selectOrder(l));
    return hd;
  }

  /** A grid of the row titles and `cols` (heading + one cell per sample), row-major. */
  function grid(cols: Column[], first: boolean, group: number): HTMLDivElement {
    const table = h("div", `nbx-cv-table ${group === 0 ? "nbx-cv-main" : "nbx-cv-orders"}`);
    table.style.gridTemplateColumns = `max-content repeat(${cols.length}, minmax(min-content, ${cellPx()}px))`;
    table.appendChild(h("div", "nbx-cv-head", group === 1 && first ? "components" : ""));
    for (const c of cols) table.appendChild(c.head);
    const titles = model.get("titles");
    for (let s = 0; s < n(); s++) {
      table.appendChild(h("div", "nbx-cv-rowtitle", titles[s] ?? `sample ${s}`));
      for (const c of cols) table.appendChild(c.cells[s]);
    }
    return table;
  }

  /**
   * Reflow the table into the view's width: each group of columns goes into as few grids as fit side by side
   * (each grid repeating the row titles), so nothing is clipped or scrolled sideways at any width or scale.
   */
  function layoutTables() {
    const avail = tables.clientWidth;
    laidOutFor = avail;
    tables.replaceChildren();
    groups.forEach((cols, g) => {
      for (let k = cols.length; k >= 1; k--) {
        const size = Math.ceil(cols.length / Math.ceil(cols.length / k)); // balanced: 2 + 2, not 3 + 1
        const grids: HTMLDivElement[] = [];
        for (let i = 0; i < cols.length; i += size) grids.push(grid(cols.slice(i, i + size), i === 0, g));
        grids.forEach((t) => tables.appendChild(t));
        const fits = !(avail > 0) || grids.every((t) => t.scrollWidth <= t.clientWidth + 0.5 && t.getBoundingClientRect().width <= avail + 0.5);
        if (fits || k === 1) break;
        grids.forEach((t) => t.remove());
      }
    });
    root.dataset.tableGrids = String(tables.childElementCount);
  }

  function buildTables() {
    const N = n();
    const L = orders().length;
    const hasInputs = inputs.shape.length === 4 && inputs.shape[0] === N;
    featCanvases = [];
    reconCanvases = [];
    selCanvases = [];
    compCanvases = Array.from({ length: N }, () => []);
    inputCanvases = [];
    const titles = model.get("titles");
    const column = (head: HTMLDivElement, cls: string, label: string, into: HTMLCanvasElement[] | null, l = -1): Column => {
      const cells: HTMLDivElement[] = [];
      for (let s = 0; s < N; s++) {
        const wrap = h("div", "nbx-cell");
        const c = h("canvas", `nbx-canvas ${cls}`);
        c.dataset.sample = String(s);
        c.setAttribute("role", "img");
        c.setAttribute("aria-label", `${titles[s] ?? `sample ${s}`}: ${label}`);
        wrap.appendChild(c);
        cells.push(wrap);
        if (into) into.push(c);
        if (l >= 0) {
          c.dataset.index = String(l);
          wrap.classList.add("nbx-component-cell");
          wrap.addEventListener("click", () => selectOrder(l));
          compCanvases[s].push(c);
        }
      }
      return { head, cells };
    };
    const main: Column[] = [];
    if (hasInputs) main.push(column(h("div", "nbx-cv-head", "input"), "nbx-input", "input", inputCanvases));
    main.push(column(h("div", "nbx-cv-head", "feature"), "nbx-feature", `feature${channelText()}`, featCanvases));
    reconHead = h("div", "nbx-cv-head");
    main.push(column(reconHead, "nbx-recon", "reconstruction", reconCanvases));
    selHead = h("div", "nbx-cv-head");
    main.push(column(selHead, "nbx-selected-component", "selected component", selCanvases));
    orderHeads = [];
    const byOrder: Column[] = [];
    for (let l = 0; l < L; l++) {
      const hd = orderHead(l);
      orderHeads.push(hd);
      byOrder.push(column(hd, "nbx-component", `component of order ${orders()[l]}${channelText()}`, null, l));
    }
    groups = [main, byOrder];
  }

  /** Redraw, reflowing the table first when the view's width changed (resize, or shown for the first time). */
  function redraw() {
    if (tables.clientWidth !== laidOutFor) layoutTables();
    drawAll();
  }

  function build() {
    feature = decodeTensor(model.get("feature"));
    recon = decodeTensor(model.get("recon"));
    comps = decodeTensor(model.get("components"));
    inputs = decodeTensor(model.get("inputs"));
    metrics = decodeTensor(model.get("metrics"));
    const L = orders().length;
    orderIndex = Math.min(model.get("order_index"), Math.max(L - 1, 0));
    const chans = model.get("channels");
    channelIndex = Math.min(model.get("channel_index"), Math.max(chans.length - 1, 0));
    header.textContent = `layer ${model.get("layer")} · ${model.get("family")} disentanglers · orders ${orders().join(", ")}`;
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
    buildTables();
    drawAll(); // canvases get their size before the table is measured
    layoutTables();
    readout.textContent = "slide to build the feature order by order · click an order (a bar or a heading) to compare its component";
    root.dataset.kind = kind();
    root.dataset.n = String(n());
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
    buildTables(); // the accessible names say the channel
    drawAll();
    layoutTables();
  });
  normBox.addEventListener("change", () => {
    perOrder = normBox.checked;
    root.dataset.perOrder = String(perOrder);
    drawStatic();
    drawSelected();
  });

  const onOrder = () => {
    orderIndex = Math.min(model.get("order_index"), Math.max(orders().length - 1, 0));
    slider.value = String(orderIndex);
    drawRecon();
  };
  const onChannel = () => {
    channelIndex = Math.min(model.get("channel_index"), Math.max(model.get("channels").length - 1, 0));
    channelSelect.value = String(channelIndex);
    buildTables();
    drawAll();
    layoutTables();
  };
  const onTheme = themeHandler(root, model); // the colours follow through onThemeChange
  const events: Array<[string, () => void]> = [
    ["change:feature", build], ["change:recon", build], ["change:components", build],
    ["change:inputs", build], ["change:metrics", build], ["change:orders", build],
    ["change:titles", build], ["change:channels", build], ["change:kind", build],
    ["change:cell_size", build], ["change:order_index", onOrder], ["change:channel_index", onChannel],
    ["change:selected_order", drawSelected], ["change:theme", onTheme],
    ["change:feature_limit", drawAll], ["change:component_limit", drawAll], ["change:chart_limits", build],
  ];
  const stopScale = applyScale(root, model, build);
  const stopKeys = keepNavigationKeys(root); // arrows move the slider inside JupyterLab too
  build();
  return connect(el, root, model, events, redraw, stopScale, stopKeys, onThemeChange(root, drawAll));
}

export default { render };
export type { AnyModel };
