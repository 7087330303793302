// ExplanationExplorer view: rows are samples, columns the input and one map per attribution method.
// Everything the kernel has computed (per sample and target class) sits in `maps`/`entries`, so hover,
// opacity and switching to an already-computed class are drawn here without a kernel round trip. A class
// or sample not computed yet is requested with a custom message; one request is in flight at a time and
// only the latest pending one is sent (latest wins); the root shows data-busy meanwhile.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { type ColorScale, formatValue, paintColorbar } from "./lib/colormap";
import { connect, h, injectStyle, offscreen, sizeCanvas, viewRoot } from "./lib/dom";
import { outlineRGBA } from "./lib/outline";
import { colorize, imageRGBA, pixelAt } from "./lib/raster";
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
  busy: boolean;
  completed_request: number;
  error: string;
  theme: string;
}

const CSS = `
.nbx-explorer-table { display: grid; gap: 6px 8px; align-items: start; }
.nbx-explorer-head { color: var(--nbx-muted); font-size: 0.92em; text-align: center;
  white-space: normal; overflow-wrap: anywhere; }
.nbx-explorer-head canvas { display: block; margin: 2px auto 0; width: 80%; height: 6px; }
.nbx-rowinfo { display: flex; flex-direction: column; gap: 4px; font-size: 0.92em; min-width: 9em; }
.nbx-rowinfo select { font: inherit; color: var(--nbx-fg); background: var(--nbx-bg2); border: 1px solid var(--nbx-border); }
.nbx-mapcell { position: relative; display: flex; flex-direction: column; align-items: center; gap: 2px; }
.nbx-mapcell.nbx-stale canvas { opacity: 0.35; }
.nbx-value, .nbx-scores { font-family: var(--jp-code-font-family, monospace); font-size: 0.85em; min-height: 1.2em;
  color: var(--nbx-fg); white-space: nowrap; }
.nbx-scores { color: var(--nbx-muted); white-space: normal; text-align: center; }
`;

/** Index of the cache entry for (sample, target), or -1. */
export function findEntry(entries: Array<[number, number]>, sample: number, target: number): number {
  for (let i = 0; i < entries.length; i++) if (entries[i][0] === sample && entries[i][1] === target) return i;
  return -1;
}

/** Requests to the kernel: at most one in flight; while busy only the latest desired state is kept. */
export class Coalescer<T> {
  private inFlight = 0;
  private nextId: number;
  private pending: T | null = null;
  constructor(
    private readonly send: (id: number, req: T) => void,
    startId = 0,
  ) {
    this.nextId = startId;
  }
  get busy(): boolean {
    return this.inFlight !== 0 || this.pending !== null;
  }
  request(req: T): void {
    if (this.inFlight) {
      this.pending = req; // latest wins: an older pending request is dropped
      return;
    }
    this.inFlight = ++this.nextId;
    this.send(this.inFlight, req);
  }
  /** The kernel finished every request up to `id`. */
  completed(id: number): void {
    if (!this.inFlight || id < this.inFlight) return;
    this.inFlight = 0;
    if (this.pending !== null) {
      const req = this.pending;
      this.pending = null;
      this.request(req);
    }
  }
}

function fmtScore(v: number | null | undefined): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "–" : formatValue(v);
}

