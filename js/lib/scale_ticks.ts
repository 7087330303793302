// Nice scales and labelled ticks, shared by FeatureGallery (its activation-map colour bar) and ComplexityViewer
// (its colour bars and metric-chart axes). The tick arithmetic is pure (unit-tested in node); `tickedColorbar`
// builds the DOM of a horizontal colour bar whose ends and ticks are those nice values.
import { type ColorScale, colorOf } from "./colormap";
import { h } from "./dom";

/** The smallest "nice" step (1, 2, 2.5 or 5 × 10^k) that is at least `raw` (> 0). */
export function niceStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const r = raw / p;
  const mult = r <= 1 + 1e-9 ? 1 : r <= 2 + 1e-9 ? 2 : r <= 2.5 + 1e-9 ? 2.5 : r <= 5 + 1e-9 ? 5 : 10;
  return Number((mult * p).toPrecision(12));
}

/** `v` rounded to 12 significant digits (so 3 × 0.1 reads 0.3, not 0.30000000000000004). */
function clean(v: number): number {
  return v === 0 ? 0 : Number(v.toPrecision(12));
}

/** A linear axis: its (nice) ends, step and ticks. */
export interface NiceAxis {
  lo: number;
  hi: number;
  step: number;
  ticks: number[];
}

/**
 * The axis that covers [lo, hi] with at most `maxTicks` ticks at multiples of a nice step: the ends are the
 * multiples just outside the data, and 0 is a tick whenever the range spans it (the multiples of the step
 * include 0). A flat range reaches to 0 (to 1 when the value is 0).
 */
export function niceAxis(lo: number, hi: number, maxTicks = 5): NiceAxis {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
    lo = 0;
    hi = 1;
  }
  if (lo > hi) [lo, hi] = [hi, lo];
  if (hi === lo) {
    // a flat range: reach to 0 (or to 1 when the value is 0)
    if (lo > 0) lo = 0;
    else if (lo < 0) hi = 0;
    else hi = 1;
  }
  const intervals = Math.max(1, maxTicks - 1);
  let step = niceStep((hi - lo) / intervals);
  for (;;) {
    const a = Math.floor(lo / step + 1e-6);
    const b = Math.ceil(hi / step - 1e-6);
    if (b - a <= intervals) {
      const ticks: number[] = [];
      for (let i = a; i <= b; i++) ticks.push(clean(i * step));
      return { lo: clean(a * step), hi: clean(b * step), step, ticks };
    }
    step = niceStep(step * 1.000001);
  }
}

/** Mantissas of the symmetric colour limits (× 10^k): ends and halves that read as short numbers. */
const LIMIT_MANTISSAS = [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10];

/**
 * A symmetric axis −L … 0 … L for a diverging colour scale of data with largest |value| `maxAbs`: L is the
 * smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k that is at least `maxAbs` (so the data reach at least 75 %
 * of each half of the map), with the five ticks −L, −L/2, 0, L/2, L. No data (or all zero): L = 1.
 */
export function symmetricAxis(maxAbs: number): NiceAxis {
  const m = maxAbs > 0 && Number.isFinite(maxAbs) ? maxAbs : 1;
  const p = Math.pow(10, Math.floor(Math.log10(m)));
  const mult = LIMIT_MANTISSAS.find((k) => k * p >= m * (1 - 1e-9)) ?? 10;
  const limit = clean(mult * p);
  const half = clean(limit / 2);
  return { lo: -limit, hi: limit, step: half, ticks: [-limit, -half, 0, half, limit] };
}

/**
 * The nice colour scale (and its ticks) that a view draws for data in [lo, hi]: diverging data get a symmetric
 * range centred on 0 (`symmetricAxis`), sequential data a range from 0 (or below, for negative data) up to a
 * nice end (`niceAxis`).
 */
