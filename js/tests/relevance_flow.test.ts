// Unit tests of the RelevanceFlow view's pure helpers: slicing a step out of the concatenated buffer, top-k
// units, the words for what a step absorbed, chart ranges and the keyboard.
import assert from "node:assert/strict";
import { test } from "node:test";
import { changeWords, chartRange, deltaLabel, keyStep, mapLimit, shareOf, type StepLayout, stepValues, topUnits } from "../relevance_flow";
import { niceScale, scaleTicks } from "../lib/scalebar";

function step(shape: number[], offset: number): StepLayout {
  return { name: "s", kind: shape.length === 3 ? "map" : "bars", shape, offset, source_shape: shape.slice(1),
    channels: 1, rule: "", units: [] };
}

test("stepValues slices one sample of one step out of the concatenated values", () => {
  const values = Float32Array.from({ length: 2 + 2 * 3 + 2 * 2 * 2 }, (_, i) => i);
  // output (N=2, 1 unit) at 0, bars (2, 3) at 2, maps (2, 2, 2) at 8
  assert.deepEqual(Array.from(stepValues(values, step([2, 1], 0), 1)), [1]);
  assert.deepEqual(Array.from(stepValues(values, step([2, 3], 2), 0)), [2, 3, 4]);
  assert.deepEqual(Array.from(stepValues(values, step([2, 3], 2), 1)), [5, 6, 7]);
  assert.deepEqual(Array.from(stepValues(values, step([2, 2, 2], 8), 1)), [12, 13, 14, 15]);
});

test("topUnits keeps the k largest |R| (ties by index) and sums the rest", () => {
  const v = [0.5, -3, 2, 0, -2, 1];
  const t = topUnits(v, 3);
  assert.deepEqual(t.indices, [1, 2, 4]);
  assert.equal(t.restCount, 3);
  assert.equal(t.restSum, 1.5);
  const all = topUnits(v, 10);
  assert.equal(all.indices.length, 6);
  assert.equal(all.restCount, 0);
  assert.equal(all.restSum, 0);
});

test("changeWords says absorbed, added or conserved, with the amount", () => {
  assert.equal(changeWords(0.1118, 0.12), "absorbed 0.1118 (biases, ε stabiliser)");
  assert.equal(changeWords(-0.025, 0.12), "added 0.025 (e.g. negative biases, αβ's negative share)");
  assert.equal(changeWords(1e-9, 0.12), "kept all of it (conserved)");
  assert.equal(changeWords(7.054e-4, 0.12), "absorbed 0.0007054 (biases, ε stabiliser)");
  assert.equal(changeWords(0, 0), "kept all of it (conserved)");
});

test("shareOf gives the total as a percentage of the score, nothing for a zero score", () => {
  assert.equal(shareOf(0.05, 0.2), "25 % of the score");
  assert.equal(shareOf(-0.01, 0.2), "-5 % of the score");
  assert.equal(shareOf(1, 0), "");
});

test("chartRange includes zero and the score, with a margin", () => {
  const [lo, hi] = chartRange([0.1, 0.05, 0.02], 0.12);
  assert.equal(lo, 0);
  assert.ok(Math.abs(hi - 0.12 * 1.08) < 1e-12);
  const [lo2, hi2] = chartRange([0.1, -0.1], 0.05);
  assert.ok(lo2 < -0.1 && hi2 > 0.1);
  assert.deepEqual(chartRange([0, 0], 0), [0, 1.08]);
});

test("keyStep moves with the arrows, Home and End, clamped; other keys are not handled", () => {
  assert.equal(keyStep("ArrowRight", 2, 5), 3);
  assert.equal(keyStep("ArrowRight", 4, 5), 4);
  assert.equal(keyStep("ArrowLeft", 0, 5), 0);
  assert.equal(keyStep("ArrowLeft", 3, 5), 2);
  assert.equal(keyStep("Home", 3, 5), 0);
  assert.equal(keyStep("End", 1, 5), 4);
  assert.equal(keyStep("a", 1, 5), null);
});

test("deltaLabel signs the change of the running sum and rounds float noise to zero", () => {
  assert.equal(deltaLabel(0.1117, 0.1381), "Δ −0.112");
  assert.equal(deltaLabel(-0.0595, 6.35), "Δ +0.0595");
  // small changes written out, never in e-notation
  assert.equal(deltaLabel(7.054e-4, 0.1381), "Δ −0.000705");
  assert.equal(deltaLabel(-1.2e-5, 0.1381), "Δ +0.000012");
  assert.equal(deltaLabel(-3.896e-10, 0.1381), "Δ 0");
});


test("mapLimit: the colour bar's ends are labelled ticks for any largest |R|", () => {
  for (const m of [1.1, 1.2, 3, 7.05e-4, 0.37, 42, 5.513e-4]) {
    const lim = mapLimit(m);
    assert.ok(lim >= m && lim <= 2 * m, `${m} → ${lim}`);
    // the bar (js/lib/scalebar.ts: colorFooter) ticks the drawn scale at niceScale(scale, false).step
    const scale = { kind: "diverging" as const, vmin: -lim, vmax: lim };
    const ticks = scaleTicks(scale, niceScale(scale, false).step);
    assert.equal(ticks[0], -lim, `${m}: ${ticks}`);
    assert.equal(ticks[ticks.length - 1], lim, `${m}: ${ticks}`);
    assert.ok(ticks.includes(0));
  }
  assert.equal(mapLimit(0), 1);
});
