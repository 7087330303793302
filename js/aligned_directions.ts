// AlignedDirections view: the SVCCA paper's first figure. Four blocks of heat strips (rows = top neurons of
// net A / net B, then top SVCCA directions of A / B; columns = inputs sorted by class, boundaries marked and
// labelled). Every row arrives once; the row slider repaints locally. Hover reads one value; clicking a
// direction sends `selected` and overlays its A and B traces in a line chart with ρ.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { keepNavigationKeys } from "./lib/keys";
import { colorOf, mapFloor, paintColorbar } from "./lib/colormap";
import { activate, applyScale, backgroundOf, connect, h, injectStyle, offscreen, onThemeChange, scaleOf, svgPlot, themeHandler, viewRoot } from "./lib/dom";
import { formatNumber, niceTicks } from "./lib/nice_ticks";
import { decodeTensor, type Tensor, type WireTensor } from "./lib/tensor";

interface State {
  neurons_a: WireTensor;
  neurons_b: WireTensor;
  directions_a: WireTensor;
  directions_b: WireTensor;
  neuron_ids_a: number[];
  neuron_ids_b: number[];
  coefficients: number[];
  input_ids: number[];
  column_classes: number[];
  class_names: string[];
  names: string[];
  layer: string;
  n: number;
  selected: number;
  strip_width: number;
  strip_height: number;
  theme: string;
  scale: number;
}


const CSS = `
.nbx-root.nbx-aligned-directions { max-width: 100%; }
.nbx-aligned-directions .nbx-ad-rowlabel.nbx-ad-dir:focus-visible, .nbx-aligned-directions input:focus-visible {
  outline: 2px solid var(--nbx-accent); outline-offset: 1px; }
.nbx-aligned-directions .nbx-ad-legend-row { display: flex; flex-wrap: wrap; align-items: center; gap: 6px;
  color: var(--nbx-muted); margin-bottom: 4px; }
.nbx-aligned-directions .nbx-control { flex-wrap: wrap; max-width: 100%; }
.nbx-aligned-directions .nbx-ad-keybar { display: inline-flex; align-items: center; gap: 6px; white-space: nowrap; }
.nbx-aligned-directions .nbx-ad-title { font-weight: 600; margin: 6px 0 2px; overflow-wrap: anywhere; }
.nbx-aligned-directions .nbx-ad-note { color: var(--nbx-muted); overflow-wrap: anywhere; margin-bottom: 4px; }
.nbx-aligned-directions .nbx-ad-pair { display: flex; flex-wrap: wrap; gap: 10px 14px; }
.nbx-aligned-directions .nbx-ad-block { display: grid; column-gap: 6px; align-items: center; }
.nbx-aligned-directions .nbx-ad-name { grid-column: 1 / 3; color: var(--nbx-fg); overflow-wrap: anywhere; }
.nbx-aligned-directions .nbx-ad-rowlabel { text-align: right; white-space: nowrap; color: var(--nbx-muted);
  font-family: var(--jp-code-font-family, monospace); cursor: default; }
.nbx-aligned-directions .nbx-ad-rowlabel.nbx-ad-dir { cursor: pointer; }
.nbx-aligned-directions .nbx-ad-rowlabel.nbx-active { color: var(--nbx-fg); font-weight: 600; }
.nbx-aligned-directions .nbx-ad-rowlabel.nbx-selected { color: var(--nbx-accent); font-weight: 600; }
.nbx-aligned-directions .nbx-ad-strips { position: relative; grid-column: 2; }
.nbx-aligned-directions canvas.nbx-ad-canvas { display: block; image-rendering: pixelated; cursor: crosshair; }
.nbx-aligned-directions .nbx-ad-strips.nbx-ad-dirs canvas.nbx-ad-canvas { cursor: pointer; }
.nbx-aligned-directions .nbx-ad-bound { position: absolute; top: 0; bottom: 0; width: 0;
  border-left: 2px solid var(--nbx-bg); margin-left: -1px; pointer-events: none; }
.nbx-aligned-directions .nbx-ad-axis { position: relative; grid-column: 2; height: 1.5em; color: var(--nbx-muted); }
.nbx-aligned-directions .nbx-ad-class { position: absolute; top: 0; transform: translateX(-50%); white-space: nowrap; }
.nbx-aligned-directions .nbx-ad-axis-title { grid-column: 2; color: var(--nbx-muted); text-align: center; }
.nbx-aligned-directions .nbx-ad-hl { position: absolute; left: 0; right: 0; pointer-events: none;
  outline: 2px solid var(--nbx-accent); display: none; }
.nbx-aligned-directions svg.nbx-ad-chart { display: block; overflow: visible; }
.nbx-aligned-directions svg.nbx-ad-chart text { fill: var(--nbx-muted); font-size: 1em;
  font-family: inherit; }
.nbx-aligned-directions svg.nbx-ad-chart .nbx-axis { stroke: var(--nbx-border); stroke-width: 1; fill: none; }
.nbx-aligned-directions svg.nbx-ad-chart .nbx-ad-line-a { stroke: #1f77b4; stroke-width: 1.2; fill: none; }
.nbx-aligned-directions svg.nbx-ad-chart .nbx-ad-line-b { stroke: #ff7f0e; stroke-width: 1.2; fill: none; opacity: 0.85; }
.nbx-aligned-directions .nbx-ad-legend { display: flex; flex-wrap: wrap; gap: 4px 14px; color: var(--nbx-fg); }
.nbx-aligned-directions .nbx-ad-swatch { display: inline-block; width: 14px; height: 3px; vertical-align: middle;
  margin-right: 4px; }
.nbx-aligned-directions .nbx-ad-count { font-family: var(--jp-code-font-family, monospace); min-width: 2em; }
`;

