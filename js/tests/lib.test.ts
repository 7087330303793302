// Unit tests of the shared view logic (run by `npm test` with node's test runner).
import assert from "node:assert/strict";
import { test } from "node:test";
import { colorOf, diverging, LUT_SIZE, lut, lutIndex, sequential } from "../lib/colormap";
import { colorize, effectiveScale, imageRGBA, pixelAt, sourceCoord } from "../lib/raster";
import { decodeTensor, numel, slice0 } from "../lib/tensor";

test("decodeTensor reads float32 and uint8 buffers with their shape", () => {
  const f = new Float32Array([1.5, -2, 3, 4, 5, 6]);
  const t = decodeTensor({ view: new DataView(f.buffer), dtype: "float32", shape: [2, 3] });
  assert.deepEqual(Array.from(t.data), [1.5, -2, 3, 4, 5, 6]);
  assert.deepEqual(t.shape, [2, 3]);
  const u = decodeTensor({ view: new Uint8Array([0, 128, 255]), dtype: "uint8", shape: [3] });
  assert.ok(u.data instanceof Uint8Array);
  assert.deepEqual(Array.from(u.data), [0, 128, 255]);
});

test("decodeTensor copies unaligned float32 views instead of failing", () => {
  const bytes = new Uint8Array(9);
  new DataView(bytes.buffer).setFloat32(1, 7.25, true);
  new DataView(bytes.buffer).setFloat32(5, -1, true);
  const t = decodeTensor({ view: new DataView(bytes.buffer, 1, 8), dtype: "float32", shape: [2] });
  assert.deepEqual(Array.from(t.data), [7.25, -1]);
});

test("decodeTensor handles absent tensors and rejects short buffers and unknown dtypes", () => {
  assert.equal(decodeTensor(null).data.length, 0);
  assert.throws(() => decodeTensor({ view: new Float32Array(2), dtype: "float32", shape: [3] }), /too short/);
  // @ts-expect-error testing a bad dtype on purpose
  assert.throws(() => decodeTensor({ view: new Float32Array(2), dtype: "int64", shape: [2] }), /unsupported/);
});

test("slice0 returns the i-th sub-tensor as a view", () => {
  const t = decodeTensor({ view: new Float32Array([0, 1, 2, 3, 4, 5]), dtype: "float32", shape: [3, 2] });
  assert.deepEqual(Array.from(slice0(t, 2).data), [4, 5]);
  assert.deepEqual(slice0(t, 1).shape, [2]);
  assert.equal(numel([2, 3, 4]), 24);
});

test("diverging map is neutral at zero and symmetric in hue", () => {
  assert.deepEqual(diverging(0, 1), [247, 247, 247]);
  const pos = diverging(1, 1);
  const neg = diverging(-1, 1);
  assert.ok(pos[0] > pos[2], "positive values are red");
  assert.ok(neg[2] > neg[0], "negative values are blue");
  assert.deepEqual(diverging(5, 0), [247, 247, 247], "all-zero maps stay neutral");
});

test("sequential map is monotone in lightness and clamps out-of-range values", () => {
  const lum = ([r, g, b]: number[]) => 0.2126 * r + 0.7152 * g + 0.0722 * b;
  let last = -1;
  for (let i = 0; i <= 10; i++) {
    const l = lum(sequential(i / 10, 0, 1));
    assert.ok(l > last, `lightness rises at ${i}`);
    last = l;
  }
  assert.deepEqual(sequential(-5, 0, 1), sequential(0, 0, 1));
  assert.deepEqual(sequential(Number.NaN, 0, 1), sequential(0, 0, 1));
});

test("effectiveScale makes diverging scales symmetric and colorize puts zero at the neutral colour", () => {
  assert.deepEqual(effectiveScale({ kind: "diverging", vmin: -1, vmax: 3 }), { kind: "diverging", vmin: -3, vmax: 3 });
  const rgba = colorize([0, 3, -3], 1, 3, { kind: "diverging", vmin: -1, vmax: 3 });
  assert.deepEqual(Array.from(rgba.slice(0, 4)), [247, 247, 247, 255]);
  assert.deepEqual(Array.from(rgba.slice(4, 7)), colorOf(3, { kind: "diverging", vmin: -3, vmax: 3 }));
  assert.deepEqual(Array.from(rgba.slice(8, 11)), colorOf(-3, { kind: "diverging", vmin: -3, vmax: 3 }));
});

