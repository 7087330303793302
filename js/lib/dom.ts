// Small DOM helpers shared by every view. Text always goes in through textContent.
import { type ColorScale, mapFloor, type RGB } from "./colormap";
import baseCss from "./style.css";

/** Create an element with classes and (optional) text content. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = "",
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Append a <style> with the shared nbx styles plus a view's own CSS into the view's element. */
export function injectStyle(el: HTMLElement, viewCss = ""): HTMLStyleElement {
  const style = document.createElement("style");
  style.textContent = baseCss + "\n" + viewCss;
  el.appendChild(style);
  return style;
}

/** Root element of a view with the nbx classes and theme attribute. */
export function viewRoot(kind: string, theme: string): HTMLDivElement {
  const root = h("div", `nbx-root nbx-${kind}`);
  root.dataset.theme = theme || "auto";
  root.dataset.ready = "false";
  return root;
}

/**
 * `fn` called at most once per burst of calls: one kernel message can change several traits, and each change
 * event asks for the rebuild; the batched function runs `fn` once, after all of them have landed (a microtask).
 */
export function batched(fn: () => void): () => void {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      fn();
    });
  };
}

/**
 * Make `el` (a cell, a heading, a node with role=button) activate `fn` on click and on Enter / Space, as a button
 * does; the keys are kept from JupyterLab (Enter would also put the notebook into edit mode).
 */
export function activate(el: HTMLElement, fn: () => void): void {
  el.addEventListener("click", fn);
  el.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter" && ev.key !== " ") return;
    ev.preventDefault();
    ev.stopPropagation();
    fn();
  });
}

/** A labelled range slider (`<label class="nbx-control">text <input type=range></label>`). */
export function rangeControl(
  className: string,
  text: string,
  range: { min: number; max: number; step: number; value?: number },
): { label: HTMLLabelElement; input: HTMLInputElement } {
  const label = h("label", "nbx-control", text);
  const input = h("input", className);
  input.type = "range";
  input.min = String(range.min);
  input.max = String(range.max);
  input.step = String(range.step);
  if (range.value !== undefined) input.value = String(range.value);
  label.appendChild(input);
  return { label, input };
}

interface TraitModel {
  get(name: string): unknown;
}

/**
 * The handler that shows the model's `error` trait in `box` and as `data-error` on `root` (the Python side
 * sets it when a kernel request fails; the view stays usable).
 */
export function errorHandler(root: HTMLElement, box: HTMLElement, model: TraitModel): () => void {
  return () => {
    const text = String(model.get("error") ?? "");
    box.textContent = text;
    root.dataset.error = text ? "true" : "false";
  };
}

/** The `change:theme` handler: `data-theme` on `root` follows the model, then `after` (a redraw) runs. */
export function themeHandler(root: HTMLElement, model: TraitModel, after?: () => void): () => void {
  return () => {
    root.dataset.theme = String(model.get("theme") || "auto");
    after?.();
  };
}

interface ScaleModel {
  get(name: "scale"): unknown;
  on(event: string, callback: () => void): void;
  off(event: string, callback: () => void): void;
}

/**
 * Follow the widget's `scale` trait (presentation size): sets `--nbx-scale` and `data-scale` on `root` now and
 * on every change, calling `onChange` after (views that draw canvases at a size in px redraw there).
 * Returns the cleanup that stops following.
 */
export function applyScale(root: HTMLElement, model: ScaleModel, onChange?: () => void): () => void {
  const set = () => {
    const raw = Number(model.get("scale"));
    const scale = Number.isFinite(raw) && raw > 0 ? raw : 1;
    root.style.setProperty("--nbx-scale", String(scale));
    root.dataset.scale = String(scale);
  };
  const changed = () => {
    set();
    onChange?.();
  };
  set();
  model.on("change:scale", changed);
  return () => model.off("change:scale", changed);
}

/** The current presentation scale of a view root (its `--nbx-scale`, 1 when unset). */
export function scaleOf(root: HTMLElement): number {
  const v = parseFloat(root.dataset.scale ?? "1");
  return Number.isFinite(v) && v > 0 ? v : 1;
}

/**
 * `fn` run at most once per animation frame however often `schedule` is called before it; `cancel` drops a
 * pending run.
 */
export function perFrame(fn: () => void): { schedule: () => void; cancel: () => void } {
  let frame = 0;
  return {
    schedule: () => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        fn();
      });
    },
    cancel: () => {
      if (frame) cancelAnimationFrame(frame);
      frame = 0;
    },
  };
}

/** Fired on an element watched by `onVisible` after each redraw (`connect` watches the view's root). */
export const VISIBLE_EVENT = "nbx-visible";

/**
 * Call `redraw` when the element changes size or becomes visible again (JupyterLab's windowed notebook
 * detaches off-screen outputs and may drop canvas contents). Returns a cleanup function.
 */
