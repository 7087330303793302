// Playground view: a small network learning a 2-D toy problem live in the kernel. Draws each frame the kernel
// pushes (decision surface + points, neuron maps and weighted edges, relevance) and, from precomputed state with
// no kernel round trip, the δ projection slider, the hover readout and the timeline replay of the recording.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { mapFloor } from "./lib/colormap";
import { formatNumber } from "./lib/nice_ticks";
import { backgroundOf, connect, h, injectStyle, offscreen, onThemeChange, perFrame, sizeCanvas, themeHandler, viewRoot } from "./lib/dom";
import { keepNavigationKeys } from "./lib/keys";
import { lineChart, similarityStrip } from "./lib/playground_charts";
import {
  boxAt, cellAt, classColor, decodedOnce, decodeRecording, FIELD_MODES, type FieldMode, fieldRGBA, type FrameData, liveFrame,
  type MapFloors, misclassified, planeAt, recordedFrame, surfaceRGBA, unitRGBA, unitValue,
} from "./lib/playground_draw";
import { deltaPanel, type Projection } from "./lib/playground_delta";
import { type Diagram, networkDiagram } from "./lib/playground_network";
import { decodeTensor, type Tensor, type WireTensor } from "./lib/tensor";
import { labelled, runControls, select, SETTINGS, type Settings } from "./lib/playground_controls";
import { PLAYGROUND_CSS } from "./lib/playground_style";

interface Config {
  dataset: string; classes: number; extent: number[]; inputs: string[]; layers: Array<{ name: string; units: number }>;
  edges: number[][]; resolution: number; neuron_resolution: number; relevance_resolution: number; n_train: number;
  custom_model: boolean; delta_layers?: string[];
}

type Wired = Record<string, WireTensor> & { count?: number; epoch?: number; layer?: string; width?: number;
  layers?: string[]; similarity_layers?: string[] };

// every synced trait (tests/widgets/test_trait_names.py checks them against Python); the run's settings are
// the same names and types as `Settings` (js/lib/playground_controls.ts), which the controls set
interface State {
  state: string; error: string; dataset: string; features: string[]; hidden: number[]; activation: string;
  noise: number; test_fraction: number;
  learning_rate: number; l2: number; batch_size: number; epoch_limit: number; relevance_method: string;
  delta: number; delta_layer: string; basis: string; scale: number; theme: string; config: Config;
  static: Wired; frame: Wired; recording: Wired; history: Wired; projection: Projection;
}

const PLANE = 300;

/** FNV-1a hash of bytes (the view's fingerprint of a frame: equal frames give equal hashes). */
export function fnv(...parts: ArrayLike<number>[]): string {
  let hsh = 0x811c9dc5;
  for (const p of parts) for (let i = 0; i < p.length; i++) hsh = Math.imul(hsh ^ (p[i] & 255), 0x01000193) >>> 0;
  return hsh.toString(16);
}