export function niceColorScale(kind: ColorScale["kind"], lo: number, hi: number): { scale: ColorScale; ticks: number[] } {
  if (kind === "diverging") {
    const ax = symmetricAxis(Math.max(Math.abs(lo), Math.abs(hi)));
    return { scale: { kind, vmin: ax.lo, vmax: ax.hi }, ticks: ax.ticks };
  }
  const ax = niceAxis(Math.min(0, lo), hi, 5);
  return { scale: { kind, vmin: ax.lo, vmax: ax.hi }, ticks: ax.ticks };
}

/** A tick label: at most 3 significant digits, no trailing zeros, a true minus sign (U+2212). */
export function formatTick(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a === 0) return "0";
  const text = a < 1e-3 || a >= 1e5 ? Number(v.toPrecision(3)).toExponential() : String(Number(v.toPrecision(3)));
  return text.startsWith("-") ? "−" + text.slice(1) : text;
}

/** Styles of `tickedColorbar` (append to a view's CSS). Sizes in em: they follow the view's `scale`. */
export const TICKED_COLORBAR_CSS = `
.nbx-tbar { display: inline-flex; flex-wrap: wrap; align-items: flex-start; gap: 0.2em 0.6em; max-width: 100%;
  color: var(--nbx-fg); }
.nbx-tbar-caption { line-height: 1.3; }
.nbx-tbar-body { position: relative; width: calc(200px * var(--nbx-scale)); max-width: calc(100% - 2.4em);
  min-width: 6em; padding-bottom: 1.4em; margin: 0 1.2em; }
.nbx-tbar-ramp { height: 0.8em; border: 1px solid var(--nbx-fg); }
.nbx-tbar-tick { position: absolute; top: 0.8em; transform: translateX(-50%); display: flex;
  flex-direction: column; align-items: center; line-height: 1.1; white-space: nowrap; }
.nbx-tbar-tick::before { content: ""; width: 1px; height: 0.3em; background: var(--nbx-fg); }
`;

const rgb = (c: [number, number, number]) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;

/**
 * A horizontal colour bar for `scale` (exactly the colours drawn) with labelled `ticks` and a caption. The root
 * (`.nbx-tbar`) carries `data-vmin`, `data-vmax` and `data-ticks`; the ramp is an image with an accessible name
 * saying the map and its range.
 */
export function tickedColorbar(scale: ColorScale, ticks: number[], caption: string): HTMLDivElement {
  const bar = h("div", "nbx-tbar");
  const body = h("div", "nbx-tbar-body");
  const ramp = h("div", "nbx-tbar-ramp");
  const stops: string[] = [];
  for (let i = 0; i <= 20; i++) {
    stops.push(`${rgb(colorOf(scale.vmin + ((scale.vmax - scale.vmin) * i) / 20, scale))} ${i * 5}%`);
  }
  ramp.style.background = `linear-gradient(to right, ${stops.join(", ")})`;
  ramp.setAttribute("role", "img");
  const map = scale.kind === "diverging" ? "blue negative, white zero, red positive" : "dark purple low, yellow high";
  ramp.setAttribute("aria-label", `colour scale of ${caption}: ${map}, from ${formatTick(scale.vmin)} to ${formatTick(scale.vmax)}`);
  body.appendChild(ramp);
  const span = scale.vmax - scale.vmin;
  for (const t of ticks) {
    if (t < scale.vmin - 1e-9 * Math.abs(span) || t > scale.vmax + 1e-9 * Math.abs(span)) continue;
    const tick = h("span", "nbx-tbar-tick", formatTick(t));
    tick.style.left = `${span > 0 ? (100 * (t - scale.vmin)) / span : 50}%`;
    tick.setAttribute("aria-hidden", "true");
    body.appendChild(tick);
  }
  bar.dataset.vmin = String(scale.vmin);
  bar.dataset.vmax = String(scale.vmax);
  bar.dataset.ticks = ticks.join(",");
  bar.dataset.kind = scale.kind;
  bar.append(h("span", "nbx-tbar-caption", caption), body);
  return bar;
}
