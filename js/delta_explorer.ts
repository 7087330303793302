// DeltaExplorer view: eigen-spectrum with δ marker, δ slider, k and saturation, originals beside their
// reconstructions through the projected layer (or predictions under projection for a classifier).
// Every slider position's images were precomputed in Python: moving the slider swaps them locally within
// one frame and sends nothing to the kernel. Changing the layer or the samples asks the kernel through the
// RequestWidget protocol (js/lib/requests.ts: one latest-wins request matched by id; busy shown).
// Both charts are SVG with text in CSS px (≥ 13 px, × the widget's `scale`), ticks and axis titles on every axis.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { applyScale, batched, connect, errorHandler, h, injectStyle, offscreen, scaleOf, sizeCanvas, svgPlot, themeHandler, viewRoot } from "./lib/dom";
import { formatNumber, niceTicks } from "./lib/nice_ticks";
import { keepNavigationKeys } from "./lib/keys";
import { imageRGBA } from "./lib/raster";
import { kernelRequests } from "./lib/requests";
import { decodeTensor, type Tensor, type WireTensor } from "./lib/tensor";

interface State {
  layer: string;
  layer_options: string[];
  mode: "reconstruction" | "accuracy";
  width: number;
  delta: number;
  show_random: boolean;
  deltas: WireTensor;
  k_index: WireTensor;
  ks: number[];
  eigenvalues: WireTensor;
  originals: WireTensor;
  recon: WireTensor;
  recon_random: WireTensor;
  predictions: WireTensor;
  predictions_random: WireTensor;
  labels: number[];
  metric_name: string;
  metric: WireTensor;
  metric_random: WireTensor;
  baseline: number;
  sample_seed: number;
  busy: boolean;
  completed_request: number;
  error: string;
  cell_size: number;
  theme: string;
  scale: number;
}

/** What the view asks the kernel for: the whole wanted state, so the latest request is all that matters. */
type Wanted = { layer: string; sample_seed: number };

const CSS = `
.nbx-delta-explorer select { font: inherit; color: var(--nbx-fg); background: var(--nbx-bg); }
.nbx-delta-explorer .nbx-de-top { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; margin: 6px 0; }
.nbx-delta-explorer figure { margin: 0; max-width: 100%; width: min-content; }
.nbx-delta-explorer figcaption { color: var(--nbx-fg); font-weight: 600; margin-bottom: 2px; }
.nbx-delta-explorer svg { display: block; overflow: visible; } /* sized to the column in chartMetrics */
.nbx-delta-explorer svg text { fill: var(--nbx-fg); font-size: 1em; }
.nbx-delta-explorer .nbx-axis-line { stroke: var(--nbx-muted); }
.nbx-delta-explorer .nbx-gridline { stroke: var(--nbx-border); }
.nbx-delta-explorer .nbx-k { font-family: var(--jp-code-font-family, monospace); color: var(--nbx-fg); }
.nbx-delta-explorer .nbx-delta-control { flex: 1 1 18em; max-width: 100%; }
.nbx-delta-explorer .nbx-delta-slider { flex: 1 1 8em; min-width: 6em; }
.nbx-delta-explorer .nbx-delta-value { font-family: var(--jp-code-font-family, monospace); color: var(--nbx-fg); }
.nbx-delta-explorer .nbx-pair { display: flex; gap: 2px; }
.nbx-delta-explorer .nbx-title { font-size: 1em; }
.nbx-delta-explorer .nbx-pred { font-family: var(--jp-code-font-family, monospace); font-size: 1em; }
.nbx-delta-explorer .nbx-pred.nbx-wrong { color: var(--jp-error-color1, #d32f2f); font-weight: bold; }
.nbx-delta-explorer .nbx-legend, .nbx-delta-explorer .nbx-chart-key { color: var(--nbx-fg); font-size: 1em;
  display: flex; flex-wrap: wrap; gap: 2px 14px; max-width: 100%; }
.nbx-delta-explorer .nbx-swatch { display: inline-block; width: 1.8em; height: 0; vertical-align: middle;
  margin-right: 4px; border-top: 2px solid var(--nbx-fg); }
.nbx-delta-explorer .nbx-swatch.nbx-random { border-top: 2px dashed var(--nbx-warn); }
.nbx-delta-explorer .nbx-swatch.nbx-base { border-top: 2px dotted var(--nbx-muted); }
.nbx-delta-explorer .nbx-swatch.nbx-delta-mark { border-top-color: var(--nbx-warn); }
.nbx-delta-explorer .nbx-swatch.nbx-k-mark { border-top-color: var(--nbx-accent); }
.nbx-delta-explorer .nbx-swatch.nbx-bar { height: 0.8em; width: 0.8em; border: 0; background: var(--nbx-muted);
  opacity: 0.6; }
`;

