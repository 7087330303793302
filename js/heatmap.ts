// Heatmap view: a grid of maps (optionally over images), colour bar, readout, click-to-select.
// Pure render from model state; the only intent sent back is `selected` (and `opacity`).
import type { AnyModel, RenderProps } from "@anywidget/types";
import { type ColorScale, formatValue } from "./lib/colormap";
import { colorFooter, connect, h, injectStyle, offscreen, sizeCanvas, viewRoot } from "./lib/dom";
import { outlineRGBA } from "./lib/outline";
import { colorize, effectiveScale, imageRGBA, pixelAt, sourceCoord } from "./lib/raster";
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
  theme: string;
}


function render({ model, el }: RenderProps<State>) {
  const root = viewRoot("heatmap", model.get("theme"));
  injectStyle(el);
  el.appendChild(root);

  const controls = h("div", "nbx-controls");
  const opacityLabel = h("label", "nbx-control", "opacity");
  const opacity = h("input", "nbx-opacity");
  opacity.type = "range";
  opacity.min = "0";
  opacity.max = "1";
  opacity.step = "0.01";
  opacityLabel.appendChild(opacity);
  controls.appendChild(opacityLabel);
  const grid = h("div", "nbx-grid");
  const { footer, readout, setScale } = colorFooter();
  root.append(controls, grid, footer);

  let maps: Tensor = decodeTensor(null);
  let images: Tensor = decodeTensor(null);
  let mapCanvases: HTMLCanvasElement[] = [];
  let imageCanvases: HTMLCanvasElement[] = [];
  let outlineCanvases: HTMLCanvasElement[] = [];
  let cells: HTMLDivElement[] = [];
  let canvases: HTMLCanvasElement[] = [];
  let markers: HTMLDivElement[] = [];

  const scale = (): ColorScale => ({ kind: model.get("cmap"), vmin: model.get("vmin"), vmax: model.get("vmax") });

  function cellSize(): [number, number] {
    const [, hm, wm] = maps.shape;
    const w = model.get("cell_size");
    return [w, Math.max(1, Math.round((w * hm) / wm))];
  }

  function draw(i: number) {
    const [cw, ch] = cellSize();
    const ctx = sizeCanvas(canvases[i], cw, ch);
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
      c.setAttribute("aria-selected", String(i === sel));
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
    readout.textContent = `${title}  row ${sr}, col ${sc}${down ? " (pooled)" : ""}: ${formatValue(value)}`;
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
    const s = scale();
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
    grid.style.display = cols > 0 ? "grid" : "flex";
    grid.style.gridTemplateColumns = cols > 0 ? `repeat(${cols}, max-content)` : "";
    for (let i = 0; i < n; i++) {
      const cell = h("div", "nbx-cell");
      cell.dataset.index = String(i);
      cell.setAttribute("role", "button");
      cell.tabIndex = 0;
      const title = h("span", "nbx-title", titles[i] ?? String(i));
      title.title = titles[i] ?? String(i);
      title.style.maxWidth = `${model.get("cell_size")}px`;
      const canvas = h("canvas", "nbx-canvas");
      const marker = h("div", "nbx-marker");
      cell.append(title, canvas, marker);
      canvas.addEventListener("pointermove", (ev) => onMove(i, ev));
      canvas.addEventListener("pointerleave", onLeave);
      const select = () => {
        model.set("selected", i);
        model.save_changes();
      };
      cell.addEventListener("click", select);
      cell.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          select();
        }
      });
      grid.appendChild(cell);
      cells.push(cell);
      canvases.push(canvas);
      markers.push(marker);
    }
    const drawn = effectiveScale(s);
    setScale(drawn, model.get("label"));
    readout.textContent = n ? "hover a map to read values · click to select" : "no maps";
    root.dataset.n = String(n);
    root.dataset.cmap = s.kind;
    drawAll();
    markSelected();
    root.dataset.ready = "true";
  }

  opacity.addEventListener("input", () => {
    model.set("opacity", Number(opacity.value));
    drawAll(); // immediate local feedback; the kernel learns the value but is not needed to redraw
  });
  opacity.addEventListener("change", () => model.save_changes());

  const rebuild = () => build();
  const onOpacity = () => {
    opacity.value = String(model.get("opacity"));
    drawAll();
  };
  const onTheme = () => (root.dataset.theme = model.get("theme"));
  const events: Array<[string, () => void]> = [
    ["change:maps", rebuild], ["change:images", rebuild], ["change:titles", rebuild], ["change:cmap", rebuild],
    ["change:vmin", rebuild], ["change:vmax", rebuild], ["change:cell_size", rebuild], ["change:columns", rebuild],
    ["change:label", rebuild], ["change:opacity", onOpacity], ["change:selected", markSelected],
    ["change:theme", onTheme],
  ];
  build();
  return connect(el, root, model, events, drawAll);
}

export default { render };
export type { AnyModel };
