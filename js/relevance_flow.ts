// RelevanceFlow view: step through LRP from the output to the input. The current step's relevance (a heatmap of
// conv maps summed over channels, bars of a dense layer's units, the input map over the image), the rule that
// hands it on, and a conservation chart of Σ relevance per step against the explained score.
// Everything is precomputed in Python; the view sends back only `step`, `sample` and `opacity`.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { colorOf, type ColorScale } from "./lib/colormap";
import { keepNavigationKeys } from "./lib/keys";
import { colorFooter, niceScale } from "./lib/scalebar";
import { applyScale, connect, h, injectStyle, offscreen, onBackground, onThemeChange, rangeControl, scaleOf, sizeCanvas, themeHandler, viewRoot } from "./lib/dom";
import { formatNumber, formatTick, niceCeil, niceTicks } from "./lib/nice_ticks";
import { colorize, effectiveScale, imageRGBA, pixelAt, sourceCoord } from "./lib/raster";
import { decodeTensor, slice0, type Tensor, type WireTensor } from "./lib/tensor";

export interface StepLayout {
  name: string;
  kind: "map" | "bars";
  shape: number[]; // [N, H, W] (map) or [N, K] (bars), as sent
  offset: number;
  source_shape: number[]; // [H, W] or [K] before pooling
  channels: number;
  rule: string;
  units: string[];
}

interface State {
  values: WireTensor;
  step_info: StepLayout[];
  totals: WireTensor;
  absorbed: WireTensor;
  score: WireTensor;
  images: WireTensor;
  titles: string[];
  step: number;
  sample: number;
  top_k: number;
  opacity: number;
  theme: string;
  scale: number;
}

const SVG = "http://www.w3.org/2000/svg";

// ------------------------------------------------------------------------------------------ pure helpers

/** One sample's values of one step (a view into the concatenated buffer). */
export function stepValues(values: Float32Array, s: StepLayout, sample: number): Float32Array {
  const inner = s.shape.slice(1).reduce((a, b) => a * b, 1);
  const start = s.offset + sample * inner;
  return values.subarray(start, start + inner);
}

export interface TopUnits {
  /** Unit indices, largest |R| first. */
  indices: number[];
  /** How many units are not shown, and their sum. */
  restCount: number;
  restSum: number;
}

/** The k units with the largest |R| (ties: lower index first); the rest summed up. */
export function topUnits(vals: ArrayLike<number>, k: number): TopUnits {
  const order = Array.from({ length: vals.length }, (_, i) => i);
  order.sort((a, b) => Math.abs(vals[b]) - Math.abs(vals[a]) || a - b);
  const indices = order.slice(0, Math.max(0, k));
  let restSum = 0;
  for (const i of order.slice(indices.length)) restSum += vals[i];
  return { indices, restCount: vals.length - indices.length, restSum };
}

/** What one step did to the running sum, in words: `absorbed` = total before − total after. */
export function changeWords(absorbed: number, score: number): string {
  const tol = 1e-6 * Math.max(Math.abs(score), 1e-12);
  if (Math.abs(absorbed) <= tol) return "kept all of it (conserved)";
  if (absorbed > 0) return `absorbed ${formatNumber(absorbed)} (biases, ε stabiliser)`;
  return `added ${formatNumber(-absorbed)} (e.g. negative biases, αβ's negative share)`;
}

/**
 * The chart's label for what a step changed: "Δ −x" absorbed, "Δ +x" added, "Δ 0" within rounding of the score;
 * x has 3 significant digits written out ("Δ −0.000705", never "−7.054e-4").
 */
export function deltaLabel(absorbed: number, score: number): string {
  const tol = 1e-6 * Math.max(Math.abs(score), 1e-12);
  if (Math.abs(absorbed) <= tol) return "Δ 0";
  return `Δ ${absorbed > 0 ? "−" : "+"}${formatNumber(Math.abs(absorbed), 3)}`;
}

