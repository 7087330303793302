// Unit tests of js/lib/nice_ticks.ts: the round numbers every view's axes, colour bars and tick labels use.
import assert from "node:assert/strict";
import { test } from "node:test";
import { niceCeil, niceStep, niceTicks } from "../lib/nice_ticks";

test("niceStep returns 1, 2, 2.5 or 5 times a power of ten, never below the request", () => {
  assert.equal(niceStep(0.1), 0.1);
  assert.equal(niceStep(0.13), 0.2);
  assert.equal(niceStep(0.21), 0.25);
  assert.equal(niceStep(0.3), 0.5);
  assert.equal(niceStep(0.7), 1);
  assert.equal(niceStep(42), 50);
  assert.equal(niceStep(0.00011), 0.0002); // not 0.00019999…
  assert.equal(niceStep(0), 1);
  assert.equal(niceStep(Number.NaN), 1);
  for (const raw of [1e-7, 3.3e-4, 0.0123, 0.9, 7, 123, 9.99e4]) {
    const s = niceStep(raw);
    assert.ok(s >= raw * (1 - 1e-12) && s <= 2.5 * raw * (1 + 1e-12), `${raw} -> ${s}`);
    const mantissa = Number((s / Math.pow(10, Math.floor(Math.log10(s) + 1e-12))).toPrecision(6));
    assert.ok([1, 2, 2.5, 5].includes(mantissa), `${s} mantissa ${mantissa}`);
  }
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

test("niceCeil rounds a colour-scale end up to a readable value close above it", () => {
  assert.equal(niceCeil(5.513e-4), 0.0006);
  assert.equal(niceCeil(0.137), 0.15);
  assert.equal(niceCeil(1), 1);
  assert.equal(niceCeil(8.2), 10);
  for (const v of [1.007e-4, 0.033, 2.6, 71, 9.99]) assert.ok(niceCeil(v) >= v && niceCeil(v) <= (4 / 3) * v, String(v));
});
