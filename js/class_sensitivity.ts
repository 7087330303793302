// ClassSensitivity view: classes × layers grid of SVCCA(layer, class logit) at one checkpoint, with a
// checkpoint slider and play (local repaint from the (T, L, C) tensor sent once), the value in each cell, and
// an SVG line chart of the clicked class over the checkpoints — one line per layer, with each layer's
// learned-at checkpoint (first from which the value stays ≥ threshold; computed in Python by core) marked.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { colorOf, type ColorScale } from "./lib/colormap";
import { formatNumber } from "./lib/nice_ticks";
import { cellGridKeys, fitCellSize, valueFits } from "./lib/cell_grid";
import { keepNavigationKeys } from "./lib/keys";
import { colorFooter } from "./lib/scalebar";
import { applyScale, connect, h, injectStyle, onBackground, onThemeChange, scaleOf, stepPlayer, svgPlot, themeHandler, viewRoot } from "./lib/dom";
import { decodeTensor, type Tensor, type WireTensor } from "./lib/tensor";
import { textColor } from "./similarity_grid";

interface State {
  values: WireTensor;
  defined: WireTensor;
  checkpoint_labels: string[];
  layers: string[];
  class_names: string[];
  checkpoint: number;
  threshold: number;
  learned_at: number[][];
  selected_class: number;
  logits: string;
  cell_size: number;
  interval_ms: number;
  theme: string;
  scale: number;
}

// Categorical line colours (Tableau 10), one per layer.
export const LAYER_COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
  "#ff9da7", "#9c755f", "#bab0ac"];

const CSS = `
.nbx-root.nbx-class-sensitivity { width: max-content; max-width: 100%; }
.nbx-class-sensitivity .nbx-cs-cell:focus-visible { outline: 3px solid var(--nbx-accent); outline-offset: 1px;
  position: relative; z-index: 1; }
.nbx-class-sensitivity input:focus-visible, .nbx-class-sensitivity button:focus-visible {
  outline: 2px solid var(--nbx-accent); outline-offset: 1px; }
.nbx-class-sensitivity .nbx-control { flex-wrap: wrap; max-width: 100%; }
.nbx-class-sensitivity .nbx-cs-left { max-width: 100%; }
.nbx-class-sensitivity .nbx-cs-main { display: flex; flex-wrap: wrap; gap: 12px 20px; align-items: flex-start; }
.nbx-class-sensitivity .nbx-cs-body { display: grid; align-items: center; width: max-content; max-width: 100%; }
.nbx-class-sensitivity .nbx-cs-cell { border: 1px solid transparent; cursor: pointer; display: flex;
  align-items: center; justify-content: center; font-family: var(--jp-code-font-family, monospace);
  font-size: 1em; overflow: hidden; user-select: none; }
.nbx-class-sensitivity .nbx-cs-cell:hover { border-color: var(--nbx-fg); }
.nbx-class-sensitivity .nbx-cs-cell.nbx-selected { border: 2px solid var(--nbx-accent); }
.nbx-class-sensitivity .nbx-cs-cell.nbx-undefined { background: repeating-linear-gradient(45deg,
  var(--nbx-bg2), var(--nbx-bg2) 3px, var(--nbx-bg) 3px, var(--nbx-bg) 6px) !important; }
.nbx-class-sensitivity .nbx-row-label { text-align: right; padding-right: 6px; white-space: normal;
  overflow-wrap: anywhere; max-width: 12em; color: var(--nbx-muted); cursor: pointer; }
.nbx-class-sensitivity .nbx-col-label { color: var(--nbx-muted); text-align: center; overflow-wrap: anywhere;
  padding-top: 3px; }
.nbx-class-sensitivity .nbx-row-label.nbx-active, .nbx-class-sensitivity .nbx-col-label.nbx-active {
  color: var(--nbx-fg); font-weight: 600; }
.nbx-class-sensitivity .nbx-axis-title { color: var(--nbx-muted); }
.nbx-class-sensitivity .nbx-axis-title.nbx-row-title { writing-mode: vertical-rl; transform: rotate(180deg);
  text-align: center; }
.nbx-class-sensitivity .nbx-checkpoint-label { font-family: var(--jp-code-font-family, monospace); }
.nbx-class-sensitivity .nbx-checkpoint { width: 12em; max-width: 100%; min-width: 6em; }
.nbx-class-sensitivity .nbx-cs-title { font-weight: 600; margin-bottom: 4px; overflow-wrap: anywhere; }
.nbx-class-sensitivity .nbx-cs-chart-box { max-width: 100%; }
.nbx-class-sensitivity svg.nbx-cs-chart { display: block; overflow: visible; }
.nbx-class-sensitivity svg.nbx-cs-chart text { fill: var(--nbx-muted); font-size: 1em; font-family: inherit; }
.nbx-class-sensitivity svg.nbx-cs-chart .nbx-axis { stroke: var(--nbx-border); stroke-width: 1; fill: none; }
.nbx-class-sensitivity svg.nbx-cs-chart .nbx-cs-threshold { stroke: var(--nbx-muted); stroke-dasharray: 4 3; }
.nbx-class-sensitivity svg.nbx-cs-chart .nbx-cs-now { stroke: var(--nbx-accent); stroke-width: 1; opacity: 0.6; }
.nbx-class-sensitivity .nbx-cs-legend { display: flex; flex-direction: column; gap: 2px; }
.nbx-class-sensitivity .nbx-cs-swatch { display: inline-block; width: 14px; height: 3px; vertical-align: middle;
  margin-right: 6px; }
.nbx-class-sensitivity .nbx-cs-swatch.nbx-cs-swatch-threshold { height: 0; border-top: 2px dashed var(--nbx-muted); }
.nbx-class-sensitivity .nbx-cs-swatch.nbx-cs-swatch-now { height: 0; border-top: 2px solid var(--nbx-accent); }
.nbx-class-sensitivity .nbx-cs-hint { color: var(--nbx-muted); overflow-wrap: anywhere; max-width: 32em; }
`;