function render({ model, el }: RenderProps<State>) {
  const root = viewRoot("explanation-explorer", model.get("theme"));
  injectStyle(el, CSS);
  el.appendChild(root);

  const controls = h("div", "nbx-controls");
  const opacityLabel = h("label", "nbx-control", "opacity");
  const opacity = h("input", "nbx-opacity");
  opacity.type = "range";
  opacity.min = "0";
  opacity.max = "1";
  opacity.step = "0.01";
  opacityLabel.appendChild(opacity);
  const more = h("button", "nbx-button nbx-more nbx-needs-kernel", "more samples");
  const busy = h("span", "nbx-busy", "computing…");
  controls.append(opacityLabel, more, busy);
  const errorBox = h("div", "nbx-error");
  const table = h("div", "nbx-explorer-table");
  const readout = h("div", "nbx-readout");
  root.append(controls, errorBox, table, readout);

  // decoded state
  let maps: Tensor = decodeTensor(null);
  let images: Tensor = decodeTensor(null);
  let shown: number[] = []; // target displayed per row (may be ahead of the kernel while it computes)
  // per row: canvases of the columns (0 = input) and their value/score labels
  let rowCanvases: HTMLCanvasElement[][] = [];
  let rowMarkers: HTMLDivElement[][] = [];
  let rowValues: HTMLSpanElement[][] = [];
  let rowScores: HTMLSpanElement[][] = [];
  let rowCells: HTMLDivElement[][] = [];
  let rowEls: HTMLDivElement[] = [];
  let imageCanvases: HTMLCanvasElement[] = [];
  let outlineCanvases: HTMLCanvasElement[] = [];

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

  const coalescer = new Coalescer<{ targets: number[]; n_shown: number }>((id, req) => {
    root.dataset.busy = "true";
    root.dataset.requests = String(id);
    model.send({ type: "request", id, ...req });
  }, model.get("completed_request"));

  function mapShape(): [number, number] {
    return maps.shape.length === 4 ? [maps.shape[2], maps.shape[3]] : [0, 0];
  }

  function scaleOf(entry: number, j: number): ColorScale {
    const meta = model.get("entry_meta")[entry];
    const kind = model.get("methods")[j].kind;
    if (kind === "diverging") {
      const m = meta?.vmax[j] ?? 1;
      return { kind, vmin: -m, vmax: m };
    }
    const lo = Math.min(0, meta?.vmin[j] ?? 0);
    const hi = meta?.vmax[j] ?? 1;
    return { kind, vmin: lo, vmax: hi > lo ? hi : lo + 1 };
  }

  function mapCanvas(entry: number, j: number): HTMLCanvasElement {
    const key = `${entry}/${j}`;
    let c = mapCanvasCache.get(key);
    if (!c) {
      const [hm, wm] = mapShape();
      const plane = slice0(slice0(maps, entry), j).data;
      c = offscreen(colorize(plane, hm, wm, scaleOf(entry, j)), wm, hm);
      mapCanvasCache.set(key, c);
    }
    return c;
  }

  function cellSize(): [number, number] {
    const [sh, sw] = model.get("source_shape");
    const w = model.get("cell_size");
    return [w, Math.max(1, Math.round((w * (sh || 1)) / (sw || 1)))];
  }

  function drawRow(i: number) {
    const entries = model.get("entries");
    const methods = model.get("methods");
    const target = shown[i];
    let entry = findEntry(entries, i, target);
    const cached = entry >= 0;
    if (!cached) entry = drawnEntry[i] ?? -1;
    else drawnEntry[i] = entry;
    const [cw, ch] = cellSize();
    const alpha = model.get("opacity");
    for (let col = 0; col <= methods.length; col++) {
      const canvas = rowCanvases[i]?.[col];
      if (!canvas) continue;
      const ctx = sizeCanvas(canvas, cw, ch);
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
        const meta = model.get("entry_meta")[entry];
        const j = col - 1;
        const cons = meta?.conservation[j];
        const cont = meta?.continuity[j];
        const parts = [`±${formatValue(meta?.vmax[j] ?? 0)}`];
        if (cons !== null && cons !== undefined) parts.push(`Σ/f ${fmtScore(cons)}`);
        if (model.get("continuity_shifts").length) parts.push(`cont ${fmtScore(cont)}`);
        rowScores[i][col].textContent = parts.join(" · ");
        rowCells[i][col].dataset.conservation = fmtScore(cons);
        rowCells[i][col].dataset.continuity = fmtScore(cont);
      }
      rowCells[i][col].classList.toggle("nbx-stale", col > 0 && !cached);
    }
    rowEls[i].dataset.target = String(target);
    rowEls[i].dataset.cached = String(cached);
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
    const entry = findEntry(entries, i, shown[i]) >= 0 ? findEntry(entries, i, shown[i]) : (drawnEntry[i] ?? -1);
    const [sh, sw] = model.get("source_shape");
    const sr = Math.min(sh - 1, Math.floor((r * sh) / hm));
    const sc = Math.min(sw - 1, Math.floor((c * sw) / wm));
    const parts: string[] = [`row ${sr}, col ${sc}`];
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
        rowValues[i][0].textContent = `(${sr}, ${sc})`;
        continue;
      }
      if (entry < 0) continue;
      const v = maps.data[((entry * methods.length + (col - 1)) * hm + r) * wm + c];
      rowValues[i][col].textContent = formatValue(v);
      rowCells[i][col].dataset.value = String(v);
      parts.push(`${methods[col - 1].title}: ${formatValue(v)}`);
    }
    readout.textContent = parts.join("  ·  ");
    root.dataset.hover = `${i},${sr},${sc}`;
  }

  function requestState(targets: number[], n: number) {
    coalescer.request({ targets: targets.slice(), n_shown: n });
    root.dataset.busy = "true";
  }

  function chooseTarget(i: number, t: number) {
    shown[i] = t;
    const cachedAll = shown.every((tt, r) => findEntry(model.get("entries"), r, tt) >= 0);
    drawRow(i);
    if (cachedAll && !coalescer.busy) {
      // already computed: drawn above; the kernel only learns the new state (no computation)
      model.set("targets", shown.slice());
      model.save_changes();
    } else {
      requestState(shown, model.get("n_shown"));
    }
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
    shown = Array.from({ length: n }, (_, i) => (shown[i] !== undefined && coalescer.busy ? shown[i] : targets[i]));
    drawnEntry = drawnEntry.slice(0, n);
    imageCanvases = [];
    outlineCanvases = [];
    if (images.shape.length === 4) {
      const [ni, hi, wi, ci] = images.shape;
      for (let i = 0; i < ni; i++) imageCanvases.push(offscreen(imageRGBA(slice0(images, i).data, hi, wi, ci), wi, hi));
    }
    table.replaceChildren();
    table.style.gridTemplateColumns = `max-content repeat(${methods.length + 1}, max-content)`;
    // header: info column, input, one title (and colour bar) per method
    table.appendChild(h("div", "nbx-explorer-head", ""));
    table.appendChild(h("div", "nbx-explorer-head", "input"));
    methods.forEach((m) => {
      const head = h("div", "nbx-explorer-head", m.title);
      head.title = m.title;
      head.dataset.method = m.key;
      head.style.maxWidth = `${model.get("cell_size")}px`;
      const bar = h("canvas", "nbx-colorbar");
      paintColorbar(bar, m.kind === "diverging" ? { kind: "diverging", vmin: -1, vmax: 1 } : { kind: "sequential", vmin: 0, vmax: 1 });
      head.appendChild(bar);
      table.appendChild(head);
    });
    rowCanvases = [];
    rowMarkers = [];
    rowValues = [];
    rowScores = [];
    rowCells = [];
    rowEls = [];
    for (let i = 0; i < n; i++) {
      const info = h("div", "nbx-rowinfo nbx-row");
      info.dataset.row = String(i);
      const label = (k: number) => classes[k] ?? String(k);
      info.appendChild(h("span", "nbx-sample", `sample ${i}`));
      const pct = prob[i] !== undefined ? ` (${(100 * prob[i]).toFixed(0)}%)` : "";
      info.appendChild(h("span", "nbx-predicted", `predicted: ${label(predicted[i])}${pct}`));
      const selLabel = h("label", "nbx-control", "explain");
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
      table.appendChild(info);
      rowEls.push(info);
      const canvases: HTMLCanvasElement[] = [];
      const markers: HTMLDivElement[] = [];
      const values: HTMLSpanElement[] = [];
      const scores: HTMLSpanElement[] = [];
      const cells: HTMLDivElement[] = [];
      for (let col = 0; col <= methods.length; col++) {
        const cell = h("div", "nbx-mapcell");
        cell.dataset.row = String(i);
        cell.dataset.method = col === 0 ? "input" : methods[col - 1].key;
        const canvas = h("canvas", "nbx-canvas");
        const marker = h("div", "nbx-marker");
        const value = h("span", "nbx-value");
        const score = h("span", "nbx-scores");
        score.style.maxWidth = `${Math.max(model.get("cell_size"), 90)}px`;
        if (col === 0) score.textContent = `explained: ${label(shown[i])}`;
        cell.append(canvas, marker, value, score);
        canvas.addEventListener("pointermove", (ev) => onMove(i, col, ev));
        canvas.addEventListener("pointerleave", clearHover);
        table.appendChild(cell);
        canvases.push(canvas);
        markers.push(marker);
        values.push(value);
        scores.push(score);
        cells.push(cell);
      }
      rowCanvases.push(canvases);
      rowMarkers.push(markers);
      rowValues.push(values);
      rowScores.push(scores);
      rowCells.push(cells);
    }
    opacity.value = String(model.get("opacity"));
    more.disabled = n >= model.get("n_pool");
    more.style.display = model.get("n_pool") > n || coalescer.busy ? "" : "none";
    root.dataset.n = String(n);
    root.dataset.methods = String(methods.length);
    root.dataset.entries = String(model.get("entries").length);
    drawAll();
    updateExplained();
    root.dataset.ready = "true";
  }

  function updateExplained() {
    const classes = model.get("classes");
    rowScores.forEach((s, i) => {
      if (s[0]) s[0].textContent = `explained: ${classes[shown[i]] ?? String(shown[i])}`;
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

  const onCompleted = () => {
    coalescer.completed(model.get("completed_request"));
    if (!coalescer.busy && !model.get("busy")) {
      root.dataset.busy = "false";
      // the kernel's state is now authoritative
      shown = model.get("targets").slice();
      drawAll();
      updateExplained();
    }
  };
  const onBusy = () => {
    if (model.get("busy")) root.dataset.busy = "true";
    else onCompleted();
  };
  const onTargets = () => {
    if (!coalescer.busy) {
      shown = model.get("targets").slice();
      rowEls.forEach((row, i) => {
        const sel = row.querySelector("select");
        if (sel) sel.value = String(shown[i]);
      });
      drawAll();
      updateExplained();
    }
  };
  const onError = () => {
    errorBox.textContent = model.get("error");
    root.dataset.error = model.get("error") ? "true" : "false";
  };
  const onOpacity = () => {
    opacity.value = String(model.get("opacity"));
    drawAll();
  };
  const onTheme = () => (root.dataset.theme = model.get("theme"));
  // several traits change in one kernel message: rebuild once, after all of them arrived
  let buildQueued = false;
  const rebuild = () => {
    if (buildQueued) return;
    buildQueued = true;
    queueMicrotask(() => {
      buildQueued = false;
      build();
    });
  };
  const events: Array<[string, () => void]> = [
    ["change:maps", rebuild], ["change:images", rebuild], ["change:entries", rebuild],
    ["change:entry_meta", rebuild], ["change:methods", rebuild], ["change:n_shown", rebuild],
    ["change:classes", rebuild], ["change:cell_size", rebuild], ["change:source_shape", rebuild],
    ["change:targets", onTargets], ["change:completed_request", onCompleted], ["change:busy", onBusy],
    ["change:error", onError], ["change:opacity", onOpacity], ["change:theme", onTheme],
  ];
  build();
  onError();
  root.dataset.busy = "false";
  return connect(el, root, model, events, drawAll);
}

export default { render };
export type { AnyModel };
