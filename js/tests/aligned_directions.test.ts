// Unit tests of the AlignedDirections view's pure helpers.
import assert from "node:assert/strict";
import { test } from "node:test";
import { classSegments, columnAt, rowRange, stripPixels, tracePath } from "../aligned_directions";

test("classSegments finds the runs of the class-sorted columns", () => {
  assert.deepEqual(classSegments([0, 0, 1, 1, 1, 3]), [[0, 0, 2], [1, 2, 5], [3, 5, 6]]);
  assert.deepEqual(classSegments([]), []);
  assert.deepEqual(classSegments([7]), [[7, 0, 1]]);
});

test("columnAt maps a pointer x to the column under it and rejects the outside", () => {
  assert.equal(columnAt(0, 280, 500), 0);
  assert.equal(columnAt(279.9, 280, 500), 499);
  assert.equal(columnAt(140, 280, 500), 250);
  assert.equal(columnAt(-1, 280, 500), null);
  assert.equal(columnAt(280, 280, 500), null);
  assert.equal(columnAt(10, 280, 0), null);
});

test("rowRange is each row's own min and max, widened when constant", () => {
  const data = [1, 5, 3, -2, -2, -2];
  assert.deepEqual(rowRange(data, 0, 3), [1, 5]);
  assert.deepEqual(rowRange(data, 1, 3), [-2.5, -1.5]);
});

test("stripPixels colours each row on its own range: row minima share a colour, as do maxima", () => {
  const px = stripPixels([0, 10, 100, 200], 2, 2);
  assert.equal(px.length, 16);
  assert.deepEqual([...px.slice(0, 4)], [...px.slice(8, 12)]); // both row minima: the low end of the map
  assert.deepEqual([...px.slice(4, 8)], [...px.slice(12, 16)]); // both row maxima: the high end
  assert.deepEqual([...px.slice(0, 4)], [68, 1, 84, 255]); // viridis' first anchor
  assert.deepEqual([...px.slice(4, 8)], [253, 231, 37, 255]); // and last
});

test("tracePath spans the box with lo at the bottom and hi at the top", () => {
  assert.equal(tracePath([0, 1, 0.5], 100, 50, 0, 1), "M0.00,50.00L50.00,0.00L100.00,25.00");
  assert.equal(tracePath([], 100, 50, 0, 1), "");
  assert.equal(tracePath([2], 100, 50, 0, 4), "M50.00,25.00");
});
