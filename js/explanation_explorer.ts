// ExplanationExplorer view: rows are samples, columns the input and one map per attribution method.
// Everything the kernel has computed (per sample and target class) sits in `maps`/`entries`, so hover,
// opacity and switching to an already-computed class are drawn here without a kernel round trip. A class
// or sample not computed yet is requested through the shared RequestWidget protocol (js/lib/requests.ts: one
// request in flight, only the latest pending one kept); the root shows data-busy meanwhile.
// Layout: each sample is a row that wraps (the info block, then one fixed-width cell per column, each with its
// own title, map, colour bar and labelled scores), so every row wraps alike and the view fits an 800 px column.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { formatNumber, signed } from "./lib/nice_ticks";
import { type ColorScale } from "./lib/colormap";
import { applyScale, batched, connect, errorHandler, h, injectStyle, offscreen, onBackground, onThemeChange, rangeControl, sizeToWidth, themeHandler, viewRoot } from "./lib/dom";
import { outlineRGBA } from "./lib/outline";
import { keepNavigationKeys } from "./lib/keys";
import { colorize, imageRGBA, pixelAt } from "./lib/raster";
import { kernelRequests } from "./lib/requests";
import { niceScale, scaleBar } from "./lib/scalebar";
import { decodeTensor, slice0, type Tensor, type WireTensor } from "./lib/tensor";

interface MethodInfo {
  key: string;
  title: string;
  kind: "diverging" | "sequential";
}

interface EntryMeta {
  vmax: number[];
  vmin: number[];
  conservation: Array<number | null>;
  continuity: Array<number | null>;
}

interface State {
  images: WireTensor;
  maps: WireTensor;
  entries: Array<[number, number]>;
  entry_meta: EntryMeta[];
  methods: MethodInfo[];
  targets: number[];
  n_shown: number;
  n_pool: number;
  add_step: number;
  predicted: number[];
  probability: number[];
  classes: string[];
  opacity: number;
  cell_size: number;
  source_shape: [number, number];
  continuity_shifts: number[];
  scale: number;
  busy: boolean;
  completed_request: number;
  error: string;
  theme: string;
}

const CSS = `
.nbx-explorer-rows { display: flex; flex-direction: column; gap: 0.9em; }
.nbx-explorer-row { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 0.5em 0.7em; }
.nbx-explorer-head { color: var(--nbx-fg); font-weight: 600; text-align: center; line-height: 1.2;
  white-space: normal; overflow-wrap: anywhere; max-width: 100%; min-height: 2.4em; display: flex;
  align-items: flex-end; justify-content: center; }
.nbx-rowinfo { display: flex; flex-direction: column; gap: 0.3em; width: 10em; max-width: 100%; }
.nbx-rowinfo .nbx-sample { font-weight: 600; }
.nbx-rowinfo .nbx-control { color: var(--nbx-fg); flex-wrap: wrap; }
.nbx-explanation-explorer select, .nbx-explanation-explorer input { font: inherit; }
.nbx-rowinfo select { max-width: 100%; color: var(--nbx-fg); background: var(--nbx-bg2); border: 1px solid var(--nbx-border); }
.nbx-explanation-explorer select:focus-visible, .nbx-explanation-explorer input:focus-visible,
.nbx-explanation-explorer button:focus-visible { outline: 3px solid var(--nbx-accent); outline-offset: 2px; }
.nbx-explanation-explorer .nbx-control { color: var(--nbx-fg); }
.nbx-mapcell { position: relative; display: flex; flex-direction: column; align-items: stretch; gap: 0.2em;
  width: max(calc(var(--nbx-cell) * var(--nbx-scale)), 9.5em); max-width: 100%; min-width: 0; }
.nbx-mapcell .nbx-canvas { width: 100%; height: auto; }
.nbx-mapcell.nbx-stale canvas { opacity: 0.35; }
.nbx-mapcell .nbx-scalebar-body { min-width: 0; }
.nbx-value, .nbx-scores { font-family: var(--jp-code-font-family, monospace); min-height: 1.2em;
  color: var(--nbx-fg); text-align: center; overflow-wrap: anywhere; }
.nbx-scores { display: flex; flex-direction: column; }
.nbx-explorer-legend { margin-top: 0.7em; color: var(--nbx-fg); display: flex; flex-direction: column; gap: 0.2em; }
.nbx-explanation-explorer .nbx-readout { overflow-wrap: anywhere; }
`;

