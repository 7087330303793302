// FeatureGallery view: a grid of units (optimised image, objective sparkline, percentile); clicking a
// unit shows its top real examples with the unit's activation map over them — switched in the browser
// from precomputed state. The controls (steps, regularisation, parameterisation) ask the kernel to
// re-run the optimisation: one request in flight at a time, and only the latest pending one is sent
// (js/lib/requests.ts). The activation maps over the top examples are drawn opaque by default, so their colours
// are exactly the colour bar's, with the example as a thin outline on top (the opacity slider blends it back in).
import type { AnyModel, RenderProps } from "@anywidget/types";
import { formatNumber, formatTick } from "./lib/nice_ticks";
import { type ColorScale } from "./lib/colormap";
import { activate, applyScale, connect, errorHandler, h, injectStyle, offscreen, onBackground, onThemeChange, rangeControl, scaleOf, sizeCanvas, themeHandler, viewRoot } from "./lib/dom";
import { outlineRGBA } from "./lib/outline";
import { colorize, effectiveScale, imageRGBA } from "./lib/raster";
import { keepNavigationKeys } from "./lib/keys";
import { kernelRequests } from "./lib/requests";
import { niceScale, scaleBar } from "./lib/scalebar";
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
  scale: number;
}

const STEP_CHOICES = [16, 32, 64, 128, 256, 512, 1024];

// Every label at the view's font size (≥ 13 px, times `scale`), in --nbx-fg or --nbx-muted (≥ 4.5:1 contrast).
const CSS = `
.nbx-feature-gallery .nbx-title { font-size: 1em; color: var(--nbx-fg); }
.nbx-feature-gallery .nbx-sparkline { display: block; background: transparent; }
.nbx-feature-gallery .nbx-cell:focus-visible { outline: 3px solid var(--nbx-accent); outline-offset: 2px; }
.nbx-feature-gallery .nbx-cell .nbx-canvas { border: 1px solid var(--nbx-border); }
.nbx-feature-gallery .nbx-objective, .nbx-feature-gallery .nbx-percentile { color: var(--nbx-fg);
  overflow-wrap: anywhere; line-height: 1.25; text-align: center; }
.nbx-feature-gallery .nbx-percentile[data-strong="true"] { font-weight: 600; }
.nbx-feature-gallery .nbx-legend { color: var(--nbx-muted); margin: 2px 0 6px; overflow-wrap: anywhere; }
.nbx-feature-gallery .nbx-info { overflow-wrap: anywhere; }
.nbx-feature-gallery .nbx-detail { margin-top: 8px; border-top: 1px solid var(--nbx-border); padding-top: 6px; }
.nbx-feature-gallery .nbx-detail-title { color: var(--nbx-fg); margin-bottom: 4px; overflow-wrap: anywhere; }
.nbx-feature-gallery .nbx-detail-controls { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 6px 16px;
  margin-bottom: 6px; }
.nbx-feature-gallery .nbx-top-grid { display: flex; flex-wrap: wrap; gap: 8px; }
.nbx-feature-gallery .nbx-top { display: flex; flex-direction: column; align-items: flex-start; gap: 2px; }
.nbx-feature-gallery .nbx-top-canvas { border: 1px solid var(--nbx-fg); }
.nbx-feature-gallery .nbx-top-value { color: var(--nbx-fg); overflow-wrap: anywhere; line-height: 1.25; }
.nbx-feature-gallery .nbx-grid.nbx-stale { opacity: 0.55; }
.nbx-feature-gallery select, .nbx-feature-gallery input, .nbx-feature-gallery button { font: inherit; }
.nbx-feature-gallery select:focus-visible, .nbx-feature-gallery input:focus-visible,
.nbx-feature-gallery button:focus-visible { outline: 2px solid var(--nbx-accent); outline-offset: 1px; }
.nbx-feature-gallery .nbx-control { color: var(--nbx-fg); flex-wrap: wrap; max-width: 100%; }
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

/**
 * Pure: the percentile line under a unit ("percentile 100", "percentile 42.5"): the share (in %) of the real
 * examples that activate the unit less than its optimised image.
 */
export function percentileLabel(p: number | null | undefined): string {
  if (p === null || p === undefined || !Number.isFinite(p)) return "percentile: no real examples";
  return `percentile ${p >= 99.95 ? "100" : String(Number(p.toFixed(1)))}`;
}

/** Pure: the line under a unit's sparkline ("final objective 3.21"). */
export function objectiveLabel(v: number | null | undefined): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "final objective: none" : `final objective ${formatTick(v)}`;
}

/** Pure: the label of one top example ("sample #230 · activation 0.506"). */
export function topExampleLabel(index: number | undefined, value: number): string {
  const which = index === undefined || index < 0 ? "sample ?" : `sample #${index}`;
  return `${which} · activation ${Number.isFinite(value) ? formatTick(value) : "none"}`;
}

