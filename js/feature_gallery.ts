// FeatureGallery view: a grid of units (optimised image, objective sparkline, percentile); clicking a
// unit shows its top real examples with the unit's activation map over them — switched in the browser
// from precomputed state. The controls (steps, regularisation, parameterisation) ask the kernel to
// re-run the optimisation: one request in flight at a time, and only the latest pending one is sent.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { type ColorScale, formatValue } from "./lib/colormap";
import { connect, h, injectStyle, offscreen, sizeCanvas, viewRoot } from "./lib/dom";
import { colorize, effectiveScale, imageRGBA } from "./lib/raster";
import { decodeTensor, slice0, type Tensor, type WireTensor } from "./lib/tensor";

interface State {
  images: WireTensor;
  curves: WireTensor;
  percentiles: Array<number | null>;
  finals: number[];
  titles: string[];
  units: number[];
  layer: string;
  objective: string;
  k: number;
  top_images: WireTensor;
  top_maps: WireTensor;
  top_values: WireTensor;
  top_indices: number[];
  selected: number;
  steps: number;
  regularization: number;
  param: "fourier" | "pixel";
  busy: boolean;
  completed_request: number;
  runs: number;
  error: string;
  cell_size: number;
  columns: number;
  theme: string;
}

const STEP_CHOICES = [16, 32, 64, 128, 256, 512, 1024];

const CSS = `
.nbx-feature-gallery .nbx-sparkline { display: block; }
.nbx-feature-gallery .nbx-percentile { font-family: var(--jp-code-font-family, monospace); font-size: 0.9em;
  color: var(--nbx-muted); }
.nbx-feature-gallery .nbx-percentile[data-strong="true"] { color: var(--nbx-accent); }
.nbx-feature-gallery .nbx-detail { margin-top: 8px; border-top: 1px solid var(--nbx-border); padding-top: 6px; }
.nbx-feature-gallery .nbx-detail-title { color: var(--nbx-fg); margin-bottom: 4px; }
.nbx-feature-gallery .nbx-top-grid { display: flex; flex-wrap: wrap; gap: 6px; }
.nbx-feature-gallery .nbx-top { display: flex; flex-direction: column; align-items: center; gap: 2px; }
.nbx-feature-gallery .nbx-top-value { font-family: var(--jp-code-font-family, monospace); font-size: 0.85em;
  color: var(--nbx-muted); }
.nbx-feature-gallery .nbx-grid.nbx-stale { opacity: 0.55; }
`;

/** Pure: the points of a sparkline polyline (x, y in CSS pixels) for a curve in a w × h box. */
export function sparklinePoints(curve: ArrayLike<number>, w: number, hgt: number, pad = 2): Array<[number, number]> {
  const n = curve.length;
  if (n === 0) return [];
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < n; i++) {
    lo = Math.min(lo, curve[i]);
    hi = Math.max(hi, curve[i]);
  }
  const span = hi > lo ? hi - lo : 1;
  const pts: Array<[number, number]> = [];
  for (let i = 0; i < n; i++) {
    const x = n === 1 ? w / 2 : pad + ((w - 2 * pad) * i) / (n - 1);
    const y = hgt - pad - ((hgt - 2 * pad) * (curve[i] - lo)) / span;
    pts.push([x, y]);
  }
  return pts;
}

/** Pure: the colour scale of one unit's activation maps (diverging when any value is negative). */
export function unitScale(maps: ArrayLike<number>): ColorScale {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < maps.length; i++) {
    lo = Math.min(lo, maps[i]);
    hi = Math.max(hi, maps[i]);
  }
  if (!Number.isFinite(lo)) return { kind: "sequential", vmin: 0, vmax: 1 };
  if (lo < 0) return effectiveScale({ kind: "diverging", vmin: lo, vmax: hi });
  return { kind: "sequential", vmin: Math.min(0, lo), vmax: hi > 0 ? hi : 1 };
}

/** Pure: percentile label. */
export function percentileLabel(p: number | null | undefined): string {
  if (p === null || p === undefined || !Number.isFinite(p)) return "no data";
  return `p${p >= 99.95 ? "100" : p.toFixed(1)}`;
}

/** Latest-wins request queue: at most one request in flight, only the newest pending one kept. */
export class LatestWins<T> {
  private inflight: number | null = null;
  private pending: T | null = null;
  private next: number;
  constructor(private readonly send: (id: number, req: T) => void, start = 0) {
    this.next = start;
  }
  request(req: T): void {
    if (this.inflight === null) this.dispatch(req);
    else this.pending = req;
  }
  /** The kernel finished request `id` (or a later one). Returns true when nothing is left to do. */
  completed(id: number): boolean {
    if (this.inflight !== null && id >= this.inflight) {
      this.inflight = null;
      if (this.pending !== null) {
        const req = this.pending;
        this.pending = null;
        this.dispatch(req);
      }
    }
    return this.inflight === null;
  }
  get busy(): boolean {
    return this.inflight !== null;
  }
  get lastId(): number {
    return this.next;
  }
  private dispatch(req: T): void {
    this.next += 1;
    this.inflight = this.next;
    this.send(this.next, req);
  }
}