/** A total as a share of the score ("" when the score is zero). */
export function shareOf(total: number, score: number): string {
  if (!(Math.abs(score) > 0)) return "";
  return `${formatNumber((100 * total) / score)} % of the score`;
}

/** The value range a chart of `vals` (and a reference value) needs, always including zero. */
export function chartRange(vals: ArrayLike<number>, ref: number): [number, number] {
  let lo = Math.min(0, ref);
  let hi = Math.max(0, ref);
  for (let i = 0; i < vals.length; i++) {
    lo = Math.min(lo, vals[i]);
    hi = Math.max(hi, vals[i]);
  }
  if (hi === lo) hi = lo + 1;
  const pad = 0.08 * (hi - lo);
  return [lo < 0 ? lo - pad : lo, hi > 0 ? hi + pad : hi];
}

/** Next step after a key press, or null for keys the view does not handle. */
export function keyStep(key: string, step: number, n: number): number | null {
  if (key === "ArrowRight") return Math.min(n - 1, step + 1);
  if (key === "ArrowLeft") return Math.max(0, step - 1);
  if (key === "Home") return 0;
  if (key === "End") return n - 1;
  return null;
}

// ----------------------------------------------------------------------------------------------- view

const CSS = `
.nbx-relevance-flow { outline: none; }
.nbx-relevance-flow:focus-visible { outline: 2px solid var(--nbx-accent); }
.nbx-relevance-flow .nbx-flow-title { font-weight: 600; white-space: normal; overflow-wrap: anywhere; margin-bottom: 4px; }
.nbx-relevance-flow .nbx-flow-main { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.nbx-relevance-flow .nbx-flow-panel { display: flex; flex-direction: column; gap: 4px; position: relative; max-width: 100%; }
.nbx-relevance-flow .nbx-flow-caption { white-space: normal; overflow-wrap: anywhere; color: var(--nbx-muted); max-width: 30em; }
.nbx-relevance-flow .nbx-flow-info { flex: 1 1 240px; min-width: 0; display: flex; flex-direction: column; gap: 6px;
  white-space: normal; overflow-wrap: anywhere; }
.nbx-relevance-flow .nbx-flow-info b { font-weight: 600; }
.nbx-relevance-flow .nbx-flow-rule { font-family: var(--jp-code-font-family, monospace); }
.nbx-relevance-flow svg text { fill: var(--nbx-fg); font-size: 1em; font-family: inherit; }
.nbx-relevance-flow button:focus-visible, .nbx-relevance-flow input:focus-visible,
.nbx-relevance-flow select:focus-visible { outline: 2px solid var(--nbx-accent); outline-offset: 1px; }
.nbx-relevance-flow svg text.nbx-muted { fill: var(--nbx-muted); }
.nbx-relevance-flow svg .nbx-axis { stroke: var(--nbx-border); stroke-width: 1; }
.nbx-relevance-flow svg .nbx-ref { stroke: var(--nbx-warn); stroke-width: 1.5; stroke-dasharray: 5 3; }
.nbx-relevance-flow svg .nbx-col { fill: transparent; cursor: pointer; }
.nbx-relevance-flow svg .nbx-col:hover { fill: var(--nbx-bg2); }
.nbx-relevance-flow svg .nbx-col.nbx-current { fill: var(--nbx-bg2); stroke: var(--nbx-accent); stroke-width: 2; }
.nbx-relevance-flow svg .nbx-total { fill: var(--nbx-accent); opacity: 0.7; pointer-events: none; }
.nbx-relevance-flow svg .nbx-total.nbx-current { opacity: 1; }
.nbx-relevance-flow svg .nbx-unit-hit { fill: transparent; }
.nbx-relevance-flow svg .nbx-unit-hit:hover { fill: var(--nbx-bg2); }
.nbx-relevance-flow svg { max-width: 100%; display: block; }
.nbx-relevance-flow .nbx-flow-chart-title { margin-top: 8px; white-space: normal; }
.nbx-relevance-flow select, .nbx-relevance-flow input[type="range"] { font: inherit; }
.nbx-relevance-flow .nbx-flow-pictures { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.nbx-relevance-flow .nbx-flow-input { margin: 0; display: flex; flex-direction: column; align-items: center; }
.nbx-relevance-flow .nbx-muted { color: var(--nbx-muted); }
.nbx-relevance-flow .nbx-colorbar-wrap { flex: none; width: min(24em, 100%); }
`;

