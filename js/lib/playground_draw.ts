// Pure raster logic of the Playground view (no DOM): class colours, the probability surface, neuron maps,
// relevance fields, frames out of the live state or the recording. Tested in js/tests/playground.test.ts.
import { diverging, lut, lutIndex, type RGB, sequential } from "./colormap";
import { decodeTensor, slice0, type Tensor, type WireTensor } from "./tensor";

/** Class colours: blue and orange first (TensorFlow Playground's pair), then Okabe–Ito colours. */
export const CLASS_COLORS: RGB[] = [
  [8, 119, 189], [245, 147, 34], [0, 158, 115], [204, 121, 167], [86, 180, 233], [213, 94, 0], [240, 228, 66],
  [90, 90, 90],
];

export function classColor(c: number): RGB {
  return CLASS_COLORS[c % CLASS_COLORS.length];
}

/** One frame as the view draws it (typed arrays into the live message or the recording's buffers). */
export interface FrameData {
  surface: Tensor; // uint8 (C, R, R)
  neurons: Tensor; // uint8 (U, r, r)
  ranges: Tensor; // float32 (U, 2)
  weights: Tensor; // float32 (E,)
  predicted: Tensor; // uint8 (N,)
  relevance: Tensor; // float32 (3, q, q): relevance of x, of y, the explained output
  meta: Tensor; // float32 (7,): epoch, step, train loss, test loss, train acc, test acc, has metrics
}

const KEYS = ["surface", "neurons", "ranges", "weights", "predicted", "relevance", "meta"] as const;

type Wired = Partial<Record<(typeof KEYS)[number], WireTensor>> & { count?: number };

/**
 * `decode` memoised on its argument's identity: a trait's value (the same object until the trait changes) is
 * decoded once per change, however often it is drawn — on every hover, slider move or timeline step.
 */
export function decodedOnce<T, R>(decode: (value: T) => R): (value: T) => R {
  let seen = false;
  let last: T | undefined;
  let out: R | undefined;
  return (value: T): R => {
    if (!seen || value !== last) {
      seen = true;
      last = value;
      out = decode(value);
    }
    return out as R;
  };
}

/** The live frame from the `frame` trait, or null when it has none. */
export function liveFrame(wired: Wired | null | undefined): FrameData | null {
  if (!wired || !wired.surface) return null;
  const out: Partial<FrameData> = {};
  for (const k of KEYS) out[k] = decodeTensor(wired[k]);
  return out as FrameData;
}

/** Decoded stacked recording: each array has the frame index first. */
export function decodeRecording(wired: Wired | null | undefined): { count: number; stacked: FrameData | null } {
  const count = wired?.count ?? 0;
  if (!wired || !count || !wired.surface) return { count: 0, stacked: null };
  const out: Partial<FrameData> = {};
  for (const k of KEYS) out[k] = decodeTensor(wired[k]);
  return { count, stacked: out as FrameData };
}

/** Frame `t` of a decoded recording (views into its buffers, no copy). */
export function recordedFrame(stacked: FrameData, t: number): FrameData {
  const out: Partial<FrameData> = {};
  for (const k of KEYS) out[k] = slice0(stacked[k], t);
  return out as FrameData;
}

/**
 * RGBA of a class-probability surface `(C, R, R)` (uint8, 255 = certain): the probability-weighted mix of the
 * class colours, lightened towards white where the network is unsure (all classes equally likely = white).
 */
export function surfaceRGBA(surface: ArrayLike<number>, classes: number, size: number): Uint8ClampedArray {
  const n = size * size;
  const out = new Uint8ClampedArray(n * 4);
  const floor = 1 / classes;
  for (let i = 0; i < n; i++) {
    let r = 0, g = 0, b = 0, top = 0, sum = 0;
    for (let c = 0; c < classes; c++) {
      const p = surface[c * n + i] / 255;
      const col = classColor(c);
      r += p * col[0];
      g += p * col[1];
      b += p * col[2];
      sum += p;
      if (p > top) top = p;
    }
    if (sum > 0) {
      r /= sum;
      g /= sum;
      b /= sum;
    }
    const conf = classes > 1 ? Math.max(0, Math.min(1, (top / (sum || 1) - floor) / (1 - floor))) : 1;
    const t = 0.12 + 0.68 * conf;
    out[4 * i] = 255 + (r - 255) * t;
    out[4 * i + 1] = 255 + (g - 255) * t;
    out[4 * i + 2] = 255 + (b - 255) * t;
    out[4 * i + 3] = 255;
  }
  return out;
}

/** A unit's value at a byte of its map: `min + byte / 255 · (max − min)`. */
export function unitValue(byte: number, lo: number, hi: number): number {
  return lo + (byte / 255) * (hi - lo);
}

const UNIT_LUTS = new Map<number, Uint8Array>();
/** The diverging lookup table over −1 … 1 with RdBu's ends cut by `trim` (one per trim, made once). */
function unitLut(trim: number): Uint8Array {
  let table = UNIT_LUTS.get(trim);
  if (!table) {
    table = lut({ kind: "diverging", vmin: -1, vmax: 1, floor: trim });
    UNIT_LUTS.set(trim, table);
  }
  return table;
}

