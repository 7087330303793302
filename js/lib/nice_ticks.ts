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

const SUPERSCRIPT = "⁰¹²³⁴⁵⁶⁷⁸⁹";

/** A power of ten as printed in a textbook: `powerOfTen(-4)` is "10⁻⁴" (superscript digits, true minus). */
export function powerOfTen(k: number): string {
  const digits = String(Math.abs(Math.round(k))).split("").map((d) => SUPERSCRIPT[Number(d)]).join("");
  return `10${k < 0 ? "⁻" : ""}${digits}`;
}

/**
 * A number as a student reads it, never with an `e`: `digits` significant digits written out in full for
 * 10⁻⁶ ≤ |v| < 10⁹ (7.054e-4 is "0.0007054", 123456 is "123500"), beyond that "7.05 × 10⁻⁸". The sign is the
 * ASCII "-" (as `formatValue` writes it; wrap in `signed` for a true minus). Not finite: "NaN", "Infinity".
 */
export function formatNumber(v: number, digits = 4): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return "0";
  const r = Number(v.toPrecision(digits));
  const a = Math.abs(r);
  // JavaScript writes a number out in full (no exponent) for 1e-6 ≤ |x| < 1e21
  if (a >= 1e-6 && a < 1e9) return String(r);
  const [mantissa, exponent] = r.toExponential().split("e");
  return `${mantissa} × ${powerOfTen(Number(exponent))}`;
}

/** A tick label: short (3 significant digits, no trailing zeros, no exponent), true minus sign, 0 as "0". */
export function formatTick(v: number): string {
  return signed(formatNumber(v, 3));
}

/**
 * The power of ten to factor out of tick labels so that they read as short plain numbers: for ticks whose
 * largest |value| is below 0.01 or at least 10⁴, the k with that value in [10^k, 10^(k+1)) ("× 10⁻⁴" is then
 * written once beside the labels); 0 (no factor) otherwise.
 */
export function tickExponent(ticks: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < ticks.length; i++) if (Number.isFinite(ticks[i])) m = Math.max(m, Math.abs(ticks[i]));
  if (!(m > 0) || (m >= 1e-2 && m < 1e4)) return 0;
  return Math.floor(Math.log10(Number(m.toPrecision(12))));
}

/**
 * About `count` tick values at round numbers (a step of 1, 2, 2.5 or 5 × 10^k), 0 among them whenever the range
 * spans it; values are rounded to the step, so 0.30000000000000004 prints as 0.3.
 *
 * By default the ticks cover [lo, hi] (the first ≤ lo, the last ≥ hi: an axis that extends its ends to them).
 * With `inside: true` they are the multiples of a step of about (hi − lo) / count that lie inside [lo, hi] (an
 * axis whose ends stay where the data puts them); a range of one value gives that value.
 */
export function niceTicks(lo: number, hi: number, count = 5, options: { inside?: boolean } = {}): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) {
    if (options.inside) return [lo];
    const d = lo === 0 ? 1 : Math.abs(lo) / 2;
    lo -= d;
    hi += d;
  }
  const step = niceStep((hi - lo) / Math.max(1, options.inside ? count : count - 1));
  const first = options.inside ? Math.ceil(lo / step - 1e-9) : Math.floor(lo / step + 1e-9);
  const last = options.inside ? Math.floor(hi / step + 1e-9) : Math.ceil(hi / step - 1e-9);
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
