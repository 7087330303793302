// SimilarityGrid view: layer × layer heatmap over checkpoints. Every checkpoint's grid (for every metric)
// arrives once as one (M, T, L, Lr) float32 tensor; the slider, play button and metric menu repaint from
// it locally (no kernel message). A click sends `selected = [t, i, j]` (with the shown checkpoint/metric).
import type { AnyModel, RenderProps } from "@anywidget/types";
import { colorOf, type ColorScale, luminance } from "./lib/colormap";
import { formatNumber } from "./lib/nice_ticks";
import { cellGridKeys, fitCellSize, valueFits } from "./lib/cell_grid";
import { keepNavigationKeys } from "./lib/keys";
import { colorFooter } from "./lib/scalebar";
import { applyScale, connect, h, injectStyle, onBackground, onThemeChange, scaleOf, stepPlayer, themeHandler, viewRoot } from "./lib/dom";
import { decodeTensor, type Tensor, type WireTensor } from "./lib/tensor";

interface State {
  grids: WireTensor;
  defined: WireTensor;
  metrics: string[];
  metric_names: string[];
  metric: string;
  checkpoint_labels: string[];
  row_labels: string[];
  col_labels: string[];
  row_title: string;
  col_title: string;
  checkpoint: number;
  selected: number[];
  vmin: number;
  vmax: number;
  cell_size: number;
  show_values: boolean;
  interval_ms: number;
  theme: string;
  scale: number;
}

const CSS = `
.nbx-root.nbx-similarity-grid { width: max-content; max-width: 100%; }
.nbx-similarity-grid .nbx-sim-body { display: grid; align-items: center; gap: 0; width: max-content; max-width: 100%; }
.nbx-similarity-grid .nbx-sim-cell { border: 1px solid transparent; cursor: pointer; display: flex;
  align-items: center; justify-content: center; font-size: 1em; font-family: var(--jp-code-font-family, monospace);
  overflow: hidden; user-select: none; width: var(--nbx-cell); height: var(--nbx-cell); }
.nbx-similarity-grid .nbx-sim-cell:hover { border-color: var(--nbx-fg); }
.nbx-similarity-grid .nbx-sim-cell:focus-visible { outline: 3px solid var(--nbx-accent); outline-offset: 1px;
  position: relative; z-index: 1; }
.nbx-similarity-grid input:focus-visible, .nbx-similarity-grid select:focus-visible,
.nbx-similarity-grid button:focus-visible { outline: 2px solid var(--nbx-accent); outline-offset: 1px; }
.nbx-similarity-grid .nbx-sim-cell.nbx-selected { border: 2px solid var(--nbx-accent); }
.nbx-similarity-grid .nbx-sim-cell.nbx-undefined { background: repeating-linear-gradient(45deg,
  var(--nbx-bg2), var(--nbx-bg2) 3px, var(--nbx-bg) 3px, var(--nbx-bg) 6px) !important; }
.nbx-similarity-grid .nbx-sim-cell.nbx-hover-row, .nbx-similarity-grid .nbx-sim-cell.nbx-hover-col { }
.nbx-similarity-grid .nbx-row-label { text-align: right; padding-right: 6px; white-space: normal;
  overflow-wrap: anywhere; color: var(--nbx-muted); max-width: 12em; }
.nbx-similarity-grid .nbx-col-label { writing-mode: vertical-rl; transform: rotate(180deg); white-space: normal;
  overflow-wrap: anywhere; color: var(--nbx-muted); padding-top: 4px; justify-self: center; max-height: 12em; }
.nbx-similarity-grid .nbx-row-label.nbx-active, .nbx-similarity-grid .nbx-col-label.nbx-active { color: var(--nbx-fg);
  font-weight: 600; }
.nbx-similarity-grid .nbx-axis-title { color: var(--nbx-muted); }
.nbx-similarity-grid .nbx-axis-title.nbx-row-title { writing-mode: vertical-rl; transform: rotate(180deg);
  text-align: center; }
.nbx-similarity-grid .nbx-checkpoint-label { font-family: var(--jp-code-font-family, monospace); min-width: 6em; }
.nbx-similarity-grid .nbx-checkpoint { width: 14em; max-width: 100%; min-width: 6em; flex: 0 1 auto; }
.nbx-similarity-grid .nbx-control { flex-wrap: wrap; max-width: 100%; }
`;

/** Black or white text for a background colour (relative luminance). */
export function textColor(rgb: [number, number, number]): string {
  return luminance(rgb) > 0.35 ? "#000" : "#fff";
}

