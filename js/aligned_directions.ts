// AlignedDirections view: the SVCCA paper's first figure. Four blocks of heat strips (rows = top neurons of
// net A / net B, then top SVCCA directions of A / B; columns = inputs sorted by class, boundaries marked and
// labelled). Every row arrives once; the row slider repaints locally. Hover reads one value; clicking a
// direction sends `selected` and overlays its A and B traces in a line chart with ρ.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { colorOf, formatValue, paintColorbar } from "./lib/colormap";
import { connect, h, injectStyle, offscreen, svgPlot, viewRoot } from "./lib/dom";
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

const LABEL_W = 112;

const CSS = `
.nbx-aligned-directions { max-width: 100%; }
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
.nbx-aligned-directions svg.nbx-ad-chart text { fill: var(--nbx-muted); font-size: var(--jp-ui-font-size1, 13px);
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

/** RGBA pixels of the first `rows` rows, each coloured on its own [min, max] (sequential map). */
export function stripPixels(data: ArrayLike<number>, rows: number, cols: number): Uint8ClampedArray {
  const px = new Uint8ClampedArray(rows * cols * 4);
  for (let i = 0; i < rows; i++) {
    const [lo, hi] = rowRange(data, i, cols);
    for (let j = 0; j < cols; j++) {
      const [r, g, b] = colorOf(data[i * cols + j], { kind: "sequential", vmin: lo, vmax: hi });
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
  const legendWrap = h("span", "nbx-colorbar-wrap");
  const lo = h("span", "", "each row: its minimum");
  const bar = h("canvas", "nbx-colorbar");
  const hi = h("span", "", "its maximum");
  legendWrap.append(lo, bar, hi);
  paintColorbar(bar, { kind: "sequential", vmin: 0, vmax: 1 });
  controls.append(nLabel, legendWrap);
  const neuronTitle = h("div", "nbx-ad-title");
  const neuronPair = h("div", "nbx-ad-pair");
  const dirTitle = h("div", "nbx-ad-title");
  const dirNote = h("div", "nbx-ad-note", "click a direction to overlay its two traces");
  const dirPair = h("div", "nbx-ad-pair");
  const readout = h("div", "nbx-readout");
  const chartBox = h("div", "nbx-ad-chartbox");
  root.append(title, controls, neuronTitle, neuronPair, dirTitle, dirNote, dirPair, readout, chartBox);

  let tensors: Record<string, Tensor> = {};
  let cols = 0;
  let segments: Array<[number, number, number]> = [];
  const rowLabels: Record<string, HTMLDivElement[]> = {};
  const canvases: Record<string, HTMLCanvasElement> = {};
  const highlights: Record<string, HTMLDivElement> = {};

  const key = (kind: Kind, side: number) => `${kind}_${side ? "b" : "a"}`;
  const rowsOf = (k: string) => (tensors[k]?.shape.length === 2 ? tensors[k].shape[0] : 0);
  const shown = (k: string) => Math.min(model.get("n"), rowsOf(k));
  const className = (c: number) => model.get("class_names")[c] ?? String(c);

  function rowName(kind: Kind, side: number, i: number): string {
    if (kind === "directions") return `dir ${i + 1} ρ ${(model.get("coefficients")[i] ?? NaN).toFixed(2)}`;
    const ids = side ? model.get("neuron_ids_b") : model.get("neuron_ids_a");
    return `neuron ${ids[i] ?? i}`;
  }

  function block(kind: Kind, side: number): HTMLDivElement {
    const k = key(kind, side);
    const b = h("div", "nbx-ad-block");
    const width = model.get("strip_width");
    b.style.gridTemplateColumns = `${LABEL_W}px ${width}px`;
    const name = h("div", "nbx-ad-name", model.get("names")[side] ?? (side ? "net B" : "net A"));
    b.appendChild(name);
    const n = shown(k);
    const sh = model.get("strip_height");
    const labels: HTMLDivElement[] = [];
    for (let i = 0; i < n; i++) {
      const lab = h("div", `nbx-ad-rowlabel${kind === "directions" ? " nbx-ad-dir" : ""}`, rowName(kind, side, i));
      lab.style.gridColumn = "1";
      lab.style.gridRow = String(i + 2);
      lab.style.height = `${sh}px`;
      lab.style.lineHeight = `${sh}px`;
      if (kind === "directions") lab.addEventListener("click", () => select(i));
      b.appendChild(lab);
      labels.push(lab);
    }
    rowLabels[k] = labels;
    const strips = h("div", `nbx-ad-strips${kind === "directions" ? " nbx-ad-dirs" : ""}`);
    strips.style.gridRow = `2 / ${n + 2}`;
    const t = tensors[k];
    const canvas = t && n ? offscreen(stripPixels(t.data, n, cols), cols, n) : h("canvas");
    canvas.className = "nbx-ad-canvas";
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
    for (const [c, start, end] of segments) {
      const lab = h("span", "nbx-ad-class", className(c));
      lab.style.left = `${(((start + end) / 2) / cols) * width}px`;
      lab.title = `class ${className(c)}: columns ${start + 1}–${end}`;
      axis.appendChild(lab);
    }
    b.appendChild(axis);
    const axisTitle = h("div", "nbx-ad-axis-title", `${cols} inputs sorted by class`);
    axisTitle.style.gridRow = String(n + 3);
    b.appendChild(axisTitle);
    return b;
  }

  function hover(kind: Kind, side: number, ev: PointerEvent) {
    const k = key(kind, side);
    const n = shown(k);
    const sh = model.get("strip_height");
    const col = columnAt(ev.offsetX, model.get("strip_width"), cols);
    const row = Math.floor(ev.offsetY / sh);
    if (col === null || row < 0 || row >= n) return;
    const v = tensors[k].data[row * cols + col];
    const input = model.get("input_ids")[col] ?? col;
    const cls = model.get("column_classes")[col];
    const net = model.get("names")[side] ?? "";
    const what = kind === "directions" ? `direction ${row + 1} (ρ ${formatValue(model.get("coefficients")[row])})` : rowName(kind, side, row);
    const quantity = kind === "directions" ? "variate" : "activation";
    readout.textContent = `${net} · ${what} · input #${input} (class ${className(cls)}) — ${quantity} ${formatValue(v)}`;
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
    const sh = model.get("strip_height");
    for (const side of [0, 1]) {
      const k = key("directions", side);
      rowLabels[k]?.forEach((el, i) => el.classList.toggle("nbx-selected", i === sel));
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
    const head = h("div", "nbx-ad-title nbx-ad-chart-title", `direction ${sel + 1}: ρ = ${formatValue(rho)} between ${names[0]} and ${names[1]}`);
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
    const left = 58;
    const width = Math.min(700, LABEL_W + model.get("strip_width") * 2) - left;
    const height = 150;
    const { svg, mk } = svgPlot("nbx-ad-chart", { left, top: 8, width, height, padRight: 8, padBottom: 48 });
    mk("path", { class: "nbx-axis", d: `M0,0V${height}H${width}` });
    const yOf = (v: number) => height - ((v - lo) / (hi > lo ? hi - lo : 1)) * height;
    for (const v of [lo, 0, hi]) {
      if (v < lo || v > hi) continue;
      mk("text", { x: "-4", y: String(yOf(v) + 4), "text-anchor": "end" }, formatValue(v));
    }
    mk("text", { x: String(-left + 2), y: String(height / 2), transform: `rotate(-90 ${-left + 14} ${height / 2})`, "text-anchor": "middle" }, "variate");
    for (const [c, start, end] of segments) {
      const x0 = cols > 1 ? (start / (cols - 1)) * width : 0;
      if (start > 0) mk("path", { class: "nbx-axis", d: `M${x0},0V${height}` });
      const mid = cols > 1 ? (((start + end - 1) / 2) / (cols - 1)) * width : width / 2;
      mk("text", { x: String(mid), y: String(height + 16), "text-anchor": "middle" }, className(c));
    }
    mk("text", { x: String(width / 2), y: String(height + 36), "text-anchor": "middle" }, "inputs sorted by class");
    mk("path", { class: "nbx-ad-line-a", d: tracePath(ra, width, height, lo, hi) });
    mk("path", { class: "nbx-ad-line-b", d: tracePath(rb, width, height, lo, hi) });
    chartBox.append(head, legend, svg);
  }

  function build() {
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
    dirTitle.textContent = `top ${Math.min(n, rowsOf("directions_a"))} SVCCA directions — each pair of rows correlates with its ρ`;
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

  const onTheme = () => (root.dataset.theme = model.get("theme"));
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
    for (const [k, canvas] of Object.entries(canvases)) {
      const n = shown(k);
      const ctx = canvas.isConnected && n && cols ? canvas.getContext("2d") : null;
      if (ctx) ctx.putImageData(new ImageData(stripPixels(tensors[k].data, n, cols) as Uint8ClampedArray<ArrayBuffer>, cols, n), 0, 0);
    }
  };
  return connect(el, root, model, events, repaint);
}

export default { render };
export type { AnyModel };
