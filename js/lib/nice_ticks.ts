// Axis ticks at round values ("nice numbers": 1, 2, 2.5 or 5 × a power of ten) for the views' SVG charts.

/** The round step (1, 2, 2.5, 5 × 10^k) closest above `raw`. */
export function roundStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const k = Math.floor(Math.log10(raw));
  const at = (m: number) => Number((m * 10 ** k).toPrecision(3)); // 2 × 1e-4 is 0.0002, not 0.00019999…
  for (const m of [1, 2, 2.5, 5, 10]) if (at(m) >= raw * (1 - 1e-9)) return at(m);
  return at(10);
}

/**
 * About `count` ticks at round values covering [lo, hi]: the first tick ≤ lo, the last ≥ hi, and 0 among them
 * whenever the range spans it (values are rounded to the step, so 0.30000000000000004 prints as 0.3).
 */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) {
    const d = lo === 0 ? 1 : Math.abs(lo) / 2;
    lo -= d;
    hi += d;
  }
  const step = roundStep((hi - lo) / Math.max(1, count - 1));
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  const digits = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  const out: number[] = [];
  for (let i = first; i <= last; i++) out.push(Number((i * step).toFixed(Math.min(20, digits))) + 0);
  return out;
}

/** The smallest round value (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k) at or above `v` > 0: a colour-scale end
 * that is easy to read and never far above the data (at most 1.25 ×). */
export function niceCeil(v: number): number {
  if (!(v > 0) || !Number.isFinite(v)) return 1;
  const k = Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
    const c = Number((m * 10 ** k).toPrecision(3));
    if (c >= v * (1 - 1e-9)) return c;
  }
  return Number((10 ** (k + 1)).toPrecision(3));
}
