// Unit tests of the DeltaExplorer's pure logic: the nines scale, δ ticks at round values, nice value ticks,
// slider keys and the readout a student reads.
import assert from "node:assert/strict";
import { test } from "node:test";
import { deltaTicks, formatDelta, metricLabel, nines, readoutText, spaced } from "../delta_explorer";

/** The Python default slider grid (widgets/delta_explorer.py: slider_deltas): evenly spaced in nines, then 1. */
function sliderDeltas(lo = 0.5, hi = 0.9999, steps = 121): number[] {
  const a = -Math.log10(1 - lo), b = -Math.log10(1 - hi);
  const out = Array.from({ length: steps }, (_, i) => 1 - 10 ** -(a + ((b - a) * i) / (steps - 1)));
  return [...out, 1];
}

test("nines maps 0.9 → 1, 0.99 → 2 and caps at 4", () => {
  assert.ok(nines(0) === 0); // (−0 too)
  assert.ok(Math.abs(nines(0.9) - 1) < 1e-12 && Math.abs(nines(0.99) - 2) < 1e-12);
  assert.equal(nines(1), 4);
  assert.equal(nines(0.99999), 4);
});

test("formatDelta writes δ as a student reads it", () => {
  assert.deepEqual([0.5, 0.9, 0.99, 0.999, 0.9999, 1, 0.99996].map(formatDelta), ["0.5", "0.9", "0.99", "0.999", "0.9999", "1", "1"]);
  assert.equal(formatDelta(0.91234), "0.9123");
});

test("deltaTicks labels the slider positions nearest the round δ values, ends first", () => {
  const d = sliderDeltas();
  const ticks = deltaTicks(d);
  assert.deepEqual(ticks.map(([, lab]) => lab), ["1", "0.5", "0.9", "0.99", "0.999", "0.9999"]);
  for (const [p, lab] of ticks) assert.ok(Math.abs(nines(d[p]) - nines(lab === "1" ? 1 : Number(lab))) < 0.06, lab);
  assert.equal(ticks[0][0], d.length - 1);
  assert.equal(ticks[5][0], d.length - 2); // 0.9999 is the last position but one
  // a custom grid far from the round values: its two ends
  assert.deepEqual(deltaTicks([0.6, 0.65, 0.7]), [[0, "0.6"], [2, "0.7"]]);
  assert.deepEqual(deltaTicks([0.7]), [[0, "0.7"]]);
  assert.deepEqual(deltaTicks([]), []);
});

test("spaced keeps ticks at least a gap apart, first come first kept", () => {
  assert.deepEqual(spaced([0, 100, 10, 50, 95], (v) => v, 20), [0, 100, 50]);
});

test("the readout names every number", () => {
  assert.equal(metricLabel("mse"), "mean squared error");
  assert.equal(metricLabel("accuracy"), "accuracy");
  assert.equal(readoutText(5, 32, "mse", 0.012345, false), "k = 5 of 32 directions · saturation 0.156 · mean squared error 0.01235");
  assert.equal(readoutText(3, 24, "accuracy", 0.875, true), "k = 3 of 24 directions · saturation 0.125 · accuracy 0.875 (random subspace)");
});