/** Index of the cache entry for (sample, target), or -1. */
export function findEntry(entries: Array<[number, number]>, sample: number, target: number): number {
  for (let i = 0; i < entries.length; i++) if (entries[i][0] === sample && entries[i][1] === target) return i;
  return -1;
}

/** The scale a method's map is drawn with (rounded to nice limits) and its tick step. */
export function cellScale(meta: EntryMeta | undefined, j: number, kind: "diverging" | "sequential"): { scale: ColorScale; step: number } {
  if (kind === "diverging") {
    const m = meta?.vmax[j] ?? 1;
    return niceScale({ kind, vmin: -m, vmax: m });
  }
  const lo = Math.min(0, meta?.vmin[j] ?? 0);
  const hi = meta?.vmax[j] ?? 1;
  return niceScale({ kind, vmin: lo, vmax: hi > lo ? hi : lo + 1 });
}

/** The labelled scores under a map: conservation where the method distributes the score, continuity if computed. */
export function scoreLines(meta: EntryMeta | undefined, j: number, withContinuity: boolean): string[] {
  const lines: string[] = [];
  const cons = meta?.conservation[j];
  if (cons !== null && cons !== undefined) lines.push(`conservation ${fmtScore(cons)}`);
  if (withContinuity) lines.push(`continuity ${fmtScore(meta?.continuity[j])}`);
  return lines;
}

/** The legend under the table: what the colours and each score shown mean, in words. */
export function legendLines(anyConservation: boolean, shifts: number[]): string[] {
  const lines = [
    "Colours: each map has its own scale, drawn under it. Signed maps: blue negative, white zero, red positive "
      + "(RdBu); unsigned maps: dark purple (low; blue in a dark theme, so a zero is not the page's colour) to yellow (high) "
      + "(viridis). Both read with colour-vision deficiency.",
  ];
  if (anyConservation) {
    lines.push("conservation = sum of the map ÷ the explained class score (1: the map distributes the whole score).");
  }
  if (shifts.length) {
    const px = shifts.map((v) => signed(String(v))).join(", ");
    lines.push(`continuity = largest change of the map per unit change of the input when the input is shifted by `
      + `${px} pixels (lower: a smoother, more stable explanation).`);
  }
  return lines;
}

/** Text (through text nodes only) that may break after each "_" (composite names such as epsilon_gamma_box). */
function breakable(text: string): DocumentFragment {
  const frag = document.createDocumentFragment();
  text.split(/(?<=_)/).forEach((part, k) => {
    if (k > 0) frag.appendChild(document.createElement("wbr"));
    frag.appendChild(document.createTextNode(part));
  });
  return frag;
}

function fmtScore(v: number | null | undefined): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "n/a" : signed(formatNumber(v));
}

