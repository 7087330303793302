// Unit tests of the ExplanationExplorer's pure helpers: the cache lookup, the per-map colour scale and the
// labelled score lines / legend that replaced the cryptic `±… · Σ/f … · cont …` line. (Its kernel requests go
// through js/lib/requests.ts, tested in requests.test.ts.)
import assert from "node:assert/strict";
import { test } from "node:test";
import { cellScale, findEntry, legendLines, scoreLines } from "../explanation_explorer";

test("findEntry looks up (sample, target) pairs in the cache", () => {
  const entries: Array<[number, number]> = [[0, 3], [1, 5], [0, 7]];
  assert.equal(findEntry(entries, 0, 7), 2);
  assert.equal(findEntry(entries, 1, 5), 1);
  assert.equal(findEntry(entries, 1, 3), -1);
  assert.equal(findEntry([], 0, 0), -1);
});

const meta = {
  vmax: [0.0372, 1.007e-4, 0.9],
  vmin: [-0.02, 0, 0.1],
  conservation: [0.981234, null, null],
  continuity: [12.5, 3.25e-3, null],
};

test("cellScale draws signed maps symmetric at a nice limit, unsigned ones from 0 to a nice top", () => {
  const d = cellScale(meta, 0, "diverging");
  assert.deepEqual(d.scale, { kind: "diverging", vmin: -0.04, vmax: 0.04 });
  assert.equal(d.step, 0.01);
  // never 1.007e-4 as an end
  const tiny = cellScale(meta, 1, "diverging").scale;
  assert.deepEqual([tiny.vmin, tiny.vmax], [-1.5e-4, 1.5e-4]);
  const s = cellScale(meta, 2, "sequential").scale;
  assert.deepEqual([s.kind, s.vmin, s.vmax], ["sequential", 0, 1]);
  // an unknown entry falls back to a unit scale instead of NaN
  assert.deepEqual(cellScale(undefined, 0, "diverging").scale, { kind: "diverging", vmin: -1, vmax: 1 });
});

test("scoreLines names every number; continuity only when computed, conservation only where meaningful", () => {
  assert.deepEqual(scoreLines(meta, 0, true), ["conservation 0.9812", "continuity 12.5"]);
  assert.deepEqual(scoreLines(meta, 1, true), ["continuity 0.00325"]);
  assert.deepEqual(scoreLines(meta, 2, true), ["continuity n/a"]);
  assert.deepEqual(scoreLines(meta, 2, false), []);
  for (const line of [...scoreLines(meta, 0, true), ...scoreLines(meta, 1, true)]) {
    assert.doesNotMatch(line, /[±Σ]|\bcont\b/);
  }
});

test("legendLines explain the colours always and each score only when it is shown", () => {
  const all = legendLines(true, [-1, 0, 1]);
  assert.equal(all.length, 3);
  assert.match(all[0], /RdBu/);
  assert.match(all[0], /viridis/);
  assert.match(all[1], /^conservation = sum of the map ÷ the explained class score/);
  assert.match(all[2], /^continuity = .*shifted by −1, 0, 1 pixels/);
  assert.deepEqual(legendLines(false, []), [all[0]]);
});
