// Colour maps: a diverging map centred on zero for signed values (relevance), a sequential map for
// unsigned ones. Both are piecewise-linear through published anchor colours and return RGB bytes.

export type RGB = [number, number, number];

// Diverging blue–white–red (anchors of ColorBrewer RdBu, reversed so positive = red).
const DIVERGING: RGB[] = [
  [5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240], [247, 247, 247],
  [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31],
];

// Sequential (viridis anchors, perceptually uniform, readable with colour-vision deficiency). Its dark end is
// close to a dark theme's background (1.24 : 1 on #111111), so on dark backgrounds the map starts further along
// (see `sequentialFloor`): a zero stays distinct from the page.
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

/**
 * Diverging colour for v in [-vmax, vmax]; zero is exactly the neutral middle colour. `trim` (0 … < 0.5) skips
 * that much of the map at both ends (RdBu's darkest blue and red), symmetrically, so zero stays in the middle.
 */
export function diverging(v: number, vmax: number, trim = 0): RGB {
  const t = vmax > 0 ? 0.5 + 0.5 * (v / vmax) : 0.5;
  const f = trim > 0 && trim < 0.5 ? trim : 0;
  return interpolate(DIVERGING, f + (1 - 2 * f) * (t >= 0 ? Math.min(t, 1) : 0));
}

/**
 * Sequential colour for v in [vmin, vmax]. `floor` (0 … < 1) skips the first part of viridis: vmin gets the
 * colour at `floor`, vmax still the yellow end (a sub-range of a perceptually uniform map stays uniform).
 */
export function sequential(v: number, vmin: number, vmax: number, floor = 0): RGB {
  const span = vmax - vmin;
  let t = span > 0 ? (v - vmin) / span : 0;
  if (!(t >= 0)) t = 0; // NaN and below-range values take the low end
  if (t > 1) t = 1;
  const f = floor > 0 && floor < 1 ? floor : 0;
  return interpolate(SEQUENTIAL, f + (1 - f) * t);
}

/**
 * A colour scale. `floor` (default 0) is how much of the map's dark end is skipped, set from the view's background
 * by `mapFloor` so that no value is drawn in the page's own colour in a dark theme: on a sequential scale, where
 * viridis starts (vmin's colour); on a diverging one, how much is cut from both ends (zero stays the middle).
 */
export type ColorScale = { kind: "diverging" | "sequential"; vmin: number; vmax: number; floor?: number };

/** Colour of a value under a scale (diverging scales use max(|vmin|, |vmax|) around zero). */
export function colorOf(v: number, s: ColorScale): RGB {
  if (s.kind === "diverging") return diverging(v, Math.max(Math.abs(s.vmin), Math.abs(s.vmax)), s.floor ?? 0);
  return sequential(v, s.vmin, s.vmax, s.floor ?? 0);
}

/** Relative luminance of an sRGB colour (WCAG 2). */
export function luminance([r, g, b]: RGB): number {
  const lin = (c: number) => {
    const x = c / 255;
    return x <= 0.04045 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

/** WCAG 2 contrast ratio of two colours (1 … 21). */
export function contrastRatio(a: RGB, b: RGB): number {
  const [x, y] = [luminance(a), luminance(b)].sort((p, q) => p - q);
  return (y + 0.05) / (x + 0.05);
}

/** The contrast a map's low end keeps against the background: WCAG 2.1's 3 : 1 for graphical objects (1.4.11). */
export const MIN_CONTRAST = 3;

const cuts = new Map<string, number>();

/**
 * The least cut `f` (in steps of 0.01, at most `max` of them) after which every colour `ends(f)` reaches
 * `MIN_CONTRAST` on `bg`; 0 when none does. Cached per map and background.
 */
function leastCut(map: string, bg: RGB, max: number, ends: (f: number) => RGB[]): number {
  const key = `${map}:${bg.join(",")}`;
  let cut = cuts.get(key);
  if (cut === undefined) {
    cut = 0;
    for (let i = 0; i <= max; i++) {
      if (ends(i / 100).every((c) => contrastRatio(c, bg) >= MIN_CONTRAST)) {
        cut = i / 100;
        break;
      }
    }
    cuts.set(key, cut);
  }
  return cut;
}

/**
 * Where the sequential map starts on background `bg`: 0 when viridis' dark end already stands out (≥
 * `MIN_CONTRAST`, any light background), else the first point from which it does (viridis' luminance rises
 * monotonically, so every colour after it does too) — on JupyterLab's dark #111111 that is 0.32, a blue
 * (51, 100, 141).
 */
export function sequentialFloor(bg: RGB): number {
  return leastCut("sequential", bg, 100, (f) => [interpolate(SEQUENTIAL, f)]);
}

/**
 * How much to cut from both ends of the diverging map on background `bg`: 0 when RdBu's darkest blue and red
 * stand out (any light background), else the least cut after which both ends reach `MIN_CONTRAST` — on
 * JupyterLab's dark #111111 that is 0.12, ends (40, 111, 177) and (185, 38, 50).
 */
export function divergingTrim(bg: RGB): number {
  // only a background darker than an end needs a cut (on a mid grey, lighter ends would not help)
  const dark = luminance(bg) < Math.max(luminance(DIVERGING[0]), luminance(DIVERGING[DIVERGING.length - 1]));
  return dark ? leastCut("diverging", bg, 39, (f) => [interpolate(DIVERGING, f), interpolate(DIVERGING, 1 - f)]) : 0;
}

/** The `floor` of a scale of `kind` drawn on background `bg` (`sequentialFloor` or `divergingTrim`). */
export function mapFloor(kind: ColorScale["kind"], bg: RGB): number {
  return kind === "sequential" ? sequentialFloor(bg) : divergingTrim(bg);
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