interface RerunRequest {
  steps: number;
  regularization: number;
  param: string;
}

function render({ model, el }: RenderProps<State>) {
  const root = viewRoot("feature-gallery", model.get("theme"));
  injectStyle(el, CSS);
  el.appendChild(root);

  // ---- controls ----
  const controls = h("div", "nbx-controls");
  const stepsLabel = h("label", "nbx-control nbx-needs-kernel", "steps");
  const stepsSel = h("select", "nbx-steps");
  stepsLabel.appendChild(stepsSel);
  const regLabel = h("label", "nbx-control nbx-needs-kernel", "regularisation");
  const reg = h("input", "nbx-regularization");
  reg.type = "range";
  reg.min = "0";
  reg.max = "1";
  reg.step = "0.05";
  const regValue = h("span", "nbx-regularization-value");
  regLabel.append(reg, regValue);
  const paramLabel = h("label", "nbx-control nbx-needs-kernel", "parameterisation");
  const paramSel = h("select", "nbx-param");
  for (const p of ["fourier", "pixel"]) {
    const o = h("option", "", p);
    o.value = p;
    paramSel.appendChild(o);
  }
  paramLabel.appendChild(paramSel);
  const runBtn = h("button", "nbx-button nbx-run nbx-needs-kernel", "re-run");
  runBtn.type = "button";
  const busy = h("span", "nbx-busy", "optimising…");
  const error = h("span", "nbx-error");
  controls.append(stepsLabel, regLabel, paramLabel, runBtn, busy, error);

  const info = h("div", "nbx-readout nbx-info");
  const grid = h("div", "nbx-grid");
  const detail = h("div", "nbx-detail");
  const detailTitle = h("div", "nbx-detail-title");
  const opacityLabel = h("label", "nbx-control", "map opacity");
  const opacity = h("input", "nbx-opacity");
  opacity.type = "range";
  opacity.min = "0";
  opacity.max = "1";
  opacity.step = "0.05";
  opacity.value = "0.6";
  opacityLabel.appendChild(opacity);
  const topGrid = h("div", "nbx-top-grid");
  detail.append(detailTitle, opacityLabel, topGrid);
  root.append(controls, info, grid, detail);

  // ---- requests to the kernel (latest wins) ----
  const queue = new LatestWins<RerunRequest>((id, req) => {
    root.dataset.requested = String(id);
    model.send({ type: "rerun", id, ...req });
  }, model.get("completed_request"));

  function setBusy() {
    const isBusy = queue.busy || model.get("busy");
    root.dataset.busy = String(isBusy);
    grid.classList.toggle("nbx-stale", isBusy);
  }

  function requestRerun() {
    queue.request({ steps: Number(stepsSel.value), regularization: Number(reg.value), param: paramSel.value });
    setBusy();
  }

  // ---- state decoded from the model ----
  let images: Tensor = decodeTensor(null);
  let curves: Tensor = decodeTensor(null);
  let topImages: Tensor = decodeTensor(null);
  let topMaps: Tensor = decodeTensor(null);
  let topValues: Tensor = decodeTensor(null);
  let imageCanvases: HTMLCanvasElement[] = [];
  let gridCanvases: HTMLCanvasElement[] = [];
  let sparkCanvases: HTMLCanvasElement[] = [];
  let cells: HTMLDivElement[] = [];
  let topSources: HTMLCanvasElement[] = []; // per example of the selected unit
  let topMapSources: HTMLCanvasElement[] = [];
  let topCanvases: HTMLCanvasElement[] = [];

  function accent(): string {
    return getComputedStyle(root).getPropertyValue("--nbx-accent").trim() || "#1976d2";
  }

  function drawCell(i: number) {
    const size = model.get("cell_size");
    const [, hi, wi] = images.shape;
    const hgt = Math.max(1, Math.round((size * hi) / wi));
    const ctx = sizeCanvas(gridCanvases[i], size, hgt);
    if (ctx && imageCanvases[i]) {
      ctx.clearRect(0, 0, gridCanvases[i].width, gridCanvases[i].height);
      ctx.drawImage(imageCanvases[i], 0, 0, gridCanvases[i].width, gridCanvases[i].height);
    }
    const sh = 24;
    const sctx = sizeCanvas(sparkCanvases[i], size, sh);
    if (!sctx || curves.shape.length !== 2) return;
    const dpr = sparkCanvases[i].width / size;
    sctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    sctx.clearRect(0, 0, size, sh);
    const pts = sparklinePoints(slice0(curves, i).data, size, sh);
    sctx.strokeStyle = accent();
    sctx.lineWidth = 1.25;
    sctx.beginPath();
    pts.forEach(([x, y], j) => (j === 0 ? sctx.moveTo(x, y) : sctx.lineTo(x, y)));
    sctx.stroke();
  }

  function drawTop(j: number) {
    const size = Math.max(48, Math.round(model.get("cell_size") * 0.75));
    const src = topSources[j];
    if (!src) return;
    const hgt = Math.max(1, Math.round((size * src.height) / src.width));
    const ctx = sizeCanvas(topCanvases[j], size, hgt);
    if (!ctx) return;
    const W = topCanvases[j].width;
    const H = topCanvases[j].height;
    ctx.globalAlpha = 1;
    ctx.clearRect(0, 0, W, H);
    ctx.drawImage(src, 0, 0, W, H);
    if (topMapSources[j]) {
      ctx.globalAlpha = Number(opacity.value);
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(topMapSources[j], 0, 0, W, H);
      ctx.imageSmoothingEnabled = false;
      ctx.globalAlpha = 1;
    }
  }

  function drawAll() {
    for (let i = 0; i < gridCanvases.length; i++) drawCell(i);
    for (let j = 0; j < topCanvases.length; j++) drawTop(j);
  }

  function showSelected() {
    const sel = model.get("selected");
    root.dataset.selected = String(sel);
    cells.forEach((c, i) => {
      c.classList.toggle("nbx-selected", i === sel);
      c.setAttribute("aria-selected", String(i === sel));
    });
    topGrid.replaceChildren();
    topSources = [];
    topMapSources = [];
    topCanvases = [];
    const k = model.get("k");
    const n = cells.length;
    const hasTop = topImages.shape.length === 4 && topImages.shape[0] === n * k && k > 0;
    if (sel < 0 || sel >= n) {
      detailTitle.textContent = hasTop ? "click a unit to see the real examples it responds to most" : "";
      detail.style.display = hasTop ? "" : "none";
      root.dataset.topShown = "0";
      return;
    }
    detail.style.display = "";
    const title = model.get("titles")[sel] ?? `unit ${sel}`;
    if (!hasTop) {
      detailTitle.textContent = `${title}: no dataset given, so no real examples`;
      root.dataset.topShown = "0";
      return;
    }
    detailTitle.textContent = `${title}: top ${k} real examples (activation map over each)`;
    const [, hi, wi, ci] = topImages.shape;
    const hasMaps = topMaps.shape.length === 3 && topMaps.shape[0] === n * k;
    opacityLabel.style.display = hasMaps ? "" : "none";
    let scale: ColorScale | null = null;
    if (hasMaps) {
      const per = topMaps.shape[1] * topMaps.shape[2];
      scale = unitScale(topMaps.data.subarray(sel * k * per, (sel + 1) * k * per));
    }
    const indices = model.get("top_indices");
    for (let j = 0; j < k; j++) {
      const idx = sel * k + j;
      topSources.push(offscreen(imageRGBA(slice0(topImages, idx).data, hi, wi, ci), wi, hi));
      if (hasMaps && scale) {
        const [, hm, wm] = topMaps.shape;
        const rgba = colorize(slice0(topMaps, idx).data, hm, wm, scale);
        topMapSources.push(offscreen(rgba, wm, hm));
      }
      const box = h("div", "nbx-top");
      box.dataset.index = String(j);
      box.dataset.example = String(indices[idx] ?? -1);
      const canvas = h("canvas", "nbx-canvas nbx-top-canvas");
      const value = h("span", "nbx-top-value", `#${indices[idx] ?? "?"} · ${formatValue(topValues.data[idx])}`);
      box.append(canvas, value);
      topGrid.appendChild(box);
      topCanvases.push(canvas);
    }
    for (let j = 0; j < topCanvases.length; j++) drawTop(j);
    root.dataset.topShown = String(k);
  }

  function build() {
    images = decodeTensor(model.get("images"));
    curves = decodeTensor(model.get("curves"));
    topImages = decodeTensor(model.get("top_images"));
    topMaps = decodeTensor(model.get("top_maps"));
    topValues = decodeTensor(model.get("top_values"));
    const n = images.shape.length === 4 ? images.shape[0] : 0;
    const titles = model.get("titles");
    const pcts = model.get("percentiles");
    const finals = model.get("finals");
    imageCanvases = [];
    gridCanvases = [];
    sparkCanvases = [];
    cells = [];
    grid.replaceChildren();
    const cols = model.get("columns");
    grid.style.display = cols > 0 ? "grid" : "flex";
    grid.style.gridTemplateColumns = cols > 0 ? `repeat(${cols}, max-content)` : "";
    for (let i = 0; i < n; i++) {
      const [, hi, wi, ci] = images.shape;
      imageCanvases.push(offscreen(imageRGBA(slice0(images, i).data, hi, wi, ci), wi, hi));
      const cell = h("div", "nbx-cell");
      cell.dataset.index = String(i);
      cell.dataset.unit = String(model.get("units")[i] ?? i);
      cell.setAttribute("role", "button");
      cell.tabIndex = 0;
      const title = h("span", "nbx-title", titles[i] ?? String(i));
      title.title = titles[i] ?? String(i);
      title.style.maxWidth = `${model.get("cell_size")}px`;
      const canvas = h("canvas", "nbx-canvas");
      const spark = h("canvas", "nbx-sparkline");
      spark.title = `objective over the optimisation (final ${formatValue(finals[i] ?? NaN)})`;
      const pct = h("span", "nbx-percentile", percentileLabel(pcts[i]));
      pct.dataset.strong = String((pcts[i] ?? 0) >= 99);
      pct.title = "share of the dataset's examples that activate this unit less than the optimised image";
      cell.append(title, canvas, spark, pct);
      const select = () => {
        model.set("selected", i);
        showSelected(); // switch at once from precomputed state; the kernel just learns the choice
        model.save_changes();
      };
      cell.addEventListener("click", select);
      cell.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          select();
        }
      });
      grid.appendChild(cell);
      cells.push(cell);
      gridCanvases.push(canvas);
      sparkCanvases.push(spark);
    }
    syncControls();
    info.textContent = `${model.get("objective") || model.get("layer")} · ${n} unit${n === 1 ? "" : "s"}`;
    root.dataset.n = String(n);
    root.dataset.layer = model.get("layer");
    root.dataset.runs = String(model.get("runs"));
    drawAll();
    showSelected();
    root.dataset.ready = "true";
  }

  function syncControls() {
    const steps = model.get("steps");
    const choices = STEP_CHOICES.includes(steps) ? STEP_CHOICES : [...STEP_CHOICES, steps].sort((a, b) => a - b);
    stepsSel.replaceChildren();
    for (const s of choices) {
      const o = h("option", "", String(s));
      o.value = String(s);
      stepsSel.appendChild(o);
    }
    stepsSel.value = String(steps);
    reg.value = String(model.get("regularization"));
    regValue.textContent = Number(model.get("regularization")).toFixed(2);
    paramSel.value = model.get("param");
    root.dataset.steps = String(steps);
    root.dataset.regularization = String(model.get("regularization"));
    root.dataset.param = model.get("param");
  }

  // ---- events ----
  stepsSel.addEventListener("change", requestRerun);
  paramSel.addEventListener("change", requestRerun);
  reg.addEventListener("input", () => (regValue.textContent = Number(reg.value).toFixed(2)));
  reg.addEventListener("change", requestRerun);
  runBtn.addEventListener("click", requestRerun);
  opacity.addEventListener("input", () => {
    for (let j = 0; j < topCanvases.length; j++) drawTop(j);
  });

  const rebuild = () => build();
  const onCompleted = () => {
    queue.completed(model.get("completed_request"));
    root.dataset.completed = String(model.get("completed_request"));
    setBusy();
  };
  const onError = () => {
    error.textContent = model.get("error");
    root.dataset.error = model.get("error") ? "true" : "false";
  };
  const onTheme = () => (root.dataset.theme = model.get("theme"));
  const events: Array<[string, () => void]> = [
    ["change:images", rebuild], ["change:curves", rebuild], ["change:top_images", rebuild],
    ["change:top_maps", rebuild], ["change:titles", rebuild], ["change:percentiles", rebuild],
    ["change:cell_size", rebuild], ["change:columns", rebuild],
    ["change:runs", () => (root.dataset.runs = String(model.get("runs")))],
    ["change:selected", showSelected], ["change:busy", setBusy], ["change:completed_request", onCompleted],
    ["change:error", onError], ["change:steps", syncControls], ["change:param", syncControls],
    ["change:regularization", syncControls], ["change:theme", onTheme],
  ];
  build();
  onError();
  root.dataset.completed = String(model.get("completed_request"));
  setBusy();
  return connect(el, root, model, events, drawAll);
}

export default { render };
export type { AnyModel };
