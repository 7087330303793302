// Unit tests of js/lib/nice_ticks.ts: the round numbers every view's axes, colour bars and tick labels use.
import assert from "node:assert/strict";
import { test } from "node:test";
import { formatNumber, formatTick, niceCeil, niceStep, niceTicks, powerOfTen, tickExponent } from "../lib/nice_ticks";

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

test("niceTicks with inside: round values inside the range, 0 included when spanned (the δ axes)", () => {
  assert.deepEqual(niceTicks(0, 1, 4, { inside: true }), [0, 0.25, 0.5, 0.75, 1]);
  assert.deepEqual(niceTicks(0.0683, 0.0745, 4, { inside: true }), [0.07, 0.072, 0.074]);
  assert.deepEqual(niceTicks(-3, 7, 4, { inside: true }), [-2.5, 0, 2.5, 5]);
  assert.deepEqual(niceTicks(2, 2, 4, { inside: true }), [2]);
  for (const [lo, hi] of [[0.001, 0.0013], [12, 9870], [0.5, 0.97], [-0.000107, 0.0009]]) {
    const t = niceTicks(lo, hi, 4, { inside: true });
    assert.ok(t.length >= 2 && t.length <= 9 && t[0] >= lo - 1e-12 && t[t.length - 1] <= hi + 1e-12, String(t));
    assert.ok(lo > 0 || t.includes(0), String(t));
    // the same step as the covering ticks of a count one larger: one function, two ways of ending the axis
    const cover = niceTicks(lo, hi, 5);
    assert.ok(t.every((v) => cover.includes(v) || cover.length < 3), `${t} vs ${cover}`);
  }
  assert.deepEqual(niceTicks(Number.NaN, 1, 4, { inside: true }), []);
});

test("formatNumber writes numbers out in full, never with an e", () => {
  assert.equal(formatNumber(0.123456), "0.1235");
  assert.equal(formatNumber(-2), "-2");
  assert.equal(formatNumber(-7.054e-4), "-0.0007054");
  assert.equal(formatNumber(1.007e-4), "0.0001007");
  assert.equal(formatNumber(7.054e-4, 3), "0.000705");
  assert.equal(formatNumber(123456), "123500");
  assert.equal(formatNumber(75.9000015258789), "75.9");
  assert.equal(formatNumber(0), "0");
  assert.equal(formatNumber(1e-6), "0.000001");
  assert.equal(formatNumber(7.054e-8), "7.054 × 10⁻⁸");
  assert.equal(formatNumber(-2.5e12, 3), "-2.5 × 10¹²");
  assert.equal(formatNumber(Number.POSITIVE_INFINITY), "Infinity");
  assert.equal(formatNumber(Number.NaN), "NaN");
  // agrees with a plain-decimal reading of the value: parsing the text gives the value to `digits` digits
  for (const v of [3.14159e-5, -0.0009999, 42.4242, 98765.4321, 0.5]) {
    const text = formatNumber(v);
    assert.ok(!/e/i.test(text), text);
    assert.ok(Math.abs(Number(text) - v) <= 5e-4 * Math.abs(v), `${v} -> ${text}`);
  }
});

test("formatTick writes round tick values in full, with a true minus", () => {
  assert.equal(formatTick(0.0006), "0.0006");
  assert.equal(formatTick(-0.0006), "−0.0006");
  assert.equal(formatTick(0.15), "0.15");
  assert.equal(formatTick(2), "2");
  assert.equal(formatTick(250), "250");
  assert.equal(formatTick(0), "0");
  assert.equal(formatTick(-1.5e-4), "−0.00015");
});

test("powerOfTen and tickExponent: one shared factor for very small or very large tick values", () => {
  assert.equal(powerOfTen(-4), "10⁻⁴");
  assert.equal(powerOfTen(12), "10¹²");
  assert.equal(powerOfTen(0), "10⁰");
  assert.equal(tickExponent([-1.5e-4, 0, 1.5e-4]), -4);
  assert.equal(tickExponent([0, 0.0002, 0.0004, 0.0006]), -4);
  assert.equal(tickExponent([0, 0.25, 0.5]), 0);
  assert.equal(tickExponent([0, 0.01]), 0);
  assert.equal(tickExponent([0, 0.005]), -3);
  assert.equal(tickExponent([0, 20000, 40000]), 4);
  assert.equal(tickExponent([0]), 0);
  assert.equal(tickExponent([]), 0);
});
