// The one colour bar of the views: labelled ticks at "nice" values (1, 2, 2.5 or 5 × 10^k), 0 among them when in
// range, under every colour-mapped picture (Heatmap, ExplanationExplorer, FeatureGallery, ComplexityViewer, and
// through `colorFooter` ClassSensitivity, SimilarityGrid, RelevanceFlow). The pure part (limits, ticks, labels)
// is unit-tested in js/tests/scalebar.test.ts; `scaleBar` builds the DOM (a CSS gradient ramp, absolutely placed
// tick labels, sizes in em so the bar follows the view's font size and `scale`; its CSS is in style.css).
import { type ColorScale, colorOf } from "./colormap";
import { h } from "./dom";
import { formatTick, niceStep, powerOfTen, tickExponent } from "./nice_ticks";


const clean = (v: number) => (v === 0 ? 0 : Number(v.toPrecision(12)));

/**
 * The scale a map is drawn with and its tick step. A diverging scale is made symmetric around zero (zero is the
 * neutral middle colour); with `round` its limit goes up to a multiple of a nice step (so the bar ends on
 * labelled nice numbers and the largest |value| keeps at least two thirds of each half). A sequential scale with
 * `round` has its ends rounded outward to multiples of the step. Without `round` the limits are kept as given.
 * All-zero or empty ranges get a unit range. Any other field of `s` is carried over unchanged.
 */
export function niceScale(s: ColorScale, round = true): { scale: ColorScale; step: number } {
  if (s.kind === "diverging") {
    let m = Math.max(Math.abs(s.vmin), Math.abs(s.vmax));
    if (!(m > 0) || !Number.isFinite(m)) m = 1;
    const step = niceStep(m / 4);
    // (a float32 0.4 is 0.40000000596…: within 1e-6 of a step is on it)
    const limit = round ? clean(Math.ceil(m / step - 1e-6) * step) : m;
    return { scale: { ...s, vmin: -limit, vmax: limit }, step };
  }
  let lo = Number.isFinite(s.vmin) ? s.vmin : 0;
  let hi = Number.isFinite(s.vmax) ? s.vmax : 1;
  if (!(hi > lo)) hi = lo + 1;
  const step = niceStep((hi - lo) / 4);
  if (round) {
    lo = clean(Math.floor(lo / step + 1e-6) * step);
    hi = clean(Math.ceil(hi / step - 1e-6) * step);
  }
  return { scale: { ...s, vmin: lo, vmax: hi }, step };
}

/**
 * Tick values of a scale: multiples of `step` inside it, every k-th one counted from zero (so 0 stays whenever
 * the range spans it), k the smallest that leaves at most `maxTicks` labels and, when possible, puts both ends
 * on a label (always possible for a rounded scale). An end that is not a multiple is labelled too when it lies
 * more than half a label spacing from the next label.
 */
export function scaleTicks(s: ColorScale, step: number, maxTicks = 5): number[] {
  const lo = Math.ceil(s.vmin / step - 1e-6);
  const hi = Math.floor(s.vmax / step + 1e-6);
  if (!(hi >= lo)) return [clean(s.vmin), clean(s.vmax)];
  const mod = (i: number, k: number) => ((i % k) + k) % k;
  const kept = (k: number) => {
    const out: number[] = [];
    for (let i = lo; i <= hi; i++) if (mod(i, k) === 0) out.push(i);
    return out;
  };
  let k = 0;
  for (let kk = 1; kk <= hi - lo + 1 && !k; kk++) {
    if (kept(kk).length <= maxTicks && mod(lo, kk) === 0 && mod(hi, kk) === 0) k = kk;
  }
  if (!k) {
    k = 1;
    while (kept(k).length > maxTicks) k++;
  }
  const idx = kept(k);
  for (const end of [lo, hi]) {
    if (idx.includes(end)) continue;
    const near = Math.min(...idx.map((i) => Math.abs(i - end)), Infinity);
    if (near > k / 2) idx.push(end);
  }
  idx.sort((a, b) => a - b);
  return idx.map((i) => clean(i * step));
}

