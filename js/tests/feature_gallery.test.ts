// Unit tests of the FeatureGallery view logic: sparklines, map scales, the labels a student reads. (Its kernel
// requests go through js/lib/requests.ts, tested in requests.test.ts.)
import assert from "node:assert/strict";
import { test } from "node:test";
import { objectiveLabel, percentileLabel, sparklinePoints, topExampleLabel, unitScale } from "../feature_gallery";

test("sparklinePoints spans the box and puts the maximum at the top", () => {
  const pts = sparklinePoints([0, 1, 3, 2], 100, 20, 2);
  assert.equal(pts.length, 4);
  assert.deepEqual(pts[0], [2, 18]);
  assert.deepEqual(pts[3][0], 98);
  assert.equal(pts[2][1], 2); // max → top padding
  assert.deepEqual(sparklinePoints([], 10, 10), []);
  const flat = sparklinePoints([5, 5], 10, 10, 0);
  assert.ok(flat.every(([, y]) => Number.isFinite(y)));
});

test("unitScale is sequential for non-negative maps and symmetric diverging otherwise", () => {
  assert.deepEqual(unitScale([0, 2, 1]), { kind: "sequential", vmin: 0, vmax: 2 });
  assert.deepEqual(unitScale([-1, 3]), { kind: "diverging", vmin: -3, vmax: 3 });
  assert.deepEqual(unitScale([]), { kind: "sequential", vmin: 0, vmax: 1 });
});

test("percentiles, objectives and top examples are labelled in words, with short numbers", () => {
  assert.equal(percentileLabel(null), "percentile: no real examples");
  assert.equal(percentileLabel(99.96), "percentile 100");
  assert.equal(percentileLabel(42.04), "percentile 42");
  assert.equal(percentileLabel(42.45), "percentile 42.5");
  assert.equal(objectiveLabel(3.14159), "final objective 3.14");
  assert.equal(objectiveLabel(-0.000123456), "final objective −0.000123");
  assert.equal(objectiveLabel(NaN), "final objective: none");
  assert.equal(topExampleLabel(230, 0.50592), "sample #230 · activation 0.506");
  assert.equal(topExampleLabel(7, 75.9000015258789), "sample #7 · activation 75.9");
  assert.equal(topExampleLabel(undefined, -2.5), "sample ? · activation −2.5");
});
