// Heatmap view: a grid of maps (optionally over images), colour bar, readout, click-to-select.
// Pure render from model state; the only intent sent back is `selected` (and `opacity`).
// Layout: every cell is at most `cell_size × scale` CSS px wide and shrinks with the column (the grid's tracks are
// minmax(0, that width)), so the view fits an 800 px notebook column; canvases are drawn at their shown size.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { type ColorScale } from "./lib/colormap";
import { formatNumber } from "./lib/nice_ticks";
import { activate, applyScale, batched, connect, h, injectStyle, offscreen, onBackground, onThemeChange, rangeControl, sizeToWidth, themeHandler, viewRoot } from "./lib/dom";
import { outlineRGBA } from "./lib/outline";
import { keepNavigationKeys } from "./lib/keys";
import { colorize, imageRGBA, pixelAt, sourceCoord } from "./lib/raster";
import { niceScale, scaleBar } from "./lib/scalebar";
import { decodeTensor, slice0, type Tensor, type WireTensor } from "./lib/tensor";

interface State {
  maps: WireTensor;
  images: WireTensor;
  titles: string[];
  cmap: "diverging" | "sequential";
  vmin: number;
  vmax: number;
  opacity: number;
  selected: number;
  cell_size: number;
  columns: number;
  label: string;
  source_shape: [number, number];
  round_limits: boolean;
  scale: number;
  theme: string;
}

const CSS = `
.nbx-heatmap .nbx-grid { max-width: 100%; }
.nbx-heatmap .nbx-cell { width: calc(var(--nbx-cell) * var(--nbx-scale) + 8px); max-width: 100%; min-width: 0; }
.nbx-heatmap .nbx-grid[data-layout="grid"] .nbx-cell { width: auto; }
.nbx-heatmap .nbx-cell:focus-visible { outline: 3px solid var(--nbx-accent); outline-offset: 1px; }
.nbx-heatmap .nbx-title { font-size: 1em; color: var(--nbx-fg); max-width: 100%; }
.nbx-heatmap .nbx-canvas { width: 100%; height: auto; }
.nbx-heatmap .nbx-control { color: var(--nbx-fg); }
.nbx-heatmap .nbx-control input { font: inherit; }
.nbx-heatmap .nbx-control input:focus-visible { outline: 2px solid var(--nbx-accent); outline-offset: 2px; }
.nbx-heatmap .nbx-footer { align-items: flex-start; }
.nbx-heatmap .nbx-readout { overflow-wrap: anywhere; min-width: 0; }
`;

/** The readout line for pixel (row, col) of map `title`: every number named ("value" when no label is given). */
function heatmapReadout(title: string, row: number, col: number, pooled: boolean, value: number, label: string):
string {
  return `${title} · row ${row}, col ${col}${pooled ? " (pooled)" : ""} · ${label || "value"} ${formatNumber(value)}`;
}


