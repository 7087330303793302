// SVG charts of the Playground view: lines over epochs with labelled axes and integer epoch ticks, and the
// similarity strip (one row per layer, one cell per epoch). Text through textContent only.
import { sequential } from "./colormap";
import { formatNumber, formatTick, niceTicks } from "./nice_ticks";
import { h, svgPlot } from "./dom";
import { epochTicks } from "./playground_draw";

export interface Series {
  label: string;
  color: string;
  dashed?: boolean;
  /** (epoch, value) pairs. */
  points: Array<[number, number]>;
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Fixed y range, or null to fit the data (from 0). */
  yRange: [number, number] | null;
  series: Series[];
  /** Epoch marked by a vertical line (the frame shown), or null. */
  cursor: number | null;
}

const BOX = { top: 8, width: 270, height: 120, padRight: 12, padBottom: 44 };

/**
 * The y axis of a line chart: nice ticks (0 first) covering the data, or `range` split in halves, and the left
 * margin that fits the widest tick label plus the rotated axis title beside it (no overlap, whatever the values).
 */
export function yAxis(values: number[], range: [number, number] | null): { ticks: number[]; labels: string[]; left: number } {
  const finite = values.filter(Number.isFinite);
  const ticks = range
    ? [range[0], (range[0] + range[1]) / 2, range[1]]
    : niceTicks(0, Math.max(1e-6, ...finite), 3);
  const labels = ticks.map((t) => formatTick(t));
  const chars = Math.max(1, ...labels.map((l) => l.length));
  // tick labels at 13 px (digits ≈ 7.2 px wide) end 6 px from the axis; the title's line (≈ 15 px) 4 px further out
  return { ticks, labels, left: Math.ceil(6 + 7.2 * chars + 4 + 15) };
}

/** A line chart of values over epochs: axes labelled, integer epoch ticks, a legend row under it. */
export function lineChart(spec: ChartSpec, className: string): HTMLDivElement {
  const wrap = h("div", `nbx-pg-chart ${className}`);
  wrap.appendChild(h("div", "nbx-pg-chart-title", spec.title));
  const axis = yAxis(spec.series.flatMap((s) => s.points.map((p) => p[1])), spec.yRange);
  const { svg, mk } = svgPlot("nbx-pg-svg", { ...BOX, left: axis.left });
  svg.setAttribute("role", "img");
  const last = Math.max(1, ...spec.series.flatMap((s) => s.points.map((p) => p[0])));
  const y0 = axis.ticks[0];
  const y1 = axis.ticks[axis.ticks.length - 1];
  const W = BOX.width, H = BOX.height;
  const sx = (e: number) => (e / last) * W;
  const sy = (v: number) => H - ((v - y0) / (y1 - y0 || 1)) * H;
  mk("rect", { x: "0", y: "0", width: String(W), height: String(H), class: "nbx-pg-frame" });
  for (const t of epochTicks(last)) {
    mk("line", { x1: String(sx(t)), x2: String(sx(t)), y1: String(H), y2: String(H + 4), class: "nbx-pg-axis" });
    mk("text", { x: String(sx(t)), y: String(H + 18), "text-anchor": "middle", class: "nbx-pg-tick" }, String(t));
  }
  axis.ticks.forEach((v, i) => {
    mk("line", { x1: "-4", x2: "0", y1: String(sy(v)), y2: String(sy(v)), class: "nbx-pg-axis" });
    mk("text", { x: "-6", y: String(sy(v) + 4), "text-anchor": "end", class: "nbx-pg-tick" }, axis.labels[i]);
  });
  mk("text", { x: String(W / 2), y: String(H + 36), "text-anchor": "middle", class: "nbx-pg-label" }, spec.xLabel);
  mk("text", { x: String(-H / 2), y: String(4 - axis.left), transform: "rotate(-90)", "text-anchor": "middle",
    "dominant-baseline": "hanging", class: "nbx-pg-label" }, spec.yLabel);
  for (const s of spec.series) {
    if (!s.points.length) continue;
    const d = s.points.map(([e, v], i) => `${i ? "L" : "M"}${sx(e).toFixed(1)},${sy(v).toFixed(1)}`).join("");
    const attrs: Record<string, string> = { d, fill: "none", stroke: s.color, "stroke-width": "2", class: "nbx-pg-line" };
    if (s.dashed) attrs["stroke-dasharray"] = "5 3";
    mk("path", attrs);
    if (s.points.length === 1) {
      const [e, v] = s.points[0];
      mk("circle", { cx: String(sx(e)), cy: String(sy(v)), r: "3", fill: s.color });
    }
  }
  if (spec.cursor !== null) {
    mk("line", { x1: String(sx(spec.cursor)), x2: String(sx(spec.cursor)), y1: "0", y2: String(H), class: "nbx-pg-cursor" });
  }
  const latest = spec.series.map((s) => {
    const p = s.points[s.points.length - 1];
    return `${s.label} ${p ? formatNumber(p[1], 3) : "–"}`;
  });
  svg.setAttribute("aria-label", `${spec.title} over epochs 0 to ${last}: ${latest.join(", ")}`);
  wrap.appendChild(svg);
  const legend = h("div", "nbx-pg-legend");
  spec.series.forEach((s, i) => {
    const item = h("span", "nbx-pg-legend-item", latest[i]);
    const swatch = h("span", "nbx-pg-swatch");
    swatch.style.borderTop = `3px ${s.dashed ? "dashed" : "solid"} ${s.color}`;
    item.prepend(swatch);
    legend.appendChild(item);
  });
  wrap.appendChild(legend);
  return wrap;
}