/** Offset of (t, layer, class) in a row-major (T, L, C) array. */
export function valueIndex(shape: number[], t: number, layer: number, cls: number): number {
  const [, L, C] = shape;
  return (t * L + layer) * C + cls;
}

/** Chart x of checkpoint t among `count` checkpoints spread over `width` (a single one sits in the middle). */
export function checkpointX(t: number, count: number, width: number): number {
  return count > 1 ? (t / (count - 1)) * width : width / 2;
}

/** One layer's curve as an SVG path; undefined values (NaN) break the line. */
export function curvePath(values: Array<number | null>, width: number, height: number): string {
  let d = "";
  let pen = false;
  values.forEach((v, t) => {
    if (v === null || !Number.isFinite(v)) {
      pen = false;
      return;
    }
    const x = checkpointX(t, values.length, width);
    const y = height - Math.min(1, Math.max(0, v)) * height;
    d += `${pen ? "L" : "M"}${x.toFixed(2)},${y.toFixed(2)}`;
    pen = true;
  });
  return d;
}

/** A sentence for a learned-at index. */
export function learnedText(index: number, labels: string[]): string {
  return index < 0 ? "not reached" : `from ${labels[index] ?? index}`;
}

function render({ model, el }: RenderProps<State>) {
  const root = viewRoot("class-sensitivity", model.get("theme"));
  const stopScale = applyScale(root, model, () => build());
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
  controls.append(play, sliderLabel);

  const main = h("div", "nbx-cs-main");
  const left = h("div", "nbx-cs-left");
  const gridTitle = h("div", "nbx-cs-title");
  const body = h("div", "nbx-cs-body");
  body.setAttribute("role", "group");
  const { footer, readout, setScale } = colorFooter();
  left.append(gridTitle, body, footer);
  const chartBox = h("div", "nbx-cs-chart-box");
  main.append(left, chartBox);
  root.append(controls, main);

  let values: Tensor = decodeTensor(null);
  let defined: Tensor = decodeTensor(null);
  let cells: HTMLDivElement[] = [];
  let rowLabels: HTMLDivElement[] = [];
  let colLabels: HTMLDivElement[] = [];
  let T = 0;
  let L = 0;
  let C = 0;
  let cellPx = 0;
  const keys = cellGridKeys(body, () => [C, L], (c, l) => cells[c * L + l], (c, l) => {
    hovered = [c, l];
    showReadout(c, l);
  }, (c) => select(c));
  body.addEventListener("focusout", (ev) => {
    if (!body.contains(ev.relatedTarget as Node | null)) clearReadout();
  });
  const player = stepPlayer(play, root, {
    count: () => T, current: () => current(), go: (t) => setCheckpoint(t), intervalMs: () => model.get("interval_ms"),
  });
  const stop = player.stop;
  let hovered: [number, number] | null = null;
  // SVCCA in [0, 1]; on the view's background (a dark theme starts viridis at its blue: 0 ≠ the page)
  const scale = (): ColorScale => onBackground(root, { kind: "sequential", vmin: 0, vmax: 1 });

  const current = () => Math.min(Math.max(0, model.get("checkpoint")), Math.max(0, T - 1));
  const ckName = (t: number) => model.get("checkpoint_labels")[t] ?? String(t);

  function value(t: number, l: number, c: number): number | null {
    const k = valueIndex(values.shape, t, l, c);
    return defined.data[k] ? values.data[k] : null;
  }

  function paint() {
    if (!cells.length) return;
    const t = current();
    const s = scale();
    setScale(s, "SVCCA"); // here too: the theme may have changed
    const show = valueFits(4, parseFloat(getComputedStyle(root).fontSize) || 13, cellPx);
    root.dataset.valuesShown = String(show);
    for (let c = 0; c < C; c++) {
      for (let l = 0; l < L; l++) {
        const cell = cells[c * L + l];
        const v = value(t, l, c);
        cell.setAttribute("aria-label", `class ${model.get("class_names")[c] ?? c}, layer ${model.get("layers")[l] ?? l} at ${
          ckName(t)}: SVCCA ${v === null ? "undefined" : formatNumber(v)}`);
        if (v === null) {
          cell.classList.add("nbx-undefined");
          cell.style.background = "";
          cell.textContent = "–";
          cell.dataset.value = "NaN";
          continue;
        }
        cell.classList.remove("nbx-undefined");
        const rgb = colorOf(v, s);
        cell.style.background = `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
        cell.style.color = textColor(rgb);
        cell.dataset.value = String(v);
        cell.textContent = show ? v.toFixed(2) : "";
      }
    }
    slider.value = String(t);
    ckLabel.textContent = `${ckName(t)}  (${t + 1}/${T})`;
    root.dataset.checkpoint = String(t);
    if (hovered) showReadout(hovered[0], hovered[1]);
    drawChart();
  }

  function showReadout(c: number, l: number) {
    const t = current();
    const v = value(t, l, c);
    const names = model.get("class_names");
    const learned = model.get("learned_at")[l]?.[c] ?? -1;
    readout.textContent = `class ${names[c]} × ${model.get("layers")[l]} @ ${ckName(t)} — SVCCA ${
      v === null ? "undefined (no variance)" : formatNumber(v)
    } · ≥ ${formatNumber(model.get("threshold"))} ${learnedText(learned, model.get("checkpoint_labels"))}`;
    root.dataset.hover = `${c},${l}`;
    root.dataset.value = v === null ? "NaN" : String(v);
    rowLabels.forEach((e, k) => e.classList.toggle("nbx-active", k === c));
    colLabels.forEach((e, k) => e.classList.toggle("nbx-active", k === l));
  }

  function clearReadout() {
    hovered = null;
    delete root.dataset.hover;
    readout.textContent = "hover or focus a cell to read it · click, Enter or Space to plot its class over training";
    rowLabels.forEach((e) => e.classList.remove("nbx-active"));
    colLabels.forEach((e) => e.classList.remove("nbx-active"));
  }

  function select(c: number) {
    model.set("selected_class", c);
    model.save_changes(); // also carries the locally changed checkpoint
    drawChart();
  }

  function drawChart() {
    const sel = model.get("selected_class");
    root.dataset.selected = String(sel);
    cells.forEach((cell, k) => {
      const on = Math.floor(k / Math.max(L, 1)) === sel;
      cell.classList.toggle("nbx-selected", on);
      cell.setAttribute("aria-pressed", String(on));
    });
    chartBox.replaceChildren();
    const names = model.get("class_names");
    if (sel < 0 || sel >= C) {
      chartBox.appendChild(h("div", "nbx-cs-hint", "click a cell: its class's value over the checkpoints, one line per layer"));
      return;
    }
    const labels = model.get("checkpoint_labels");
    const layers = model.get("layers");
    const thr = model.get("threshold");
    const learned = model.get("learned_at");
    chartBox.appendChild(h("div", "nbx-cs-title nbx-cs-chart-title", `class ${names[sel]} over training`));
    const k = scaleOf(root);
    const fs = parseFloat(getComputedStyle(root).fontSize) || 13;
    const left = Math.round(3.4 * fs);
    const avail = el.clientWidth ? el.clientWidth - 16 - left - 16 : 0;
    const width = Math.round(avail > 0 ? Math.max(160, Math.min(300 * k, avail)) : 300 * k);
    const height = Math.round(170 * k);
    const { svg, mk } = svgPlot("nbx-cs-chart", { left, top: Math.round(fs), width, height, padRight: 16,
      padBottom: Math.round(4 * fs) });
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `SVCCA of each layer with the logit of class ${names[sel]} over the checkpoints`);
    mk("path", { class: "nbx-axis", d: `M0,0V${height}H${width}` });
    for (const v of [0, 0.25, 0.5, 0.75, 1]) {
      mk("path", { class: "nbx-axis", d: `M-4,${height - v * height}H0` });
      mk("text", { x: "-6", y: String(height - v * height + 0.35 * fs), "text-anchor": "end" }, String(v));
    }
    mk("text", { x: String(-left + 0.8 * fs), y: String(height / 2), transform: `rotate(-90 ${-left + 0.8 * fs} ${height / 2})`,
      "text-anchor": "middle" }, "SVCCA");
    const ty = height - thr * height;
    mk("path", { class: "nbx-cs-threshold", d: `M0,${ty}H${width}` });
    const nowX = checkpointX(current(), T, width);
    mk("path", { class: "nbx-cs-now", d: `M${nowX},0V${height}` });
    // x ticks: first, current and last checkpoint (labels may be long)
    const ticks = Array.from(new Set([0, T - 1]));
    ticks.forEach((t) => {
      const anchor = T > 1 ? (t === 0 ? "start" : "end") : "middle";
      mk("path", { class: "nbx-axis", d: `M${checkpointX(t, T, width)},${height}V${height + 4}` });
      mk("text", { x: String(checkpointX(t, T, width)), y: String(height + 1.3 * fs), "text-anchor": anchor }, labels[t] ?? String(t));
    });
    mk("text", { x: String(width / 2), y: String(height + 2.9 * fs), "text-anchor": "middle" }, `checkpoint (${T} in all)`);
    const legend = h("div", "nbx-cs-legend");
    for (let l = 0; l < L; l++) {
      const color = LAYER_COLORS[l % LAYER_COLORS.length];
      const curve: Array<number | null> = [];
      for (let t = 0; t < T; t++) curve.push(value(t, l, sel));
      const path = mk("path", { d: curvePath(curve, width, height), fill: "none", stroke: color, "stroke-width": "2" });
      path.setAttribute("data-layer", layers[l]);
      for (let t = 0; t < T; t++) {
        const v = curve[t];
        if (v === null) continue;
        mk("circle", { cx: String(checkpointX(t, T, width)), cy: String(height - Math.min(1, Math.max(0, v)) * height),
          r: "2.5", fill: color });
      }
      const at = learned[l]?.[sel] ?? -1;
      if (at >= 0) {
        const v = curve[at] ?? thr;
        mk("circle", { class: "nbx-cs-learned", cx: String(checkpointX(at, T, width)),
          cy: String(height - Math.min(1, Math.max(0, v)) * height), r: "6", fill: "none", stroke: color, "stroke-width": "2" });
      }
      const item = h("span", "nbx-cs-legend-item");
      const sw = h("span", "nbx-cs-swatch");
      sw.style.background = color;
      item.append(sw, document.createTextNode(`layer ${layers[l]}: SVCCA ≥ ${formatNumber(thr)} ${learnedText(at, labels)}`));
      legend.appendChild(item);
    }
    const key = (cls: string, text: string) => {
      const item = h("span", "nbx-cs-legend-item nbx-cs-key");
      item.append(h("span", `nbx-cs-swatch ${cls}`), document.createTextNode(text));
      legend.appendChild(item);
    };
    key("nbx-cs-swatch-threshold", `dashed line: threshold, SVCCA ${formatNumber(thr)}`);
    key("nbx-cs-swatch-now", `vertical line: the checkpoint shown (${ckName(current())})`);
    chartBox.append(svg, legend, h("div", "nbx-cs-hint", "ring: the checkpoint from which the layer stays above the dashed threshold"));
  }

  function setCheckpoint(t: number) {
    model.set("checkpoint", Math.min(Math.max(0, t), T - 1)); // local; synced with the next click
    paint();
  }

  function build() {
    stop();
    values = decodeTensor(model.get("values"));
    defined = decodeTensor(model.get("defined"));
    [T, L, C] = values.shape.length === 3 ? values.shape : [0, 0, 0];
    const size = model.get("cell_size");
    const names = model.get("class_names");
    // wanted size × scale, shrunk so that the layer columns fit next to the class labels
    const labelW = Math.max(0, ...names.map((n) => n.length)) * 0.6 * (parseFloat(getComputedStyle(root).fontSize) || 13);
    cellPx = fitCellSize(size, scaleOf(root), L, el.clientWidth ? el.clientWidth - 40 - Math.min(labelW, 160) : 0);
    root.dataset.cellSize = String(cellPx);
    const rowPx = Math.max(Math.round(1.6 * (parseFloat(getComputedStyle(root).fontSize) || 13)), Math.round(cellPx * 0.6));
    const layers = model.get("layers");
    body.replaceChildren();
    cells = [];
    rowLabels = [];
    colLabels = [];
    body.style.gridTemplateColumns = `auto auto repeat(${L}, ${cellPx}px)`;
    body.style.gridTemplateRows = `repeat(${C}, ${rowPx}px) auto auto`;
    const rowTitle = h("div", "nbx-axis-title nbx-row-title", "class");
    rowTitle.style.gridColumn = "1";
    rowTitle.style.gridRow = `1 / ${C + 1}`;
    body.appendChild(rowTitle);
    for (let c = 0; c < C; c++) {
      const lab = h("div", "nbx-row-label", names[c] ?? String(c));
      lab.style.gridColumn = "2";
      lab.style.gridRow = String(c + 1);
      lab.addEventListener("click", () => select(c));
      body.appendChild(lab);
      rowLabels.push(lab);
      for (let l = 0; l < L; l++) {
        const cell = h("div", "nbx-cs-cell");
        cell.dataset.c = String(c);
        cell.dataset.l = String(l);
        cell.dataset.row = String(c);
        cell.dataset.col = String(l);
        cell.style.gridColumn = String(l + 3);
        cell.style.gridRow = String(c + 1);
        cell.style.width = `${cellPx}px`;
        cell.style.height = "100%";
        cell.setAttribute("role", "button");
        cell.addEventListener("pointerenter", () => {
          hovered = [c, l];
          showReadout(c, l);
        });
        cell.addEventListener("pointerleave", clearReadout);
        cell.addEventListener("click", () => select(c));
        body.appendChild(cell);
        cells.push(cell);
      }
    }
    for (let l = 0; l < L; l++) {
      const lab = h("div", "nbx-col-label", layers[l] ?? String(l));
      lab.style.gridColumn = String(l + 3);
      lab.style.gridRow = String(C + 1);
      body.appendChild(lab);
      colLabels.push(lab);
    }
    const colTitle = h("div", "nbx-axis-title", "layer");
    colTitle.style.gridColumn = `3 / ${L + 3}`;
    colTitle.style.gridRow = String(C + 2);
    colTitle.style.textAlign = "center";
    body.appendChild(colTitle);
    const ref = model.get("logits") === "own" ? "its own" : "the final checkpoint's";
    gridTitle.textContent = `SVCCA of each layer with each class logit (${ref})`;
    slider.max = String(Math.max(0, T - 1));
    sliderLabel.style.display = T > 1 ? "" : "none";
    play.style.display = T > 1 ? "" : "none";
    root.dataset.checkpoints = String(T);
    root.dataset.cells = String(cells.length);
    const sel = model.get("selected_class");
    keys.setStop(sel >= 0 && sel < C ? sel : 0, 0);
    clearReadout();
    paint();
    root.dataset.ready = "true";
  }

  slider.addEventListener("input", () => {
    stop();
    setCheckpoint(Number(slider.value));
  });
  root.addEventListener("keydown", (ev) => {
    if (ev.target === slider) return;
    if (ev.key === "ArrowRight") setCheckpoint(current() + 1);
    else if (ev.key === "ArrowLeft") setCheckpoint(current() - 1);
    else return;
    ev.preventDefault();
    ev.stopPropagation(); // JupyterLab binds ←/→ to notebook commands in command mode
  });

  const onTheme = themeHandler(root, model);
  const events: Array<[string, () => void]> = [
    ["change:values", build], ["change:defined", build], ["change:layers", build], ["change:class_names", build],
    ["change:cell_size", build], ["change:logits", build], ["change:checkpoint", paint],
    ["change:checkpoint_labels", paint], ["change:learned_at", drawChart], ["change:threshold", drawChart],
    ["change:selected_class", drawChart], ["change:theme", onTheme],
  ];
  build();
  let lastWidth = -1;
  const redraw = () => {
    if (el.clientWidth !== lastWidth) {
      lastWidth = el.clientWidth;
      build();
    } else paint();
  };
  return connect(el, root, model, events, redraw, stop, stopScale, onThemeChange(root, paint));
}

export default { render };
export type { AnyModel };
