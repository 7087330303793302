// Playground view: a small network learning a 2-D toy problem live in the kernel. Draws each frame the kernel
// pushes (decision surface + points, neuron maps and weighted edges, relevance) and, from precomputed state with
// no kernel round trip, the δ projection slider, the hover readout and the timeline replay of the recording.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { formatValue } from "./lib/colormap";
import { connect, h, injectStyle, offscreen, sizeCanvas, themeHandler, viewRoot } from "./lib/dom";
import { keepNavigationKeys } from "./lib/keys";
import { lineChart, similarityStrip } from "./lib/playground_charts";
import {
  boxAt, cellAt, classColor, decodeRecording, FIELD_MODES, type FieldMode, fieldRGBA, type FrameData, liveFrame,
  misclassified, planeAt, recordedFrame, surfaceRGBA, unitRGBA, unitValue,
} from "./lib/playground_draw";
import { type Diagram, networkDiagram } from "./lib/playground_network";
import { decodeTensor, type Tensor, type WireTensor } from "./lib/tensor";
import { PLAYGROUND_CSS } from "./lib/playground_style";

interface Config {
  dataset: string; classes: number; extent: number[]; inputs: string[]; layers: Array<{ name: string; units: number }>;
  edges: number[][]; resolution: number; neuron_resolution: number; relevance_resolution: number; n_train: number;
  custom_model: boolean; delta_layers?: string[];
}

type Wired = Record<string, WireTensor> & { count?: number; epoch?: number; layer?: string; width?: number;
  layers?: string[]; similarity_layers?: string[] };

interface State {
  state: string; error: string; dataset: string; features: string[]; hidden: number[]; activation: string;
  noise: number; test_fraction: number;
  learning_rate: number; l2: number; batch_size: number; epoch_limit: number; relevance_method: string;
  delta: number; delta_layer: string; basis: string; scale: number; theme: string; config: Config;
  static: Wired; frame: Wired; recording: Wired; history: Wired; projection: Wired;
}

const DATASETS = ["moons", "circles", "xor", "spiral", "blobs"];
const FEATURES = ["x", "y", "x^2", "y^2", "xy", "sin x", "sin y"];
const RATES = [0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3];
const L2S = [0, 0.0001, 0.001, 0.003, 0.01, 0.03, 0.1];
const NOISES = [0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5];
const TEST_FRACTIONS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.7];
const PLANE = 300;

/** FNV-1a hash of bytes (the view's fingerprint of a frame: equal frames give equal hashes). */
export function fnv(...parts: ArrayLike<number>[]): string {
  let hsh = 0x811c9dc5;
  for (const p of parts) for (let i = 0; i < p.length; i++) hsh = Math.imul(hsh ^ (p[i] & 255), 0x01000193) >>> 0;
  return hsh.toString(16);
}

function select(cls: string, options: Array<[string, string]>): HTMLSelectElement {
  const s = h("select", cls);
  for (const [value, text] of options) {
    const o = h("option", "", text);
    o.value = value;
    s.appendChild(o);
  }
  return s;
}

/** Show `value` in a select, adding it as an option when it is not one of the listed values. */
function selectValue(sel: HTMLSelectElement, value: string, text = value): void {
  if (!Array.from(sel.options).some((o) => o.value === value)) {
    const o = h("option", "", text);
    o.value = value;
    sel.appendChild(o);
  }
  sel.value = value;
}

function labelled(text: string, control: HTMLElement, kernel = true): HTMLLabelElement {
  const l = h("label", `nbx-control${kernel ? " nbx-needs-kernel" : ""}`, text);
  l.appendChild(control);
  return l;
}

function button(cls: string, text: string, kernel = true): HTMLButtonElement {
  const b = h("button", `nbx-button ${cls}${kernel ? " nbx-needs-kernel" : ""}`, text);
  b.type = "button";
  return b;
}

