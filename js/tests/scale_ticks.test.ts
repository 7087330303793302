// Unit tests of js/lib/scale_ticks.ts: nice axes and colour scales (ends on nice numbers, 0 a tick when spanned).
import assert from "node:assert/strict";
import { test } from "node:test";
import { formatTick, niceAxis, niceColorScale, niceStep, symmetricAxis } from "../lib/scale_ticks";

test("niceStep rounds up to 1, 2, 2.5 or 5 × 10^k", () => {
  assert.equal(niceStep(0.3), 0.5);
  assert.equal(niceStep(1), 1);
  assert.equal(niceStep(1.2), 2);
  assert.equal(niceStep(2.2), 2.5);
  assert.equal(niceStep(7), 10);
  assert.equal(niceStep(0.00013), 0.0002);
});

test("niceAxis covers the data with at most maxTicks nice ticks and includes 0 when spanned", () => {
  const a = niceAxis(-0.13, 0.88, 5);
  assert.ok(a.lo <= -0.13 && a.hi >= 0.88, JSON.stringify(a));
  assert.ok(a.ticks.length <= 5 && a.ticks.includes(0), JSON.stringify(a));
  assert.equal(a.ticks[0], a.lo);
  assert.equal(a.ticks.at(-1), a.hi);
  for (const t of a.ticks) assert.equal(t, Number((Math.round(t / a.step) * a.step).toPrecision(12)));
  const b = niceAxis(0, 1.007e-4, 5); // never an end at 1.007e-4
  assert.deepEqual(b.ticks, [0, 5e-5, 1e-4, 1.5e-4]);
  assert.deepEqual(niceAxis(0, 1.12, 5).ticks, [0, 0.5, 1, 1.5]);
  assert.deepEqual(niceAxis(0, 0, 5).ticks, [0, 0.25, 0.5, 0.75, 1]);
  assert.deepEqual(niceAxis(2, 2, 3).ticks, [0, 1, 2]);
  assert.deepEqual(niceAxis(0.1, 0.3, 5).ticks, [0.1, 0.15, 0.2, 0.25, 0.3]);
});

test("symmetricAxis and niceColorScale: diverging centred on 0, sequential from 0, ends on ticks", () => {
  assert.deepEqual(symmetricAxis(0.93).ticks, [-1, -0.5, 0, 0.5, 1]);
  assert.deepEqual(symmetricAxis(3).ticks, [-3, -1.5, 0, 1.5, 3]);
  assert.deepEqual(symmetricAxis(2.0002).ticks, [-2.5, -1.25, 0, 1.25, 2.5]);
  assert.deepEqual(symmetricAxis(1.007e-4).ticks, [-1.2e-4, -6e-5, 0, 6e-5, 1.2e-4]);
  for (const m of [0.011, 0.316, 0.93, 1.3, 4.1, 6.1, 7.7, 55, 1234]) {
    const lim = symmetricAxis(m).hi;
    assert.ok(lim >= m && lim <= (4 / 3) * m + 1e-12, `${m} → ${lim}`);
  }
  assert.deepEqual(symmetricAxis(0).ticks, [-1, -0.5, 0, 0.5, 1]);
  const d = niceColorScale("diverging", -0.2, 1.7);
  assert.deepEqual(d.scale, { kind: "diverging", vmin: -2, vmax: 2 });
  assert.ok(d.ticks.includes(0));
  const s = niceColorScale("sequential", 0.3, 7.3);
  assert.deepEqual(s.scale, { kind: "sequential", vmin: 0, vmax: 8 });
  assert.deepEqual(s.ticks, [0, 2, 4, 6, 8]);
});

test("formatTick: 3 significant digits, true minus, no float noise", () => {
  assert.equal(formatTick(0.30000000000000004), "0.3");
  assert.equal(formatTick(-0.5), "−0.5");
  assert.equal(formatTick(75.9000015258789), "75.9");
  assert.equal(formatTick(0), "0");
  assert.equal(formatTick(1e-4), "1e-4");
});
