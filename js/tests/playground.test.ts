// Unit tests of the Playground view's pure logic: surface colours, unit decoding, plane geometry, epoch ticks,
// edge widths, the frame fingerprint and the diagram layout; decoding once per trait change, edge shapes compared
// without serialising, the settings' parsing and the δ slider's start.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  boxAt, cellAt, classColor, decodedOnce, edgeWidth, epochTicks, fieldRGBA, misclassified, planeAt, recordedFrame, surfaceRGBA,
  unitValue, type FrameData,
} from "../lib/playground_draw";
import { yAxis } from "../lib/playground_charts";
import { parseWidths, SETTINGS } from "../lib/playground_controls";
import { nearestDelta } from "../lib/playground_delta";
import { layoutNodes, sameShapes } from "../lib/playground_network";
import { fnv } from "../playground";

test("a certain class is drawn in a strong shade of its colour; an undecided point is near white", () => {
  const certain = surfaceRGBA(new Uint8Array([255, 0]), 2, 1);
  const c0 = classColor(0);
  const t = 0.8; // 0.12 + 0.68 at full confidence
  for (let k = 0; k < 3; k++) assert.ok(Math.abs(certain[k] - (255 + (c0[k] - 255) * t)) <= 1);
  const unsure = surfaceRGBA(new Uint8Array([128, 127]), 2, 1);
  for (let k = 0; k < 3; k++) assert.ok(unsure[k] > 200, `channel ${k}: ${unsure[k]}`);
  assert.equal(unsure[3], 255);
  // three classes, one pixel each of a 2x1 grid… laid out (C, R, R): R = 1 here
  const three = surfaceRGBA(new Uint8Array([0, 0, 255]), 3, 1);
  const c2 = classColor(2);
  for (let k = 0; k < 3; k++) assert.ok(Math.abs(three[k] - (255 + (c2[k] - 255) * t)) <= 1);
});

test("unit values decode from bytes and their range", () => {
  assert.equal(unitValue(0, -2, 3), -2);
  assert.equal(unitValue(255, -2, 3), 3);
  assert.ok(Math.abs(unitValue(51, 0, 5) - 1) < 1e-12);
});

test("plane geometry: box ↔ plane are inverse, row 0 is the top, cells clamp", () => {
  const ext = [-2, 2, -1, 3];
  const [x, y] = planeAt(75, 30, 300, 300, ext);
  assert.ok(Math.abs(x - -1) < 1e-12 && Math.abs(y - 2.6) < 1e-12);
  const [px, py] = boxAt(x, y, 300, 300, ext);
  assert.ok(Math.abs(px - 75) < 1e-9 && Math.abs(py - 30) < 1e-9);
  assert.deepEqual(cellAt(-2, 3, 64, ext), [0, 0]);
  assert.deepEqual(cellAt(2, -1, 64, ext), [63, 63]);
  assert.deepEqual(cellAt(100, 100, 8, ext), [0, 7]);
});

test("epoch ticks are integers from 0, at most six", () => {
  assert.deepEqual(epochTicks(3), [0, 1, 2, 3]);
  assert.deepEqual(epochTicks(1), [0, 1]);
  const many = epochTicks(137);
  assert.ok(many.length <= 6 && many.every(Number.isInteger) && many[0] === 0, String(many));
});

test("misclassified counts, edge widths, fingerprints", () => {
  assert.equal(misclassified([0, 1, 1, 0], [0, 0, 1, 1], 0, 4), 2);
  assert.equal(misclassified([0, 1, 1, 0], [0, 0, 1, 1], 2, 4), 1);
  assert.equal(edgeWidth(0, 2), 0.5);
  assert.equal(edgeWidth(-2, 2), 4.5);
  assert.equal(fnv(new Uint8Array([1, 2, 3])), fnv(new Uint8Array([1, 2, 3])));
  assert.notEqual(fnv(new Uint8Array([1, 2, 3])), fnv(new Uint8Array([1, 2, 4])));
});

test("the relevance field: which-input share and signed maps", () => {
  const one = { data: new Float32Array([2, 0, 5]), shape: [3, 1, 1] };
  const x = fieldRGBA(one, "which input");
  const yOnly = fieldRGBA({ data: new Float32Array([0, 2, 5]), shape: [3, 1, 1] }, "which input");
  assert.ok(x[0] + x[1] > yOnly[0] + yOnly[1]); // bright where x decides, dark where y does
  const pos = fieldRGBA(one, "relevance x");
  assert.ok(pos[0] > pos[2]); // positive relevance is red
  const neg = fieldRGBA({ data: new Float32Array([-2, 0, 5]), shape: [3, 1, 1] }, "relevance x");
  assert.ok(neg[2] > neg[0]); // negative is blue
});

