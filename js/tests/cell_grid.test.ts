// Unit tests of the cell-grid helpers (keyboard moves, cell sizes that fit the column).
import assert from "node:assert/strict";
import { test } from "node:test";
import { fitCellSize, moveInGrid, valueFits } from "../lib/cell_grid";

test("moveInGrid moves by one cell and stops at the edges", () => {
  assert.deepEqual(moveInGrid("ArrowRight", 1, 1, 3, 4), [1, 2]);
  assert.deepEqual(moveInGrid("ArrowRight", 1, 3, 3, 4), [1, 3]);
  assert.deepEqual(moveInGrid("ArrowLeft", 1, 0, 3, 4), [1, 0]);
  assert.deepEqual(moveInGrid("ArrowDown", 2, 1, 3, 4), [2, 1]);
  assert.deepEqual(moveInGrid("ArrowUp", 2, 1, 3, 4), [1, 1]);
  assert.deepEqual(moveInGrid("Home", 2, 3, 3, 4), [2, 0]);
  assert.deepEqual(moveInGrid("End", 2, 0, 3, 4), [2, 3]);
  assert.equal(moveInGrid("a", 0, 0, 3, 4), null);
  assert.equal(moveInGrid("ArrowRight", 0, 0, 0, 0), null);
});

test("fitCellSize scales the wanted size and shrinks it to the column", () => {
  assert.equal(fitCellSize(40, 1.5, 4, 1000), 60);
  assert.equal(fitCellSize(200, 1, 4, 500), 125);
  assert.equal(fitCellSize(200, 1, 100, 500), 8); // never below the minimum
  assert.equal(fitCellSize(40, 1, 4, 0), 40); // not laid out yet
});

test("valueFits: four monospace characters at 13 px need about 36 px", () => {
  assert.ok(valueFits(4, 13, 40));
  assert.ok(!valueFits(4, 13, 28));
  assert.ok(!valueFits(4, 19.5, 40));
});

import { niceStep, niceTicks } from "../lib/nice_ticks";

test("niceStep picks 1, 2, 2.5 or 5 times a power of ten", () => {
  assert.equal(niceStep(0.3), 0.5);
  assert.equal(niceStep(0.21), 0.25);
  assert.equal(niceStep(7), 10);
  assert.equal(niceStep(1), 1);
  assert.equal(niceStep(0.00011), 0.0002);
});

test("niceTicks cover the range at round values and include 0 when the range spans it", () => {
  assert.deepEqual(niceTicks(0, 1), [0, 0.25, 0.5, 0.75, 1]);
  assert.deepEqual(niceTicks(-1.3, 2.1), [-2, -1, 0, 1, 2, 3]);
  const t = niceTicks(-0.000107, 0.0009);
  assert.ok(t.includes(0) && t[0] <= -0.000107 && t[t.length - 1] >= 0.0009, String(t));
  assert.ok(t.every((v) => Number(v.toPrecision(2)) === v), String(t)); // never 1.007e-4
  assert.deepEqual(niceTicks(0.1 + 0.2, 0.9), [0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(0.1 + 0.2, 0.9, 7), [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]);
});

import { niceCeil } from "../lib/nice_ticks";

test("niceCeil rounds a colour-scale end up to a readable value close above it", () => {
  assert.equal(niceCeil(5.513e-4), 0.0006);
  assert.equal(niceCeil(0.137), 0.15);
  assert.equal(niceCeil(1), 1);
  assert.equal(niceCeil(8.2), 10);
  for (const v of [1.007e-4, 0.033, 2.6, 71, 9.99]) assert.ok(niceCeil(v) >= v && niceCeil(v) <= (4 / 3) * v, String(v));
});
