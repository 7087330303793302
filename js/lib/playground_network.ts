// The Playground's network diagram: one column of neuron maps per layer (inputs first), edges as SVG lines
// whose width follows |weight| (blue positive, orange negative, as TensorFlow Playground). Neurons are
// focusable buttons; hover, focus or Enter asks the view to enlarge one.
import { activate, h } from "./dom";
import { edgeWidth } from "./playground_draw";

export interface Column {
  title: string;
  units: number;
}

export interface Diagram {
  el: HTMLDivElement;
  /** canvases[column][unit] */
  canvases: HTMLCanvasElement[][];
  nodeSize: number;
  /** Redraw the edges for the flattened weights of `shapes` ([out, in] per Linear, in order). */
  drawEdges(weights: ArrayLike<number>, shapes: number[][]): void;
}

const SVG_NS = "http://www.w3.org/2000/svg";
export const POSITIVE = "rgb(8, 119, 189)";
export const NEGATIVE = "rgb(245, 147, 34)";

/** Whether two lists of edge shapes ([out, in] per Linear) are equal: the same array at once (every frame of a
 * run draws with the config's one array), element by element otherwise — never serialised. */
export function sameShapes(a: number[][] | null, b: number[][]): boolean {
  if (a === b) return true;
  if (!a || a.length !== b.length) return false;
  return a.every((s, i) => s.length === b[i].length && s.every((v, j) => v === b[i][j]));
}

/** Node size and positions: columns spread over `width`, units centred vertically in `height`. */
export function layoutNodes(columns: Column[], width: number, maxHeight: number): { size: number; gap: number;
  height: number; x: number[]; y: number[][] } {
  const most = Math.max(1, ...columns.map((c) => c.units));
  const size = Math.max(14, Math.min(40, Math.floor(maxHeight / most) - 6));
  const gap = Math.max(3, Math.min(8, Math.floor(size / 5)));
  const height = most * (size + gap) + 24;
  const n = columns.length;
  const step = n > 1 ? Math.min(120, (width - size) / (n - 1)) : 0;
  const x = columns.map((_, i) => i * step);
  const y = columns.map((c) => {
    const top = 24 + ((most - c.units) * (size + gap)) / 2;
    return Array.from({ length: c.units }, (_, u) => top + u * (size + gap));
  });
  return { size, gap, height, x, y };
}

export function networkDiagram(
  columns: Column[],
  names: (col: number, unit: number) => string,
  onInspect: (col: number, unit: number, pin: boolean) => void,
  onLeave: () => void,
  width = 440,
): Diagram {
  const el = h("div", "nbx-pg-network");
  const { size, height, x, y } = layoutNodes(columns, width, 300);
  const used = (x[x.length - 1] ?? 0) + size;
  el.style.width = `${used}px`;
  el.style.height = `${height}px`;
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "nbx-pg-edges");
  svg.setAttribute("width", String(used));
  svg.setAttribute("height", String(height));
  svg.setAttribute("aria-hidden", "true");
  el.appendChild(svg);
  const canvases: HTMLCanvasElement[][] = [];
  columns.forEach((col, c) => {
    const title = h("div", "nbx-pg-col-title", col.title);
    // centred over its column; the first starts at the left edge and the last ends at the right one
    const last = c === columns.length - 1 && c > 0;
    title.style.left = `${c === 0 ? x[c] : last ? x[c] + size : x[c] + size / 2}px`;
    title.style.transform = c === 0 ? "none" : last ? "translateX(-100%)" : "translateX(-50%)";
    el.appendChild(title);
    const list: HTMLCanvasElement[] = [];
    for (let u = 0; u < col.units; u++) {
      const node = h("canvas", "nbx-canvas nbx-pg-neuron");
      node.width = 32;
      node.height = 32;
      node.style.width = `${size}px`;
      node.style.height = `${size}px`;
      node.style.left = `${x[c]}px`;
      node.style.top = `${y[c][u]}px`;
      node.tabIndex = 0;
      node.setAttribute("role", "button");
      node.setAttribute("aria-label", `${names(c, u)}: activation over the plane; Enter enlarges`);
      node.dataset.neuron = `${c}:${u}`;
      node.addEventListener("pointerenter", () => onInspect(c, u, false));
      node.addEventListener("pointerleave", onLeave);
      node.addEventListener("focus", () => onInspect(c, u, false));
      node.addEventListener("blur", onLeave);
      activate(node, () => onInspect(c, u, true));
      el.appendChild(node);
      list.push(node);
    }
    canvases.push(list);
  });

  // The lines are made once and only restyled per frame (a frame changes weights, never the wiring).
  let lines: SVGLineElement[] = [];
  let wiring: number[][] | null = null;
  function drawEdges(weights: ArrayLike<number>, shapes: number[][]) {
    if (!sameShapes(wiring, shapes)) {
      wiring = shapes;
      svg.replaceChildren();
      lines = [];
      shapes.forEach(([outs, ins], l) => {
        if (l + 1 >= columns.length) return;
        for (let o = 0; o < outs; o++) {
          for (let i = 0; i < ins; i++) {
            const line = document.createElementNS(SVG_NS, "line");
            line.setAttribute("x1", String(x[l] + size));
            line.setAttribute("y1", String(y[l][i] + size / 2));
            line.setAttribute("x2", String(x[l + 1]));
            line.setAttribute("y2", String(y[l + 1][o] + size / 2));
            line.setAttribute("stroke-opacity", "0.7");
            svg.appendChild(line);
            lines.push(line);
          }
        }
      });
    }
    let wmax = 0;
    for (let i = 0; i < weights.length; i++) wmax = Math.max(wmax, Math.abs(weights[i]));
    lines.forEach((line, k) => {
      const w = weights[k];
      line.setAttribute("stroke", w >= 0 ? POSITIVE : NEGATIVE);
      line.setAttribute("stroke-width", edgeWidth(w, wmax).toFixed(2));
    });
  }
  return { el, canvases, nodeSize: size, drawEdges };
}