/** In words, what the colours of a scale mean (for an accessible name and the legend). */
export function scaleWords(s: ColorScale): string {
  return s.kind === "diverging"
    ? `blue negative, white zero, red positive, from ${formatTick(s.vmin)} to ${formatTick(s.vmax)}`
    : `${(s.floor ?? 0) > 0 ? "blue" : "dark purple"} low to yellow high, from ${formatTick(s.vmin)} to ${formatTick(s.vmax)}`;
}

const rgb = (c: [number, number, number]) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;

/**
 * The tick labels of a colour bar as a student reads them: with a shared power of ten (`tickExponent`) the labels
 * are the ticks divided by it and `factor` says it once ("× 10⁻⁴"); otherwise `factor` is "".
 */
export function tickLabels(ticks: number[]): { labels: string[]; factor: string; exponent: number } {
  const k = tickExponent(ticks);
  const labels = ticks.map((t) => formatTick(k ? Number((t / 10 ** k).toPrecision(12)) : t));
  return { labels, factor: k ? `× ${powerOfTen(k)}` : "", exponent: k };
}

/**
 * A colour bar for scale `s` (as drawn) with labelled ticks and an optional caption. Its root carries
 * `data-vmin`, `data-vmax`, `data-ticks` (the tick values) and `data-exponent` (the power of ten factored out of
 * the labels, shown once as "(× 10ᵏ)" in `.nbx-scalebar-factor` at the end of the caption; 0 for none); the ramp is an image named in words
 * for screen readers ("colour scale of <name>: …", `name` defaulting to the caption).
 */
export function scaleBar(s: ColorScale, step: number, caption = "", maxTicks = 5, name = caption): HTMLDivElement {
  const bar = h("div", "nbx-scalebar");
  const ticks = scaleTicks(s, step, maxTicks);
  const { labels, factor, exponent } = tickLabels(ticks);
  if (caption || factor) {
    // the shared power of ten goes with the caption, as on an axis title: "relevance (× 10⁻⁴)"
    const cap = h("span", "nbx-scalebar-caption", caption);
    if (factor) cap.append(caption ? " " : "", h("span", "nbx-scalebar-factor", `(${factor})`));
    bar.appendChild(cap);
  }
  const body = h("div", "nbx-scalebar-body");
  const ramp = h("div", "nbx-scalebar-ramp");
  const stops: string[] = [];
  for (let i = 0; i <= 20; i++) stops.push(`${rgb(colorOf(s.vmin + ((s.vmax - s.vmin) * i) / 20, s))} ${i * 5}%`);
  ramp.style.background = `linear-gradient(to right, ${stops.join(", ")})`;
  ramp.setAttribute("role", "img");
  ramp.setAttribute("aria-label", `colour scale${name ? ` of ${name}` : ""}: ${scaleWords(s)}`);
  body.appendChild(ramp);
  const span = s.vmax - s.vmin;
  ticks.forEach((t, i) => {
    const tick = h("span", "nbx-scalebar-tick", labels[i]);
    tick.style.left = `${(100 * (t - s.vmin)) / span}%`;
    tick.setAttribute("aria-hidden", "true");
    body.appendChild(tick);
  });
  bar.appendChild(body);
  bar.dataset.exponent = String(exponent);
  bar.dataset.vmin = String(s.vmin);
  bar.dataset.vmax = String(s.vmax);
  bar.dataset.ticks = ticks.join(",");
  bar.dataset.kind = s.kind;
  return bar;
}

/** The footer shared by colour-mapped views: a slot for the labelled colour bar and a readout line. */
export interface ColorFooter {
  footer: HTMLDivElement;
  /** The colour bar's slot (`.nbx-colorbar-wrap`, holding one `.nbx-scalebar`): a view may move it elsewhere. */
  bar: HTMLDivElement;
  readout: HTMLDivElement;
  /**
   * Show the colour bar of `scale` exactly as the picture is drawn with it (limits kept as given; draw with
   * `niceScale(s).scale` for ends on nice numbers), ticks at nice values with 0 among them when in range.
   */
  setScale(scale: ColorScale, label: string): void;
}

export function colorFooter(): ColorFooter {
  const footer = h("div", "nbx-footer");
  const bar = h("div", "nbx-colorbar-wrap");
  const readout = h("div", "nbx-readout");
  footer.append(bar, readout);
  return {
    footer,
    bar,
    readout,
    setScale(scale, label) {
      bar.replaceChildren(scaleBar(scale, niceScale(scale, false).step, label));
    },
  };
}
