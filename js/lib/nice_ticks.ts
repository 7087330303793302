// Round ("nice") numbers for every view: steps of 1, 2, 2.5 or 5 × a power of ten, axis ticks, colour-scale ends
// and tick labels. Pure: unit-tested in node. The colour bar built on them is in scalebar.ts.

/** The smallest "nice" step (1, 2, 2.5 or 5 × 10^k) at least `raw` (> 0); 1 for no usable `raw`. */
export function niceStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const r = raw / p;
  const mult = r <= 1 + 1e-9 ? 1 : r <= 2 + 1e-9 ? 2 : r <= 2.5 + 1e-9 ? 2.5 : r <= 5 + 1e-9 ? 5 : 10;
  return Number((mult * p).toPrecision(12)); // 2 × 1e-4 is 0.0002, not 0.00019999…
}

/** A number's text with a true minus sign (U+2212), as in "relevance −0.123". */
export function signed(text: string): string {
  return text.startsWith("-") ? "−" + text.slice(1) : text;
}

/** A tick label: short (3 significant digits, no trailing zeros), true minus sign, 0 as "0". */
export function formatTick(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a < 1e-3 || a >= 1e5) return signed(Number(v.toPrecision(3)).toExponential());
  return signed(String(Number(v.toPrecision(3))));
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
  const step = niceStep((hi - lo) / Math.max(1, count - 1));
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  const digits = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  const out: number[] = [];
  for (let i = first; i <= last; i++) out.push(Number((i * step).toFixed(Math.min(20, digits))) + 0);
  return out;
}

/** The smallest round value (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k) at or above `v` > 0: a colour-scale end
 * that is easy to read and never far above the data (at most 4/3 ×: 3 → 4, 6 → 8). */
export function niceCeil(v: number): number {
  if (!(v > 0) || !Number.isFinite(v)) return 1;
  const k = Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
    const c = Number((m * 10 ** k).toPrecision(3));
    if (c >= v * (1 - 1e-9)) return c;
  }
  return Number((10 ** (k + 1)).toPrecision(3));
}
