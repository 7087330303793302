// Pure raster helpers (no DOM): colouring maps, blending images, pointer → pixel lookup.
import { type ColorScale, lut, lutIndex } from "./colormap";

/** The scale actually drawn: diverging scales become symmetric around zero so 0 is the neutral colour. */
export function effectiveScale(scale: ColorScale): ColorScale {
  if (scale.kind !== "diverging") return scale;
  const m = Math.max(Math.abs(scale.vmin), Math.abs(scale.vmax));
  return { ...scale, kind: "diverging", vmin: -m, vmax: m };
}

/** RGBA bytes for an (h, w) map under a colour scale. */
export function colorize(map: ArrayLike<number>, h: number, w: number, scale: ColorScale): Uint8ClampedArray {
  const s = effectiveScale(scale);
  const table = lut(s);
  const out = new Uint8ClampedArray(h * w * 4);
  for (let i = 0; i < h * w; i++) {
    const k = 3 * lutIndex(map[i], s.vmin, s.vmax);
    out[4 * i] = table[k];
    out[4 * i + 1] = table[k + 1];
    out[4 * i + 2] = table[k + 2];
    out[4 * i + 3] = 255;
  }
  return out;
}

/** RGBA bytes for an (h, w, c) uint8 image with c in {1, 3}. */
export function imageRGBA(img: ArrayLike<number>, h: number, w: number, c: number): Uint8ClampedArray {
  const out = new Uint8ClampedArray(h * w * 4);
  for (let i = 0; i < h * w; i++) {
    if (c === 1) {
      const v = img[i];
      out[4 * i] = v;
      out[4 * i + 1] = v;
      out[4 * i + 2] = v;
    } else {
      out[4 * i] = img[3 * i];
      out[4 * i + 1] = img[3 * i + 1];
      out[4 * i + 2] = img[3 * i + 2];
    }
    out[4 * i + 3] = 255;
  }
  return out;
}

/** Map a pointer position inside a (cssW × cssH) element to a (row, col) of an (h × w) grid, or null. */
export function pixelAt(x: number, y: number, cssW: number, cssH: number, h: number, w: number): [number, number] | null {
  if (!(cssW > 0 && cssH > 0) || x < 0 || y < 0 || x >= cssW || y >= cssH) return null;
  const r = Math.min(h - 1, Math.floor((y / cssH) * h));
  const c = Math.min(w - 1, Math.floor((x / cssW) * w));
  return [r, c];
}

/** The source-resolution (row, col) of a downsampled pixel: the top-left of its pooled block. */
export function sourceCoord(r: number, c: number, h: number, w: number, srcH: number, srcW: number): [number, number] {
  const fr = srcH > 0 ? Math.round(srcH / h) : 1;
  const fc = srcW > 0 ? Math.round(srcW / w) : 1;
  return [Math.min(srcH - 1, r * Math.max(1, fr)), Math.min(srcW - 1, c * Math.max(1, fc))];
}
