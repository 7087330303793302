// Colour maps: a diverging map centred on zero for signed values (relevance), a sequential map for
// unsigned ones. Both are piecewise-linear through published anchor colours and return RGB bytes.

export type RGB = [number, number, number];

// Diverging blue–white–red (anchors of ColorBrewer RdBu, reversed so positive = red).
const DIVERGING: RGB[] = [
  [5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240], [247, 247, 247],
  [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31],
];

// Sequential (viridis anchors, perceptually uniform, readable on light and dark backgrounds).
const SEQUENTIAL: RGB[] = [
  [68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
  [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37],
];

function interpolate(anchors: RGB[], t: number): RGB {
  if (!(t >= 0)) t = 0; // also maps NaN to the low end
  if (t > 1) t = 1;
  const x = t * (anchors.length - 1);
  const i = Math.min(Math.floor(x), anchors.length - 2);
  const f = x - i;
  const a = anchors[i];
  const b = anchors[i + 1];
  return [
    Math.round(a[0] + (b[0] - a[0]) * f),
    Math.round(a[1] + (b[1] - a[1]) * f),
    Math.round(a[2] + (b[2] - a[2]) * f),
  ];
}

/** Diverging colour for v in [-vmax, vmax]; zero is exactly the neutral middle colour. */
export function diverging(v: number, vmax: number): RGB {
  const t = vmax > 0 ? 0.5 + 0.5 * (v / vmax) : 0.5;
  return interpolate(DIVERGING, t);
}

/** Sequential colour for v in [vmin, vmax]. */
export function sequential(v: number, vmin: number, vmax: number): RGB {
  const span = vmax - vmin;
  return interpolate(SEQUENTIAL, span > 0 ? (v - vmin) / span : 0);
}

export type ColorScale = { kind: "diverging" | "sequential"; vmin: number; vmax: number };

/** Colour of a value under a scale (diverging scales use max(|vmin|, |vmax|) around zero). */
export function colorOf(v: number, s: ColorScale): RGB {
  if (s.kind === "diverging") return diverging(v, Math.max(Math.abs(s.vmin), Math.abs(s.vmax)));
  return sequential(v, s.vmin, s.vmax);
}

/** Entries in a lookup table. Odd, so that the middle entry of a symmetric scale is exactly zero. */
export const LUT_SIZE = 257;

/** Precomputed lookup table (RGB bytes, LUT_SIZE entries) over [vmin, vmax] for fast per-pixel colouring. */
export function lut(s: ColorScale): Uint8Array {
  const table = new Uint8Array(LUT_SIZE * 3);
  for (let i = 0; i < LUT_SIZE; i++) {
    const v = s.vmin + ((s.vmax - s.vmin) * i) / (LUT_SIZE - 1);
    const [r, g, b] = colorOf(v, s);
    table[3 * i] = r;
    table[3 * i + 1] = g;
    table[3 * i + 2] = b;
  }
  return table;
}

/** Index into a lut for value v (clamped). */
export function lutIndex(v: number, vmin: number, vmax: number): number {
  const span = vmax - vmin;
  const last = LUT_SIZE - 1;
  if (!(span > 0)) return last / 2;
  const i = Math.round(((v - vmin) / span) * last);
  return i < 0 ? 0 : i > last ? last : i;
}

/** Paint a horizontal colour bar into a canvas (width × 1 pixels, stretched by CSS). */
export function paintColorbar(canvas: HTMLCanvasElement, s: ColorScale): void {
  const width = 256;
  canvas.width = width;
  canvas.height = 1;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  const img = ctx.createImageData(width, 1);
  for (let i = 0; i < width; i++) {
    const v = s.vmin + ((s.vmax - s.vmin) * i) / (width - 1);
    const [r, g, b] = colorOf(v, s);
    img.data.set([r, g, b, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
}

/** Short, locale-independent number formatting for readouts and colour-bar labels. */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(3);
  return Number(v.toPrecision(4)).toString();
}