/** Contiguous runs of equal classes in the column order: [class, first column, end column (exclusive)]. */
export function classSegments(columnClasses: ArrayLike<number>): Array<[number, number, number]> {
  const out: Array<[number, number, number]> = [];
  for (let i = 0; i < columnClasses.length; i++) {
    const c = columnClasses[i];
    if (out.length && out[out.length - 1][0] === c) out[out.length - 1][2] = i + 1;
    else out.push([c, i, i + 1]);
  }
  return out;
}

/** Column under a pointer at css x in a strip `width` px wide showing `count` columns (null outside). */
export function columnAt(x: number, width: number, count: number): number | null {
  if (!(width > 0) || count <= 0 || x < 0 || x >= width) return null;
  return Math.min(count - 1, Math.floor((x / width) * count));
}

/** Min and max of one row of a row-major (rows, cols) array (equal ends are widened so a scale has width). */
export function rowRange(data: ArrayLike<number>, row: number, cols: number): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let j = row * cols; j < (row + 1) * cols; j++) {
    const v = data[j];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!(hi > lo)) return [lo === Infinity ? 0 : lo - 0.5, lo === Infinity ? 1 : lo + 0.5];
  return [lo, hi];
}

/**
 * RGBA pixels of the first `rows` rows, each coloured on its own scale: [min, max] on the sequential map, or
 * (`signed`) −max|v| … +max|v| on the diverging map, zero in its white middle. `floor`: the scale's `floor`
 * (`mapFloor` of the map's kind on the view's background; 0 on a light one).
 */
export function stripPixels(data: ArrayLike<number>, rows: number, cols: number, signed = false, floor = 0): Uint8ClampedArray {
  const px = new Uint8ClampedArray(rows * cols * 4);
  for (let i = 0; i < rows; i++) {
    const [lo, hi] = rowRange(data, i, cols);
    const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
    const scale = signed ? { kind: "diverging" as const, vmin: -m, vmax: m, floor } : { kind: "sequential" as const, vmin: lo, vmax: hi, floor };
    for (let j = 0; j < cols; j++) {
      const [r, g, b] = colorOf(data[i * cols + j], scale);
      px.set([r, g, b, 255], 4 * (i * cols + j));
    }
  }
  return px;
}

/** SVG path through (j, values[j]) scaled into a width × height box with y from lo (bottom) to hi (top). */
export function tracePath(values: ArrayLike<number>, width: number, height: number, lo: number, hi: number): string {
  const n = values.length;
  if (!n) return "";
  const span = hi > lo ? hi - lo : 1;
  const parts: string[] = [];
  for (let j = 0; j < n; j++) {
    const x = n > 1 ? (j / (n - 1)) * width : width / 2;
    const y = height - ((values[j] - lo) / span) * height;
    parts.push(`${j ? "L" : "M"}${x.toFixed(2)},${y.toFixed(2)}`);
  }
  return parts.join("");
}

type Kind = "neurons" | "directions";