test("lut and lutIndex agree at the ends", () => {
  const s = { kind: "sequential" as const, vmin: 2, vmax: 4 };
  const table = lut(s);
  assert.equal(lutIndex(2, 2, 4), 0);
  assert.equal(lutIndex(4, 2, 4), LUT_SIZE - 1);
  assert.equal(lutIndex(9, 2, 4), LUT_SIZE - 1);
  assert.equal(lutIndex(0, -1, 1), (LUT_SIZE - 1) / 2, "zero is the middle entry of a symmetric scale");
  assert.deepEqual(Array.from(table.slice(3 * (LUT_SIZE - 1), 3 * LUT_SIZE)), colorOf(4, s));
});

test("imageRGBA expands grey and keeps colour", () => {
  assert.deepEqual(Array.from(imageRGBA([10, 20], 1, 2, 1)), [10, 10, 10, 255, 20, 20, 20, 255]);
  assert.deepEqual(Array.from(imageRGBA([1, 2, 3], 1, 1, 3)), [1, 2, 3, 255]);
});

test("pixelAt maps pointer positions to grid cells and rejects outside points", () => {
  assert.deepEqual(pixelAt(0, 0, 112, 112, 28, 28), [0, 0]);
  assert.deepEqual(pixelAt(111.9, 111.9, 112, 112, 28, 28), [27, 27]);
  assert.deepEqual(pixelAt(4 * 10 + 1, 4 * 3 + 1, 112, 112, 28, 28), [3, 10]);
  assert.equal(pixelAt(-1, 3, 112, 112, 28, 28), null);
  assert.equal(pixelAt(112, 3, 112, 112, 28, 28), null);
});

test("sourceCoord scales pooled pixels back to source coordinates", () => {
  assert.deepEqual(sourceCoord(3, 5, 28, 28, 28, 28), [3, 5]);
  assert.deepEqual(sourceCoord(3, 5, 14, 14, 28, 28), [6, 10]);
  assert.deepEqual(sourceCoord(13, 13, 14, 14, 27, 27), [26, 26]);
});

test("connect subscribes the handlers and its cleanup undoes everything once", async () => {
  const { connect } = await import("../lib/dom");
  const handlers = new Map<string, Set<() => void>>();
  const model = {
    on: (e: string, f: () => void) => void (handlers.get(e) ?? handlers.set(e, new Set()).get(e)!).add(f),
    off: (e: string, f: () => void) => void handlers.get(e)?.delete(f),
  };
  let emptied = 0;
  const el = { replaceChildren: () => void emptied++ } as unknown as HTMLElement;
  let calls = 0;
  let extra = 0;
  const cleanup = connect(el, el, model, [["change:a", () => void calls++]], () => {}, () => void extra++);
  handlers.get("change:a")!.forEach((f) => f());
  assert.equal(calls, 1);
  cleanup();
  assert.equal(handlers.get("change:a")!.size, 0);
  assert.deepEqual([extra, emptied], [1, 1]);
});

test("batched runs its function once per burst of calls, after the burst", async () => {
  const { batched } = await import("../lib/dom");
  let runs = 0;
  const rebuild = batched(() => runs++);
  rebuild();
  rebuild();
  rebuild();
  assert.equal(runs, 0); // nothing before the burst has landed
  await Promise.resolve();
  assert.equal(runs, 1);
  rebuild();
  await Promise.resolve();
  assert.equal(runs, 2); // a later burst runs again
});

test("sizeToWidth sizes the bitmap to the shown width and the picture's aspect, smoothing off", async () => {
  const { sizeToWidth } = await import("../lib/dom");
  const ctx = { imageSmoothingEnabled: true };
  const fake = (clientWidth: number) => ({ clientWidth, width: 300, height: 150, getContext: () => ctx });
  // shown 120 px wide, a 28 × 56 picture (rows × cols): 120 × 60 bitmap pixels (no window: ratio 1)
  const c = fake(120);
  assert.equal(sizeToWidth(c as unknown as HTMLCanvasElement, 28, 56, 64), ctx as unknown as CanvasRenderingContext2D);
  assert.deepEqual([c.width, c.height, ctx.imageSmoothingEnabled], [120, 60, false]);
  // not laid out yet (clientWidth 0): the fallback width; a missing shape counts as square
  const d = fake(0);
  sizeToWidth(d as unknown as HTMLCanvasElement, 0, 0, 64);
  assert.deepEqual([d.width, d.height], [64, 64]);
  // never below one pixel
  const e = fake(3);
  sizeToWidth(e as unknown as HTMLCanvasElement, 1, 100, 64);
  assert.deepEqual([e.width, e.height], [3, 1]);
});