/** y position on the "nines" scale: 0.9 → 1, 0.99 → 2 … capped at 4. */
export function nines(frac: number): number {
  return Math.min(4, -Math.log10(Math.max(1e-4, 1 - Math.min(frac, 1))));
}

/** A δ as a student reads it: "1", "0.99", "0.9999" (at most 4 decimals, no trailing zeros). */
export function formatDelta(delta: number): string {
  if (delta >= 0.99995) return "1";
  return String(Number(delta.toFixed(4)));
}

/** Names a student reads for the metric the kernel computed. */
export function metricLabel(name: string): string {
  return name === "mse" ? "mean squared error" : name;
}

/**
 * Slider positions to label on a δ axis, most important first (a crowded axis keeps the first ones): the last
 * position at δ = 1, then the positions nearest 0.5, 0.9, 0.99, 0.999 and 0.9999 on the nines scale (where one
 * lies close); with fewer than two of those, the first and the last position.
 */
export function deltaTicks(deltas: ArrayLike<number>): Array<[number, string]> {
  const n = deltas.length;
  if (!n) return [];
  const out: Array<[number, string]> = [];
  for (let p = n - 1; p >= 0; p--) {
    if (deltas[p] >= 0.99995) {
      out.push([p, "1"]);
      break;
    }
  }
  for (const target of [0.5, 0.9, 0.99, 0.999, 0.9999]) {
    let best = 0;
    for (let p = 1; p < n; p++) {
      if (Math.abs(nines(deltas[p]) - nines(target)) < Math.abs(nines(deltas[best]) - nines(target))) best = p;
    }
    const close = deltas[best] < 0.99995 && Math.abs(nines(deltas[best]) - nines(target)) < 0.06;
    if (close && !out.some(([p]) => p === best)) out.push([best, formatDelta(target)]);
  }
  if (out.length < 2) {
    return n === 1 ? [[0, formatDelta(deltas[0])]] : [[0, formatDelta(deltas[0])], [n - 1, formatDelta(deltas[n - 1])]];
  }
  return out;
}

/** Keep ticks at least `gap` apart (in the units of `at`), first come first kept. */
export function spaced<T>(ticks: T[], at: (t: T) => number, gap: number): T[] {
  const kept: T[] = [];
  for (const t of ticks) if (kept.every((k) => Math.abs(at(k) - at(t)) >= gap)) kept.push(t);
  return kept;
}

/** The k readout: "k = 5 of 32 directions · saturation 0.156 · mean squared error 0.0123 (random subspace)". */
export function readoutText(k: number, width: number, metricName: string, value: number, random: boolean): string {
  return `k = ${k} of ${width} directions · saturation ${(width ? k / width : 0).toFixed(3)} · ` +
    `${metricLabel(metricName)} ${formatNumber(value)}${random ? " (random subspace)" : ""}`;
}

type Mk = (tag: string, attrs: Record<string, string>, text?: string) => SVGElement;