function render({ model, el }: RenderProps<State>) {
  const root = viewRoot("aligned-directions", model.get("theme"));
  const stopScale = applyScale(root, model, () => build());
  keepNavigationKeys(root);
  injectStyle(el, CSS);
  el.appendChild(root);

  const title = h("div", "nbx-ad-title");
  const controls = h("div", "nbx-controls");
  const nLabel = h("label", "nbx-control", "rows");
  const nSlider = h("input", "nbx-ad-n");
  nSlider.type = "range";
  nSlider.min = "1";
  nSlider.step = "1";
  const nCount = h("span", "nbx-ad-count");
  nLabel.append(nSlider, nCount);
  controls.append(nLabel);
  const keyBar = (lo: string, bar: HTMLCanvasElement, hi: string) => {
    const group = h("span", "nbx-ad-keybar");
    group.append(h("span", "", lo), bar, h("span", "", hi));
    return group;
  };
  // where the sequential map starts on this view's background (0 on a light page; its blue on a dark one)
  const floor = (signed: boolean) => mapFloor(signed ? "diverging" : "sequential", backgroundOf(root));
  let sequentialBar: HTMLCanvasElement | null = null;
  let divergingBar: HTMLCanvasElement | null = null;
  const paintLegend = () => {
    if (sequentialBar) paintColorbar(sequentialBar, { kind: "sequential", vmin: 0, vmax: 1, floor: floor(false) });
    if (divergingBar) paintColorbar(divergingBar, { kind: "diverging", vmin: -1, vmax: 1, floor: floor(true) });
  };
  const legend = (signed: boolean) => {
    const row = h("div", "nbx-ad-legend-row");
    const bar = h("canvas", "nbx-colorbar");
    bar.setAttribute("role", "img");
    if (signed) divergingBar = bar; // both painted by paintLegend, which follows the theme
    else sequentialBar = bar;
    if (signed) {
      bar.setAttribute("aria-label", "diverging colour scale, blue negative, white zero, red positive");
      row.append(h("span", "", "variate, each row on its own scale (white: 0, ends: ± the row's largest |value|):"),
        keyBar("−", bar, "+"));
    } else {
      bar.setAttribute("aria-label", "sequential colour scale, dark to light");
      row.append(h("span", "", "activation, each row on its own scale:"), keyBar("lowest", bar, "highest"));
    }
    return row;
  };
  const neuronTitle = h("div", "nbx-ad-title");
  const neuronPair = h("div", "nbx-ad-pair");
  const dirTitle = h("div", "nbx-ad-title");
  const dirNote = h("div", "nbx-ad-note", "click a direction to overlay its two traces");
  const dirPair = h("div", "nbx-ad-pair");
  const readout = h("div", "nbx-readout");
  const chartBox = h("div", "nbx-ad-chartbox");
  root.append(title, controls, neuronTitle, legend(false), neuronPair, dirTitle, dirNote, legend(true), dirPair, readout, chartBox);
  paintLegend();

  let tensors: Record<string, Tensor> = {};
  let cols = 0;
  let segments: Array<[number, number, number]> = [];
  const rowLabels: Record<string, HTMLDivElement[]> = {};
  const canvases: Record<string, HTMLCanvasElement> = {};
  const highlights: Record<string, HTMLDivElement> = {};

  let lastWidth = -1;
  const fontPx = () => parseFloat(getComputedStyle(root).fontSize) || 13;
  // strips as wide as asked (× scale), but two blocks side by side or one per line within the column
  const measure = h("canvas").getContext("2d");
  const labelPx = () => {
    if (!measure) return 12 * fontPx();
    const cs = getComputedStyle(root);
    const mono = cs.getPropertyValue("--jp-code-font-family").trim() || "monospace"; // the labels' font
    measure.font = `600 ${cs.fontSize} ${mono}`; // the widest (bold: active / selected) rendering
    let w = 0;
    for (const kind of ["neurons", "directions"] as Kind[]) for (const side of [0, 1]) {
      for (let i = 0; i < shown(key(kind, side)); i++) w = Math.max(w, measure.measureText(rowName(kind, side, i)).width);
    }
    return Math.ceil(w) + 8;
  };
  const stripWidth = () => {
    const wanted = Math.round(model.get("strip_width") * scaleOf(root));
    const avail = el.clientWidth ? el.clientWidth - 30 - labelPx() : 0;
    return avail > 0 ? Math.max(60, Math.min(wanted, avail)) : wanted;
  };
  // rows never lower than the label text
  const stripHeight = () => Math.max(Math.round(model.get("strip_height") * scaleOf(root)), Math.ceil(1.35 * fontPx()));
  const key = (kind: Kind, side: number) => `${kind}_${side ? "b" : "a"}`;
  const rowsOf = (k: string) => (tensors[k]?.shape.length === 2 ? tensors[k].shape[0] : 0);
  const shown = (k: string) => Math.min(model.get("n"), rowsOf(k));
  const className = (c: number) => model.get("class_names")[c] ?? String(c);

  function rowName(kind: Kind, side: number, i: number): string {
    if (kind === "directions") return `direction ${i + 1} (ρ = ${(model.get("coefficients")[i] ?? NaN).toFixed(2)})`;
    const ids = side ? model.get("neuron_ids_b") : model.get("neuron_ids_a");
    return `neuron ${ids[i] ?? i}`;
  }

  function block(kind: Kind, side: number): HTMLDivElement {
    const k = key(kind, side);
    const b = h("div", "nbx-ad-block");
    const width = stripWidth();
    b.style.gridTemplateColumns = `max-content ${width}px`;
    const name = h("div", "nbx-ad-name", model.get("names")[side] ?? (side ? "net B" : "net A"));
    b.appendChild(name);
    const n = shown(k);
    const sh = stripHeight();
    const labels: HTMLDivElement[] = [];
    for (let i = 0; i < n; i++) {
      const lab = h("div", `nbx-ad-rowlabel${kind === "directions" ? " nbx-ad-dir" : ""}`, rowName(kind, side, i));
      lab.style.gridColumn = "1";
      lab.style.gridRow = String(i + 2);
      lab.style.height = `${sh}px`;
      lab.style.lineHeight = `${sh}px`;
      if (kind === "directions") {
        lab.setAttribute("role", "button");
        lab.tabIndex = side === 0 ? 0 : -1; // one stop per direction (the twin row of net B mirrors it)
        lab.setAttribute("aria-label", `${rowName(kind, side, i)}: overlay the two networks' traces`);
        activate(lab, () => select(i));
      }
      b.appendChild(lab);
      labels.push(lab);
    }
    rowLabels[k] = labels;
    const strips = h("div", `nbx-ad-strips${kind === "directions" ? " nbx-ad-dirs" : ""}`);
    strips.style.gridRow = `2 / ${n + 2}`;
    const t = tensors[k];
    const canvas = t && n ? offscreen(stripPixels(t.data, n, cols, kind === "directions", floor(kind === "directions")), cols, n) : h("canvas");
    canvas.className = "nbx-ad-canvas";
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `${model.get("names")[side] ?? ""}: ${
      kind === "directions" ? `top ${n} SVCCA directions' variates` : `top ${n} neurons' activations`} over ${cols} inputs sorted by class`);
    canvas.dataset.kind = kind;
    canvas.dataset.side = side ? "b" : "a";
    canvas.style.width = `${width}px`;
    canvas.style.height = `${n * sh}px`;
    strips.appendChild(canvas);
    for (const [, start] of segments.slice(1)) {
      const line = h("div", "nbx-ad-bound");
      line.style.left = `${(start / cols) * width}px`;
      strips.appendChild(line);
    }
    const hl = h("div", "nbx-ad-hl");
    hl.style.height = `${sh}px`;
    strips.appendChild(hl);
    highlights[k] = hl;
    canvases[k] = canvas;
    canvas.addEventListener("pointermove", (ev) => hover(kind, side, ev));
    canvas.addEventListener("pointerleave", clearReadout);
    if (kind === "directions") {
      canvas.addEventListener("click", (ev) => {
        const row = Math.floor(ev.offsetY / sh);
        if (row >= 0 && row < n) select(row);
      });
    }
    b.appendChild(strips);
    const axis = h("div", "nbx-ad-axis");
    axis.style.gridRow = String(n + 2);
    segments.forEach(([c, start, end], k) => {
      const lab = h("span", "nbx-ad-class", className(c));
      // centred under its run of columns; the first and last stay inside the strip
      if (k === segments.length - 1 && k > 0) {
        lab.style.right = `${((cols - end) / cols) * width}px`;
        lab.style.transform = "none";
      } else if (k === 0 && segments.length > 1) {
        lab.style.left = "0px";
        lab.style.transform = "none";
      } else lab.style.left = `${(((start + end) / 2) / cols) * width}px`;
      lab.title = `class ${className(c)}: columns ${start + 1}–${end}`;
      axis.appendChild(lab);
    });
    b.appendChild(axis);
    const axisTitle = h("div", "nbx-ad-axis-title", `${cols} inputs sorted by class`);
    axisTitle.style.gridRow = String(n + 3);
    b.appendChild(axisTitle);
    return b;
  }

  function hover(kind: Kind, side: number, ev: PointerEvent) {
    const k = key(kind, side);
    const n = shown(k);
    const sh = stripHeight();
    const col = columnAt(ev.offsetX, stripWidth(), cols);
    const row = Math.floor(ev.offsetY / sh);
    if (col === null || row < 0 || row >= n) return;
    const v = tensors[k].data[row * cols + col];
    const input = model.get("input_ids")[col] ?? col;
    const cls = model.get("column_classes")[col];
    const net = model.get("names")[side] ?? "";
    const what = kind === "directions" ? `direction ${row + 1} (ρ ${formatNumber(model.get("coefficients")[row])})` : rowName(kind, side, row);
    const quantity = kind === "directions" ? "variate" : "activation";
    readout.textContent = `${net} · ${what} · input #${input} (class ${className(cls)}) — ${quantity} ${formatNumber(v)}`;
    root.dataset.hover = `${k},${row},${col}`;
    root.dataset.value = String(v);
    rowLabels[k]?.forEach((el, i) => el.classList.toggle("nbx-active", i === row));
  }

  function clearReadout() {
    delete root.dataset.hover;
    readout.textContent = cols ? "hover a strip to read a value" : "no inputs";
    Object.values(rowLabels).forEach((labs) => labs.forEach((el) => el.classList.remove("nbx-active")));
  }

  function select(i: number) {
    model.set("selected", model.get("selected") === i ? -1 : i);
    model.save_changes();
    drawSelection();
  }

  function drawSelection() {
    const sel = model.get("selected");
    root.dataset.selected = String(sel);
    const sh = stripHeight();
    for (const side of [0, 1]) {
      const k = key("directions", side);
      rowLabels[k]?.forEach((el, i) => {
        el.classList.toggle("nbx-selected", i === sel);
        if (side === 0) el.setAttribute("aria-pressed", String(i === sel));
      });
      const hl = highlights[k];
      if (hl) {
        hl.style.display = sel >= 0 && sel < shown(k) ? "block" : "none";
        hl.style.top = `${sel * sh}px`;
      }
    }
    chartBox.replaceChildren();
    const a = tensors.directions_a;
    const b = tensors.directions_b;
    if (sel < 0 || !a || sel >= rowsOf("directions_a")) return;
    const rho = model.get("coefficients")[sel];
    const names = model.get("names");
    const head = h("div", "nbx-ad-title nbx-ad-chart-title", `direction ${sel + 1}: ρ = ${formatNumber(rho)} between ${names[0]} and ${names[1]}`);
    const legend = h("div", "nbx-ad-legend");
    for (const [side, color] of [[0, "#1f77b4"], [1, "#ff7f0e"]] as Array<[number, string]>) {
      const item = h("span", "");
      const sw = h("span", "nbx-ad-swatch");
      sw.style.background = color;
      item.append(sw, document.createTextNode(`${names[side]} direction ${sel + 1}`));
      legend.appendChild(item);
    }
    const ra = a.data.subarray(sel * cols, (sel + 1) * cols);
    const rb = b.data.subarray(sel * cols, (sel + 1) * cols);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of [...ra, ...rb]) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const fs = fontPx();
    const left = Math.round(4.2 * fs);
    const avail = el.clientWidth ? el.clientWidth - 24 : 0;
    const width = Math.round(Math.max(160, Math.min(700 * scaleOf(root), avail > 0 ? avail : 700) - left - 12));
    const height = Math.round(150 * scaleOf(root));
    const ticks = niceTicks(lo, hi, 5);
    lo = Math.min(lo, ticks[0] ?? lo);
    hi = Math.max(hi, ticks[ticks.length - 1] ?? hi);
    const { svg, mk } = svgPlot("nbx-ad-chart", { left, top: Math.round(0.6 * fs), width, height, padRight: 12,
      padBottom: Math.round(3.6 * fs) });
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `direction ${sel + 1}: the two networks' variates over the inputs sorted by class`);
    mk("path", { class: "nbx-axis", d: `M0,0V${height}H${width}` });
    const yOf = (v: number) => height - ((v - lo) / (hi > lo ? hi - lo : 1)) * height;
    for (const v of ticks) {
      mk("path", { class: "nbx-axis", d: `M-4,${yOf(v)}H0` });
      mk("text", { x: "-6", y: String(yOf(v) + 0.35 * fs), "text-anchor": "end" }, formatNumber(v));
    }
    if (lo < 0 && hi > 0) mk("path", { class: "nbx-axis", d: `M0,${yOf(0)}H${width}`, "stroke-dasharray": "3 3" });
    mk("text", { x: String(-left + 0.8 * fs), y: String(height / 2), transform: `rotate(-90 ${-left + 0.8 * fs} ${height / 2})`, "text-anchor": "middle" }, "variate");
    for (const [c, start, end] of segments) {
      const x0 = cols > 1 ? (start / (cols - 1)) * width : 0;
      if (start > 0) mk("path", { class: "nbx-axis", d: `M${x0},0V${height}` });
      const mid = cols > 1 ? (((start + end - 1) / 2) / (cols - 1)) * width : width / 2;
      mk("text", { x: String(mid), y: String(height + 1.3 * fs), "text-anchor": "middle" }, className(c));
    }
    mk("text", { x: String(width / 2), y: String(height + 2.9 * fs), "text-anchor": "middle" }, `${cols} inputs sorted by class`);
    mk("path", { class: "nbx-ad-line-a", d: tracePath(ra, width, height, lo, hi) });
    mk("path", { class: "nbx-ad-line-b", d: tracePath(rb, width, height, lo, hi) });
    chartBox.append(head, legend, svg);
  }

  function build() {
    lastWidth = el.clientWidth;
    tensors = {
      neurons_a: decodeTensor(model.get("neurons_a")),
      neurons_b: decodeTensor(model.get("neurons_b")),
      directions_a: decodeTensor(model.get("directions_a")),
      directions_b: decodeTensor(model.get("directions_b")),
    };
    cols = tensors.neurons_a.shape.length === 2 ? tensors.neurons_a.shape[1] : 0;
    segments = classSegments(model.get("column_classes"));
    const maxRows = Math.max(rowsOf("neurons_a"), rowsOf("directions_a"), 1);
    nSlider.max = String(maxRows);
    nSlider.value = String(model.get("n"));
    nLabel.style.display = maxRows > 1 ? "" : "none";
    const n = model.get("n");
    nCount.textContent = String(n);
    const layer = model.get("layer");
    title.textContent = `${layer ? `layer ${layer}: ` : ""}top neurons vs top SVCCA directions of two networks`;
    neuronTitle.textContent = `top ${Math.min(n, rowsOf("neurons_a"))} neurons by activation norm — no correspondence expected`;
    dirTitle.textContent = `top ${Math.min(n, rowsOf("directions_a"))} SVCCA directions — ρ: the canonical correlation of each pair of rows (net A's direction with net B's)`;
    neuronPair.replaceChildren(block("neurons", 0), block("neurons", 1));
    dirPair.replaceChildren(block("directions", 0), block("directions", 1));
    root.dataset.rows = String(n);
    root.dataset.inputs = String(cols);
    root.dataset.classes = String(segments.length);
    clearReadout();
    drawSelection();
    root.dataset.ready = "true";
  }

  nSlider.addEventListener("input", () => {
    model.set("n", Number(nSlider.value)); // local; Python learns it with the next click
    build();
  });

  const onTheme = themeHandler(root, model);
  const events: Array<[string, () => void]> = [
    ["change:neurons_a", build], ["change:neurons_b", build], ["change:directions_a", build],
    ["change:directions_b", build], ["change:n", build], ["change:column_classes", build],
    ["change:class_names", build], ["change:names", build], ["change:layer", build],
    ["change:strip_width", build], ["change:strip_height", build], ["change:coefficients", build],
    ["change:selected", drawSelection], ["change:theme", onTheme],
  ];
  build();
  // JupyterLab may drop canvas contents while an output is off-screen: repaint the pixels (layout untouched)
  const repaint = () => {
    paintLegend();
    for (const [k, canvas] of Object.entries(canvases)) {
      const n = shown(k);
      const ctx = canvas.isConnected && n && cols ? canvas.getContext("2d") : null;
      const signed = k.startsWith("directions");
      if (ctx) ctx.putImageData(new ImageData(stripPixels(tensors[k].data, n, cols, signed, floor(signed)) as Uint8ClampedArray<ArrayBuffer>, cols, n), 0, 0);
    }
  };
  // one watcher (connect's, on the root): a new width rebuilds, a return to view repaints
  const onWidth = () => {
    if (el.clientWidth !== lastWidth) build();
    else repaint();
  };
  return connect(el, root, model, events, onWidth, stopScale, onThemeChange(root, repaint));
}

export default { render };
export type { AnyModel };