test("recorded frames are views into the stacked recording", () => {
  const mk = (n: number, shape: number[]) => ({ data: new Uint8Array(n), shape });
  const stacked = {
    surface: { data: new Uint8Array([1, 2, 3, 4]), shape: [2, 1, 1, 2] }, neurons: mk(2, [2, 1, 1, 1]),
    ranges: { data: new Float32Array(4), shape: [2, 1, 2] }, weights: { data: new Float32Array(0), shape: [2, 0] },
    predicted: mk(2, [2, 1]), relevance: { data: new Float32Array(6), shape: [2, 3, 1, 1] },
    meta: { data: new Float32Array([0, 0, 0, 0, 0, 0, 0, 1, 5, 0, 0, 0, 0, 0]), shape: [2, 7] },
  } as unknown as FrameData;
  const f = recordedFrame(stacked, 1);
  assert.deepEqual(Array.from(f.surface.data), [3, 4]);
  assert.deepEqual(f.surface.shape, [1, 1, 2]);
  assert.equal(f.meta.data[0], 1);
});

test("the diagram fits its columns and centres short ones", () => {
  const lay = layoutNodes([{ title: "in", units: 2 }, { title: "h", units: 8 }, { title: "out", units: 2 }], 440, 300);
  assert.ok(lay.size >= 14 && lay.size <= 40);
  assert.ok(lay.x[2] + lay.size <= 440);
  const mid = (ys: number[]) => (ys[0] + ys[ys.length - 1]) / 2;
  assert.ok(Math.abs(mid(lay.y[0]) - mid(lay.y[1])) < 1e-9);
  const wide = layoutNodes([{ title: "in", units: 2 }, { title: "h", units: 64 }], 440, 300);
  assert.equal(wide.size, 14);
});


test("a trait's value is decoded once per change, however often it is drawn", () => {
  let decodes = 0;
  const decode = decodedOnce((v: { n: number }) => {
    decodes += 1;
    return v.n * 2;
  });
  const a = { n: 1 };
  assert.equal(decode(a), 2);
  assert.equal(decode(a), 2); // the same trait value (hover, slider, timeline): no decoding
  assert.equal(decodes, 1);
  assert.equal(decode({ n: 1 }), 2); // a new value (the trait changed): decoded again
  assert.equal(decodes, 2);
  const nothing = decodedOnce((v: null) => (decodes += 1, v));
  nothing(null);
  nothing(null);
  assert.equal(decodes, 3); // null is a value too: decoded once
});

test("edge shapes are compared by identity, then element by element", () => {
  const shapes = [[8, 2], [2, 8]];
  assert.ok(sameShapes(shapes, shapes));
  assert.ok(sameShapes([[8, 2], [2, 8]], shapes));
  assert.ok(!sameShapes(null, shapes));
  assert.ok(!sameShapes([[8, 2]], shapes));
  assert.ok(!sameShapes([[8, 2], [2, 7]], shapes));
  assert.ok(!sameShapes([[8, 2], [2, 8, 1]], shapes));
});

test("settings: hidden widths parse or are refused; the δ slider starts nearest δ", () => {
  assert.deepEqual(parseWidths("8, 8"), [8, 8]);
  assert.deepEqual(parseWidths(" 4 3,2 "), [4, 3, 2]);
  assert.deepEqual(parseWidths(""), []);
  assert.equal(parseWidths("8, 0"), null);
  assert.equal(parseWidths("8, x"), null);
  assert.equal(parseWidths("2.5"), null);
  assert.ok(SETTINGS.includes("test_fraction") && SETTINGS.length === 10);
  assert.equal(nearestDelta([0.5, 0.9, 0.99, 0.999], 0.98), 2);
  assert.equal(nearestDelta([0.5, 0.9], 1), 1);
  assert.equal(nearestDelta([], 0.9), 0);
});

test("yAxis: nice ticks from 0 covering the data, and a left margin that grows with the widest label", () => {
  const loss = yAxis([0.69, 0.5, 0.31], null);
  assert.deepEqual(loss.ticks, [0, 0.5, 1]);
  assert.deepEqual(loss.labels, ["0", "0.5", "1"]);
  const big = yAxis([1234.5], null);
  assert.equal(big.ticks[big.ticks.length - 1] >= 1234.5, true);
  assert.ok(big.left > loss.left, `${big.left} vs ${loss.left}`);
  // the widest label fits between the axis title and the axis (7.2 px a digit at 13 px; 6 and 4 px gaps)
  for (const a of [loss, big]) assert.ok(a.left >= 6 + 7.2 * Math.max(...a.labels.map((l) => l.length)) + 4 + 15);
  // a fixed range is split in halves
  assert.deepEqual(yAxis([0.2, 0.9], [0, 1]).ticks, [0, 0.5, 1]);
});