function render({ model, el }: RenderProps<State>) {
  const root = viewRoot("playground", model.get("theme"));
  injectStyle(el, PLAYGROUND_CSS);
  el.appendChild(root);
  const send = (action: string) => model.send({ type: "command", action });

  // ---- controls
  const bar = h("div", "nbx-controls");
  const playBtn = button("nbx-pg-play", "▶ play");
  const stepBtn = button("nbx-pg-step", "step (1 epoch)");
  const rewindBtn = button("nbx-pg-rewind", "rewind");
  const pngBtn = button("nbx-pg-png", "save PNG", false);
  const status = h("span", "nbx-pg-status");
  status.setAttribute("aria-live", "polite");
  bar.append(playBtn, stepBtn, rewindBtn, pngBtn, status);
  const settings = h("div", "nbx-controls nbx-pg-settings");
  const dataSel = select("nbx-pg-dataset", DATASETS.map((d) => [d, d]));
  const featureBox = h("span", "nbx-pg-features nbx-needs-kernel");
  featureBox.setAttribute("role", "group");
  featureBox.setAttribute("aria-label", "input features");
  const featureChecks = FEATURES.map((f) => {
    const lab = h("label", "nbx-control");
    const c = h("input", "nbx-pg-feature");
    c.type = "checkbox";
    c.value = f;
    lab.append(c, document.createTextNode(f));
    featureBox.appendChild(lab);
    return c;
  });
  const hiddenIn = h("input", "nbx-pg-hidden");
  hiddenIn.type = "text";
  hiddenIn.size = 10;
  const actSel = select("nbx-pg-activation", ["relu", "tanh", "sigmoid", "gelu"].map((a) => [a, a]));
  const rateSel = select("nbx-pg-rate", RATES.map((r) => [String(r), String(r)]));
  const l2Sel = select("nbx-pg-l2", L2S.map((r) => [String(r), String(r)]));
  const noiseSel = select("nbx-pg-noise", NOISES.map((r) => [String(r), String(r)]));
  const splitSel = select("nbx-pg-split", TEST_FRACTIONS.map((r) => [String(r), `${Math.round(r * 100)} %`]));
  const batchIn = h("input", "nbx-pg-batch");
  batchIn.type = "number";
  batchIn.min = "1";
  batchIn.max = "500";
  const limitIn = h("input", "nbx-pg-limit");
  limitIn.type = "number";
  limitIn.min = "0";
  const netOnly = [labelled("features", featureBox), labelled("hidden widths", hiddenIn), labelled("activation", actSel)];
  const dataOnly = [labelled("noise", noiseSel), labelled("test points", splitSel)];
  settings.append(labelled("data", dataSel), ...dataOnly, ...netOnly, labelled("learning rate", rateSel), labelled("L2", l2Sel),
    labelled("batch", batchIn), labelled("epoch limit (0 = none)", limitIn));
  const error = h("div", "nbx-error");
  error.setAttribute("role", "alert");

  // ---- network, plane
  const main = h("div", "nbx-pg-main");
  const netBox = h("div", "nbx-pg-netbox");
  const enlarge = h("div", "nbx-pg-enlarge");
  const bigCanvas = h("canvas", "nbx-canvas nbx-pg-big");
  const bigTitle = h("div", "nbx-pg-big-title", "hover or focus a neuron to enlarge it");
  enlarge.append(bigCanvas, bigTitle);
  const planeBox = h("div", "nbx-pg-planebox");
  const plane = h("canvas", "nbx-pg-plane");
  plane.tabIndex = 0;
  plane.setAttribute("role", "img");
  const fieldSel = select("nbx-pg-field", FIELD_MODES.map((m) => [m, m === "which input" ? "which input decides" : m]));
  const methodSel = select("nbx-pg-method", [["lrp", "LRP"], ["gradient_x_input", "gradient × input"]]);
  const readout = h("div", "nbx-readout nbx-pg-readout");
  readout.setAttribute("aria-live", "polite");
  planeBox.append(plane, labelled("plane shows", fieldSel, false), labelled("relevance by", methodSel), readout);
  main.append(netBox, planeBox);
  const charts = h("div", "nbx-pg-charts");

  // ---- δ and timeline
  const deltaBox = h("div", "nbx-pg-delta");
  const layerSel = h("select", "nbx-pg-delta-layer");
  const deltaSlider = h("input", "nbx-pg-delta-slider");
  deltaSlider.type = "range";
  deltaSlider.setAttribute("aria-label", "δ: fraction of the layer's variance kept");
  const randomBox = h("input", "nbx-pg-random");
  randomBox.type = "checkbox";
  const deltaText = h("div", "nbx-pg-delta-text");
  const projCanvas = h("canvas", "nbx-pg-projected");
  const deltaControls = h("div", "nbx-controls");
  deltaControls.append(labelled("project layer", layerSel), labelled("δ", deltaSlider, false));
  const randomLabel = h("label", "nbx-control");
  randomLabel.append(randomBox, document.createTextNode("random subspace (control)"));
  deltaControls.appendChild(randomLabel);
  deltaBox.append(h("div", "nbx-pg-chart-title", "decision surface with one layer projected onto k(δ) directions"),
    deltaControls, projCanvas, deltaText);
  const timeline = h("div", "nbx-controls nbx-pg-timeline");
  const timeSlider = h("input", "nbx-pg-time");
  timeSlider.type = "range";
  timeSlider.min = "0";
  timeSlider.setAttribute("aria-label", "timeline: recorded frame");
  const timeText = h("span", "nbx-pg-time-text");
  timeline.append(labelled("replay", timeSlider, false), timeText);
  const stopKeys = keepNavigationKeys(root); // the sliders' arrows stay in the view (JupyterLab takes them)
  root.append(bar, settings, error, main, charts, deltaBox, timeline);

  // ---- state
  let diagram: Diagram | null = null;
  let cfg: Config = model.get("config");
  let points: Tensor = decodeTensor(null);
  let labels: Tensor = decodeTensor(null);
  let live: FrameData | null = null;
  let rec: { count: number; stacked: FrameData | null } = { count: 0, stacked: null };
  let cursorT: number | null = null; // timeline position, null = the live frame
  let drawn = 0;
  let inspected: [number, number] | null = null;
  let pinned = false;
  let hover: [number, number] | null = null;
  let projection: Wired = {};

  const shown = (): FrameData | null => (cursorT !== null && rec.stacked ? recordedFrame(rec.stacked, cursorT) : live);
  const neuronName = (c: number, u: number) => (c === 0 ? `input ${cfg.inputs[u]}` : `${cfg.layers[c - 1].name} unit ${u}`);

  function buildLayout() {
    cfg = model.get("config");
    const st = model.get("static");
    points = decodeTensor(st.points);
    labels = decodeTensor(st.labels);
    buildDiagram();
    layerSel.replaceChildren();
    for (const name of cfg.delta_layers ?? []) {
      const o = h("option", "", name);
      o.value = name;
      layerSel.appendChild(o);
    }
    for (const e of netOnly) e.style.display = cfg.custom_model ? "none" : "";
    dataOnly[0].style.display = cfg.dataset === "custom" ? "none" : ""; // noise: only for generated data sets
    syncControls();
    pinned = false;
    inspected = null;
  }

  /** Width the diagram may take: the column's, at most 440 px (it is rebuilt when the column changes size). */
  const availableWidth = () => Math.max(160, Math.min(440, (root.clientWidth || 452) - 12));
  let diagramWidth = 0;

  function buildDiagram() {
    const st = model.get("static");
    diagramWidth = availableWidth();
    const columns = [{ title: "inputs", units: cfg.inputs.length }, ...cfg.layers.map((l) => ({ title: l.name, units: l.units }))];
    diagram = networkDiagram(columns, neuronName, inspect, () => { if (!pinned) uninspect(); }, diagramWidth);
    netBox.replaceChildren(h("div", "nbx-pg-chart-title", "network (edge width = |weight|, blue +, orange −)"), diagram.el, enlarge);
    const inputs = decodeTensor(st.inputs);
    const ranges = decodeTensor(st.input_ranges);
    diagram.canvases[0].forEach((cv, u) => paintUnit(cv, inputs, ranges, u));
  }

  function onResize() {
    if (Math.abs(availableWidth() - diagramWidth) > 4) buildDiagram();
    drawFrame();
  }

  function paintUnit(cv: HTMLCanvasElement, maps: Tensor, ranges: Tensor, u: number) {
    const r = maps.shape[1];
    if (!r) return;
    cv.width = r;
    cv.height = r;
    cv.getContext("2d")?.putImageData(new ImageData(unitRGBA(maps, ranges, u) as Uint8ClampedArray<ArrayBuffer>, r, r), 0, 0);
  }

  function drawPlane(f: FrameData) {
    const ctx = sizeCanvas(plane, PLANE, PLANE);
    if (!ctx) return;
    const mode = fieldSel.value as FieldMode;
    const R = f.surface.shape[1];
    const q = f.relevance.shape[1];
    const src = mode === "probabilities" ? offscreen(surfaceRGBA(f.surface.data, cfg.classes, R), R, R)
      : offscreen(fieldRGBA(f.relevance, mode), q, q);
    const W = plane.width, H = plane.height, s = W / PLANE;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(src, 0, 0, W, H);
    const n = labels.data.length;
    for (let i = 0; i < n; i++) {
      const [x, y] = boxAt(points.data[2 * i], points.data[2 * i + 1], W, H, cfg.extent);
      const [r, g, b] = classColor(labels.data[i]);
      const test = i >= cfg.n_train;
      ctx.beginPath();
      ctx.arc(x, y, 3.6 * s, 0, 2 * Math.PI);
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fill();
      ctx.lineWidth = (test ? 1.8 : 1) * s;
      ctx.strokeStyle = test ? "#111" : "#fff";
      ctx.stroke();
      if (f.predicted.data[i] !== labels.data[i]) {
        const d = 4.5 * s;
        ctx.beginPath();
        ctx.moveTo(x - d, y - d); ctx.lineTo(x + d, y + d); ctx.moveTo(x + d, y - d); ctx.lineTo(x - d, y + d);
        ctx.lineWidth = 2 * s;
        ctx.strokeStyle = "#000";
        ctx.stroke();
      }
    }
    const wrongTrain = misclassified(f.predicted.data, labels.data, 0, cfg.n_train);
    const wrongTest = misclassified(f.predicted.data, labels.data, cfg.n_train, n);
    plane.setAttribute("aria-label", `${mode} over the plane with ${n} points; misclassified (marked ×): ` +
      `${wrongTrain} of ${cfg.n_train} training, ${wrongTest} of ${n - cfg.n_train} test points. Arrow keys read values.`);
    root.dataset.misclassified = String(wrongTrain + wrongTest);
  }

  function inspect(c: number, u: number, pin: boolean) {
    if (pin) pinned = !(pinned && inspected?.[0] === c && inspected?.[1] === u);
    inspected = [c, u];
    root.dataset.hoveredNeuron = `${c === 0 ? "input" : cfg.layers[c - 1].name}:${u}`;
    root.dataset.pinned = String(pinned);
    drawEnlarged();
  }

  function uninspect() {
    inspected = null;
    delete root.dataset.hoveredNeuron;
    enlarge.classList.remove("nbx-pg-open");
  }

  function drawEnlarged() {
    const f = shown();
    if (!inspected || !f || !diagram) return;
    const [c, u] = inspected;
    const st = model.get("static");
    let maps: Tensor, ranges: Tensor, idx = u;
    if (c === 0) {
      maps = decodeTensor(st.inputs);
      ranges = decodeTensor(st.input_ranges);
    } else {
      maps = f.neurons;
      ranges = f.ranges;
      for (let l = 0; l < c - 1; l++) idx += cfg.layers[l].units;
    }
    paintUnit(bigCanvas, maps, ranges, idx);
    bigCanvas.style.width = "160px";
    bigCanvas.style.height = "160px";
    bigTitle.textContent = `${neuronName(c, u)} · from ${formatValue(ranges.data[2 * idx])} to ${formatValue(ranges.data[2 * idx + 1])}` +
      " (blue −, white 0, red +)";
    enlarge.classList.add("nbx-pg-open");
  }

  function readPoint(px: number, py: number) {
    const f = shown();
    if (!f) return;
    const [x, y] = planeAt(px, py, PLANE, PLANE, cfg.extent);
    const R = f.surface.shape[1];
    const [sr, sc] = cellAt(x, y, R, cfg.extent);
    const probs = Array.from({ length: cfg.classes }, (_, c) => f.surface.data[(c * R + sr) * R + sc] / 255);
    const lines = [`x ${formatValue(Number(x.toFixed(3)))}, y ${formatValue(Number(y.toFixed(3)))} · output: ` +
      probs.map((p, c) => `p(class ${c}) ${p.toFixed(2)}`).join(", ")];
    const r = f.neurons.shape[1];
    const [nr, nc] = cellAt(x, y, r, cfg.extent);
    let u = 0;
    for (const layer of cfg.layers) {
      const vals: string[] = [];
      for (let k = 0; k < layer.units; k++, u++) {
        vals.push(formatValue(Number(unitValue(f.neurons.data[(u * r + nr) * r + nc], f.ranges.data[2 * u], f.ranges.data[2 * u + 1]).toFixed(2))));
      }
      lines.push(`${layer.name}: ${vals.join(" ")}`);
    }
    const q = f.relevance.shape[1];
    const [qr, qc] = cellAt(x, y, q, cfg.extent);
    const at = (ch: number) => f.relevance.data[(ch * q + qr) * q + qc];
    const rx = at(0), ry = at(1), out = at(2);
    const method = model.get("relevance_method") === "lrp" ? "LRP" : "gradient × input";
    lines.push(`relevance (${method}) of the predicted class: x ${formatValue(rx)}, y ${formatValue(ry)} · ` +
      `Σ ${formatValue(rx + ry)} vs output logit ${formatValue(out)}`);
    readout.replaceChildren(...lines.map((t) => h("div", "", t)));
    hover = [px, py];
    root.dataset.hover = `${x.toFixed(3)},${y.toFixed(3)}`;
    root.dataset.relevance = `${rx},${ry},${out}`;
  }

  function drawCharts() {
    const hist = model.get("history");
    const m = decodeTensor(hist.metrics);
    const E = m.shape.length === 2 ? m.shape[0] : 0;
    const col = (j: number): Array<[number, number]> => Array.from({ length: E }, (_, e) => [m.data[5 * e], m.data[5 * e + j]]);
    const f = shown();
    const cursor = cursorT !== null && f ? f.meta.data[0] : null;
    const layers = hist.layers ?? [];
    const sat = decodeTensor(hist.saturation);
    const sim = decodeTensor(hist.similarity);
    const palette = ["#0877bd", "#f59322", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#5a5a5a"];
    charts.replaceChildren(
      lineChart({ title: "loss", xLabel: "epoch", yLabel: "cross-entropy", yRange: null, cursor, series: [
        { label: "train", color: palette[0], points: col(1) }, { label: "test", color: palette[1], dashed: true, points: col(2) }] },
        "nbx-pg-loss"),
      lineChart({ title: "accuracy", xLabel: "epoch", yLabel: "accuracy", yRange: [0, 1], cursor, series: [
        { label: "train", color: palette[0], points: col(3) }, { label: "test", color: palette[1], dashed: true, points: col(4) }] },
        "nbx-pg-accuracy"),
      lineChart({ title: `saturation k(δ)/width, δ = ${model.get("delta")}`, xLabel: "epoch", yLabel: "saturation", yRange: [0, 1],
        cursor, series: layers.map((name, l) => ({ label: name, color: palette[l % palette.length],
          points: Array.from({ length: E }, (_, e): [number, number] => [m.data[5 * e], sat.data[e * layers.length + l]]) })) },
      "nbx-pg-saturation"),
      similarityStrip(sim.data, sim.shape.length === 2 ? sim.shape[0] : 0, hist.similarity_layers ?? [], cursor),
    );
    root.dataset.epochs = String(E);
  }

  function drawProjection() {
    projection = model.get("projection") ?? {};
    const width = projection.width ?? 0;
    const deltas = decodeTensor(projection.deltas);
    const ks = decodeTensor(projection.ks);
    const G = deltas.data.length;
    deltaSlider.disabled = !width || !G;
    randomBox.disabled = !width;
    if (!width || !G) {
      deltaText.textContent = "train at least one epoch (then pause) to project a layer";
      sizeCanvas(projCanvas, 160, 160)?.clearRect(0, 0, projCanvas.width, projCanvas.height);
      delete root.dataset.k;
      return;
    }
    deltaSlider.min = "0";
    deltaSlider.max = String(G - 1);
    let p = Number(deltaSlider.value);
    if (!(root.dataset.deltaSet === "true")) {
      p = 0;
      for (let i = 0; i < G; i++) if (Math.abs(deltas.data[i] - model.get("delta")) < Math.abs(deltas.data[p] - model.get("delta"))) p = i;
      deltaSlider.value = String(p);
    }
    const k = ks.data[p];
    const random = randomBox.checked;
    const surfaces = decodeTensor(projection.surfaces); // (2, width, C, R, R)
    const [, , C, R] = surfaces.shape;
    const size = C * R * R;
    const start = ((random ? 1 : 0) * width + (k - 1)) * size;
    const img = offscreen(surfaceRGBA(surfaces.data.subarray(start, start + size), C, R), R, R);
    const ctx = sizeCanvas(projCanvas, 160, 160);
    if (ctx) {
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(img, 0, 0, projCanvas.width, projCanvas.height);
    }
    const d = deltas.data[p];
    deltaText.textContent = `δ = ${d >= 0.99995 ? "1" : d.toFixed(4)} → k = ${k} of ${width} ` +
      `${random ? "random" : "top eigen-"}directions of ${projection.layer} (epoch ${projection.epoch})`;
    deltaSlider.setAttribute("aria-valuetext", `δ ${d.toFixed(4)}, k ${k} of ${width}`);
    root.dataset.delta = String(d);
    root.dataset.k = String(k);
    root.dataset.basis = random ? "random" : "eigen";
  }

  function drawFrame() {
    const f = shown();
    if (!f || !diagram) return;
    drawPlane(f);
    let u = 0;
    diagram.canvases.slice(1).forEach((col) => col.forEach((cv) => paintUnit(cv, f.neurons, f.ranges, u++)));
    if (cfg.edges.length) diagram.drawEdges(f.weights.data, cfg.edges);
    const meta = f.meta.data;
    status.textContent = `epoch ${meta[0]} · step ${meta[1]}` + (meta[6] ? ` · loss ${formatValue(Number(meta[2].toPrecision(3)))} train, ` +
      `${formatValue(Number(meta[3].toPrecision(3)))} test · accuracy ${meta[4].toFixed(2)} train, ${meta[5].toFixed(2)} test` : "");
    if (inspected) drawEnlarged();
    if (hover) readPoint(hover[0], hover[1]);
    drawn += 1;
    root.dataset.frame = String(drawn);
    root.dataset.epoch = String(meta[0]);
    root.dataset.frameHash = fnv(f.surface.data, f.neurons.data, f.predicted.data);
    root.dataset.timeline = cursorT === null ? "live" : String(cursorT);
  }

  // epochs can end many times a second: the charts (whole SVGs) are redrawn at most every 250 ms
  let chartTimer: ReturnType<typeof setTimeout> | null = null;
  function chartsSoon() {
    if (chartTimer !== null) return;
    chartTimer = setTimeout(() => {
      chartTimer = null;
      drawCharts();
    }, 250);
  }

  // frames arrive faster than the screen may need: draw the latest once per animation frame
  let pending = 0;
  const scheduleFrame = () => {
    if (pending) return;
    pending = requestAnimationFrame(() => {
      pending = 0;
      drawFrame();
    });
  };

  function onLive() {
    live = liveFrame(model.get("frame"));
    cursorT = null;
    scheduleFrame();
  }

  function onRecording() {
    rec = decodeRecording(model.get("recording"));
    timeSlider.max = String(Math.max(0, rec.count - 1));
    timeSlider.value = String(Math.max(0, rec.count - 1));
    timeSlider.disabled = rec.count < 2;
    timeText.textContent = rec.count ? `${rec.count} recorded frames (latest shown)` : "no recording yet";
    root.dataset.recorded = String(rec.count);
  }

  function syncControls() {
    const state = model.get("state");
    playBtn.textContent = state === "training" ? "⏸ pause" : "▶ play";
    playBtn.setAttribute("aria-pressed", String(state === "training"));
    const name = model.get("dataset");
    if (![...dataSel.options].some((o) => o.value === name)) { // your own data: shown, not re-generated
      const o = h("option", "", name);
      o.value = name;
      dataSel.appendChild(o);
    }
    dataSel.value = name;
    const feats = model.get("features");
    featureChecks.forEach((c) => (c.checked = feats.includes(c.value)));
    hiddenIn.value = model.get("hidden").join(", ");
    actSel.value = model.get("activation");
    rateSel.value = String(model.get("learning_rate"));
    selectValue(noiseSel, String(model.get("noise")));
    selectValue(splitSel, String(model.get("test_fraction")), `${Math.round(model.get("test_fraction") * 100)} %`);
    l2Sel.value = String(model.get("l2"));
    batchIn.value = String(model.get("batch_size"));
    limitIn.value = String(model.get("epoch_limit"));
    methodSel.value = model.get("relevance_method");
    layerSel.value = model.get("delta_layer");
    randomBox.checked = model.get("basis") === "random";
    root.dataset.state = state;
    timeSlider.disabled = rec.count < 2 || state === "training"; // the recording arrives when training stops
    error.textContent = model.get("error");
    root.style.setProperty("--nbx-scale", String(model.get("scale") || 1));
    root.dataset.scale = String(model.get("scale") || 1);
  }

  const setTrait = <K extends keyof State>(k: K, v: State[K]) => {
    model.set(k, v);
    model.save_changes();
  };
  playBtn.addEventListener("click", () => send(model.get("state") === "training" ? "pause" : "play"));
  stepBtn.addEventListener("click", () => send("step"));
  rewindBtn.addEventListener("click", () => send("rewind"));
  dataSel.addEventListener("change", () => setTrait("dataset", dataSel.value));
  featureChecks.forEach((c) => c.addEventListener("change", () => {
    const chosen = featureChecks.filter((x) => x.checked).map((x) => x.value);
    if (chosen.length) setTrait("features", chosen);
    else c.checked = true;
  }));
  hiddenIn.addEventListener("change", () => {
    const widths = hiddenIn.value.split(/[ ,]+/).filter(Boolean).map(Number);
    if (widths.every((w) => Number.isInteger(w) && w > 0)) setTrait("hidden", widths);
    else error.textContent = "hidden widths: positive integers separated by commas, e.g. 8, 8 (empty = linear)";
  });
  actSel.addEventListener("change", () => setTrait("activation", actSel.value));
  rateSel.addEventListener("change", () => setTrait("learning_rate", Number(rateSel.value)));
  noiseSel.addEventListener("change", () => setTrait("noise", Number(noiseSel.value)));
  splitSel.addEventListener("change", () => setTrait("test_fraction", Number(splitSel.value)));
  l2Sel.addEventListener("change", () => setTrait("l2", Number(l2Sel.value)));
  batchIn.addEventListener("change", () => setTrait("batch_size", Math.max(1, Math.round(Number(batchIn.value)))));
  limitIn.addEventListener("change", () => setTrait("epoch_limit", Math.max(0, Math.round(Number(limitIn.value)))));
  methodSel.addEventListener("change", () => setTrait("relevance_method", methodSel.value));
  layerSel.addEventListener("change", () => setTrait("delta_layer", layerSel.value));
  fieldSel.addEventListener("change", () => {
    root.dataset.field = fieldSel.value;
    drawFrame();
  });
  deltaSlider.addEventListener("input", () => {
    root.dataset.deltaSet = "true";
    drawProjection();
  });
  deltaSlider.addEventListener("change", () => setTrait("delta", Number(root.dataset.delta)));
  randomBox.addEventListener("change", () => {
    setTrait("basis", randomBox.checked ? "random" : "eigen");
    drawProjection();
  });
  timeSlider.addEventListener("input", () => {
    const t = Number(timeSlider.value);
    cursorT = rec.count ? Math.min(t, rec.count - 1) : null;
    const f = shown();
    timeText.textContent = f ? `frame ${t + 1} of ${rec.count} · epoch ${f.meta.data[0]}, step ${f.meta.data[1]}` : "";
    drawFrame();
    drawCharts();
  });
  plane.addEventListener("pointermove", (ev) => {
    const b = plane.getBoundingClientRect();
    readPoint(((ev.clientX - b.left) / b.width) * PLANE, ((ev.clientY - b.top) / b.height) * PLANE);
  });
  plane.addEventListener("keydown", (ev) => {
    const moves: Record<string, [number, number]> = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    const mv = moves[ev.key];
    if (!mv) return;
    ev.preventDefault();
    const [px, py] = hover ?? [PLANE / 2, PLANE / 2];
    readPoint(Math.max(0, Math.min(PLANE - 1, px + mv[0] * 10)), Math.max(0, Math.min(PLANE - 1, py + mv[1] * 10)));
  });
  pngBtn.addEventListener("click", () => {
    const out = document.createElement("canvas");
    const nodes = diagram ? diagram.el.querySelectorAll<HTMLCanvasElement>("canvas.nbx-pg-neuron") : [];
    const netW = diagram ? diagram.el.offsetWidth : 0, netH = diagram ? diagram.el.offsetHeight : 0;
    out.width = netW + PLANE + 180;
    out.height = Math.max(netH, PLANE + 20);
    const ctx = out.getContext("2d");
    if (!ctx) return;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.imageSmoothingEnabled = false;
    nodes.forEach((n) => ctx.drawImage(n, n.offsetLeft, n.offsetTop, n.offsetWidth, n.offsetHeight));
    ctx.drawImage(plane, netW + 10, 0, PLANE, PLANE);
    if (!deltaSlider.disabled) ctx.drawImage(projCanvas, netW + PLANE + 16, 0, 160, 160);
    const url = out.toDataURL("image/png");
    const a = document.createElement("a");
    a.href = url;
    a.download = `playground_epoch${root.dataset.epoch ?? 0}.png`;
    root.dataset.png = String(url.length);
    a.click();
  });

  const full = () => {
    buildLayout();
    onRecording();
    onLive();
    drawCharts();
    drawProjection();
  };
  const events: Array<[string, () => void]> = [
    ["change:config", full], ["change:static", full], ["change:frame", onLive], ["change:recording", onRecording],
    ["change:history", chartsSoon], ["change:projection", () => { delete root.dataset.deltaSet; drawProjection(); }],
    ...(["state", "error", "dataset", "noise", "test_fraction", "features", "hidden", "activation", "learning_rate", "l2", "batch_size",
      "epoch_limit", "relevance_method", "delta_layer", "basis", "scale"] as const).map(
      (k): [string, () => void] => [`change:${k}`, syncControls]),
    ["change:theme", themeHandler(root, model)],
  ];
  full();
  root.dataset.ready = "true";
  return connect(el, root, model, events, onResize, stopKeys, () => {
    cancelAnimationFrame(pending);
    if (chartTimer !== null) clearTimeout(chartTimer);
  });
}

export default { render };
export type { AnyModel };
