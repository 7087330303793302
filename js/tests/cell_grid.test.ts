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

