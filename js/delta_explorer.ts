// DeltaExplorer view: eigen-spectrum with δ marker, δ slider, k and saturation, originals beside their
// reconstructions through the projected layer (or predictions under projection for a classifier).
// Every slider position's images were precomputed in Python: moving the slider swaps them locally within
// one frame and sends nothing to the kernel. Changing the layer or the samples asks the kernel (busy shown,
// latest request wins).
import type { AnyModel, RenderProps } from "@anywidget/types";
import { formatValue } from "./lib/colormap";
import { connect, h, injectStyle, offscreen, sizeCanvas, viewRoot } from "./lib/dom";
import { imageRGBA } from "./lib/raster";
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
  error: string;
  cell_size: number;
  theme: string;
}

const CSS = `
.nbx-delta-explorer .nbx-de-top { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.nbx-delta-explorer .nbx-spectrum, .nbx-delta-explorer .nbx-metric-plot { border: 1px solid var(--nbx-border); }
.nbx-delta-explorer .nbx-k { font-family: var(--jp-code-font-family, monospace); min-width: 16em; }
.nbx-delta-explorer .nbx-delta-slider { width: 260px; }
.nbx-delta-explorer .nbx-pair { display: flex; gap: 2px; }
.nbx-delta-explorer .nbx-pred { font-family: var(--jp-code-font-family, monospace); }
.nbx-delta-explorer .nbx-pred.nbx-wrong { color: var(--jp-error-color1, #d32f2f); font-weight: bold; }
.nbx-delta-explorer .nbx-legend { color: var(--nbx-muted); font-size: 0.9em; }
`;

/** y position on the "nines" scale: 0.9 → 1, 0.99 → 2 … capped at 4. */
export function nines(frac: number): number {
  return Math.min(4, -Math.log10(Math.max(1e-4, 1 - Math.min(frac, 1))));
}


