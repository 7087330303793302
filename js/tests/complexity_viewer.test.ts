// Unit tests of the ComplexityViewer view's pure indexing helpers (layout of the precomputed tensors).
import assert from "node:assert/strict";
import { test } from "node:test";
import { barsOf, chartAxis, mapOf, maxAbs, symmetricAxis } from "../complexity_viewer";

function ramp(shape: number[]) {
  const n = shape.reduce((a, b) => a * b, 1);
  return { data: Float32Array.from({ length: n }, (_, i) => i), shape };
}

test("mapOf slices (order, sample, channel) maps out of (L, N, K, H, W)", () => {
  const t = ramp([3, 2, 4, 2, 2]); // L=3, N=2, K=4, 2x2 maps
  assert.deepEqual(Array.from(mapOf(t, 0, 0, 0, true)), [0, 1, 2, 3]);
  assert.deepEqual(Array.from(mapOf(t, 0, 0, 1, true)), [4, 5, 6, 7]);
  assert.deepEqual(Array.from(mapOf(t, 0, 1, 0, true)), [16, 17, 18, 19]);
  assert.deepEqual(Array.from(mapOf(t, 2, 1, 3, true)), [92, 93, 94, 95]);
  const f = ramp([2, 4, 2, 2]); // the feature has no order axis
  assert.deepEqual(Array.from(mapOf(f, 0, 1, 2, false)), [24, 25, 26, 27]);
});

test("barsOf slices (order, sample) bar vectors out of (L, N, K)", () => {
  const t = ramp([2, 3, 5]);
  assert.deepEqual(Array.from(barsOf(t, 1, 2, true)), [25, 26, 27, 28, 29]);
  assert.deepEqual(Array.from(barsOf(ramp([3, 5]), 0, 1, false)), [5, 6, 7, 8, 9]);
});

test("maxAbs looks at one channel of every leading index (images) or at everything (bars)", () => {
  const t = { data: new Float32Array([1, -9, 2, 3, /* sample 1 */ -4, 5, 6, -7]), shape: [2, 2, 1, 2] };
  // shape (N=2, K=2, 1x2): channel 0 holds [1,-9] and [-4,5]; channel 1 holds [2,3] and [6,-7]
  assert.equal(maxAbs(t, 0, "images", 1), 9);
  assert.equal(maxAbs(t, 1, "images", 1), 7);
  assert.equal(maxAbs({ data: new Float32Array([0.5, -2, 1]), shape: [1, 3] }, 0, "bars", 1), 2);
});

test("chartAxis covers the computed values and 0, widened to a shared range, at nice ticks", () => {
  const own = chartAxis([0.88, 1.12, 0.36, -0.05], [true, true, true, true]);
  assert.ok(own.lo <= -0.05 && own.hi >= 1.12 && own.ticks.includes(0), JSON.stringify(own));
  // a value that was not computed (sent as 0 with valid false) does not count
  assert.deepEqual(chartAxis([0.5, 99], [true, false]).ticks, chartAxis([0.5], [true]).ticks);
  // a shared range from another viewer: both viewers get the same axis
  const shared = [-0.2, 2.4];
  const a = chartAxis([0.88, 1.12], [true, true], shared);
  const b = chartAxis([0.1, 2.4, -0.2], [true, true, true], shared);
  assert.deepEqual(a, b);
  assert.ok(a.lo <= -0.2 && a.hi >= 2.4);
});

test("symmetricAxis: −L … 0 … L with L a nice value at most 4/3 above the data, five ticks", () => {
  assert.deepEqual(symmetricAxis(0.93).ticks, [-1, -0.5, 0, 0.5, 1]);
  assert.deepEqual(symmetricAxis(3).ticks, [-3, -1.5, 0, 1.5, 3]);
  assert.deepEqual(symmetricAxis(2.0002).ticks, [-2.5, -1.25, 0, 1.25, 2.5]);
  assert.deepEqual(symmetricAxis(0).ticks, [-1, -0.5, 0, 0.5, 1]);
  for (const m of [1.007e-4, 0.011, 0.316, 0.93, 1.3, 4.1, 6.1, 7.7, 55, 1234]) {
    const lim = symmetricAxis(m).hi;
    assert.ok(lim >= m && lim <= (4 / 3) * m + 1e-12, `${m} → ${lim}`);
  }
});
