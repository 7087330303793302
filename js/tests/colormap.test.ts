// The sequential map on dark backgrounds: a zero must stay distinct from the page (issue 14, accessibility).
import assert from "node:assert/strict";
import { test } from "node:test";
import { colorOf, contrastRatio, diverging, divergingTrim, luminance, mapFloor, MIN_CONTRAST, type RGB, sequential, sequentialFloor } from "../lib/colormap";

const JUPYTER_DARK: RGB = [17, 17, 17]; // --jp-layout-color0 of JupyterLab's dark theme (and our dark fallback)

test("contrastRatio follows WCAG 2: black on white is 21, a colour on itself 1", () => {
  assert.ok(Math.abs(contrastRatio([0, 0, 0], [255, 255, 255]) - 21) < 1e-9);
  assert.equal(contrastRatio([68, 1, 84], [68, 1, 84]), 1);
  assert.ok(Math.abs(luminance([255, 255, 255]) - 1) < 1e-12);
});

test("viridis' dark end is hard to see on a dark theme: that is what the floor is for", () => {
  assert.ok(contrastRatio(sequential(0, 0, 1), JUPYTER_DARK) < 1.3);
});

test("sequentialFloor is 0 on light pages and lifts the low end above 3 : 1 on dark ones", () => {
  assert.equal(sequentialFloor([255, 255, 255]), 0);
  assert.equal(sequentialFloor([238, 238, 238]), 0);
  for (const bg of [JUPYTER_DARK, [0, 0, 0], [33, 33, 33], [42, 42, 42]] as RGB[]) {
    const f = sequentialFloor(bg);
    assert.ok(f > 0 && f < 0.6, `${bg}: ${f}`);
    // every colour of the lifted map stands out, and the floor is the first that does (steps of 0.01)
    for (let i = 0; i <= 20; i++) assert.ok(contrastRatio(sequential(i / 20, 0, 1, f), bg) >= MIN_CONTRAST, `${bg} ${i}`);
    assert.ok(contrastRatio(sequential(0, 0, 1, f - 0.01), bg) < MIN_CONTRAST);
  }
  assert.equal(sequentialFloor(JUPYTER_DARK), 0.32);
});

test("a floor keeps the yellow end and stays monotone, and colorOf carries it", () => {
  assert.deepEqual(sequential(1, 0, 1, 0.34), sequential(1, 0, 1));
  assert.deepEqual(sequential(0, 0, 1, 0.34), sequential(0.34, 0, 1));
  let last = -1;
  for (let i = 0; i <= 50; i++) {
    const l = luminance(sequential(i / 50, 0, 1, 0.34));
    assert.ok(l >= last - 1e-12);
    last = l;
  }
  assert.deepEqual(colorOf(2, { kind: "sequential", vmin: 2, vmax: 4, floor: 0.34 }), sequential(0.34, 0, 1));
  assert.deepEqual(colorOf(0, { kind: "diverging", vmin: -1, vmax: 1, floor: 0.12 }), colorOf(0, { kind: "diverging", vmin: -1, vmax: 1 }));
  // out-of-range floors are ignored, not extrapolated
  assert.deepEqual(sequential(0, 0, 1, 1.5), sequential(0, 0, 1));
});

test("divergingTrim: 0 on light pages; on dark ones RdBu's darkest ends are cut until both reach 3 : 1", () => {
  assert.equal(divergingTrim([255, 255, 255]), 0);
  assert.equal(divergingTrim([238, 238, 238]), 0);
  // RdBu's ends on a dark theme are nearly the page's colour
  assert.ok(contrastRatio(diverging(-1, 1), JUPYTER_DARK) < 1.5 && contrastRatio(diverging(1, 1), JUPYTER_DARK) < 1.5);
  for (const bg of [JUPYTER_DARK, [0, 0, 0], [33, 33, 33]] as RGB[]) {
    const f = divergingTrim(bg);
    assert.ok(f > 0 && f < 0.25, `${bg}: ${f}`);
    for (const v of [-1, 1]) assert.ok(contrastRatio(diverging(v, 1, f), bg) >= MIN_CONTRAST, `${bg} ${v}`);
    assert.ok(Math.min(contrastRatio(diverging(-1, 1, f - 0.01), bg), contrastRatio(diverging(1, 1, f - 0.01), bg)) < MIN_CONTRAST);
  }
  assert.equal(divergingTrim(JUPYTER_DARK), 0.12);
  assert.equal(mapFloor("diverging", JUPYTER_DARK), 0.12);
  assert.equal(mapFloor("sequential", JUPYTER_DARK), 0.32);
});

test("a trimmed diverging map keeps zero the exact neutral middle and stays symmetric", () => {
  assert.deepEqual(diverging(0, 3, 0.12), diverging(0, 3));
  assert.deepEqual(colorOf(0, { kind: "diverging", vmin: -2, vmax: 2, floor: 0.12 }), [247, 247, 247]);
  assert.deepEqual(diverging(-1, 1, 0.12), diverging(-0.76, 1));
  assert.deepEqual(diverging(1, 1, 0.12), diverging(0.76, 1));
  // out-of-range values clamp to the trimmed ends
  assert.deepEqual(diverging(5, 1, 0.12), diverging(1, 1, 0.12));
});