function render({ model, el }: RenderProps<State>) {
  const root = viewRoot("delta-explorer", model.get("theme"));
  injectStyle(el, CSS);
  el.appendChild(root);

  const controls = h("div", "nbx-controls");
  const layerLabel = h("label", "nbx-control nbx-needs-kernel", "layer");
  const layerSelect = h("select", "nbx-layer-select");
  layerLabel.appendChild(layerSelect);
  const sliderLabel = h("label", "nbx-control", "δ");
  const slider = h("input", "nbx-delta-slider");
  slider.type = "range";
  slider.step = "1";
  const deltaText = h("span", "nbx-delta-value");
  sliderLabel.append(slider, deltaText);
  const kText = h("span", "nbx-k");
  const randomLabel = h("label", "nbx-control", "random subspace (control)");
  const randomBox = h("input", "nbx-random-toggle");
  randomBox.type = "checkbox";
  randomLabel.prepend(randomBox);
  const samplesButton = h("button", "nbx-button nbx-resample nbx-needs-kernel", "other samples");
  const busy = h("span", "nbx-busy", "computing…");
  const errorBox = h("div", "nbx-error");
  controls.append(layerLabel, sliderLabel, kText, randomLabel, samplesButton, busy);

  const top = h("div", "nbx-de-top");
  const spectrum = h("canvas", "nbx-spectrum");
  const metricPlot = h("canvas", "nbx-metric-plot");
  top.append(spectrum, metricPlot);
  const legend = h("div", "nbx-legend");
  const grid = h("div", "nbx-grid");
  root.append(controls, errorBox, top, legend, grid);

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
  let pendingRequest: Partial<Pick<State, "layer" | "sample_seed">> | null = null;

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
    const w = model.get("cell_size");
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

  function plotFrame(canvas: HTMLCanvasElement, w: number, hh: number) {
    const ctx = sizeCanvas(canvas, w, hh);
    if (!ctx) return null;
    const dpr = canvas.width / w;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hh);
    const style = getComputedStyle(root);
    const fg = style.getPropertyValue("--nbx-fg").trim() || "#333";
    const muted = style.getPropertyValue("--nbx-muted").trim() || "#888";
    const accent = style.getPropertyValue("--nbx-accent").trim() || "#1976d2";
    const warn = style.getPropertyValue("--nbx-warn").trim() || "#f57c00";
    ctx.font = "10px sans-serif";
    return { ctx, fg, muted, accent, warn };
  }

  function drawSpectrum() {
    const W = 300, H = 170, L = 34, R = 8, T = 14, B = 22;
    const f = plotFrame(spectrum, W, H);
    if (!f) return;
    const { ctx, muted, accent, warn, fg } = f;
    const vals = eig.data;
    const d = vals.length;
    if (!d) return;
    let total = 0;
    for (let i = 0; i < d; i++) total += vals[i];
    const pw = W - L - R, ph = H - T - B;
    const x = (i: number) => L + ((i + 0.5) / d) * pw;
    const y = (u: number) => T + ph - (u / 4) * ph;
    // Grid lines at 0.9, 0.99, 0.999, 0.9999 (the "nines" scale gives room to δ near 1).
    ctx.strokeStyle = muted;
    ctx.fillStyle = muted;
    ctx.globalAlpha = 0.35;
    for (let u = 1; u <= 4; u++) {
      ctx.beginPath();
      ctx.moveTo(L, y(u));
      ctx.lineTo(W - R, y(u));
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    ["0", "0.9", "0.99", "0.999", "0.9999"].forEach((lab, u) => ctx.fillText(lab, 2, y(u) + 3));
    // Bars: each component's share of the variance (linear, scaled to the plot height).
    let maxShare = 0;
    for (let i = 0; i < d; i++) maxShare = Math.max(maxShare, total > 0 ? vals[i] / total : 0);
    ctx.fillStyle = muted;
    ctx.globalAlpha = 0.45;
    const bw = Math.max(1, pw / d - 1);
    for (let i = 0; i < d; i++) {
      const share = total > 0 ? vals[i] / total : 0;
      const bh = maxShare > 0 ? (share / maxShare) * ph * 0.5 : 0;
      ctx.fillRect(x(i) - bw / 2, T + ph - bh, bw, bh);
    }
    ctx.globalAlpha = 1;
    // Cumulative explained variance on the nines scale.
    ctx.strokeStyle = fg;
    ctx.beginPath();
    let cum = 0;
    for (let i = 0; i < d; i++) {
      cum += vals[i];
      const px = x(i), py = y(nines(total > 0 ? cum / total : 0));
      if (i === 0) ctx.moveTo(px, py);
      else ctx.lineTo(px, py);
    }
    ctx.stroke();
    // δ marker (horizontal) and k (vertical).
    const delta = deltas.data[position] ?? 0;
    const k = currentK();
    ctx.strokeStyle = warn;
    ctx.beginPath();
    ctx.moveTo(L, y(nines(delta)));
    ctx.lineTo(W - R, y(nines(delta)));
    ctx.stroke();
    ctx.strokeStyle = accent;
    ctx.beginPath();
    ctx.moveTo(x(k - 1), T);
    ctx.lineTo(x(k - 1), T + ph);
    ctx.stroke();
    ctx.fillStyle = muted;
    ctx.fillText(`component 1…${d}`, L, H - 6);
    ctx.fillText("cumulative explained variance", L, 10);
  }

  function drawMetric() {
    const W = 240, H = 170, L = 34, R = 8, T = 14, B = 22;
    const f = plotFrame(metricPlot, W, H);
    if (!f) return;
    const { ctx, muted, accent, warn, fg } = f;
    const n = nPositions();
    if (!n || !metric.data.length) return;
    const values = (t: Tensor) => Array.from({ length: n }, (_, p) => t.data[kIndex.data[p]] ?? 0);
    const a = values(metric), b = values(metricRandom);
    const base = model.get("baseline");
    let lo = Math.min(...a, ...b, base), hi = Math.max(...a, ...b, base);
    if (hi - lo < 1e-12) hi = lo + 1;
    const pw = W - L - R, ph = H - T - B;
    const x = (p: number) => L + (n > 1 ? p / (n - 1) : 0.5) * pw;
    const y = (v: number) => T + ph - ((v - lo) / (hi - lo)) * ph;
    const line = (vals: number[], color: string, dash: number[]) => {
      ctx.strokeStyle = color;
      ctx.setLineDash(dash);
      ctx.beginPath();
      vals.forEach((v, p) => (p ? ctx.lineTo(x(p), y(v)) : ctx.moveTo(x(p), y(v))));
      ctx.stroke();
      ctx.setLineDash([]);
    };
    ctx.globalAlpha = 0.5;
    line(new Array(n).fill(base), muted, [2, 3]);
    ctx.globalAlpha = 1;
    line(b, warn, [5, 3]);
    line(a, fg, []);
    ctx.strokeStyle = accent;
    ctx.beginPath();
    ctx.moveTo(x(position), T);
    ctx.lineTo(x(position), T + ph);
    ctx.stroke();
    ctx.fillStyle = muted;
    ctx.fillText(formatValue(hi), 2, T + 3);
    ctx.fillText(formatValue(lo), 2, T + ph);
    ctx.fillText(`${model.get("metric_name")} vs δ (dashed: random)`, L, 10);
    ctx.fillText("δ →", W - R - 24, H - 6);
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
    deltaText.textContent = delta >= 0.99995 ? "1" : delta.toFixed(delta > 0.999 ? 4 : 3);
    const m = metric.data[ki], mr = metricRandom.data[ki];
    const name = model.get("metric_name");
    kText.textContent =
      `k = ${k} / ${width} · saturation ${(width ? k / width : 0).toFixed(3)} · ` +
      `${name} ${formatValue(random ? mr : m)}${random ? " (random)" : ""}`;
    if (model.get("mode") === "reconstruction") {
      const src = random ? reconRandom : recon;
      reconCanvases.forEach((c, i) => drawImage(c, imageAt(src, ki, i, `${random ? "r" : "e"}:${ki}:${i}`)));
    } else {
      const pr = random ? predsRandom : preds;
      const labels = model.get("labels");
      const n = pr.shape.length === 2 ? pr.shape[1] : 0;
      predSpans.forEach((s, i) => {
        const v = n ? pr.data[ki * n + i] : -1;
        s.textContent = `→ ${v}`;
        s.classList.toggle("nbx-wrong", labels.length > i && labels[i] !== v);
      });
    }
    drawSpectrum();
    drawMetric();
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
        ? "each pair: original · reconstruction with the layer projected onto k(δ) directions"
        : "each sample: predicted class with the layer projected onto k(δ) directions (red: wrong)";
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
      const size = hh * ww * cc;
      drawImage(orig, offscreen(imageRGBA(originals.data.subarray(i * size, (i + 1) * size), hh, ww, cc), ww, hh));
      pair.appendChild(orig);
      if (mode === "reconstruction") {
        const rc = h("canvas", "nbx-canvas nbx-recon");
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
    show(nearestPosition(model.get("delta")));
    root.dataset.ready = "true";
  }

  function setBusy() {
    const b = model.get("busy");
    root.dataset.busy = String(b);
    if (!b && pendingRequest) {
      const req = pendingRequest;
      pendingRequest = null;
      request(req);
    }
  }

  /** Ask the kernel for new work; while it is busy only the latest request is kept. */
  function request(change: Partial<Pick<State, "layer" | "sample_seed">>) {
    if (model.get("busy") || root.dataset.busy === "true") {
      pendingRequest = { ...(pendingRequest ?? {}), ...change };
      return;
    }
    root.dataset.busy = "true";
    for (const [key, value] of Object.entries(change)) model.set(key as "layer", value as string);
    model.save_changes();
  }

  slider.addEventListener("input", () => show(Number(slider.value)));
  randomBox.addEventListener("change", () => show(position));
  layerSelect.addEventListener("change", () => request({ layer: layerSelect.value }));
  samplesButton.addEventListener("click", () => request({ sample_seed: model.get("sample_seed") + 1 }));

  const onError = () => {
    errorBox.textContent = model.get("error");
    root.dataset.error = model.get("error") ? "true" : "false";
  };
  const onDelta = () => show(nearestPosition(model.get("delta")));
  const onRandom = () => {
    randomBox.checked = model.get("show_random");
    show(position);
  };
  const onTheme = () => {
    root.dataset.theme = model.get("theme");
    show(position);
  };
  const rebuild = () => build();
  const redraw = () => show(position);
  const events: Array<[string, () => void]> = [
    ["change:recon", rebuild], ["change:originals", rebuild], ["change:k_index", rebuild],
    ["change:predictions", rebuild], ["change:layer_options", rebuild], ["change:cell_size", rebuild],
    ["change:delta", onDelta], ["change:show_random", onRandom], ["change:busy", setBusy],
    ["change:error", onError], ["change:theme", onTheme], ["change:layer", rebuild],
  ];
  build();
  onError();
  setBusy();
  return connect(el, root, model, events, redraw);
}

export default { render };
export type { AnyModel };