/**
 * The similarity strip: row = layer, column = epoch (0 = before training), colour = CKA of that layer at that
 * epoch with its latest state (sequential, 0 … 1; NaN, a layer without variance, grey). `values` is row-major
 * (epochs, layers); `epochs` counts the columns.
 */
export function similarityStrip(values: ArrayLike<number>, epochs: number, layers: string[], cursor: number | null,
  floor = 0): HTMLDivElement {
  const wrap = h("div", "nbx-pg-chart nbx-pg-similarity");
  wrap.appendChild(h("div", "nbx-pg-chart-title", "CKA of each layer with its latest state"));
  const cell = Math.max(3, Math.min(18, Math.floor(260 / Math.max(1, epochs))));
  const rowH = 18;
  const box = { left: 52, top: 4, width: cell * Math.max(1, epochs), height: rowH * layers.length, padRight: 8, padBottom: 40 };
  const { svg, mk } = svgPlot("nbx-pg-svg", box);
  svg.setAttribute("role", "img");
  layers.forEach((name, l) => {
    mk("text", { x: "-6", y: String(l * rowH + 13), "text-anchor": "end", class: "nbx-pg-tick" }, name);
    for (let e = 0; e < epochs; e++) {
      const v = values[e * layers.length + l];
      const [r, g, b] = sequential(v, 0, 1, floor); // floor: viridis lifted off a dark background
      const rect = mk("rect", { x: String(e * cell), y: String(l * rowH), width: String(cell), height: String(rowH - 2),
        fill: Number.isFinite(v) ? `rgb(${r},${g},${b})` : "var(--nbx-bg2)", class: "nbx-pg-sim-cell" });
      rect.dataset.value = String(v);
      const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
      title.textContent = `${name}, epoch ${e}: CKA ${Number.isFinite(v) ? formatNumber(v) : "none (no variance)"}`;
      rect.appendChild(title);
    }
  });
  if (cursor !== null && epochs > 0) {
    const x = (Math.max(0, Math.min(epochs - 1, cursor)) + 0.5) * cell;
    mk("line", { x1: String(x), x2: String(x), y1: "0", y2: String(box.height), class: "nbx-pg-cursor" });
  }
  mk("text", { x: String(box.width / 2), y: String(box.height + 30), "text-anchor": "middle", class: "nbx-pg-label" },
    epochs ? `epoch 0 … ${epochs - 1} (${floor > 0 ? "blue" : "dark"} 0, yellow 1)` : "no epoch yet");
  const lastRow = layers.map((n, l) => `${n} ${epochs ? formatNumber(values[(epochs - 1) * layers.length + l]) : "–"}`);
  svg.setAttribute("aria-label", `CKA with the latest state per layer over ${epochs} epochs; first epoch: ${
    layers.map((n, l) => `${n} ${epochs ? formatNumber(values[l]) : "–"}`).join(", ")}; last: ${lastRow.join(", ")}`);
  wrap.appendChild(svg);
  return wrap;
}