function render({ model, el }: RenderProps<State>) {
  const root = viewRoot("heatmap", model.get("theme"));
  injectStyle(el, CSS);
  el.appendChild(root);

  const controls = h("div", "nbx-controls");
  const { label: opacityLabel, input: opacity } = rangeControl("nbx-opacity", "opacity", { min: 0, max: 1, step: 0.01 });
  controls.appendChild(opacityLabel);
  const stopRangeKeys = keepNavigationKeys(root);
  const grid = h("div", "nbx-grid");
  const footer = h("div", "nbx-footer");
  const barSlot = h("div", "nbx-scalebar-slot");
  const readout = h("div", "nbx-readout");
  readout.setAttribute("aria-live", "polite");
  footer.append(barSlot, readout);
  root.append(controls, grid, footer);

  let maps: Tensor = decodeTensor(null);
  let images: Tensor = decodeTensor(null);
  let mapCanvases: HTMLCanvasElement[] = [];
  let imageCanvases: HTMLCanvasElement[] = [];
  let outlineCanvases: HTMLCanvasElement[] = [];
  let cells: HTMLDivElement[] = [];
  let canvases: HTMLCanvasElement[] = [];
  let markers: HTMLDivElement[] = [];

  // the scale maps are drawn with: limits rounded outward to nice values unless the user fixed them
  let drawn: ColorScale = { kind: "sequential", vmin: 0, vmax: 1 };
  let step = 0.25;
  const given = (): ColorScale => ({ kind: model.get("cmap"), vmin: model.get("vmin"), vmax: model.get("vmax") });

  function draw(i: number) {
    const ctx = sizeToWidth(canvases[i], maps.shape[1], maps.shape[2], model.get("cell_size"));
    if (!ctx) return;
    const W = canvases[i].width;
    const H = canvases[i].height;
    ctx.clearRect(0, 0, W, H);
    const hasImages = imageCanvases.length > 0;
    if (hasImages) {
      ctx.globalAlpha = 1;
      ctx.drawImage(imageCanvases[i], 0, 0, W, H);
      ctx.globalAlpha = model.get("opacity");
    }
    ctx.drawImage(mapCanvases[i], 0, 0, W, H);
    ctx.globalAlpha = 1;
    // the input as a thin outline on top, so at full opacity the colours are the colour bar's and the input shows
    if (hasImages) ctx.drawImage(outlineCanvas(i, W, H), 0, 0);
  }

  function outlineCanvas(i: number, W: number, H: number): HTMLCanvasElement {
    const cached = outlineCanvases[i];
    if (cached && cached.width === W && cached.height === H) return cached;
    const [, hi, wi, ci] = images.shape;
    const c = offscreen(outlineRGBA(slice0(images, i).data, hi, wi, ci, H, W), W, H);
    outlineCanvases[i] = c;
    return c;
  }

  function drawAll() {
    for (let i = 0; i < canvases.length; i++) draw(i);
    root.dataset.opacity = String(model.get("opacity"));
    root.dataset.outline = String(imageCanvases.length > 0);
  }

  function markSelected() {
    const sel = model.get("selected");
    cells.forEach((c, i) => {
      c.classList.toggle("nbx-selected", i === sel);
      c.setAttribute("aria-pressed", String(i === sel));
    });
    root.dataset.selected = String(sel);
  }

  function onMove(i: number, ev: PointerEvent) {
    const rect = canvases[i].getBoundingClientRect();
    const [, hm, wm] = maps.shape;
    const px = pixelAt(ev.clientX - rect.left, ev.clientY - rect.top, rect.width, rect.height, hm, wm);
    markers.forEach((m) => (m.style.display = "none"));
    if (!px) return;
    const [r, c] = px;
    const value = maps.data[(i * hm + r) * wm + c];
    const [srcH, srcW] = model.get("source_shape");
    const [sr, sc] = sourceCoord(r, c, hm, wm, srcH, srcW);
    const down = srcH !== hm || srcW !== wm;
    const title = model.get("titles")[i] ?? String(i);
    readout.textContent = heatmapReadout(title, sr, sc, down, value, model.get("label"));
    root.dataset.hover = `${i},${sr},${sc}`;
    root.dataset.value = String(value);
    const m = markers[i];
    const cw = rect.width / wm;
    const chh = rect.height / hm;
    m.style.display = "block";
    m.style.width = `${cw}px`;
    m.style.height = `${chh}px`;
    m.style.left = `${canvases[i].offsetLeft + c * cw}px`;
    m.style.top = `${canvases[i].offsetTop + r * chh}px`;
  }

  function onLeave() {
    markers.forEach((m) => (m.style.display = "none"));
    delete root.dataset.hover;
  }

  function build() {
    maps = decodeTensor(model.get("maps"));
    images = decodeTensor(model.get("images"));
    const [n, hm, wm] = maps.shape.length === 3 ? maps.shape : [0, 0, 0];
    const titles = model.get("titles");
    ({ scale: drawn, step } = niceScale(given(), model.get("round_limits")));
    drawn = onBackground(root, drawn); // a dark theme starts viridis at its blue: 0 ≠ the page
    const s = drawn;
    mapCanvases = [];
    imageCanvases = [];
    outlineCanvases = [];
    for (let i = 0; i < n; i++) mapCanvases.push(offscreen(colorize(slice0(maps, i).data, hm, wm, s), wm, hm));
    if (images.shape.length === 4 && images.shape[0] === n) {
      const [, hi, wi, ci] = images.shape;
      for (let i = 0; i < n; i++) imageCanvases.push(offscreen(imageRGBA(slice0(images, i).data, hi, wi, ci), wi, hi));
    }
    opacityLabel.style.display = imageCanvases.length ? "" : "none";
    opacity.value = String(model.get("opacity"));
    grid.replaceChildren();
    cells = [];
    canvases = [];
    markers = [];
    const cols = model.get("columns");
    root.style.setProperty("--nbx-cell", `${model.get("cell_size")}px`);
    grid.style.display = cols > 0 ? "grid" : "flex";
    grid.dataset.layout = cols > 0 ? "grid" : "wrap";
    // `columns` tracks, each at most the cell size (× scale, + the cell's padding and border): they shrink with a
    // narrower column down to 7em, and below that fewer tracks fit (the maps wrap), so nothing scrolls sideways
    const track = "(var(--nbx-cell) * var(--nbx-scale) + 8px)";
    grid.style.maxWidth = cols > 0 ? `calc(${cols} * ${track} + ${cols - 1} * 8px)` : "";
    grid.style.gridTemplateColumns = cols > 0
      ? `repeat(auto-fill, minmax(max(min(calc${track}, 7em, 100%), calc((100% - ${cols - 1} * 8px) / ${cols})), 1fr))`
      : "";
    const what = model.get("label") || "map";
    for (let i = 0; i < n; i++) {
      const cell = h("div", "nbx-cell");
      cell.dataset.index = String(i);
      cell.setAttribute("role", "button");
      cell.tabIndex = 0;
      const name = titles[i] ?? String(i);
      cell.setAttribute("aria-label", `${name}: ${what} ${i + 1} of ${n}; Enter or Space selects it`);
      const title = h("span", "nbx-title", name);
      const canvas = h("canvas", "nbx-canvas");
      canvas.style.aspectRatio = `${wm} / ${hm}`;
      canvas.setAttribute("aria-hidden", "true");
      const marker = h("div", "nbx-marker");
      cell.append(title, canvas, marker);
      canvas.addEventListener("pointermove", (ev) => onMove(i, ev));
      canvas.addEventListener("pointerleave", onLeave);
      const select = () => {
        model.set("selected", i);
        model.save_changes();
      };
      activate(cell, select);
      grid.appendChild(cell);
      cells.push(cell);
      canvases.push(canvas);
      markers.push(marker);
    }
    barSlot.replaceChildren(scaleBar(s, step, model.get("label") || (s.kind === "diverging" ? "value (signed)" : "value")));
    readout.textContent = n ? "hover a map to read its values · click it (or Enter / Space) to select it" : "no maps";
    root.dataset.n = String(n);
    root.dataset.cmap = s.kind;
    root.dataset.vmin = String(s.vmin);
    root.dataset.vmax = String(s.vmax);
    drawAll();
    markSelected();
    root.dataset.ready = "true";
  }

  opacity.addEventListener("input", () => {
    model.set("opacity", Number(opacity.value));
    drawAll(); // immediate local feedback; the kernel learns the value but is not needed to redraw
  });
  opacity.addEventListener("change", () => model.save_changes());

  const rebuild = batched(build); // set_maps changes several traits in one message: rebuild once
  const onOpacity = () => {
    opacity.value = String(model.get("opacity"));
    drawAll();
  };
  const onTheme = themeHandler(root, model);
  const events: Array<[string, () => void]> = [
    ["change:maps", rebuild], ["change:images", rebuild], ["change:titles", rebuild], ["change:cmap", rebuild],
    ["change:vmin", rebuild], ["change:vmax", rebuild], ["change:cell_size", rebuild], ["change:columns", rebuild],
    ["change:label", rebuild], ["change:round_limits", rebuild], ["change:opacity", onOpacity], ["change:selected", markSelected],
    ["change:theme", onTheme],
  ];
  const stopScale = applyScale(root, model, drawAll);
  build();
  return connect(el, root, model, events, drawAll, stopScale, stopRangeKeys, onThemeChange(root, build));
}

export default { render };
export type { AnyModel };