function svgEl<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}, text?: string) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * The limit ±L of a relevance map's colour scale for its largest |R| = `m`: a multiple of the colour bar's tick
 * step at or above `m` (`niceScale`), so both ends of the bar are labelled ticks (a niceCeil such as 1.2 under
 * ticks of 0.5 left the ends unlabelled). 1 for an all-zero map.
 */
export function mapLimit(m: number): number {
  return m > 0 && Number.isFinite(m) ? niceScale({ kind: "diverging", vmin: -m, vmax: m }).scale.vmax : 1;
}

function render({ model, el }: RenderProps<State>) {
  const root = viewRoot("relevance-flow", model.get("theme"));
  root.tabIndex = 0;
  root.setAttribute("role", "group");
  root.setAttribute("aria-label", "relevance flow: ← and → change the step");
  keepNavigationKeys(root);
  injectStyle(el, CSS);
  el.appendChild(root);

  const title = h("div", "nbx-flow-title");
  const controls = h("div", "nbx-controls");
  const sampleLabel = h("label", "nbx-control", "sample");
  const sampleSelect = h("select", "nbx-sample");
  sampleLabel.appendChild(sampleSelect);
  const prev = h("button", "nbx-button nbx-prev", "◀ previous");
  const slider = h("input", "nbx-step");
  slider.type = "range";
  slider.min = "0";
  slider.step = "1";
  slider.setAttribute("aria-label", "step");
  const next = h("button", "nbx-button nbx-next", "next ▶");
  const stepLabel = h("span", "nbx-step-label");
  const { label: opacityLabel, input: opacity } = rangeControl("nbx-opacity", "map opacity over the input",
    { min: 0, max: 1, step: 0.01 });
  controls.append(sampleLabel, prev, slider, next, stepLabel, opacityLabel);

  const main = h("div", "nbx-flow-main");
  const panel = h("div", "nbx-flow-panel");
  const caption = h("div", "nbx-flow-caption");
  const pictures = h("div", "nbx-flow-pictures");
  const canvas = h("canvas", "nbx-canvas");
  canvas.setAttribute("aria-label", "relevance map");
  canvas.setAttribute("role", "img");
  const inputFigure = h("figure", "nbx-flow-input");
  const inputCanvas = h("canvas", "nbx-canvas");
  inputCanvas.setAttribute("aria-label", "input image");
  inputCanvas.setAttribute("role", "img");
  inputFigure.append(inputCanvas, h("figcaption", "nbx-muted", "input"));
  pictures.append(canvas, inputFigure);
  const marker = h("div", "nbx-marker");
  const bars = svgEl("svg", { class: "nbx-bars" });
  const { bar: cbarWrap, readout, setScale } = colorFooter();
  const barsNote = h("div", "nbx-muted nbx-bars-note", "bars: relevance R per unit, largest |R| first");
  panel.append(caption, pictures, bars, barsNote, marker, cbarWrap);
  const info = h("div", "nbx-flow-info");
  main.append(panel, info);
  const chartTitle = h("div", "nbx-flow-chart-title");
  const chart = svgEl("svg", { class: "nbx-chart" });
  root.append(title, controls, main, chartTitle, chart, readout);

  let values: Float32Array = new Float32Array(0);
  let totals: Tensor = decodeTensor(null);
  let absorbed: Tensor = decodeTensor(null);
  let score: Tensor = decodeTensor(null);
  let images: Tensor = decodeTensor(null);
  let layout: StepLayout[] = [];
  let mapCanvas: HTMLCanvasElement | null = null;
  let imageCanvas: HTMLCanvasElement | null = null;
  let mapVals: Float32Array = new Float32Array(0);
  let cols: SVGRectElement[] = [];
  let totalBars: SVGRectElement[] = [];

  const nSteps = () => layout.length;
  const fontPx = () => parseFloat(getComputedStyle(root).fontSize) || 13;
  const cur = () => Math.min(Math.max(0, model.get("step")), Math.max(0, nSteps() - 1));
  const smp = () => model.get("sample");
  const total = (i: number) => totals.data[smp() * nSteps() + i];
  const absorbedAt = (i: number) => absorbed.data[smp() * (nSteps() - 1) + i];
  const scoreOf = () => score.data[smp()];

  function setStep(i: number) {
    if (i === model.get("step") || i < 0 || i >= nSteps()) return;
    model.set("step", i);
    model.save_changes();
    drawStep();
  }

  function describe(i: number): string {
    const s = layout[i];
    if (s.name === "output") return "the relevance put on the output: the explained score";
    if (s.name === "input") return "relevance of the input pixels (Σ over channels)";
    const ch = s.kind === "map" && s.channels > 1 ? ` (Σ over ${s.channels} channels)` : "";
    return `relevance at the output of layer ${s.name}${ch}`;
  }

  function drawMap() {
    const s = layout[cur()];
    const [, hm, wm] = s.shape;
    if (!mapCanvas) return;
    const avail = root.clientWidth ? root.clientWidth - 24 : 0;
    const w = Math.round(Math.min(260 * scaleOf(root), Math.max(120, 8 * wm) * scaleOf(root), avail > 0 ? avail : Infinity));
    const ctx = sizeCanvas(canvas, w, Math.max(1, Math.round((w * hm) / wm)));
    if (!ctx) return;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (imageCanvas && s.name === "input") {
      ctx.drawImage(imageCanvas, 0, 0, canvas.width, canvas.height);
      ctx.globalAlpha = model.get("opacity");
    }
    ctx.drawImage(mapCanvas, 0, 0, canvas.width, canvas.height);
    ctx.globalAlpha = 1;
    if (imageCanvas && s.name === "input") {
      const side = Math.round(w / 2);
      const ictx = sizeCanvas(inputCanvas, side, Math.max(1, Math.round((side * hm) / wm)));
      if (ictx) ictx.drawImage(imageCanvas, 0, 0, inputCanvas.width, inputCanvas.height);
    }
  }

  function drawBars(vals: Float32Array, s: StepLayout, scale: ColorScale) {
    const k = Math.max(1, model.get("top_k"));
    const top = topUnits(vals, k);
    const zoom = scaleOf(root);
    const fs = fontPx();
    const rowH = Math.round(1.55 * fs);
    const rows = top.indices.length + (top.restCount > 0 ? 1 : 0);
    const avail = root.clientWidth - 12;
    const W = avail > 0 ? Math.max(240, Math.min(420 * zoom, avail)) : 380 * zoom; // text stays at its font size
    const labelW = Math.min(Math.round(8.5 * fs), Math.round(W * 0.3));
    const valueW = Math.round(5.4 * fs);
    const plotW = W - labelW - valueW;
    const H = rows * rowH + Math.round(1.8 * fs);
    bars.replaceChildren();
    bars.setAttribute("width", String(W));
    bars.setAttribute("height", String(H));
    bars.setAttribute("viewBox", `0 0 ${W} ${H}`);
    bars.setAttribute("role", "img");
    bars.setAttribute("aria-label", `relevance of the units of ${s.name}`);
    const raw = Math.max(Math.abs(scale.vmin), Math.abs(scale.vmax)) || 1;
    const m = niceCeil(raw); // the bar scale ends at a round value
    const x0 = labelW + plotW / 2;
    bars.appendChild(svgEl("line", { class: "nbx-axis", x1: x0, x2: x0, y1: 0, y2: rows * rowH }));
    const unitName = (u: number) =>
      s.name === "output" ? "score" : s.units[u] ?? (s.kind === "bars" && s.channels > 1 ? `position ${u}` : `unit ${u}`);
    top.indices.forEach((u, r) => {
      const v = vals[u];
      const y = r * rowH;
      const len = (Math.abs(v) / m) * (plotW / 2);
      const [cr, cg, cb] = colorOf(v, scale);
      const g = svgEl("g", { "data-unit": u });
      g.append(
        svgEl("rect", { class: "nbx-unit-hit", x: 0, y, width: W, height: rowH }),
        svgEl("text", { x: labelW - 6, y: y + rowH - 0.4 * fs, "text-anchor": "end" }, unitName(u)),
        svgEl("rect", { x: v >= 0 ? x0 : x0 - len, y: y + 3, width: Math.max(1, len), height: rowH - 6,
          fill: `rgb(${cr},${cg},${cb})`, "pointer-events": "none" }),
        svgEl("text", { x: W - 2, y: y + rowH - 0.4 * fs, "text-anchor": "end" }, formatNumber(v)),
      );
      g.addEventListener("pointerenter", () => {
        readout.textContent = `${s.name} · ${unitName(u)}: R = ${formatNumber(v)}`;
        root.dataset.hover = `${cur()},${u}`;
        root.dataset.value = String(v);
      });
      bars.appendChild(g);
    });
    if (top.restCount > 0) {
      const y = top.indices.length * rowH;
      bars.appendChild(svgEl("text", { x: 4, y: y + rowH - 0.4 * fs, class: "nbx-muted" },
        `other ${top.restCount} units: Σ R = ${formatNumber(top.restSum)}`));
    }
    // the bar axis: −m, 0, +m under the bars
    const axisY = rows * rowH + 2;
    bars.appendChild(svgEl("line", { class: "nbx-axis", x1: labelW, x2: labelW + plotW, y1: axisY, y2: axisY }));
    for (const [t, anchor] of [[-m, "start"], [0, "middle"], [m, "end"]] as Array<[number, string]>) {
      const x = x0 + (t / m) * (plotW / 2);
      bars.appendChild(svgEl("line", { class: "nbx-axis", x1: x, x2: x, y1: axisY, y2: axisY + 4 }));
      bars.appendChild(svgEl("text", { x, y: axisY + 1.2 * fs, "text-anchor": anchor, class: "nbx-muted nbx-bar-tick" },
        formatTick(t)));
    }

    root.dataset.units = String(top.indices.length);
    root.dataset.rest = String(top.restCount);
  }

  function drawInfo(i: number) {
    const s = layout[i];
    const line = (label: string, text: string, cls = "") => {
      const d = h("div", cls);
      d.append(h("b", "", `${label}: `), document.createTextNode(text));
      return d;
    };
    const sc = scoreOf();
    const t = total(i);
    const share = shareOf(t, sc);
    const parts = [
      line("explained score f", formatNumber(sc)),
      line("Σ relevance at this step", `${formatNumber(t)}${share ? ` (${share})` : ""}`),
    ];
    if (s.rule) parts.push(line(`rule of ${s.name}`, `${s.rule} — takes this relevance to the layer's input`, "nbx-flow-rule"));
    else if (s.name === "output") parts.push(line("rule", "none: the score itself is the starting relevance"));
    else parts.push(line("rule", "none: the end of the flow"));
    if (i < nSteps() - 1) parts.push(line(`from here to ${layout[i + 1].name}`, changeWords(absorbedAt(i), sc)));
    if (i > 0) parts.push(line(`from ${layout[i - 1].name} to here`, changeWords(absorbedAt(i - 1), sc)));
    info.replaceChildren(...parts);
  }

  function drawChart() {
    const n = nSteps();
    // as wide as the view (so the text stays at its font size), between 320 and 760 px
    const avail = root.clientWidth - 12;
    const k = scaleOf(root);
    const fs = fontPx();
    const W = avail > 0 ? Math.max(320, Math.min(760 * k, avail)) : 720;
    const left = Math.round(5 * fs);
    const top = Math.round(1.7 * fs);
    const plotH = Math.round(130 * k);
    const colW = (W - left - 8) / Math.max(1, n);
    const longest = Math.max(...layout.map((s) => s.name.length));
    const twoRows = longest * 0.58 * fs > colW - 4;
    // numbers on the bars only where they fit; otherwise hovering a bar (or the panel above) gives them
    const numbers = colW >= 5.8 * fs;
    const rowGap = Math.round(1.4 * fs);
    chartTitle.textContent = "Conservation: Σ relevance at each step (bars) against the explained score (dashed line)" +
      (numbers ? "; Δ under the bars: what each step changed (− absorbed, + added)" : "; hover a bar for its numbers") +
      ". Click a bar to go to its step.";
    const H = top + plotH + (twoRows ? 2 : 1) * rowGap + (numbers ? 2 * fs : 0.6 * fs) + rowGap;
    chart.replaceChildren();
    chart.setAttribute("width", String(W));
    chart.setAttribute("height", String(H));
    chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
    chart.setAttribute("role", "img");
    chart.setAttribute("aria-label", "Σ relevance per step against the explained score");
    const row = Array.from(slice0({ data: totals.data as Float32Array, shape: totals.shape }, smp()).data);
    const sc = scoreOf();
    const [lo0, hi0] = chartRange(row, sc);
    const ticks = niceTicks(lo0, hi0, 4);
    const lo = Math.min(lo0, ticks[0] ?? lo0);
    const hi = Math.max(hi0, ticks[ticks.length - 1] ?? hi0);
    const y = (v: number) => top + ((hi - v) / (hi - lo)) * plotH;
    chart.append(
      svgEl("line", { class: "nbx-axis", x1: left, x2: W - 4, y1: y(0), y2: y(0) }),
      svgEl("line", { class: "nbx-axis", x1: left, x2: left, y1: top, y2: top + plotH }),
      svgEl("text", { x: 2, y: fs, class: "nbx-muted" }, "Σ relevance"),
    );
    for (const t of ticks) {
      chart.append(
        svgEl("line", { class: "nbx-axis", x1: left - 4, x2: left, y1: y(t), y2: y(t) }),
        svgEl("text", { x: left - 6, y: y(t) + 0.35 * fs, "text-anchor": "end", class: "nbx-muted nbx-y-tick" }, formatTick(t)),
      );
    }
    cols = [];
    totalBars = [];
    for (let i = 0; i < n; i++) {
      const x = left + i * colW;
      const col = svgEl("rect", { class: "nbx-col", x: x + 1, y: top - 0.4 * fs, width: colW - 2,
        height: plotH + 0.4 * fs + (twoRows ? 2 : 1) * rowGap, rx: 3 });
      col.dataset.step = String(i);
      const v = row[i];
      const bar = svgEl("rect", { class: "nbx-total", x: x + colW * 0.2, y: Math.min(y(v), y(0)), width: colW * 0.6,
        height: Math.max(1, Math.abs(y(v) - y(0))) });
      const name = layout[i].name;
      const ly = top + plotH + 1.2 * fs + (twoRows && i % 2 ? rowGap : 0);
      const label = svgEl("text", { x: x + colW / 2, y: ly, "text-anchor": "middle", "pointer-events": "none" }, name);
      const valueText = svgEl("text", { x: x + colW / 2, y: (v >= 0 ? y(v) - 4 : y(v) + 1.1 * fs), "text-anchor": "middle",
        "pointer-events": "none", class: "nbx-muted" }, formatNumber(v));
      const tip = svgEl("title", {}, `${name}: Σ R = ${formatNumber(v)}`);
      col.appendChild(tip);
      col.addEventListener("click", () => setStep(i));
      col.addEventListener("pointerenter", () => {
        const share = shareOf(v, sc);
        const change = i > 0 ? `; from ${layout[i - 1].name}: ${changeWords(absorbedAt(i - 1), sc)}` : "";
        readout.textContent = `step ${i} (${name}): Σ R = ${formatNumber(v)}${share ? ` (${share})` : ""}${change}`;
        root.dataset.hover = `chart,${i}`;
        root.dataset.value = String(v);
      });
      chart.append(col, bar, label);
      if (numbers) chart.appendChild(valueText);
      if (i > 0 && numbers) {
        chart.appendChild(svgEl("text", { x: x, y: H - rowGap - 0.3 * fs, "text-anchor": "middle", class: "nbx-muted", "pointer-events": "none" },
          deltaLabel(absorbedAt(i - 1), sc)));
      }
      cols.push(col);
      totalBars.push(bar);
    }
    chart.appendChild(svgEl("text", { x: W / 2, y: H - 0.3 * fs, "text-anchor": "middle", class: "nbx-muted" },
      "layer (output → input)"));
    chart.append(
      svgEl("line", { class: "nbx-ref", x1: left, x2: W - 4, y1: y(sc), y2: y(sc), "pointer-events": "none" }),
      svgEl("text", { x: W - 6, y: y(sc) - 5, "text-anchor": "end", "pointer-events": "none" }, `score f = ${formatNumber(sc)}`),
    );
    markStep();
  }

  function markStep() {
    const i = cur();
    cols.forEach((c, j) => c.classList.toggle("nbx-current", j === i));
    totalBars.forEach((c, j) => c.classList.toggle("nbx-current", j === i));
  }

  function drawStep() {
    if (!nSteps()) return;
    const i = cur();
    const s = layout[i];
    const vals = stepValues(values, s, smp());
    let m = 0;
    for (let j = 0; j < vals.length; j++) m = Math.max(m, Math.abs(vals[j]));
    // the colour scale ends at a labelled nice value at or above the largest |R| (0 stays the white middle)
    const lim = mapLimit(m);
    // on a dark background RdBu's darkest ends are cut (onBackground): the strongest R is not the page's colour
    const scale: ColorScale = onBackground(root, effectiveScale({ kind: "diverging", vmin: -lim, vmax: lim }));
    caption.textContent = describe(i);
    slider.value = String(i);
    stepLabel.textContent = `step ${i + 1} of ${nSteps()}: ${s.name}`;
    prev.disabled = i === 0;
    next.disabled = i === nSteps() - 1;
    marker.style.display = "none";
    delete root.dataset.hover;
    const hasImage = images.shape.length === 4 && s.name === "input" && s.kind === "map";
    opacityLabel.style.display = hasImage ? "" : "none";
    inputFigure.style.display = hasImage ? "" : "none";
    if (s.kind === "map") {
      const [, hm, wm] = s.shape;
      mapVals = vals;
      mapCanvas = offscreen(colorize(vals, hm, wm, scale), wm, hm);
      imageCanvas = null;
      if (hasImage) {
        const [, hi, wi, ci] = images.shape;
        imageCanvas = offscreen(imageRGBA(slice0(images, smp()).data, hi, wi, ci), wi, hi);
      }
      pictures.style.display = "";
      bars.style.display = "none";
      barsNote.style.display = "none";
      cbarWrap.style.display = "";
      setScale(scale, "relevance R (0 = white)");
      drawMap();
    } else {
      pictures.style.display = "none";
      bars.style.display = "";
      barsNote.style.display = "";
      cbarWrap.style.display = "none";
      drawBars(vals, s, scale);
    }
    drawInfo(i);
    markStep();
    readout.textContent = s.kind === "map" ? "hover the map to read values · ←/→ change the step"
      : "hover a unit to read its value · ←/→ change the step";
    root.dataset.step = String(i);
    root.dataset.stepName = s.name;
    root.dataset.kind = s.kind;
    root.dataset.total = String(total(i));
  }

  canvas.addEventListener("pointermove", (ev) => {
    const s = layout[cur()];
    if (s.kind !== "map") return;
    const [, hm, wm] = s.shape;
    const rect = canvas.getBoundingClientRect();
    const px = pixelAt(ev.clientX - rect.left, ev.clientY - rect.top, rect.width, rect.height, hm, wm);
    if (!px) return;
    const [r, c] = px;
    const v = mapVals[r * wm + c];
    const [srcH, srcW] = s.source_shape;
    const [sr, sc] = sourceCoord(r, c, hm, wm, srcH, srcW);
    const pooled = srcH !== hm || srcW !== wm;
    readout.textContent = `${s.name} · row ${sr}, col ${sc}${pooled ? " (pooled)" : ""}: R = ${formatNumber(v)}`;
    root.dataset.hover = `${cur()},${sr},${sc}`;
    root.dataset.value = String(v);
    const cw = rect.width / wm;
    const ch = rect.height / hm;
    marker.style.display = "block";
    marker.style.width = `${cw}px`;
    marker.style.height = `${ch}px`;
    marker.style.left = `${canvas.offsetLeft + c * cw}px`;
    marker.style.top = `${canvas.offsetTop + r * ch}px`;
  });
  canvas.addEventListener("pointerleave", () => {
    marker.style.display = "none";
    delete root.dataset.hover;
  });

  function build() {
    values = decodeTensor(model.get("values")).data as Float32Array;
    totals = decodeTensor(model.get("totals"));
    absorbed = decodeTensor(model.get("absorbed"));
    score = decodeTensor(model.get("score"));
    images = decodeTensor(model.get("images"));
    layout = model.get("step_info") ?? [];
    slider.max = String(Math.max(0, nSteps() - 1));
    const titles = model.get("titles");
    sampleSelect.replaceChildren(...titles.map((t, i) => {
      const o = h("option", "", t);
      o.value = String(i);
      return o;
    }));
    sampleLabel.style.display = titles.length > 1 ? "" : "none";
    opacity.value = String(model.get("opacity"));
    onSample();
    root.dataset.n = String(titles.length);
    root.dataset.steps = String(nSteps());
    root.dataset.ready = "true";
  }

  function onSample() {
    const i = smp();
    sampleSelect.value = String(i);
    title.textContent = `Relevance flow · ${model.get("titles")[i] ?? `sample ${i}`} · score f = ${formatNumber(scoreOf())}`;
    root.dataset.sample = String(i);
    drawChart();
    drawStep();
  }

  prev.addEventListener("click", () => setStep(cur() - 1));
  next.addEventListener("click", () => setStep(cur() + 1));
  slider.addEventListener("input", () => setStep(Number(slider.value)));
  sampleSelect.addEventListener("change", () => {
    model.set("sample", Number(sampleSelect.value));
    model.save_changes();
    onSample();
  });
  opacity.addEventListener("input", () => {
    model.set("opacity", Number(opacity.value));
    drawMap();
  });
  opacity.addEventListener("change", () => model.save_changes());
  root.addEventListener("keydown", (ev) => {
    const t = ev.target as HTMLElement;
    if (t instanceof HTMLInputElement || t instanceof HTMLSelectElement) return; // they handle their own keys
    const nextStep = keyStep(ev.key, cur(), nSteps());
    if (nextStep === null) return;
    ev.preventDefault();
    ev.stopPropagation(); // JupyterLab binds ←/→ to notebook commands in command mode
    setStep(nextStep);
  });

  const events: Array<[string, () => void]> = [
    ["change:values", build], ["change:step_info", build], ["change:totals", build], ["change:absorbed", build],
    ["change:score", build], ["change:images", build], ["change:titles", build], ["change:top_k", drawStep],
    ["change:step", drawStep], ["change:sample", onSample],
    ["change:opacity", () => { opacity.value = String(model.get("opacity")); drawMap(); }],
    ["change:theme", themeHandler(root, model)],
  ];
  build();
  const stopScale = applyScale(root, model, () => {
    drawChart();
    drawStep();
  });
  let lastWidth = -1;
  const redraw = () => {
    if (root.clientWidth !== lastWidth && nSteps()) {
      lastWidth = root.clientWidth;
      drawChart();
      drawStep();
    } else drawMap();
  };
  return connect(el, root, model, events, redraw, stopScale, onThemeChange(root, drawStep));
}

export default { render };
export type { AnyModel };