/**
 * RGBA of unit `u` of uint8 maps `(U, r, r)` with float32 ranges `(U, 2)`: diverging around zero. `trim`: how much
 * of RdBu's dark ends to cut (`divergingTrim` of the view's background; 0 on a light page).
 */
export function unitRGBA(maps: Tensor, ranges: Tensor, u: number, trim = 0): Uint8ClampedArray {
  const UNIT_LUT = unitLut(trim);
  const r = maps.shape[1];
  const n = r * r;
  const lo = ranges.data[2 * u];
  const hi = ranges.data[2 * u + 1];
  const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
  const out = new Uint8ClampedArray(n * 4);
  const base = u * n;
  for (let i = 0; i < n; i++) {
    const v = unitValue(maps.data[base + i], lo, hi) / m;
    const k = 3 * lutIndex(v, -1, 1);
    out[4 * i] = UNIT_LUT[k];
    out[4 * i + 1] = UNIT_LUT[k + 1];
    out[4 * i + 2] = UNIT_LUT[k + 2];
    out[4 * i + 3] = 255;
  }
  return out;
}

/** The `floor` of each kind of colour scale on the view's background (see `mapFloor` in colormap.ts). */
export interface MapFloors { diverging: number; sequential: number }
export const NO_FLOORS: MapFloors = { diverging: 0, sequential: 0 };

export type FieldMode = "probabilities" | "relevance x" | "relevance y" | "which input";
export const FIELD_MODES: FieldMode[] = ["probabilities", "relevance x", "relevance y", "which input"];

/** Largest |relevance| of both inputs over the field (the shared colour limit of the two relevance maps). */
export function relevanceLimit(rel: Tensor): number {
  const q = rel.shape[1];
  let m = 0;
  for (let i = 0; i < 2 * q * q; i++) m = Math.max(m, Math.abs(rel.data[i]));
  return m || 1;
}

/**
 * RGBA of a relevance field `(3, q, q)`: the relevance of x or of y (diverging, one limit for both), or "which
 * input decides": the share |R_x| / (|R_x| + |R_y|) on a sequential map (bright = x decides, dark = y).
 * `floors`: the scales' `floor`s on the view's background (`mapFloor`; 0 on a light page).
 */
export function fieldRGBA(rel: Tensor, mode: FieldMode, floors: MapFloors = NO_FLOORS): Uint8ClampedArray {
  const q = rel.shape[1];
  const n = q * q;
  const out = new Uint8ClampedArray(n * 4);
  const limit = relevanceLimit(rel);
  for (let i = 0; i < n; i++) {
    const rx = rel.data[i];
    const ry = rel.data[n + i];
    let col: RGB;
    if (mode === "relevance x") col = diverging(rx, limit, floors.diverging);
    else if (mode === "relevance y") col = diverging(ry, limit, floors.diverging);
    else {
      const s = Math.abs(rx) + Math.abs(ry);
      col = sequential(s > 0 ? Math.abs(rx) / s : 0.5, 0, 1, floors.sequential);
    }
    out[4 * i] = col[0];
    out[4 * i + 1] = col[1];
    out[4 * i + 2] = col[2];
    out[4 * i + 3] = 255;
  }
  return out;
}

/** Plane coordinates (x, y) of a pointer at (px, py) in a (w × h) box showing `extent` (row 0 = ymax). */
export function planeAt(px: number, py: number, w: number, hgt: number, extent: number[]): [number, number] {
  const [x0, x1, y0, y1] = extent;
  return [x0 + (px / w) * (x1 - x0), y1 - (py / hgt) * (y1 - y0)];
}

/** Box position of a plane point (inverse of planeAt). */
export function boxAt(x: number, y: number, w: number, hgt: number, extent: number[]): [number, number] {
  const [x0, x1, y0, y1] = extent;
  return [((x - x0) / (x1 - x0)) * w, ((y1 - y) / (y1 - y0)) * hgt];
}

/** Grid cell (row, col) of an (n × n) grid over `extent` holding plane point (x, y), clamped to the grid. */
export function cellAt(x: number, y: number, n: number, extent: number[]): [number, number] {
  const [x0, x1, y0, y1] = extent;
  const col = Math.floor(((x - x0) / (x1 - x0)) * n);
  const row = Math.floor(((y1 - y) / (y1 - y0)) * n);
  const clamp = (v: number) => Math.max(0, Math.min(n - 1, v));
  return [clamp(row), clamp(col)];
}

/** Number of points whose predicted class differs from their label, among `[start, end)`. */
export function misclassified(predicted: ArrayLike<number>, labels: ArrayLike<number>, start: number, end: number): number {
  let n = 0;
  for (let i = start; i < end; i++) if (predicted[i] !== labels[i]) n++;
  return n;
}

/** Stroke width (CSS px) of an edge of weight w, with `wmax` the largest |weight| drawn. */
export function edgeWidth(w: number, wmax: number): number {
  return 0.5 + 4 * Math.min(1, Math.abs(w) / (wmax || 1));
}

/** Integer epoch ticks 0 … last, at most `most` of them, on a nice integer step. */
export function epochTicks(last: number, most = 6): number[] {
  const top = Math.max(1, Math.ceil(last));
  let step = 1;
  for (const s of [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000]) {
    step = s;
    if (top / s <= most - 1) break;
  }
  const ticks: number[] = [];
  for (let t = 0; t <= top; t += step) ticks.push(t);
  return ticks;
}
