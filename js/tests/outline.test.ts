// Unit tests of the input outline drawn over full-opacity maps (issue 14, item 3).
import assert from "node:assert/strict";
import { test } from "node:test";
import { contourMask, outlineRGBA, resampleLuminance } from "../lib/outline";

test("resampleLuminance weights RGB as Rec. 601 luma and interpolates between pixels", () => {
  const rgb = [255, 0, 0, 0, 0, 255]; // one red pixel, one blue pixel, (1, 2, 3)
  const same = resampleLuminance(rgb, 1, 2, 3, 1, 2);
  assert.ok(Math.abs(same[0] - 0.299 * 255) < 1e-3);
  assert.ok(Math.abs(same[1] - 0.114 * 255) < 1e-3);
  const grey = resampleLuminance([0, 100], 1, 2, 1, 1, 4); // centres at source x = -0.25, 0.25, 0.75, 1.25
  assert.deepEqual(Array.from(grey), [0, 25, 75, 100]);
});

test("contourMask marks exactly the pixels on the boundary of a bright square", () => {
  const w = 6;
  const lum = new Float32Array(w * w);
  for (let y = 2; y < 4; y++) for (let x = 2; x < 4; x++) lum[y * w + x] = 200;
  const mask = contourMask(lum, w, w);
  const on: string[] = [];
  for (let y = 0; y < w; y++) for (let x = 0; x < w; x++) if (mask[y * w + x]) on.push(`${y},${x}`);
  // a pixel is on the line when it and its right or lower neighbour lie on different sides of the threshold
  const expected = ["1,2", "1,3", "2,1", "2,3", "3,1", "3,2", "3,3"];
  assert.deepEqual(on.sort(), expected.sort());
});

test("a flat image has no outline; outlineRGBA is transparent off the line and opaque dark on it", () => {
  assert.equal(contourMask(new Float32Array(9).fill(7), 3, 3).reduce((a, b) => a + b, 0), 0);
  const img = [0, 0, 255, 255]; // (1, 4, 1): dark half, bright half
  const rgba = outlineRGBA(img, 1, 4, 1, 1, 4);
  const alpha = [3, 7, 11, 15].map((k) => rgba[k]);
  assert.deepEqual(alpha, [0, 230, 0, 0]);
  assert.ok(rgba[4] < 40 && rgba[5] < 40 && rgba[6] < 40);
});
