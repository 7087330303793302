// Pure helper (no DOM): the input drawn as a thin outline, so a map can be shown at full opacity (its colours
// exactly those of the colour bar) while the input stays visible as a contour on top.

/** Luminance (0–255) of an (h, w, c) uint8 image, c in {1, 3}, sampled bilinearly at (outH, outW). */
export function resampleLuminance(
  img: ArrayLike<number>, h: number, w: number, c: number, outH: number, outW: number,
): Float32Array {
  const lum = new Float32Array(h * w);
  for (let i = 0; i < h * w; i++) {
    lum[i] = c === 1 ? img[i] : 0.299 * img[3 * i] + 0.587 * img[3 * i + 1] + 0.114 * img[3 * i + 2];
  }
  const out = new Float32Array(outH * outW);
  for (let y = 0; y < outH; y++) {
    const sy = Math.min(Math.max(((y + 0.5) * h) / outH - 0.5, 0), h - 1);
    const y0 = Math.floor(sy);
    const y1 = Math.min(y0 + 1, h - 1);
    const fy = sy - y0;
    for (let x = 0; x < outW; x++) {
      const sx = Math.min(Math.max(((x + 0.5) * w) / outW - 0.5, 0), w - 1);
      const x0 = Math.floor(sx);
      const x1 = Math.min(x0 + 1, w - 1);
      const fx = sx - x0;
      const top = lum[y0 * w + x0] * (1 - fx) + lum[y0 * w + x1] * fx;
      const bot = lum[y1 * w + x0] * (1 - fx) + lum[y1 * w + x1] * fx;
      out[y * outW + x] = top * (1 - fy) + bot * fy;
    }
  }
  return out;
}

/**
 * 1 where a pixel lies on the iso-line of the luminance halfway between its darkest and brightest value (the
 * pixel and its right or lower neighbour fall on different sides), else 0. A flat image has no outline.
 */
export function contourMask(lum: ArrayLike<number>, h: number, w: number): Uint8Array {
  const mask = new Uint8Array(h * w);
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < h * w; i++) {
    lo = Math.min(lo, lum[i]);
    hi = Math.max(hi, lum[i]);
  }
  if (!(hi > lo)) return mask;
  const t = (lo + hi) / 2;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const above = lum[y * w + x] >= t;
      const right = x + 1 < w && lum[y * w + x + 1] >= t !== above;
      const below = y + 1 < h && lum[(y + 1) * w + x] >= t !== above;
      if (right || below) mask[y * w + x] = 1;
    }
  }
  return mask;
}

/** RGBA bytes (outH × outW) of the input's outline: opaque dark lines, transparent elsewhere. */
export function outlineRGBA(
  img: ArrayLike<number>, h: number, w: number, c: number, outH: number, outW: number,
): Uint8ClampedArray {
  const mask = contourMask(resampleLuminance(img, h, w, c, outH, outW), outH, outW);
  const out = new Uint8ClampedArray(outH * outW * 4);
  for (let i = 0; i < outH * outW; i++) {
    if (!mask[i]) continue;
    out[4 * i] = 20;
    out[4 * i + 1] = 20;
    out[4 * i + 2] = 20;
    out[4 * i + 3] = 230;
  }
  return out;
}
