// Unit tests of the FeatureGallery view logic: sparklines, map scales, percentile labels, latest-wins.
import assert from "node:assert/strict";
import { test } from "node:test";
import { LatestWins, percentileLabel, sparklinePoints, unitScale } from "../feature_gallery";

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

test("percentileLabel", () => {
  assert.equal(percentileLabel(null), "no data");
  assert.equal(percentileLabel(99.96), "p100");
  assert.equal(percentileLabel(42.04), "p42.0");
});

test("LatestWins keeps one request in flight and only the newest pending one", () => {
  const sent: Array<[number, string]> = [];
  const q = new LatestWins<string>((id, r) => sent.push([id, r]), 10);
  q.request("a");
  q.request("b");
  q.request("c");
  assert.deepEqual(sent, [[11, "a"]]);
  assert.equal(q.busy, true);
  assert.equal(q.completed(10), false); // an older completion changes nothing
  assert.equal(q.completed(11), false); // "a" done → "c" (latest) is sent, "b" dropped
  assert.deepEqual(sent, [[11, "a"], [12, "c"]]);
  assert.equal(q.completed(12), true);
  assert.equal(q.busy, false);
  q.request("d");
  assert.deepEqual(sent.at(-1), [13, "d"]);
});
