// Unit tests of js/lib/scalebar.ts: nice limits and ticks for the colour bars of Heatmap and ExplanationExplorer.
import assert from "node:assert/strict";
import { test } from "node:test";
import { formatTick } from "../lib/nice_ticks";
import { niceScale, scaleTicks, scaleWords, tickLabels } from "../lib/scalebar";


test("a diverging scale is symmetric with a nice limit that covers the data (two thirds of it at least)", () => {
  for (const m of [1.007e-4, 0.0372, 0.37, 0.4000000059604645, 1, 3.3, 812]) {
    const { scale, step } = niceScale({ kind: "diverging", vmin: -0.5 * m, vmax: m });
    assert.equal(scale.vmin, -scale.vmax);
    assert.ok(scale.vmax >= m * (1 - 1e-6) && scale.vmax <= 1.5 * m, `${m} -> ${scale.vmax}`);
    const ticks = scaleTicks(scale, step);
    assert.equal(ticks[0], scale.vmin);
    assert.equal(ticks.at(-1), scale.vmax);
    assert.ok(ticks.includes(0) && ticks.length <= 5, `${ticks}`);
  }
  assert.equal(niceScale({ kind: "diverging", vmin: 0, vmax: 0 }).scale.vmax, 1);
});

test("rounding is idempotent on nice limits and off when limits were given", () => {
  assert.deepEqual(niceScale({ kind: "diverging", vmin: -1, vmax: 1 }).scale, { kind: "diverging", vmin: -1, vmax: 1 });
  assert.deepEqual(niceScale({ kind: "diverging", vmin: -0.37, vmax: 0.37 }, false).scale,
    { kind: "diverging", vmin: -0.37, vmax: 0.37 });
  assert.deepEqual(niceScale({ kind: "sequential", vmin: 0.13, vmax: 0.87 }).scale,
    { kind: "sequential", vmin: 0, vmax: 1 });
});

test("ticks include 0 when a sequential range spans it and keep both ends of a rounded scale", () => {
  const { scale, step } = niceScale({ kind: "sequential", vmin: -0.3, vmax: 0.9 });
  const ticks = scaleTicks(scale, step);
  assert.ok(ticks.includes(0), `${ticks}`);
  assert.equal(ticks[0], scale.vmin);
  assert.equal(ticks.at(-1), scale.vmax);
  // three labels for a small bar: ends and zero
  const d = niceScale({ kind: "diverging", vmin: -0.031, vmax: 0.031 });
  assert.deepEqual(scaleTicks(d.scale, d.step, 3), [-0.04, 0, 0.04]);
  // limits given as is: multiples of the step inside, 0 kept
  const given = { kind: "diverging" as const, vmin: -0.37, vmax: 0.37 };
  const t = scaleTicks(given, niceScale(given, false).step);
  assert.ok(t.includes(0) && t.every((v) => Math.abs(v) <= 0.37), `${t}`);
});

test("formatTick is short with a true minus", () => {
  assert.equal(formatTick(-0.04), "−0.04");
  assert.equal(formatTick(0), "0");
  assert.equal(formatTick(1.25e-4), "0.000125");
  assert.equal(formatTick(2.5), "2.5");
});

test("scaleWords names the low colour actually drawn: blue when the map is lifted for a dark theme", () => {
  assert.match(scaleWords({ kind: "sequential", vmin: 0, vmax: 1 }), /^dark purple low/);
  assert.match(scaleWords({ kind: "sequential", vmin: 0, vmax: 1, floor: 0.32 }), /^blue low/);
});

test("tick labels of tiny values share one power of ten and match the ticks drawn", () => {
  // the Heatmap case of issue 14: data up to 1.007e-4 used to end the bar at "1.007e-4"
  const { scale, step } = niceScale({ kind: "diverging", vmin: -0.9e-4, vmax: 1.007e-4 });
  const ticks = scaleTicks(scale, step);
  const { labels, factor, exponent } = tickLabels(ticks);
  assert.deepEqual(ticks, [-1.5e-4, 0, 1.5e-4]);
  assert.deepEqual(labels, ["−1.5", "0", "1.5"]);
  assert.equal(factor, "× 10⁻⁴");
  labels.forEach((l, i) => assert.ok(Math.abs(Number(l.replace("−", "-")) * 10 ** exponent - ticks[i]) < 1e-15, l));
  // ordinary values: no factor, labels written as they are
  assert.deepEqual(tickLabels([0, 0.25, 0.5, 0.75, 1]), { labels: ["0", "0.25", "0.5", "0.75", "1"], factor: "", exponent: 0 });
  // large values
  assert.deepEqual(tickLabels([0, 25000, 50000]).labels, ["0", "2.5", "5"]);
  assert.ok(labels.concat(tickLabels([0, 2e-7]).labels).every((l) => !/e/.test(l)));
});

test("niceScale carries the other fields of a scale through (the dark-theme floor, for one)", () => {
  const s = { kind: "sequential" as const, vmin: 0.13, vmax: 0.87, floor: 0.32 };
  assert.deepEqual(niceScale(s).scale, { kind: "sequential", vmin: 0, vmax: 1, floor: 0.32 });
  const d = { kind: "diverging" as const, vmin: -0.3, vmax: 0.37, floor: 0.12 };
  assert.equal(niceScale(d).scale.floor, 0.12);
  assert.equal(niceScale(d, false).scale.floor, 0.12);
});