export function onVisible(el: HTMLElement, redraw: () => void): () => void {
  const { schedule, cancel } = perFrame(() => {
    redraw();
    el.dispatchEvent(new Event(VISIBLE_EVENT)); // for onThemeChange: a view attached or shown again
  });
  const cleanups: Array<() => void> = [];
  if (typeof ResizeObserver !== "undefined") {
    const ro = new ResizeObserver(schedule);
    ro.observe(el);
    cleanups.push(() => ro.disconnect());
  }
  if (typeof IntersectionObserver !== "undefined") {
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) schedule();
    });
    io.observe(el);
    cleanups.push(() => io.disconnect());
  }
  return () => {
    cancel();
    cleanups.forEach((c) => c());
  };
}

/** Parse a computed CSS colour (`rgb(…)`/`rgba(…)`) into RGB bytes and alpha; null if it is not one. */
export function parseColor(css: string): { rgb: RGB; alpha: number } | null {
  const m = /rgba?\(\s*([\d.]+)[,\s]+([\d.]+)[,\s]+([\d.]+)(?:[,\s/]+([\d.]+%?))?\s*\)/.exec(css);
  if (!m) return null;
  const a = m[4] === undefined ? 1 : m[4].endsWith("%") ? parseFloat(m[4]) / 100 : parseFloat(m[4]);
  return { rgb: [Math.round(+m[1]), Math.round(+m[2]), Math.round(+m[3])], alpha: a };
}

/** The colour `el` is drawn on: the first opaque background from `el` up through its ancestors (white if none). */
export function backgroundOf(el: Element): RGB {
  for (let node: Element | null = el; node; node = node.parentElement) {
    const c = parseColor(getComputedStyle(node).backgroundColor);
    if (c && c.alpha >= 0.5) return c.rgb;
  }
  return [255, 255, 255];
}

/**
 * `s` as drawn inside `root`, with the `floor` that keeps every colour distinct from the view's background
 * (`mapFloor`): on a light page the whole map; on a dark one viridis starts at its blue (a zero is not the page's
 * colour) and RdBu loses its darkest blue and red ends (the strongest values are not the page's colour either).
 */
export function onBackground(root: Element, s: ColorScale): ColorScale {
  return { ...s, floor: mapFloor(s.kind, backgroundOf(root)) };
}

/**
 * Call `redraw` when the background the view is drawn on changes: the widget's `theme` trait (the root's
 * `data-theme`), JupyterLab's theme (its stylesheet may load after the `data-jp-theme-*` attributes on the body
 * change), a custom theme, or the view being first attached to the page (a view built while detached saw no
 * background). Colour-mapped views pass their recolouring here (see `onBackground`); the cleanup goes to
 * `connect`. Watched through a 1 ms transition of the root's `column-rule-color`, which style.css sets to the
 * background (a property with no effect there, so the background itself never lags), a mutation observer and
 * `connect`'s visibility watch (`VISIBLE_EVENT`); `redraw` runs at most once a frame and only when the colour
 * really changed.
 */
export function onThemeChange(root: HTMLElement, redraw: () => void): () => void {
  let last = backgroundOf(root).join(",");
  const { schedule: check, cancel } = perFrame(() => {
    const now = backgroundOf(root).join(",");
    if (now === last) return;
    last = now;
    redraw();
  });
  const onTransition = (ev: TransitionEvent) => {
    if (ev.target === root && ev.propertyName === "column-rule-color") check();
  };
  root.addEventListener("transitionend", onTransition);
  const cleanups: Array<() => void> = [() => root.removeEventListener("transitionend", onTransition)];
  if (typeof MutationObserver !== "undefined") {
    const mo = new MutationObserver(check);
    mo.observe(root, { attributes: true, attributeFilter: ["data-theme"] });
    if (document.body) mo.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name"] });
    cleanups.push(() => mo.disconnect());
  }
  // attached or shown again (connect's onVisible on the root, so no second resize observer)
  root.addEventListener(VISIBLE_EVENT, check);
  cleanups.push(() => root.removeEventListener(VISIBLE_EVENT, check));
  return () => {
    cancel();
    cleanups.forEach((c) => c());
  };
}

const devicePixels = () => (typeof window !== "undefined" && window.devicePixelRatio) || 1;

/** A canvas's bitmap set to `w` × `hgt` device pixels (at least 1); its 2-D context, smoothing off. */
export function fitBitmap(canvas: HTMLCanvasElement, w: number, hgt: number): CanvasRenderingContext2D | null {
  w = Math.max(1, w);
  hgt = Math.max(1, hgt);
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== hgt) canvas.height = hgt;
  const ctx = canvas.getContext("2d");
  if (ctx) ctx.imageSmoothingEnabled = false;
  return ctx;
}

