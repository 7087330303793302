// The Playground's δ panel: one hidden layer projected onto its top-k(δ) eigen-directions (or a random k-dim
// subspace, the control) and the decision surface redrawn under that projection. The kernel precomputes the
// surfaces for every k (the `projection` trait, decoded once per change); moving the slider only picks one.
import { h, offscreen, sizeCanvas } from "./dom";
import { labelled } from "./playground_controls";
import { decodedOnce, surfaceRGBA } from "./playground_draw";
import { decodeTensor, type WireTensor } from "./tensor";

/** The `projection` trait: the layer, its width, the epoch, δ grid, k per δ and surfaces (2, width, C, R, R). */
export type Projection = Record<string, WireTensor> & { layer?: string; width?: number; epoch?: number };

/** Index of the grid's δ nearest to `delta`. */
export function nearestDelta(deltas: ArrayLike<number>, delta: number): number {
  let p = 0;
  for (let i = 0; i < deltas.length; i++) if (Math.abs(deltas[i] - delta) < Math.abs(deltas[p] - delta)) p = i;
  return p;
}

export interface DeltaPanel {
  el: HTMLDivElement;
  canvas: HTMLCanvasElement;
  /** Whether a projection is shown (the slider is live). */
  active(): boolean;
  /** The layers that can be projected, and the one chosen. */
  setLayers(names: string[]): void;
  show(layer: string, basis: string): void;
  /** Draw from the current `projection` trait (`fresh`: a new projection arrived, so the slider starts at δ). */
  draw(fresh?: boolean): void;
}

/**
 * Build the panel. `root` carries its state attributes (`data-delta`, `data-k`, `data-basis`); `get` reads the
 * `projection` and `delta` traits; `set` sets `delta_layer`, `delta` and `basis`.
 */
export function deltaPanel(root: HTMLElement, get: { projection(): Projection; delta(): number },
  set: { layer(name: string): void; delta(value: number): void; basis(random: boolean): void }): DeltaPanel {
  const el = h("div", "nbx-pg-delta");
  const layerSel = h("select", "nbx-pg-delta-layer");
  const slider = h("input", "nbx-pg-delta-slider");
  slider.type = "range";
  slider.setAttribute("aria-label", "δ: fraction of the layer's variance kept");
  const randomBox = h("input", "nbx-pg-random");
  randomBox.type = "checkbox";
  const text = h("div", "nbx-pg-delta-text");
  const canvas = h("canvas", "nbx-pg-projected");
  const controls = h("div", "nbx-controls");
  controls.append(labelled("project layer", layerSel), labelled("δ", slider, false));
  const randomLabel = h("label", "nbx-control");
  randomLabel.append(randomBox, document.createTextNode("random subspace (control)"));
  controls.appendChild(randomLabel);
  el.append(h("div", "nbx-pg-chart-title", "decision surface with one layer projected onto k(δ) directions"),
    controls, canvas, text);
  const decode = decodedOnce((p: Projection) => ({ deltas: decodeTensor(p.deltas), ks: decodeTensor(p.ks),
    surfaces: decodeTensor(p.surfaces) }));
  let moved = false; // the slider was moved since the projection arrived

  function draw(fresh = false): void {
    if (fresh) moved = false;
    const projection = get.projection() ?? {};
    const width = projection.width ?? 0;
    const { deltas, ks, surfaces } = decode(projection);
    const G = deltas.data.length;
    slider.disabled = !width || !G;
    randomBox.disabled = !width;
    if (!width || !G) {
      text.textContent = "train at least one epoch (then pause) to project a layer";
      sizeCanvas(canvas, 160, 160)?.clearRect(0, 0, canvas.width, canvas.height);
      delete root.dataset.k;
      return;
    }
    slider.min = "0";
    slider.max = String(G - 1);
    let p = Number(slider.value);
    if (!moved) {
      p = nearestDelta(deltas.data, get.delta());
      slider.value = String(p);
    }
    const k = ks.data[p];
    const random = randomBox.checked;
    const [, , C, R] = surfaces.shape;
    const size = C * R * R;
    const start = ((random ? 1 : 0) * width + (k - 1)) * size;
    const img = offscreen(surfaceRGBA(surfaces.data.subarray(start, start + size), C, R), R, R);
    const ctx = sizeCanvas(canvas, 160, 160);
    if (ctx) {
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    }
    const d = deltas.data[p];
    text.textContent = `δ = ${d >= 0.99995 ? "1" : d.toFixed(4)} → k = ${k} of ${width} ` +
      `${random ? "random " : "top eigen-"}directions of ${projection.layer} (epoch ${projection.epoch})`;
    slider.setAttribute("aria-valuetext", `δ ${d.toFixed(4)}, k ${k} of ${width}`);
    root.dataset.delta = String(d);
    root.dataset.k = String(k);
    root.dataset.basis = random ? "random" : "eigen";
  }

  layerSel.addEventListener("change", () => set.layer(layerSel.value));
  slider.addEventListener("input", () => {
    moved = true;
    draw();
  });
  slider.addEventListener("change", () => set.delta(Number(root.dataset.delta)));
  randomBox.addEventListener("change", () => {
    set.basis(randomBox.checked);
    draw();
  });

  return {
    el, canvas, draw,
    active: () => !slider.disabled,
    setLayers(names: string[]): void {
      layerSel.replaceChildren();
      for (const name of names) {
        const o = h("option", "", name);
        o.value = name;
        layerSel.appendChild(o);
      }
    },
    show(layer: string, basis: string): void {
      layerSel.value = layer;
      const random = basis === "random";
      if (randomBox.checked !== random) { // set from Python: redraw with that basis
        randomBox.checked = random;
        draw();
      }
    },
  };
}