type RerunRequest = { steps: number; regularization: number; param: string };

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
  const legend = h("div", "nbx-legend");
  const grid = h("div", "nbx-grid");
  grid.setAttribute("role", "group");
  grid.setAttribute("aria-label", "units: press Enter or Space on one to show its top real examples");
  const detail = h("div", "nbx-detail");
  const detailTitle = h("div", "nbx-detail-title");
  const detailControls = h("div", "nbx-detail-controls");
  // opaque by default: the map's colours are the colour bar's
  const { label: opacityLabel, input: opacity } = rangeControl("nbx-opacity",
    "map opacity (the example shows as an outline)", { min: 0, max: 1, step: 0.05, value: 1 });
  const barSlot = h("div", "nbx-map-bar");
  detailControls.append(barSlot, opacityLabel);
  const topGrid = h("div", "nbx-top-grid");
  detail.append(detailTitle, detailControls, topGrid);
  root.append(controls, info, legend, grid, detail);

  // ---- requests to the kernel (latest wins, matched by id: js/lib/requests.ts) ----
  const { queue, cleanup: stopRequests } = kernelRequests<RerunRequest>(model, root, "rerun");

  function setBusy() {
    const isBusy = queue.busy || model.get("busy");
    root.dataset.busy = String(isBusy);
    grid.classList.toggle("nbx-stale", isBusy);
  }

  function requestRerun() {
    queue.request({ steps: Number(stepsSel.value), regularization: Number(reg.value), param: paramSel.value });
    root.dataset.requested = String(queue.lastId);
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
  let topOutlines: Array<HTMLCanvasElement | null> = []; // the example's outline at its canvas's pixel size
  let topPixels: Array<{ data: ArrayLike<number>; h: number; w: number; c: number }> = [];

  /** Width of a unit's image in CSS px: `cell_size` times the presentation scale. */
  const cellPx = () => Math.round(model.get("cell_size") * scaleOf(root));

  function accent(): string {
    return getComputedStyle(root).getPropertyValue("--nbx-accent").trim() || "#1976d2";
  }

  function drawCell(i: number) {
    const size = cellPx();
    const [, hi, wi] = images.shape;
    const hgt = Math.max(1, Math.round((size * hi) / wi));
    const ctx = sizeCanvas(gridCanvases[i], size, hgt);
    if (ctx && imageCanvases[i]) {
      ctx.clearRect(0, 0, gridCanvases[i].width, gridCanvases[i].height);
      ctx.drawImage(imageCanvases[i], 0, 0, gridCanvases[i].width, gridCanvases[i].height);
    }
    const sh = Math.round(24 * scaleOf(root));
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
    const size = Math.max(48, Math.round(cellPx() * 0.75));
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
      // the example as a thin outline on top, so that at full opacity it still shows
      let line = topOutlines[j];
      if (!line || line.width !== W || line.height !== H) {
        const px = topPixels[j];
        line = px ? offscreen(outlineRGBA(px.data, px.h, px.w, px.c, H, W), W, H) : null;
        topOutlines[j] = line;
      }
      if (line) ctx.drawImage(line, 0, 0);
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
      c.setAttribute("aria-pressed", String(i === sel));
    });
    topGrid.replaceChildren();
    barSlot.replaceChildren();
    topSources = [];
    topMapSources = [];
    topCanvases = [];
    topOutlines = [];
    topPixels = [];
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
    const [, hi, wi, ci] = topImages.shape;
    const hasMaps = topMaps.shape.length === 3 && topMaps.shape[0] === n * k;
    detailTitle.textContent = `${title}: the ${k} real examples that activate it most` +
      (hasMaps ? ", coloured by its activation at each position" : "");
    opacityLabel.style.display = hasMaps ? "" : "none";
    let scale: ColorScale | null = null;
    if (hasMaps) {
      const per = topMaps.shape[1] * topMaps.shape[2];
      const raw = unitScale(topMaps.data.subarray(sel * k * per, (sel + 1) * k * per));
      const nice = niceScale(raw); // ends on nice values; 0 a tick (sequential maps start at 0)
      scale = onBackground(root, nice.scale); // a dark theme starts viridis at its blue: 0 ≠ the page

      barSlot.appendChild(scaleBar(scale, nice.step, `activation of ${title}`));
    }
    const indices = model.get("top_indices");
    for (let j = 0; j < k; j++) {
      const idx = sel * k + j;
      const pixels = slice0(topImages, idx).data;
      topPixels.push({ data: pixels, h: hi, w: wi, c: ci });
      topOutlines.push(null);
      topSources.push(offscreen(imageRGBA(pixels, hi, wi, ci), wi, hi));
      if (hasMaps && scale) {
        const [, hm, wm] = topMaps.shape;
        const rgba = colorize(slice0(topMaps, idx).data, hm, wm, scale);
        topMapSources.push(offscreen(rgba, wm, hm));
      }
      const box = h("div", "nbx-top");
      box.dataset.index = String(j);
      box.dataset.example = String(indices[idx] ?? -1);
      const canvas = h("canvas", "nbx-canvas nbx-top-canvas");
      const label = topExampleLabel(indices[idx], topValues.data[idx]);
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", `${label}${hasMaps ? ", with the activation map over it" : ""}`);
      const value = h("span", "nbx-top-value", label);
      value.style.maxWidth = `${Math.max(48, Math.round(cellPx() * 0.75)) + 40}px`;
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
    // a fixed column count never overflows the view: at most as many columns as fit its width
    const fit = root.clientWidth > 0 ? Math.max(1, Math.floor((root.clientWidth - 12) / (cellPx() + 16))) : Infinity;
    const cols = Math.min(model.get("columns"), fit);
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
      const name = titles[i] ?? String(i);
      const title = h("span", "nbx-title", name);
      const width = `${cellPx()}px`;
      title.style.maxWidth = width;
      const canvas = h("canvas", "nbx-canvas");
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", `optimised image of ${name}`);
      const spark = h("canvas", "nbx-sparkline");
      spark.setAttribute("role", "img");
      const steps = model.get("steps");
      spark.setAttribute("aria-label", `objective over the ${steps} optimisation steps, ending at ${formatNumber(finals[i] ?? NaN)}`);
      spark.title = `objective over the optimisation (final ${formatNumber(finals[i] ?? NaN)})`;
      const obj = h("span", "nbx-objective", objectiveLabel(finals[i]));
      obj.style.maxWidth = width;
      const pct = h("span", "nbx-percentile", percentileLabel(pcts[i]));
      pct.style.maxWidth = width;
      pct.dataset.strong = String((pcts[i] ?? 0) >= 99);
      pct.title = "share of the real examples that activate this unit less than the optimised image";
      cell.setAttribute("aria-label", `${name}: ${objectiveLabel(finals[i])}, ${percentileLabel(pcts[i])}`);
      cell.append(title, canvas, spark, obj, pct);
      const select = () => {
        model.set("selected", i);
        showSelected(); // switch at once from precomputed state; the kernel just learns the choice
        model.save_changes();
      };
      activate(cell, select);
      grid.appendChild(cell);
      cells.push(cell);
      gridCanvases.push(canvas);
      sparkCanvases.push(spark);
    }
    syncControls();
    const objective = model.get("objective");
    info.textContent = `layer ${model.get("layer")}` + (objective ? ` · objective: ${objective}` : "") +
      ` · ${n} unit${n === 1 ? "" : "s"}`;
    const anyPct = pcts.some((p) => p !== null && p !== undefined && Number.isFinite(p));
    legend.textContent = "Under each optimised image: the objective over the optimisation steps (rising line) and " +
      "its final value" + (anyPct ? "; percentile = the share (%) of the real examples that activate the unit less " +
      "than the optimised image" : "") + ".";
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
    // the queue (kernelRequests) has already taken the completion and sent any pending request
    root.dataset.completed = String(model.get("completed_request"));
    root.dataset.requested = String(queue.lastId);
    setBusy();
  };
  const onError = errorHandler(root, error, model);
  const onTheme = themeHandler(root, model);
  const events: Array<[string, () => void]> = [
    ["change:images", rebuild], ["change:curves", rebuild], ["change:top_images", rebuild],
    ["change:top_maps", rebuild], ["change:titles", rebuild], ["change:percentiles", rebuild],
    ["change:cell_size", rebuild], ["change:columns", rebuild],
    ["change:runs", () => (root.dataset.runs = String(model.get("runs")))],
    ["change:selected", showSelected], ["change:busy", setBusy], ["change:completed_request", onCompleted],
    ["change:error", onError], ["change:steps", syncControls], ["change:param", syncControls],
    ["change:regularization", syncControls], ["change:theme", onTheme],
  ];
  const stopScale = applyScale(root, model, build);
  const stopKeys = keepNavigationKeys(root); // arrows move the sliders inside JupyterLab too
  build();
  onError();
  root.dataset.completed = String(model.get("completed_request"));
  root.dataset.requested = String(queue.lastId);
  setBusy();
  return connect(el, root, model, events, drawAll, stopRequests, stopScale, stopKeys, onThemeChange(root, showSelected));
}

export default { render };
export type { AnyModel };
