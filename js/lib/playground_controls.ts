// The Playground's run controls: play / step / rewind / PNG, and the settings of a run (data, noise, test split,
// features, hidden widths, activation, learning rate, L2, batch, epoch limit) — built, shown from the traits, and
// wired to set them. Every control is a labelled native element (keyboard operable, with an accessible name).
import { h } from "./dom";

export const DATASETS = ["moons", "circles", "xor", "spiral", "blobs"];
export const FEATURES = ["x", "y", "x^2", "y^2", "xy", "sin x", "sin y"];
export const ACTIVATIONS = ["relu", "tanh", "sigmoid", "gelu"];
export const RATES = [0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3];
export const L2S = [0, 0.0001, 0.001, 0.003, 0.01, 0.03, 0.1];
export const NOISES = [0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5];
export const TEST_FRACTIONS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.7];

/** The synced traits these controls show and set (each change starts a new run in the kernel). */
export interface Settings {
  dataset: string; noise: number; test_fraction: number; features: string[]; hidden: number[]; activation: string;
  learning_rate: number; l2: number; batch_size: number; epoch_limit: number;
}

export const SETTINGS = ["dataset", "noise", "test_fraction", "features", "hidden", "activation", "learning_rate", "l2",
  "batch_size", "epoch_limit"] as const satisfies ReadonlyArray<keyof Settings>;

export type SetSetting = <K extends keyof Settings>(name: K, value: Settings[K]) => void;

export function select(cls: string, options: Array<[string, string]>): HTMLSelectElement {
  const s = h("select", cls);
  for (const [value, text] of options) {
    const o = h("option", "", text);
    o.value = value;
    s.appendChild(o);
  }
  return s;
}

/** Show `value` in a select, adding it as an option when it is not one of the listed values. */
export function selectValue(sel: HTMLSelectElement, value: string, text = value): void {
  if (!Array.from(sel.options).some((o) => o.value === value)) {
    const o = h("option", "", text);
    o.value = value;
    sel.appendChild(o);
  }
  sel.value = value;
}

export function labelled(text: string, control: HTMLElement, kernel = true): HTMLLabelElement {
  const l = h("label", `nbx-control${kernel ? " nbx-needs-kernel" : ""}`, text);
  l.appendChild(control);
  return l;
}

export function button(cls: string, text: string, kernel = true): HTMLButtonElement {
  const b = h("button", `nbx-button ${cls}${kernel ? " nbx-needs-kernel" : ""}`, text);
  b.type = "button";
  return b;
}

/** Hidden widths typed as "8, 8" (or "8 8"; empty = a linear network), or null when one is not a positive integer. */
export function parseWidths(text: string): number[] | null {
  const widths = text.split(/[ ,]+/).filter(Boolean).map(Number);
  return widths.every((w) => Number.isInteger(w) && w > 0) ? widths : null;
}

export interface RunControls {
  /** play / step / rewind / PNG and the status line */
  bar: HTMLDivElement;
  /** the settings of a run */
  settings: HTMLDivElement;
  playBtn: HTMLButtonElement; stepBtn: HTMLButtonElement; rewindBtn: HTMLButtonElement; pngBtn: HTMLButtonElement;
  status: HTMLSpanElement;
  /** Show the settings' trait values, the play button's state, and the controls that apply to this run. */
  show(s: Settings, state: string, run: { customModel: boolean; ownData: boolean }): void;
}

/** Build the run controls; settings changes go to `set`, commands to `send`, bad input to `onError`. */
export function runControls(set: SetSetting, send: (action: string) => void, onError: (msg: string) => void,
  state: () => string): RunControls {
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
  const actSel = select("nbx-pg-activation", ACTIVATIONS.map((a) => [a, a]));
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
  const noiseLabel = labelled("noise", noiseSel);
  settings.append(labelled("data", dataSel), noiseLabel, labelled("test points", splitSel), ...netOnly,
    labelled("learning rate", rateSel), labelled("L2", l2Sel), labelled("batch", batchIn),
    labelled("epoch limit (0 = none)", limitIn));

  playBtn.addEventListener("click", () => send(state() === "training" ? "pause" : "play"));
  stepBtn.addEventListener("click", () => send("step"));
  rewindBtn.addEventListener("click", () => send("rewind"));
  dataSel.addEventListener("change", () => set("dataset", dataSel.value));
  featureChecks.forEach((c) => c.addEventListener("change", () => {
    const chosen = featureChecks.filter((x) => x.checked).map((x) => x.value);
    if (chosen.length) set("features", chosen);
    else c.checked = true; // at least one input feature
  }));
  hiddenIn.addEventListener("change", () => {
    const widths = parseWidths(hiddenIn.value);
    if (widths) set("hidden", widths);
    else onError("hidden widths: positive integers separated by commas, e.g. 8, 8 (empty = linear)");
  });
  actSel.addEventListener("change", () => set("activation", actSel.value));
  rateSel.addEventListener("change", () => set("learning_rate", Number(rateSel.value)));
  noiseSel.addEventListener("change", () => set("noise", Number(noiseSel.value)));
  splitSel.addEventListener("change", () => set("test_fraction", Number(splitSel.value)));
  l2Sel.addEventListener("change", () => set("l2", Number(l2Sel.value)));
  batchIn.addEventListener("change", () => set("batch_size", Math.max(1, Math.round(Number(batchIn.value)))));
  limitIn.addEventListener("change", () => set("epoch_limit", Math.max(0, Math.round(Number(limitIn.value)))));

  function show(s: Settings, st: string, run: { customModel: boolean; ownData: boolean }): void {
    playBtn.textContent = st === "training" ? "⏸ pause" : "▶ play";
    playBtn.setAttribute("aria-pressed", String(st === "training"));
    selectValue(dataSel, s.dataset); // your own data: shown, not re-generated
    featureChecks.forEach((c) => (c.checked = s.features.includes(c.value)));
    hiddenIn.value = s.hidden.join(", ");
    actSel.value = s.activation;
    rateSel.value = String(s.learning_rate);
    selectValue(noiseSel, String(s.noise));
    selectValue(splitSel, String(s.test_fraction), `${Math.round(s.test_fraction * 100)} %`);
    l2Sel.value = String(s.l2);
    batchIn.value = String(s.batch_size);
    limitIn.value = String(s.epoch_limit);
    for (const e of netOnly) e.style.display = run.customModel ? "none" : ""; // your own model: its own network
    noiseLabel.style.display = run.ownData ? "none" : ""; // noise: only for generated data sets
  }

  return { bar, settings, playBtn, stepBtn, rewindBtn, pngBtn, status, show };
}