function render({ model, el }: RenderProps<State>) {
  const root = viewRoot("playground", model.get("theme"));
  injectStyle(el, PLAYGROUND_CSS);
  el.appendChild(root);
  const send = (action: string) => model.send({ type: "command", action });

  // ---- controls
  const setTrait = <K extends keyof State>(k: K, v: State[K]) => {
    model.set(k, v);
    model.save_changes();
  };
  // a setting is a trait of the same name and type
  const sameTypes: (s: State) => Settings = (s) => s; // compile-time check: State has every setting, of its type
  const setSetting = <K extends keyof Settings>(k: K, v: Settings[K]) => setTrait(k, v as State[K]);
  void sameTypes;
  const controls = runControls(setSetting, send, (msg) => (error.textContent = msg), () => model.get("state"));
  const { bar, settings, status, pngBtn } = controls;
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
  const delta = deltaPanel(root, { projection: () => model.get("projection"), delta: () => model.get("delta") },
    { layer: (name) => setTrait("delta_layer", name), delta: (value) => setTrait("delta", value),
      basis: (random) => setTrait("basis", random ? "random" : "eigen") });
  const timeline = h("div", "nbx-controls nbx-pg-timeline");
  const timeSlider = h("input", "nbx-pg-time");
  timeSlider.type = "range";
  timeSlider.min = "0";
  timeSlider.setAttribute("aria-label", "timeline: recorded frame");
  const timeText = h("span", "nbx-pg-time-text");
  timeline.append(labelled("replay", timeSlider, false), timeText);
  const stopKeys = keepNavigationKeys(root); // the sliders' arrows stay in the view (JupyterLab takes them)
  root.append(bar, settings, error, main, charts, delta.el, timeline);

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

  // decoded once per trait change (not on every hover, slider move or timeline step)
  let inputMaps: Tensor = decodeTensor(null);
  let inputRanges: Tensor = decodeTensor(null);
  const decodeHistory = decodedOnce((hist: Wired) => ({ metrics: decodeTensor(hist.metrics),
    saturation: decodeTensor(hist.saturation), similarity: decodeTensor(hist.similarity) }));
  let replayed: { stacked: FrameData; t: number; frame: FrameData } | null = null;
  const shown = (): FrameData | null => {
    if (cursorT === null || !rec.stacked) return live;
    if (!replayed || replayed.stacked !== rec.stacked || replayed.t !== cursorT) {
      replayed = { stacked: rec.stacked, t: cursorT, frame: recordedFrame(rec.stacked, cursorT) };
    }
    return replayed.frame;
  };
  const neuronName = (c: number, u: number) => (c === 0 ? `input ${cfg.inputs[u]}` : `${cfg.layers[c - 1].name} unit ${u}`);

  function buildLayout() {
    cfg = model.get("config");
    const st = model.get("static");
    points = decodeTensor(st.points);
    labels = decodeTensor(st.labels);
    inputMaps = decodeTensor(st.inputs);
    inputRanges = decodeTensor(st.input_ranges);
    buildDiagram();
    delta.setLayers(cfg.delta_layers ?? []);
    syncControls();
    pinned = false;
    inspected = null;
  }

  /** Width the diagram may take: the column's, at most 440 px (it is rebuilt when the column changes size). */
  const availableWidth = () => Math.max(160, Math.min(440, (root.clientWidth || 452) - 12));
  let diagramWidth = 0;

  function buildDiagram() {
    diagramWidth = availableWidth();
    const columns = [{ title: "inputs", units: cfg.inputs.length }, ...cfg.layers.map((l) => ({ title: l.name, units: l.units }))];
    diagram = networkDiagram(columns, neuronName, inspect, () => { if (!pinned) uninspect(); }, diagramWidth);
    netBox.replaceChildren(h("div", "nbx-pg-chart-title", "network (edge width = |weight|, blue +, orange −)"), diagram.el, enlarge);
    diagram.canvases[0].forEach((cv, u) => paintUnit(cv, inputMaps, inputRanges, u));
  }

  function onResize() {
    if (Math.abs(availableWidth() - diagramWidth) > 4) buildDiagram();
    drawFrame();
  }

  // colour maps lifted off a dark background (mapFloor): no value is drawn in the page's own colour
  const floors = (): MapFloors => {
    const bg = backgroundOf(root);
    return { diverging: mapFloor("diverging", bg), sequential: mapFloor("sequential", bg) };
  };

  function paintUnit(cv: HTMLCanvasElement, maps: Tensor, ranges: Tensor, u: number) {
    const r = maps.shape[1];
    if (!r) return;
    cv.width = r;
    cv.height = r;
    cv.getContext("2d")?.putImageData(new ImageData(unitRGBA(maps, ranges, u, floors().diverging) as Uint8ClampedArray<ArrayBuffer>, r, r), 0, 0);
  }

  function drawPlane(f: FrameData) {
    const ctx = sizeCanvas(plane, PLANE, PLANE);
    if (!ctx) return;
    const mode = fieldSel.value as FieldMode;
    const R = f.surface.shape[1];
    const q = f.relevance.shape[1];
    const src = mode === "probabilities" ? offscreen(surfaceRGBA(f.surface.data, cfg.classes, R), R, R)
      : offscreen(fieldRGBA(f.relevance, mode, floors()), q, q);
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
    let maps: Tensor, ranges: Tensor, idx = u;
    if (c === 0) {
      maps = inputMaps;
      ranges = inputRanges;
    } else {
      maps = f.neurons;
      ranges = f.ranges;
      for (let l = 0; l < c - 1; l++) idx += cfg.layers[l].units;
    }
    paintUnit(bigCanvas, maps, ranges, idx);
    bigCanvas.style.width = "160px";
    bigCanvas.style.height = "160px";
    bigTitle.textContent = `${neuronName(c, u)} · from ${formatNumber(ranges.data[2 * idx])} to ${formatNumber(ranges.data[2 * idx + 1])}` +
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
    const lines = [`x ${formatNumber(Number(x.toFixed(3)))}, y ${formatNumber(Number(y.toFixed(3)))} · output: ` +
      probs.map((p, c) => `p(class ${c}) ${p.toFixed(2)}`).join(", ")];
    const r = f.neurons.shape[1];
    const [nr, nc] = cellAt(x, y, r, cfg.extent);
    let u = 0;
    for (const layer of cfg.layers) {
      const vals: string[] = [];
      for (let k = 0; k < layer.units; k++, u++) {
        vals.push(formatNumber(Number(unitValue(f.neurons.data[(u * r + nr) * r + nc], f.ranges.data[2 * u], f.ranges.data[2 * u + 1]).toFixed(2))));
      }
      lines.push(`${layer.name}: ${vals.join(" ")}`);
    }
    const q = f.relevance.shape[1];
    const [qr, qc] = cellAt(x, y, q, cfg.extent);
    const at = (ch: number) => f.relevance.data[(ch * q + qr) * q + qc];
    const rx = at(0), ry = at(1), out = at(2);
    const method = model.get("relevance_method") === "lrp" ? "LRP" : "gradient × input";
    lines.push(`relevance (${method}) of the predicted class: x ${formatNumber(rx)}, y ${formatNumber(ry)} · ` +
      `Σ ${formatNumber(rx + ry)} vs output logit ${formatNumber(out)}`);
    readout.replaceChildren(...lines.map((t) => h("div", "", t)));
    hover = [px, py];
    root.dataset.hover = `${x.toFixed(3)},${y.toFixed(3)}`;
    root.dataset.relevance = `${rx},${ry},${out}`;
  }

  function drawCharts() {
    const hist = model.get("history");
    const { metrics: m, saturation: sat, similarity: sim } = decodeHistory(hist);
    const E = m.shape.length === 2 ? m.shape[0] : 0;
    const col = (j: number): Array<[number, number]> => Array.from({ length: E }, (_, e) => [m.data[5 * e], m.data[5 * e + j]]);
    const f = shown();
    const cursor = cursorT !== null && f ? f.meta.data[0] : null;
    const layers = hist.layers ?? [];
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
      similarityStrip(sim.data, sim.shape.length === 2 ? sim.shape[0] : 0, hist.similarity_layers ?? [], cursor,
        floors().sequential),
    );
    root.dataset.epochs = String(E);
  }

  function drawFrame() {
    const f = shown();
    if (!f || !diagram) return;
    drawPlane(f);
    let u = 0;
    diagram.canvases.slice(1).forEach((col) => col.forEach((cv) => paintUnit(cv, f.neurons, f.ranges, u++)));
    if (cfg.edges.length) diagram.drawEdges(f.weights.data, cfg.edges);
    const meta = f.meta.data;
    status.textContent = `epoch ${meta[0]} · step ${meta[1]}` + (meta[6] ? ` · loss ${formatNumber(meta[2], 3)} train, ` +
      `${formatNumber(meta[3], 3)} test · accuracy ${meta[4].toFixed(2)} train, ${meta[5].toFixed(2)} test` : "");
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
  const { schedule: scheduleFrame, cancel: cancelFrame } = perFrame(() => drawFrame());

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
    const values = Object.fromEntries(SETTINGS.map((k) => [k, model.get(k)])) as unknown as Settings;
    controls.show(values, state, { customModel: cfg.custom_model, ownData: cfg.dataset === "custom" });
    methodSel.value = model.get("relevance_method");
    delta.show(model.get("delta_layer"), model.get("basis"));
    root.dataset.state = state;
    timeSlider.disabled = rec.count < 2 || state === "training"; // the recording arrives when training stops
    error.textContent = model.get("error");
    root.style.setProperty("--nbx-scale", String(model.get("scale") || 1));
    root.dataset.scale = String(model.get("scale") || 1);
  }

  methodSel.addEventListener("change", () => setTrait("relevance_method", methodSel.value));
  fieldSel.addEventListener("change", () => {
    root.dataset.field = fieldSel.value;
    drawFrame();
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
    if (delta.active()) ctx.drawImage(delta.canvas, netW + PLANE + 16, 0, 160, 160);
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
    delta.draw(true);
  };
  const events: Array<[string, () => void]> = [
    ["change:config", full], ["change:static", full], ["change:frame", onLive], ["change:recording", onRecording],
    ["change:history", chartsSoon], ["change:projection", () => delta.draw(true)],
    ...(["state", "error", "dataset", "noise", "test_fraction", "features", "hidden", "activation", "learning_rate", "l2", "batch_size",
      "epoch_limit", "relevance_method", "delta_layer", "basis", "scale"] as const).map(
      (k): [string, () => void] => [`change:${k}`, syncControls]),
    ["change:theme", themeHandler(root, model)],
  ];
  full();
  root.dataset.ready = "true";
  return connect(el, root, model, events, onResize, stopKeys, onThemeChange(root, full), () => {
    cancelFrame();
    if (chartTimer !== null) clearTimeout(chartTimer);
  });
}

export default { render };
export type { AnyModel };