/** Size a canvas for crisp drawing at the device pixel ratio; returns its 2-D context. */
export function sizeCanvas(canvas: HTMLCanvasElement, cssWidth: number, cssHeight: number): CanvasRenderingContext2D | null {
  canvas.style.width = `${cssWidth}px`;
  canvas.style.height = `${cssHeight}px`;
  const r = devicePixels();
  return fitBitmap(canvas, Math.round(cssWidth * r), Math.round(cssHeight * r));
}

/**
 * Size a canvas's bitmap to the width it is shown at (its CSS width, `fallbackWidth` px before layout gives it
 * one) and the aspect of a `rows` × `cols` picture, at the device pixel ratio; the CSS size is left to the page
 * (a canvas that fills its cell). Returns its 2-D context, smoothing off (pixels stay square).
 */
export function sizeToWidth(canvas: HTMLCanvasElement, rows: number, cols: number, fallbackWidth: number): CanvasRenderingContext2D | null {
  const r = devicePixels();
  const cssW = canvas.clientWidth || fallbackWidth;
  return fitBitmap(canvas, Math.round(cssW * r), Math.round((cssW * r * (rows || 1)) / (cols || 1)));
}

/** A canvas holding RGBA pixels at their own resolution (drawn scaled with drawImage). */
export function offscreen(rgba: Uint8ClampedArray, w: number, hgt: number): HTMLCanvasElement {
  const c = document.createElement("canvas");
  c.width = w;
  c.height = hgt;
  const ctx = c.getContext("2d");
  if (ctx) ctx.putImageData(new ImageData(rgba as Uint8ClampedArray<ArrayBuffer>, w, hgt), 0, 0);
  return c;
}

interface Listenable {
  on(event: string, callback: () => void): void;
  off(event: string, callback: () => void): void;
}

/** Subscribe each handler to its model event; returns the function that unsubscribes them all. */
export function listen(model: Listenable, events: Array<[string, () => void]>): () => void {
  for (const [e, f] of events) model.on(e, f);
  return () => {
    for (const [e, f] of events) model.off(e, f);
  };
}

/**
 * Wire a rendered view: subscribe `events` on the model and redraw when `root` becomes visible again.
 * Returns the view's cleanup: it runs `extra` cleanups, undoes both subscriptions and empties `el`.
 */
export function connect(
  el: HTMLElement,
  root: HTMLElement,
  model: Listenable,
  events: Array<[string, () => void]>,
  redraw: () => void,
  ...extra: Array<() => void>
): () => void {
  const unlisten = listen(model, events);
  const stopVisible = onVisible(root, redraw);
  return () => {
    extra.forEach((c) => c());
    stopVisible();
    unlisten();
    el.replaceChildren();
  };
}

/**
 * Play through steps `0 … count() − 1` on a timer, one `go(step)` per tick, starting over from 0 when at the
 * end. The button toggles play/pause and the root's `data-playing` says which; `stop()` also ends a run.
 */
export function stepPlayer(
  button: HTMLButtonElement,
  root: HTMLElement,
  steps: { count: () => number; current: () => number; go: (t: number) => void; intervalMs: () => number },
): { start: () => void; stop: () => void } {
  let timer: ReturnType<typeof setInterval> | null = null;
  const stop = () => {
    if (timer !== null) clearInterval(timer);
    timer = null;
    button.textContent = "▶ play";
    root.dataset.playing = "false";
  };
  const start = () => {
    const n = steps.count();
    if (n < 2) return;
    if (steps.current() >= n - 1) steps.go(0);
    button.textContent = "⏸ pause";
    root.dataset.playing = "true";
    timer = setInterval(() => {
      const next = steps.current() + 1;
      if (next >= steps.count()) {
        stop();
        return;
      }
      steps.go(next);
    }, Math.max(16, steps.intervalMs()));
  };
  button.addEventListener("click", () => (timer === null ? start() : stop()));
  return { start, stop };
}

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * An `<svg class=className>` of `left + width + padRight` × `height + padBottom` CSS pixels with a plot group
 * shifted by (left, top), and `mk(tag, attrs, text?)` that appends an SVG element to that group (text through
 * textContent).
 */
export function svgPlot(
  className: string,
  box: { left: number; top: number; width: number; height: number; padRight: number; padBottom: number },
): { svg: SVGSVGElement; g: SVGGElement; mk: (tag: string, attrs: Record<string, string>, text?: string) => SVGElement } {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", className);
  svg.setAttribute("width", String(box.left + box.width + box.padRight));
  svg.setAttribute("height", String(box.height + box.padBottom));
  const g = document.createElementNS(SVG_NS, "g");
  g.setAttribute("transform", `translate(${box.left},${box.top})`);
  svg.appendChild(g);
  const mk = (tag: string, attrs: Record<string, string>, text?: string) => {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    g.appendChild(e);
    return e;
  };
  return { svg, g, mk };
}

