// Unit tests of the ClassSensitivity view's pure helpers.
import assert from "node:assert/strict";
import { test } from "node:test";
import { checkpointX, curvePath, learnedText, valueIndex } from "../class_sensitivity";

test("valueIndex is row-major over (checkpoint, layer, class)", () => {
  const shape = [4, 3, 10];
  assert.equal(valueIndex(shape, 0, 0, 0), 0);
  assert.equal(valueIndex(shape, 0, 0, 9), 9);
  assert.equal(valueIndex(shape, 0, 1, 0), 10);
  assert.equal(valueIndex(shape, 1, 0, 0), 30);
  assert.equal(valueIndex(shape, 3, 2, 9), 4 * 3 * 10 - 1);
});

test("checkpointX spreads checkpoints over the width; a single one sits in the middle", () => {
  assert.equal(checkpointX(0, 5, 300), 0);
  assert.equal(checkpointX(4, 5, 300), 300);
  assert.equal(checkpointX(2, 5, 300), 150);
  assert.equal(checkpointX(0, 1, 300), 150);
});

test("curvePath maps [0, 1] to the chart height and breaks at undefined values", () => {
  assert.equal(curvePath([0, 1, 0.5], 100, 200), "M0.00,200.00L50.00,0.00L100.00,100.00");
  assert.equal(curvePath([0.5, null, 1, 1], 90, 100), "M0.00,50.00M60.00,0.00L90.00,0.00");
  assert.equal(curvePath([1.2, -0.1], 10, 10), "M0.00,0.00L10.00,10.00"); // clamped into the chart
});

test("learnedText names the checkpoint or says it was not reached", () => {
  assert.equal(learnedText(2, ["step 0", "step 3", "step 8"]), "from step 8");
  assert.equal(learnedText(-1, ["step 0"]), "not reached");
});