/** Offset of cell (m, t, i, j) in a row-major (M, T, L, Lr) array. */
export function cellIndex(shape: number[], m: number, t: number, i: number, j: number): number {
  const [, T, L, Lr] = shape;
  return ((m * T + t) * L + i) * Lr + j;
}

function render({ model, el }: RenderProps<State>) {
  const root = viewRoot("similarity-grid", model.get("theme"));
  const stopScale = applyScale(root, model, () => layoutCells());
  keepNavigationKeys(root);
  injectStyle(el, CSS);
  el.appendChild(root);

  const controls = h("div", "nbx-controls");
  const play = h("button", "nbx-button nbx-play", "▶ play");
  play.type = "button";
  play.setAttribute("aria-label", "play through checkpoints");
  const sliderLabel = h("label", "nbx-control", "checkpoint");
  const slider = h("input", "nbx-checkpoint");
  slider.type = "range";
  slider.min = "0";
  slider.step = "1";
  const ckLabel = h("span", "nbx-checkpoint-label");
  sliderLabel.append(slider, ckLabel);
  const metricLabel = h("label", "nbx-control", "metric");
  const metricSelect = h("select", "nbx-metric");
  metricLabel.appendChild(metricSelect);
  controls.append(play, sliderLabel, metricLabel);

  const body = h("div", "nbx-sim-body");
  body.setAttribute("role", "group");
  const { footer, readout, setScale } = colorFooter();
  root.append(controls, body, footer);

  let grids: Tensor = decodeTensor(null);
  let defined: Tensor = decodeTensor(null);
  let cells: HTMLDivElement[] = [];
  let rowLabels: HTMLDivElement[] = [];
  let colLabels: HTMLDivElement[] = [];
  let L = 0;
  let Lr = 0;
  let T = 0;
  let cellPx = 0;
  const choose = (i: number, j: number) => {
    model.set("selected", [current(), i, j]);
    model.save_changes(); // also carries the locally changed checkpoint / metric
    markSelected();
  };
  const keys = cellGridKeys(body, () => [L, Lr], (i, j) => cells[i * Lr + j], (i, j) => {
    hovered = [i, j];
    showReadout(i, j);
  }, choose);
  const player = stepPlayer(play, root, {
    count: () => T, current: () => current(), go: (t) => setCheckpoint(t), intervalMs: () => model.get("interval_ms"),
  });
  const stop = player.stop;
  let hovered: [number, number] | null = null;

  // on the view's background: in a dark theme the map starts at its blue, so a 0 is not the page's colour
  const scale = (): ColorScale => onBackground(root, { kind: "sequential", vmin: model.get("vmin"), vmax: model.get("vmax") });
  const metricIndex = () => Math.max(0, model.get("metrics").indexOf(model.get("metric")));
  const current = () => Math.min(Math.max(0, model.get("checkpoint")), Math.max(0, T - 1));

  function value(t: number, i: number, j: number): number | null {
    const k = cellIndex(grids.shape, metricIndex(), t, i, j);
    return defined.data[k] ? grids.data[k] : null;
  }

  function paint() {
    if (!cells.length) return;
    const t = current();
    const s = scale();
    setScale(s, model.get("metric_names")[metricIndex()] ?? ""); // here too: the theme may have changed
    const show = model.get("show_values") && valueFits(4, parseFloat(getComputedStyle(root).fontSize) || 13, cellPx);
    root.dataset.valuesShown = String(show);
    for (let i = 0; i < L; i++) {
      for (let j = 0; j < Lr; j++) {
        const cell = cells[i * Lr + j];
        const v = value(t, i, j);
        cell.setAttribute("aria-label", cellName(t, i, j, v));
        if (v === null) {
          cell.classList.add("nbx-undefined");
          cell.style.background = "";
          cell.textContent = show ? "–" : "";
          cell.dataset.value = "NaN";
          continue;
        }
        cell.classList.remove("nbx-undefined");
        const rgb = colorOf(v, s);
        cell.style.background = `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
        cell.dataset.value = String(v);
        if (show) {
          cell.textContent = v.toFixed(2);
          cell.style.color = textColor(rgb);
        } else if (cell.textContent) {
          cell.textContent = "";
        }
      }
    }
    const labels = model.get("checkpoint_labels");
    slider.value = String(t);
    ckLabel.textContent = `${labels[t] ?? t}  (${t + 1}/${T})`;
    root.dataset.checkpoint = String(t);
    root.dataset.metric = model.get("metric");
    if (hovered) showReadout(hovered[0], hovered[1]);
    markSelected();
  }

  function cellName(t: number, i: number, j: number, v: number | null): string {
    const rows = model.get("row_labels");
    const cols = model.get("col_labels");
    const ck = model.get("checkpoint_labels")[t] ?? `checkpoint ${t}`;
    const mname = model.get("metric_names")[metricIndex()] ?? model.get("metric");
    return `${rows[i] ?? i} × ${cols[j] ?? j} at ${ck}: ${mname} ${v === null ? "undefined" : formatNumber(v)}`;
  }

  /** Cells as large as asked (× scale), but never wider than the column the view is shown in. */
  function layoutCells() {
    if (!L || !Lr) return;
    const labels = Math.max(0, ...rowLabels.map((e) => e.offsetWidth)) + (body.firstElementChild as HTMLElement | null)!.offsetWidth;
    const avail = el.clientWidth ? el.clientWidth - 14 - labels : 0;
    const next = fitCellSize(model.get("cell_size"), scaleOf(root), Lr, avail);
    if (next !== cellPx) {
      cellPx = next;
      body.style.setProperty("--nbx-cell", `${cellPx}px`);
      body.style.gridTemplateColumns = `auto auto repeat(${Lr}, ${cellPx}px)`;
      body.style.gridTemplateRows = `repeat(${L}, ${cellPx}px) auto auto`;
    }
    root.dataset.cellSize = String(cellPx);
    paint();
  }

  function showReadout(i: number, j: number) {
    const t = current();
    const v = value(t, i, j);
    const rows = model.get("row_labels");
    const cols = model.get("col_labels");
    const ck = model.get("checkpoint_labels")[t] ?? String(t);
    const mname = model.get("metric_names")[metricIndex()] ?? model.get("metric");
    readout.textContent = `${rows[i]} × ${cols[j]} @ ${ck} — ${mname} ${v === null ? "undefined (zero variance)" : formatNumber(v)}`;
    root.dataset.hover = `${i},${j}`;
    root.dataset.value = v === null ? "NaN" : String(v);
    rowLabels.forEach((el, k) => el.classList.toggle("nbx-active", k === i));
    colLabels.forEach((el, k) => el.classList.toggle("nbx-active", k === j));
  }

  function clearReadout() {
    hovered = null;
    delete root.dataset.hover;
    readout.textContent = T ? "hover or focus a cell to read its value · click, Enter or Space to select" : "empty grid";
    rowLabels.forEach((el) => el.classList.remove("nbx-active"));
    colLabels.forEach((el) => el.classList.remove("nbx-active"));
  }

  function markSelected() {
    const sel = model.get("selected");
    const on = sel.length === 3 && sel[0] === current();
    cells.forEach((c, k) => {
      const isSel = on && k === sel[1] * Lr + sel[2];
      c.classList.toggle("nbx-selected", isSel);
      c.setAttribute("aria-pressed", String(isSel));
    });
    root.dataset.selected = sel.length === 3 ? sel.join(",") : "";
  }

  function setCheckpoint(t: number) {
    // Local only: the kernel learns the checkpoint with the next click (no message per slider step) —
    // unless a cell is selected: the selection then follows the checkpoint, and Python's chart with it.
    const next = Math.min(Math.max(0, t), T - 1);
    model.set("checkpoint", next);
    const sel = model.get("selected");
    if (sel.length === 3 && sel[0] !== next) {
      model.set("selected", [next, sel[1], sel[2]]);
      model.save_changes();
    }
    paint();
  }

  function build() {
    stop();
    grids = decodeTensor(model.get("grids"));
    defined = decodeTensor(model.get("defined"));
    const shape = grids.shape.length === 4 ? grids.shape : [0, 0, 0, 0];
    [, T, L, Lr] = shape;
    const rows = model.get("row_labels");
    const cols = model.get("col_labels");
    const size = model.get("cell_size");
    cellPx = Math.round(size * scaleOf(root));
    body.style.setProperty("--nbx-cell", `${cellPx}px`);
    root.dataset.cellSize = String(cellPx);
    body.replaceChildren();
    cells = [];
    rowLabels = [];
    colLabels = [];
    body.style.gridTemplateColumns = `auto auto repeat(${Lr}, ${cellPx}px)`;
    body.style.gridTemplateRows = `repeat(${L}, ${cellPx}px) auto auto`;
    const rowTitle = h("div", "nbx-axis-title nbx-row-title", model.get("row_title"));
    rowTitle.style.gridColumn = "1";
    rowTitle.style.gridRow = `1 / ${L + 1}`;
    body.appendChild(rowTitle);
    for (let i = 0; i < L; i++) {
      const lab = h("div", "nbx-row-label", rows[i] ?? String(i));
      lab.title = rows[i] ?? String(i);
      lab.style.gridColumn = "2";
      lab.style.gridRow = String(i + 1);
      body.appendChild(lab);
      rowLabels.push(lab);
      for (let j = 0; j < Lr; j++) {
        const cell = h("div", "nbx-sim-cell");
        cell.dataset.i = String(i);
        cell.dataset.j = String(j);
        cell.dataset.row = String(i);
        cell.dataset.col = String(j);
        cell.style.gridColumn = String(j + 3);
        cell.style.gridRow = String(i + 1);
        cell.setAttribute("role", "button");
        cell.tabIndex = -1;
        cell.addEventListener("pointerenter", () => {
          hovered = [i, j];
          showReadout(i, j);
        });
        cell.addEventListener("pointerleave", clearReadout);
        cell.addEventListener("click", () => choose(i, j));
        body.appendChild(cell);
        cells.push(cell);
      }
    }
    for (let j = 0; j < Lr; j++) {
      const lab = h("div", "nbx-col-label", cols[j] ?? String(j));
      lab.title = cols[j] ?? String(j);
      lab.style.gridColumn = String(j + 3);
      lab.style.gridRow = String(L + 1);
      body.appendChild(lab);
      colLabels.push(lab);
    }
    const colTitle = h("div", "nbx-axis-title", model.get("col_title"));
    colTitle.style.gridColumn = `3 / ${Lr + 3}`;
    colTitle.style.gridRow = String(L + 2);
    colTitle.style.textAlign = "center";
    body.appendChild(colTitle);

    slider.max = String(Math.max(0, T - 1));
    sliderLabel.style.display = T > 1 ? "" : "none";
    play.style.display = T > 1 ? "" : "none";
    const metrics = model.get("metrics");
    const names = model.get("metric_names");
    metricSelect.replaceChildren();
    metrics.forEach((m, k) => {
      const opt = h("option", "", names[k] ?? m);
      opt.value = m;
      metricSelect.appendChild(opt);
    });
    metricSelect.value = model.get("metric");
    metricLabel.style.display = metrics.length > 1 ? "" : "none";
    root.dataset.rows = String(L);
    root.dataset.cols = String(Lr);
    root.dataset.checkpoints = String(T);
    root.dataset.cells = String(cells.length);
    const sel = model.get("selected");
    keys.setStop(sel.length === 3 && sel[1] < L && sel[2] < Lr ? sel[1] : 0, sel.length === 3 && sel[1] < L && sel[2] < Lr ? sel[2] : 0);
    clearReadout();
    layoutCells();
    paint();
    root.dataset.ready = "true";
  }

  slider.addEventListener("input", () => {
    stop();
    setCheckpoint(Number(slider.value));
  });
  metricSelect.addEventListener("change", () => {
    model.set("metric", metricSelect.value); // local switch, synced with the next click...
    if (model.get("selected").length === 3) model.save_changes(); // ...or now, for the selection's chart
    paint();
  });
  root.addEventListener("keydown", (ev) => {
    if (ev.target === slider || ev.target === metricSelect) return;
    if (ev.key === "ArrowRight") setCheckpoint(current() + 1);
    else if (ev.key === "ArrowLeft") setCheckpoint(current() - 1);
    else return;
    ev.preventDefault();
    ev.stopPropagation(); // JupyterLab binds ←/→ to notebook commands in command mode
  });

  const rebuild = () => build();
  const onMetric = () => {
    metricSelect.value = model.get("metric");
    paint();
  };
  const onTheme = themeHandler(root, model);
  body.addEventListener("focusout", (ev) => {
    if (!body.contains(ev.relatedTarget as Node | null)) clearReadout();
  });
  const events: Array<[string, () => void]> = [
    ["change:grids", rebuild], ["change:defined", rebuild], ["change:row_labels", rebuild],
    ["change:col_labels", rebuild], ["change:metrics", rebuild], ["change:cell_size", rebuild],
    ["change:vmin", rebuild], ["change:vmax", rebuild], ["change:row_title", rebuild], ["change:col_title", rebuild],
    ["change:checkpoint", paint], ["change:checkpoint_labels", paint], ["change:show_values", paint],
    ["change:metric", onMetric], ["change:selected", markSelected], ["change:theme", onTheme],
  ];
  build();
  return connect(el, root, model, events, layoutCells, stop, stopScale, onThemeChange(root, paint));
}

export default { render };
export type { AnyModel };
