// Unit tests of the SimilarityGrid view's pure helpers.
import assert from "node:assert/strict";
import { test } from "node:test";
import { cellIndex, textColor } from "../similarity_grid";

test("cellIndex is row-major over (metric, checkpoint, row, column)", () => {
  const shape = [2, 3, 4, 5];
  assert.equal(cellIndex(shape, 0, 0, 0, 0), 0);
  assert.equal(cellIndex(shape, 0, 0, 1, 0), 5);
  assert.equal(cellIndex(shape, 0, 1, 0, 0), 20);
  assert.equal(cellIndex(shape, 1, 0, 0, 0), 60);
  assert.equal(cellIndex(shape, 1, 2, 3, 4), 2 * 3 * 4 * 5 - 1);
});

test("textColor picks readable text on light and dark cells", () => {
  assert.equal(textColor([253, 231, 37]), "#000"); // viridis yellow
  assert.equal(textColor([68, 1, 84]), "#fff"); // viridis purple
});