function render({ model, el }: RenderProps<State>) {
  const root = viewRoot("delta-explorer", model.get("theme"));
  injectStyle(el, CSS);
  el.appendChild(root);

  const controls = h("div", "nbx-controls");
  const layerLabel = h("label", "nbx-control nbx-needs-kernel", "layer");
  const layerSelect = h("select", "nbx-layer-select");
  layerLabel.appendChild(layerSelect);
  const sliderLabel = h("label", "nbx-control nbx-delta-control", "δ (share of variance kept)");
  const slider = h("input", "nbx-delta-slider");
  slider.type = "range";
  slider.step = "1";
  const deltaText = h("span", "nbx-delta-value");
  sliderLabel.append(slider, deltaText);
  const randomLabel = h("label", "nbx-control", "random subspace (control)");
  const randomBox = h("input", "nbx-random-toggle");
  randomBox.type = "checkbox";
  randomLabel.prepend(randomBox);
  const samplesButton = h("button", "nbx-button nbx-resample nbx-needs-kernel", "other samples");
  const busy = h("span", "nbx-busy", "computing…");
  busy.setAttribute("role", "status");
  const errorBox = h("div", "nbx-error");
  controls.append(layerLabel, sliderLabel, randomLabel, samplesButton, busy);
  const kText = h("div", "nbx-k");
  kText.setAttribute("aria-live", "polite");

  const top = h("div", "nbx-de-top");
  const specFigure = h("figure", "nbx-figure nbx-spectrum-figure");
  const specCaption = h("figcaption", "", "explained variance by component");
  const specHolder = h("div", "nbx-spectrum-holder");
  const specKey = h("div", "nbx-chart-key");
  specFigure.append(specCaption, specHolder, specKey);
  const metricFigure = h("figure", "nbx-figure nbx-metric-figure");
  const metricCaption = h("figcaption", "");
  const metricHolder = h("div", "nbx-metric-holder");
  const metricKey = h("div", "nbx-chart-key");
  metricFigure.append(metricCaption, metricHolder, metricKey);
  top.append(specFigure, metricFigure);
  const legend = h("div", "nbx-legend");
  const grid = h("div", "nbx-grid");
  root.append(controls, kText, errorBox, top, legend, grid);

  let deltas: Tensor = decodeTensor(null);
  let kIndex: Tensor = decodeTensor(null);
  let eig: Tensor = decodeTensor(null);
  let originals: Tensor = decodeTensor(null);
  let recon: Tensor = decodeTensor(null);
  let reconRandom: Tensor = decodeTensor(null);
  let preds: Tensor = decodeTensor(null);
  let predsRandom: Tensor = decodeTensor(null);
  let metric: Tensor = decodeTensor(null);
  let metricRandom: Tensor = decodeTensor(null);
  let reconCanvases: HTMLCanvasElement[] = [];
  let predSpans: HTMLSpanElement[] = [];
  // Offscreen canvases per (subspace, k index, sample), built on first use.
  let cache = new Map<string, HTMLCanvasElement>();
  let position = 0;
  // Chart markers moved by show(): set when the charts are (re)built for the current data and size.
  let moveSpectrum: (delta: number, k: number) => void = () => {};
  let moveMetric: (p: number) => void = () => {};
  let chartsWidth = -1;

  const nPositions = () => deltas.data.length;
  const currentK = () => model.get("ks")[kIndex.data[position] ?? 0] ?? 0;

  function imageAt(t: Tensor, ki: number, i: number, key: string): HTMLCanvasElement | null {
    if (t.shape.length !== 5) return null;
    const cached = cache.get(key);
    if (cached) return cached;
    const [, n, hh, ww, cc] = t.shape;
    const size = hh * ww * cc;
    const start = (ki * n + i) * size;
    const c = offscreen(imageRGBA(t.data.subarray(start, start + size), hh, ww, cc), ww, hh);
    cache.set(key, c);
    return c;
  }

  function cellDims(): [number, number] {
    const w = Math.round(model.get("cell_size") * scaleOf(root));
    if (originals.shape.length !== 4) return [w, w];
    const [, hh, ww] = originals.shape;
    return [w, Math.max(1, Math.round((w * hh) / ww))];
  }

  function drawImage(canvas: HTMLCanvasElement, src: HTMLCanvasElement | null) {
    const [cw, ch] = cellDims();
    const ctx = sizeCanvas(canvas, cw, ch);
    if (!ctx) return;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (src) ctx.drawImage(src, 0, 0, canvas.width, canvas.height);
  }

  /** Font size (px) of the root's text, and the width a chart may take (px) in the current column. */
  function chartMetrics(preferred: number): { fs: number; width: number } {
    const fs = parseFloat(getComputedStyle(root).fontSize) || 13;
    const avail = root.clientWidth > 0 ? root.clientWidth - 14 : preferred;
    return { fs, width: Math.max(12 * fs, Math.min(preferred, avail)) };
  }

  function axisTitle(mk: Mk, x: number, y: number, text: string, rotate = false) {
    const attrs: Record<string, string> = { x: String(x), y: String(y), "text-anchor": "middle", class: "nbx-axis-title" };
    if (rotate) attrs.transform = `rotate(-90 ${x} ${y})`;
    mk("text", attrs, text);
  }

  /** An empty chart in `holder`: an SVG sized to the view's width and font, its plot area `pw` × `ph`; `xMid` is the
   * x (in plot coordinates) of the middle of the whole chart, where the x-axis title goes. */
  function plotFrame(cls: string, holder: HTMLElement) {
    const { fs, width } = chartMetrics(Math.round(330 * scaleOf(root)));
    const L = 5.6 * fs, R = 1.2 * fs, T = 1.4 * fs, B = 3.0 * fs;
    const pw = width - L - R, ph = Math.round(11 * fs);
    const { svg, mk } = svgPlot(cls, { left: L, top: T, width: pw, height: ph + T, padRight: R, padBottom: B });
    svg.setAttribute("role", "img");
    holder.replaceChildren(svg);
    return { svg, mk, fs, pw, ph, xMid: (L + pw + R) / 2 - L };
  }

  function buildSpectrum() {
    const vals = eig.data;
    const d = vals.length;
    const { svg, mk, fs, pw, ph, xMid } = plotFrame("nbx-spectrum", specHolder);
    moveSpectrum = () => {};
    if (!d) return;
    let total = 0;
    for (let i = 0; i < d; i++) total += vals[i];
    const x = (i: number) => ((i + 0.5) / d) * pw;
    const y = (u: number) => ph - (u / 4) * ph;
    ["0", "0.9", "0.99", "0.999", "0.9999"].forEach((lab, u) => {
      mk("line", { x1: "0", x2: String(pw), y1: String(y(u)), y2: String(y(u)), class: "nbx-gridline" });
      mk("text", { x: String(-0.4 * fs), y: String(y(u) + 0.35 * fs), "text-anchor": "end", class: "nbx-tick" }, lab);
    });
    axisTitle(mk, -4.6 * fs, ph / 2, "cumulative share", true);
    // Bars: each component's share of the variance (linear, scaled to half the plot height).
    let maxShare = 0;
    for (let i = 0; i < d; i++) maxShare = Math.max(maxShare, total > 0 ? vals[i] / total : 0);
    const bw = Math.max(1, pw / d - 1);
    let bars = "";
    for (let i = 0; i < d; i++) {
      const share = total > 0 ? vals[i] / total : 0;
      const bh = maxShare > 0 ? (share / maxShare) * ph * 0.5 : 0;
      bars += `M${(x(i) - bw / 2).toFixed(2)} ${ph.toFixed(2)}h${bw.toFixed(2)}v${(-bh).toFixed(2)}h${(-bw).toFixed(2)}z`;
    }
    mk("path", { d: bars, fill: "var(--nbx-muted)", "fill-opacity": "0.5", class: "nbx-share-bars" });
    // Cumulative explained variance on the nines scale.
    let cum = 0, line = "";
    for (let i = 0; i < d; i++) {
      cum += vals[i];
      line += `${i ? "L" : "M"}${x(i).toFixed(2)} ${y(nines(total > 0 ? cum / total : 0)).toFixed(2)}`;
    }
    mk("path", { d: line, fill: "none", stroke: "var(--nbx-fg)", "stroke-width": "2", class: "nbx-cumulative" });
    mk("line", { x1: "0", x2: String(pw), y1: String(ph), y2: String(ph), class: "nbx-axis-line" });
    const xt = spaced([1, ...niceTicks(1, d, 4, { inside: true }).filter((v) => v > 1 && v <= d && Number.isInteger(v)), d],
      (v) => x(v - 1), 3 * fs);
    for (const v of xt) {
      mk("line", { x1: String(x(v - 1)), x2: String(x(v - 1)), y1: String(ph), y2: String(ph + 0.4 * fs), class: "nbx-axis-line" });
      mk("text", { x: String(x(v - 1)), y: String(ph + 1.4 * fs), "text-anchor": "middle", class: "nbx-tick" }, String(v));
    }
    axisTitle(mk, xMid, ph + 2.7 * fs, "component (largest first)");
    // δ (horizontal) and k (vertical) markers, moved by show().
    const dLine = mk("line", { x1: "0", x2: String(pw), stroke: "var(--nbx-warn)", "stroke-width": "2", class: "nbx-delta-line" });
    const kLine = mk("line", { y1: "0", y2: String(ph), stroke: "var(--nbx-accent)", "stroke-width": "2", class: "nbx-k-line" });
    const kLabel = mk("text", { y: String(-0.4 * fs), class: "nbx-k-label" });
    moveSpectrum = (delta: number, k: number) => {
      const yy = String(y(nines(delta)));
      dLine.setAttribute("y1", yy);
      dLine.setAttribute("y2", yy);
      const xx = x(Math.max(0, k - 1));
      kLine.setAttribute("x1", String(xx));
      kLine.setAttribute("x2", String(xx));
      kLabel.setAttribute("x", String(xx));
      kLabel.setAttribute("text-anchor", xx < pw / 2 ? "start" : "end");
      kLabel.textContent = `k = ${k}`;
      svg.setAttribute("aria-label", `Explained variance of ${d} components: the top ${k} explain at least δ = ` +
        `${formatDelta(delta)} of the variance.`);
    };
    specKey.replaceChildren(
      keyItem("nbx-bar", "share of each component"), keyItem("", "cumulative share"),
      keyItem("nbx-delta-mark", "δ"), keyItem("nbx-k-mark", "k(δ)"),
    );
  }

  function keyItem(kind: string, text: string): HTMLSpanElement {
    const item = h("span", "nbx-key-item");
    item.append(h("span", `nbx-swatch ${kind}`), document.createTextNode(text));
    return item;
  }

  function buildMetric() {
    const n = nPositions();
    const name = metricLabel(model.get("metric_name"));
    metricCaption.textContent = `${name} of the model with the layer projected, by δ`;
    const { svg, mk, fs, pw, ph, xMid } = plotFrame("nbx-metric-plot", metricHolder);
    moveMetric = () => {};
    const base = model.get("baseline");
    metricKey.replaceChildren(
      keyItem("", "top-k eigen-directions"), keyItem("nbx-random", "random k-dim subspace (control)"),
      keyItem("nbx-base", `no projection (baseline): ${formatNumber(base)}`),
    );
    if (!n || !metric.data.length) return;
    const values = (t: Tensor) => Array.from({ length: n }, (_, p) => t.data[kIndex.data[p]] ?? 0);
    const a = values(metric), b = values(metricRandom);
    let lo = Math.min(...a, ...b, base), hi = Math.max(...a, ...b, base);
    if (hi - lo < 1e-12) hi = lo + 1;
    const yt = niceTicks(lo, hi, 4, { inside: true });
    lo = Math.min(lo, yt[0] ?? lo);
    hi = Math.max(hi, yt[yt.length - 1] ?? hi);
    const x = (p: number) => (n > 1 ? p / (n - 1) : 0.5) * pw;
    const y = (v: number) => ph - ((v - lo) / (hi - lo)) * ph;
    for (const v of yt) {
      mk("line", { x1: "0", x2: String(pw), y1: String(y(v)), y2: String(y(v)), class: "nbx-gridline" });
      mk("text", { x: String(-0.4 * fs), y: String(y(v) + 0.35 * fs), "text-anchor": "end", class: "nbx-tick" }, formatNumber(v));
    }
    axisTitle(mk, -4.6 * fs, ph / 2, name, true);
    mk("line", { x1: "0", x2: String(pw), y1: String(ph), y2: String(ph), class: "nbx-axis-line" });
    const xt = spaced(deltaTicks(deltas.data), ([p]) => x(p), 3.2 * fs).sort((u, v) => u[0] - v[0]);
    for (const [p, lab] of xt) {
      mk("line", { x1: String(x(p)), x2: String(x(p)), y1: String(ph), y2: String(ph + 0.4 * fs), class: "nbx-axis-line" });
      mk("text", { x: String(x(p)), y: String(ph + 1.4 * fs), "text-anchor": "middle", class: "nbx-tick nbx-delta-tick" }, lab);
    }
    axisTitle(mk, xMid, ph + 2.7 * fs, "δ, on a nines scale");
    const path = (vals: number[]) => vals.map((v, p) => `${p ? "L" : "M"}${x(p).toFixed(2)} ${y(v).toFixed(2)}`).join("");
    mk("line", { x1: "0", x2: String(pw), y1: String(y(base)), y2: String(y(base)), stroke: "var(--nbx-muted)",
      "stroke-width": "2", "stroke-dasharray": "2 3", class: "nbx-baseline" });
    mk("path", { d: path(b), fill: "none", stroke: "var(--nbx-warn)", "stroke-width": "2", "stroke-dasharray": "6 3",
      class: "nbx-random-line" });
    mk("path", { d: path(a), fill: "none", stroke: "var(--nbx-fg)", "stroke-width": "2", class: "nbx-eigen-line" });
    const posLine = mk("line", { y1: "0", y2: String(ph), stroke: "var(--nbx-accent)", "stroke-width": "2", class: "nbx-position-line" });
    const dot = mk("circle", { r: String(0.3 * fs), fill: "var(--nbx-accent)" });
    moveMetric = (p: number) => {
      posLine.setAttribute("x1", String(x(p)));
      posLine.setAttribute("x2", String(x(p)));
      const random = randomBox.checked;
      dot.setAttribute("cx", String(x(p)));
      dot.setAttribute("cy", String(y((random ? b : a)[p] ?? lo)));
      svg.setAttribute("aria-label", `${name} by δ from ${formatDelta(deltas.data[0])} to ` +
        `${formatDelta(deltas.data[n - 1])}: at δ = ${formatDelta(deltas.data[p])} it is ${formatNumber(a[p])} with the ` +
        `top-k eigen-directions and ${formatNumber(b[p])} with a random subspace; ${formatNumber(base)} with no projection.`);
    };
    root.dataset.deltaTicks = xt.map(([, lab]) => lab).join(",");
  }

  function buildCharts() {
    buildSpectrum();
    buildMetric();
    chartsWidth = root.clientWidth;
  }

  /** Swap to slider position p: pure local state, no kernel message. */
  function show(p: number) {
    const t0 = performance.now();
    position = Math.max(0, Math.min(nPositions() - 1, p));
    const ki = kIndex.data[position] ?? 0;
    const k = currentK();
    const width = model.get("width");
    const random = randomBox.checked;
    const delta = deltas.data[position] ?? 0;
    slider.value = String(position);
    deltaText.textContent = formatDelta(delta);
    slider.setAttribute("aria-valuetext", `δ = ${formatDelta(delta)}, k = ${k} of ${width} directions`);
    const m = metric.data[ki], mr = metricRandom.data[ki];
    kText.textContent = readoutText(k, width, model.get("metric_name"), random ? mr : m, random);
    if (model.get("mode") === "reconstruction") {
      const src = random ? reconRandom : recon;
      reconCanvases.forEach((c, i) => {
        drawImage(c, imageAt(src, ki, i, `${random ? "r" : "e"}:${ki}:${i}`));
        c.setAttribute("aria-label", `sample ${i + 1} reconstructed from k = ${k} ${random ? "random" : "eigen"}-directions`);
      });
    } else {
      const pr = random ? predsRandom : preds;
      const labels = model.get("labels");
      const n = pr.shape.length === 2 ? pr.shape[1] : 0;
      predSpans.forEach((s, i) => {
        const v = n ? pr.data[ki * n + i] : -1;
        const wrong = labels.length > i && labels[i] !== v;
        s.textContent = `predicted ${v}${wrong ? " ✗" : ""}`;
        s.classList.toggle("nbx-wrong", wrong);
      });
    }
    moveSpectrum(delta, k);
    moveMetric(position);
    root.dataset.position = String(position);
    root.dataset.delta = String(delta);
    root.dataset.k = String(k);
    root.dataset.saturation = String(width ? k / width : 0);
    root.dataset.subspace = random ? "random" : "eigen";
    root.dataset.repaintMs = (performance.now() - t0).toFixed(3);
  }

  function nearestPosition(delta: number): number {
    let best = 0;
    for (let p = 0; p < nPositions(); p++) {
      if (Math.abs(deltas.data[p] - delta) < Math.abs(deltas.data[best] - delta)) best = p;
    }
    return best;
  }

  function build() {
    deltas = decodeTensor(model.get("deltas"));
    kIndex = decodeTensor(model.get("k_index"));
    eig = decodeTensor(model.get("eigenvalues"));
    originals = decodeTensor(model.get("originals"));
    recon = decodeTensor(model.get("recon"));
    reconRandom = decodeTensor(model.get("recon_random"));
    preds = decodeTensor(model.get("predictions"));
    predsRandom = decodeTensor(model.get("predictions_random"));
    metric = decodeTensor(model.get("metric"));
    metricRandom = decodeTensor(model.get("metric_random"));
    cache = new Map();
    slider.min = "0";
    slider.max = String(Math.max(0, nPositions() - 1));
    layerSelect.replaceChildren();
    for (const name of model.get("layer_options")) {
      const opt = h("option", "", name);
      opt.value = name;
      layerSelect.appendChild(opt);
    }
    layerSelect.value = model.get("layer");
    randomBox.checked = model.get("show_random");
    const mode = model.get("mode");
    legend.textContent =
      mode === "reconstruction"
        ? "each pair: the original (left) and its reconstruction with the layer projected onto k(δ) directions (right)"
        : "each sample: its true label and the class predicted with the layer projected onto k(δ) directions " +
          "(✗ in red: wrong)";
    grid.replaceChildren();
    reconCanvases = [];
    predSpans = [];
    const n = originals.shape.length === 4 ? originals.shape[0] : 0;
    const [, hh, ww, cc] = originals.shape.length === 4 ? originals.shape : [0, 0, 0, 1];
    const labels = model.get("labels");
    for (let i = 0; i < n; i++) {
      const cell = h("div", "nbx-cell");
      cell.dataset.index = String(i);
      const pair = h("div", "nbx-pair");
      const orig = h("canvas", "nbx-canvas nbx-original");
      orig.setAttribute("role", "img");
      orig.setAttribute("aria-label", `sample ${i + 1}, original${labels.length > i ? `, label ${labels[i]}` : ""}`);
      const size = hh * ww * cc;
      drawImage(orig, offscreen(imageRGBA(originals.data.subarray(i * size, (i + 1) * size), hh, ww, cc), ww, hh));
      pair.appendChild(orig);
      if (mode === "reconstruction") {
        const rc = h("canvas", "nbx-canvas nbx-recon");
        rc.setAttribute("role", "img");
        pair.appendChild(rc);
        reconCanvases.push(rc);
        cell.append(pair);
      } else {
        const title = h("span", "nbx-title", labels.length > i ? `label ${labels[i]}` : "");
        const pred = h("span", "nbx-pred");
        predSpans.push(pred);
        cell.append(pair, title, pred);
      }
      grid.appendChild(cell);
    }
    root.dataset.layer = model.get("layer");
    root.dataset.mode = mode;
    root.dataset.n = String(n);
    root.dataset.baseline = String(model.get("baseline"));
    buildCharts();
    show(nearestPosition(model.get("delta")));
    root.dataset.ready = "true";
  }

  // Requests to the kernel (another layer, other samples) carry the whole wanted state: latest wins.
  let wantedSeed = model.get("sample_seed");
  const onBusy = () => {
    const busyNow = Boolean(model.get("busy")) || requests.queue.busy;
    root.dataset.busy = String(busyNow);
    if (!busyNow) layerSelect.value = model.get("layer"); // a refused request leaves the layer as it was
  };
  const requests = kernelRequests<Wanted>(model, root, "request", onBusy);
  const ask = () => requests.queue.request({ layer: layerSelect.value, sample_seed: wantedSeed });

  slider.addEventListener("input", () => show(Number(slider.value)));
  const stopKeys = keepNavigationKeys(root); // the slider's arrows stay in the view (JupyterLab takes them)
  randomBox.addEventListener("change", () => show(position));
  layerSelect.addEventListener("change", ask);
  samplesButton.addEventListener("click", () => {
    wantedSeed = Math.max(wantedSeed, model.get("sample_seed")) + 1;
    ask();
  });

  const onError = errorHandler(root, errorBox, model);
  const onDelta = () => show(nearestPosition(model.get("delta")));
  const onRandom = () => {
    randomBox.checked = model.get("show_random");
    show(position);
  };
  const onTheme = themeHandler(root, model, () => show(position));
  const onSeed = () => {
    wantedSeed = Math.max(wantedSeed, model.get("sample_seed"));
  };
  const rebuild = batched(build); // one message can change several traits: rebuild once
  // Resized or visible again: charts follow the column's width; images are redrawn.
  const redraw = () => {
    if (root.clientWidth !== chartsWidth) buildCharts();
    show(position);
  };
  const events: Array<[string, () => void]> = [
    ["change:recon", rebuild], ["change:originals", rebuild], ["change:k_index", rebuild],
    ["change:predictions", rebuild], ["change:layer_options", rebuild], ["change:cell_size", rebuild],
    ["change:delta", onDelta], ["change:show_random", onRandom], ["change:busy", onBusy],
    ["change:error", onError], ["change:theme", onTheme], ["change:layer", rebuild],
    ["change:sample_seed", onSeed], ["change:baseline", rebuild],
  ];
  const stopScale = applyScale(root, model, () => {
    cache = new Map();
    build();
  });
  build();
  onError();
  onBusy();
  return connect(el, root, model, events, redraw, stopScale, requests.cleanup, stopKeys);
}

export default { render };
export type { AnyModel };