function render({ model, el }: RenderProps<State>) {
  const root = viewRoot("explanation-explorer", model.get("theme"));
  injectStyle(el, CSS);
  el.appendChild(root);

  const controls = h("div", "nbx-controls");
  const { label: opacityLabel, input: opacity } = rangeControl("nbx-opacity", "map opacity over the input",
    { min: 0, max: 1, step: 0.01 });
  const more = h("button", "nbx-button nbx-more nbx-needs-kernel", "more samples");
  const busy = h("span", "nbx-busy", "computing…");
  busy.setAttribute("aria-live", "polite");
  controls.append(opacityLabel, more, busy);
  const stopRangeKeys = keepNavigationKeys(root);
  const errorBox = h("div", "nbx-error");
  errorBox.setAttribute("role", "alert");
  const table = h("div", "nbx-explorer-rows");
  const legend = h("div", "nbx-explorer-legend");
  const readout = h("div", "nbx-readout");
  readout.setAttribute("aria-live", "polite");
  root.append(controls, errorBox, table, legend, readout);

  // decoded state
  let maps: Tensor = decodeTensor(null);
  let images: Tensor = decodeTensor(null);
  let shown: number[] = []; // target displayed per row (may be ahead of the kernel while it computes)
  // per row: canvases of the columns (0 = input), their markers, value/score labels and colour-bar slots
  let rowCanvases: HTMLCanvasElement[][] = [];
  let rowMarkers: HTMLDivElement[][] = [];
  let rowValues: HTMLSpanElement[][] = [];
  let rowScores: HTMLDivElement[][] = [];
  let rowBars: HTMLDivElement[][] = [];
  let rowCells: HTMLDivElement[][] = [];
  let rowEls: HTMLDivElement[] = [];
  let imageCanvases: HTMLCanvasElement[] = [];
  let outlineCanvases: HTMLCanvasElement[] = [];
  // the entry whose colour bar and scores each cell shows (rebuilt only when it changes)
  let barEntry: number[][] = [];

  /** The input's outline at a canvas's pixel size (cached per row), drawn on top of the maps. */
  function outlineCanvas(i: number, W: number, H: number): HTMLCanvasElement {
    const cached = outlineCanvases[i];
    if (cached && cached.width === W && cached.height === H) return cached;
    const [, hi, wi, ci] = images.shape;
    const c = offscreen(outlineRGBA(slice0(images, i).data, hi, wi, ci, H, W), W, H);
    outlineCanvases[i] = c;
    return c;
  }
  const mapCanvasCache = new Map<string, HTMLCanvasElement>();
  // the last entry drawn per row (kept, dimmed, while a new one is being computed)
  let drawnEntry: number[] = [];

  const label = (k: number) => model.get("classes")[k] ?? String(k);

  function onIdle() {
    if (model.get("busy")) return;
    // the kernel's state is now authoritative
    shown = model.get("targets").slice();
    syncSelects();
    drawAll();
    updateExplained();
  }
  const { queue, cleanup: stopRequests } = kernelRequests<{ targets: number[]; n_shown: number }>(
    model, root, "request", onIdle);

  function mapShape(): [number, number] {
    return maps.shape.length === 4 ? [maps.shape[2], maps.shape[3]] : [0, 0];
  }

  const methodKind = (j: number) => model.get("methods")[j].kind;

  function mapCanvas(entry: number, j: number): HTMLCanvasElement {
    const key = `${entry}/${j}`;
    let c = mapCanvasCache.get(key);
    if (!c) {
      const [hm, wm] = mapShape();
      const plane = slice0(slice0(maps, entry), j).data;
      c = offscreen(colorize(plane, hm, wm, onBackground(root, cellScale(model.get("entry_meta")[entry], j, methodKind(j)).scale)), wm, hm);
      mapCanvasCache.set(key, c);
    }
    return c;
  }

  /** The colour bar, scores and accessible name of map cell (i, col) for `entry`. */
  function labelCell(i: number, col: number, entry: number) {
    if (barEntry[i][col] === entry) return;
    barEntry[i][col] = entry;
    const j = col - 1;
    const method = model.get("methods")[j];
    const meta = model.get("entry_meta")[entry];
    const { scale, step } = cellScale(meta, j, method.kind);
    rowBars[i][col].replaceChildren(scaleBar(onBackground(root, scale), step, "", 3, `${method.title} (sample ${i})`));
    const lines = scoreLines(meta, j, model.get("continuity_shifts").length > 0);
    rowScores[i][col].replaceChildren(...lines.map((t) => h("span", "nbx-score", t)));
    const cell = rowCells[i][col];
    cell.dataset.conservation = fmtScore(meta?.conservation[j]);
    cell.dataset.continuity = fmtScore(meta?.continuity[j]);
    cell.dataset.vmin = String(scale.vmin);
    cell.dataset.vmax = String(scale.vmax);
  }

  function drawRow(i: number) {
    const entries = model.get("entries");
    const methods = model.get("methods");
    const target = shown[i];
    let entry = findEntry(entries, i, target);
    const cached = entry >= 0;
    if (!cached) entry = drawnEntry[i] ?? -1;
    else drawnEntry[i] = entry;
    const alpha = model.get("opacity");
    const [sh, sw] = model.get("source_shape");
    for (let col = 0; col <= methods.length; col++) {
      const canvas = rowCanvases[i]?.[col];
      if (!canvas) continue;
      const ctx = sizeToWidth(canvas, sh, sw, model.get("cell_size"));
      if (!ctx) continue;
      const W = canvas.width;
      const H = canvas.height;
      ctx.clearRect(0, 0, W, H);
      ctx.globalAlpha = 1;
      if (col === 0 || alpha < 1) {
        if (imageCanvases[i]) ctx.drawImage(imageCanvases[i], 0, 0, W, H);
      }
      if (col > 0 && entry >= 0 && entry < entries.length) {
        ctx.globalAlpha = alpha;
        ctx.drawImage(mapCanvas(entry, col - 1), 0, 0, W, H);
        ctx.globalAlpha = 1;
        if (imageCanvases[i]) ctx.drawImage(outlineCanvas(i, W, H), 0, 0);
        labelCell(i, col, entry);
        canvas.setAttribute("aria-label", `${methods[col - 1].title} map of sample ${i}, explaining class `
          + `${label(entries[entry][1])}`);
      }
      rowCells[i][col].classList.toggle("nbx-stale", col > 0 && !cached);
    }
    rowEls[i].dataset.target = String(target);
    rowEls[i].dataset.cached = String(cached);
  }

  /** The theme changed: sequential maps and their bars start where viridis stands out from the new background. */
  function recolour() {
    mapCanvasCache.clear();
    barEntry = barEntry.map((row) => row.map(() => -1));
    drawAll();
  }

  function drawAll() {
    for (let i = 0; i < rowEls.length; i++) drawRow(i);
    root.dataset.opacity = String(model.get("opacity"));
    root.dataset.outline = String(imageCanvases.length > 0);
  }

  function clearHover() {
    rowMarkers.forEach((ms) => ms.forEach((m) => (m.style.display = "none")));
    rowValues.forEach((vs) => vs.forEach((v) => (v.textContent = "")));
    delete root.dataset.hover;
  }

  function onMove(i: number, col: number, ev: PointerEvent) {
    const canvas = rowCanvases[i][col];
    const rect = canvas.getBoundingClientRect();
    const [hm, wm] = mapShape();
    const px = pixelAt(ev.clientX - rect.left, ev.clientY - rect.top, rect.width, rect.height, hm, wm);
    if (!px) {
      clearHover();
      return;
    }
    hover(i, px[0], px[1]);
  }

  /** Mark pixel (r, c) of the map grid in every column of row i and read every method's value there. */
  function hover(i: number, r: number, c: number) {
    clearHover();
    const [hm, wm] = mapShape();
    const entries = model.get("entries");
    const methods = model.get("methods");
    const found = findEntry(entries, i, shown[i]);
    const entry = found >= 0 ? found : (drawnEntry[i] ?? -1);
    const [sh, sw] = model.get("source_shape");
    const sr = Math.min(sh - 1, Math.floor((r * sh) / hm));
    const sc = Math.min(sw - 1, Math.floor((c * sw) / wm));
    const parts: string[] = [`sample ${i} · row ${sr}, col ${sc}`];
    for (let col = 0; col <= methods.length; col++) {
      const canvas = rowCanvases[i][col];
      const m = rowMarkers[i][col];
      const cw = canvas.clientWidth / wm;
      const chh = canvas.clientHeight / hm;
      m.style.display = "block";
      m.style.width = `${Math.max(2, cw)}px`;
      m.style.height = `${Math.max(2, chh)}px`;
      m.style.left = `${canvas.offsetLeft + c * cw}px`;
      m.style.top = `${canvas.offsetTop + r * chh}px`;
      if (col === 0) {
        rowValues[i][0].textContent = `row ${sr}, col ${sc}`;
        continue;
      }
      if (entry < 0) continue;
      const v = maps.data[((entry * methods.length + (col - 1)) * hm + r) * wm + c];
      rowValues[i][col].textContent = `value ${signed(formatNumber(v))}`;
      rowCells[i][col].dataset.value = String(v);
      parts.push(`${methods[col - 1].title} ${signed(formatNumber(v))}`);
    }
    readout.textContent = parts.join(" · ");
    root.dataset.hover = `${i},${sr},${sc}`;
  }

  function requestState(targets: number[], n: number) {
    queue.request({ targets: targets.slice(), n_shown: n });
  }

  function chooseTarget(i: number, t: number) {
    shown[i] = t;
    const cachedAll = shown.every((tt, r) => findEntry(model.get("entries"), r, tt) >= 0);
    drawRow(i);
    updateExplained();
    if (cachedAll && !queue.busy) {
      // already computed: drawn above; the kernel only learns the new state (no computation)
      model.set("targets", shown.slice());
      model.save_changes();
    } else {
      requestState(shown, model.get("n_shown"));
    }
  }

  function syncSelects() {
    rowEls.forEach((row, i) => {
      const sel = row.querySelector("select");
      if (sel) sel.value = String(shown[i]);
    });
  }

  function updateLegend() {
    const anyCons = model.get("entry_meta").some((m) => m.conservation.some((v) => v !== null && v !== undefined));
    legend.replaceChildren(...legendLines(anyCons, model.get("continuity_shifts")).map((t) => h("span", "", t)));
  }

  function build() {
    maps = decodeTensor(model.get("maps"));
    images = decodeTensor(model.get("images"));
    mapCanvasCache.clear();
    const methods = model.get("methods");
    const n = model.get("n_shown");
    const classes = model.get("classes");
    const predicted = model.get("predicted");
    const prob = model.get("probability");
    const targets = model.get("targets");
    shown = Array.from({ length: n }, (_, i) => (shown[i] !== undefined && queue.busy ? shown[i] : targets[i]));
    drawnEntry = drawnEntry.slice(0, n);
    imageCanvases = [];
    outlineCanvases = [];
    if (images.shape.length === 4) {
      const [ni, hi, wi, ci] = images.shape;
      for (let i = 0; i < ni; i++) imageCanvases.push(offscreen(imageRGBA(slice0(images, i).data, hi, wi, ci), wi, hi));
    }
    root.style.setProperty("--nbx-cell", `${model.get("cell_size")}px`);
    const [sh, sw] = model.get("source_shape");
    table.replaceChildren();
    rowCanvases = [];
    rowMarkers = [];
    rowValues = [];
    rowScores = [];
    rowBars = [];
    rowCells = [];
    rowEls = [];
    barEntry = [];
    for (let i = 0; i < n; i++) {
      const row = h("div", "nbx-explorer-row");
      row.dataset.row = String(i);
      const info = h("div", "nbx-rowinfo nbx-row");
      info.dataset.row = String(i);
      info.appendChild(h("span", "nbx-sample", `sample ${i}`));
      const pct = prob[i] !== undefined ? ` (probability ${(100 * prob[i]).toFixed(0)}%)` : "";
      info.appendChild(h("span", "nbx-predicted", `predicted: ${label(predicted[i])}${pct}`));
      const selLabel = h("label", "nbx-control", "explain class");
      const sel = h("select", "nbx-target");
      classes.forEach((name, k) => {
        const opt = h("option", "", name);
        opt.value = String(k);
        sel.appendChild(opt);
      });
      sel.value = String(shown[i]);
      sel.addEventListener("change", () => chooseTarget(i, Number(sel.value)));
      selLabel.appendChild(sel);
      info.appendChild(selLabel);
      row.appendChild(info);
      rowEls.push(info);
      const canvases: HTMLCanvasElement[] = [];
      const markers: HTMLDivElement[] = [];
      const values: HTMLSpanElement[] = [];
      const scores: HTMLDivElement[] = [];
      const bars: HTMLDivElement[] = [];
      const cells: HTMLDivElement[] = [];
      for (let col = 0; col <= methods.length; col++) {
        const cell = h("div", "nbx-mapcell");
        cell.dataset.row = String(i);
        const key = col === 0 ? "input" : methods[col - 1].key;
        cell.dataset.method = key;
        const head = h("div", "nbx-explorer-head");
        head.appendChild(breakable(col === 0 ? "input" : methods[col - 1].title));
        head.dataset.method = key;
        const canvas = h("canvas", "nbx-canvas");
        canvas.style.aspectRatio = `${sw || 1} / ${sh || 1}`;
        canvas.setAttribute("role", "img");
        canvas.setAttribute("aria-label", col === 0 ? `input image of sample ${i}` : `${methods[col - 1].title} map of sample ${i}`);
        const marker = h("div", "nbx-marker");
        const value = h("span", "nbx-value");
        const bar = h("div", "nbx-cellbar");
        const score = h("div", "nbx-scores");
        if (col === 0) score.appendChild(h("span", "nbx-explained", `explained: ${label(shown[i])}`));
        cell.append(head, canvas, marker, value, bar, score);
        canvas.addEventListener("pointermove", (ev) => onMove(i, col, ev));
        canvas.addEventListener("pointerleave", clearHover);
        row.appendChild(cell);
        canvases.push(canvas);
        markers.push(marker);
        values.push(value);
        scores.push(score);
        bars.push(bar);
        cells.push(cell);
      }
      table.appendChild(row);
      rowCanvases.push(canvases);
      rowMarkers.push(markers);
      rowValues.push(values);
      rowScores.push(scores);
      rowBars.push(bars);
      rowCells.push(cells);
      barEntry.push(new Array(methods.length + 1).fill(-1));
    }
    opacity.value = String(model.get("opacity"));
    more.disabled = n >= model.get("n_pool");
    more.style.display = model.get("n_pool") > n || queue.busy ? "" : "none";
    root.dataset.n = String(n);
    root.dataset.methods = String(methods.length);
    root.dataset.entries = String(model.get("entries").length);
    drawAll();
    updateExplained();
    updateLegend();
    root.dataset.ready = "true";
  }

  function updateExplained() {
    rowScores.forEach((s, i) => {
      const t = s[0]?.querySelector(".nbx-explained");
      if (t) t.textContent = `explained: ${label(shown[i])}`;
    });
  }

  opacity.addEventListener("input", () => {
    model.set("opacity", Number(opacity.value));
    drawAll(); // local redraw; the kernel learns the value but is not needed
  });
  opacity.addEventListener("change", () => model.save_changes());
  more.addEventListener("click", () => {
    const n = Math.min(model.get("n_pool"), model.get("n_shown") + model.get("add_step"));
    requestState(shown, n);
  });

  const onBusy = () => {
    if (model.get("busy")) root.dataset.busy = "true";
    else if (!queue.busy) {
      root.dataset.busy = "false";
      onIdle();
    }
  };
  const onTargets = () => {
    if (!queue.busy) {
      shown = model.get("targets").slice();
      syncSelects();
      drawAll();
      updateExplained();
    }
  };
  const onError = errorHandler(root, errorBox, model);
  const onOpacity = () => {
    opacity.value = String(model.get("opacity"));
    drawAll();
  };
  const onTheme = themeHandler(root, model);
  const rebuild = batched(build); // several traits change in one kernel message: rebuild once
  const events: Array<[string, () => void]> = [
    ["change:maps", rebuild], ["change:images", rebuild], ["change:entries", rebuild],
    ["change:entry_meta", rebuild], ["change:methods", rebuild], ["change:n_shown", rebuild],
    ["change:classes", rebuild], ["change:cell_size", rebuild], ["change:source_shape", rebuild],
    ["change:continuity_shifts", rebuild],
    ["change:targets", onTargets], ["change:busy", onBusy],
    ["change:error", onError], ["change:opacity", onOpacity], ["change:theme", onTheme],
  ];
  const stopScale = applyScale(root, model, drawAll);
  build();
  onError();
  root.dataset.busy = model.get("busy") ? "true" : "false";
  return connect(el, root, model, events, drawAll, stopRequests, stopScale, stopRangeKeys, onThemeChange(root, recolour));
}

export default { render };
export type { AnyModel };
