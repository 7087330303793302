// Unit tests of the TokenHeatmap's pure logic: whitespace markers, colour limits and ticks, chip and text
// colours, keyboard moves and the texts a student reads.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  chipColor,
  colorLimit,
  contrast,
  displayToken,
  formatSigned,
  formatTick,
  luminance,
  moveFocus,
  readoutText,
  rowLimits,
  symmetricTicks,
  textColor,
  tokenName,
} from "../token_heatmap";

test("whitespace is drawn as markers, words are kept, newlines end the line", () => {
  const word = displayToken("film");
  assert.deepEqual(word.segments, [{ text: "film", marker: false }]);
  assert.equal(word.whitespace, false);
  const lead = displayToken(" not");
  assert.deepEqual(lead.segments, [{ text: "·", marker: true }, { text: "not", marker: false }]);
  assert.equal(lead.text, "·not");
  assert.equal(lead.whitespace, false);
  const nl = displayToken("\n");
  assert.equal(nl.text, "⏎");
  assert.ok(nl.whitespace && nl.breakAfter);
  assert.equal(displayToken("\r\n").text, "⏎", "CRLF is one line break");
  assert.equal(displayToken("  \t").text, "··→");
  assert.ok(displayToken("  \t").whitespace && !displayToken("  \t").breakAfter);
  assert.equal(displayToken("").text, "∅", "an empty token stays visible");
  assert.equal(displayToken("a\u200bb").text, "a◌b", "zero-width characters are marked");
  assert.equal(displayToken("\u00a0").text, "·");
  // SentencePiece's own marker is text, not whitespace: shown as given
  assert.deepEqual(displayToken("▁the").segments, [{ text: "▁the", marker: false }]);
  // astral characters are single characters
  assert.equal(displayToken("🙂 ").text, "🙂·");
});


test("automatic colour limits are nice, cover the data and keep ≥ 2/3 of the colour range", () => {
  assert.deepEqual(colorLimit(0.83), { limit: 1, step: 0.25 });
  const l = colorLimit(0.51);
  assert.ok(Math.abs(l.limit - 0.6) < 1e-12 && Math.abs(l.step - 0.2) < 1e-12, JSON.stringify(l));
  assert.deepEqual(colorLimit(0), { limit: 1, step: 0.25 }, "all-zero data: a unit scale");
  assert.deepEqual(colorLimit(0.3, 2), { limit: 2, step: 0.5 }, "a fixed limit is kept");
  for (let i = 0; i < 2000; i++) {
    const m = Math.exp(-12 + 20 * ((i * 0.6180339887) % 1));
    const { limit, step } = colorLimit(m);
    assert.ok(limit >= m * (1 - 1e-6), `${m}: limit ${limit} below the data`);
    assert.ok(m / limit >= 2 / 3 - 1e-9, `${m}: limit ${limit} wastes the colour range`);
    const k = limit / step;
    assert.ok(Math.abs(k - Math.round(k)) < 1e-9, `${m}: limit ${limit} not a multiple of step ${step}`);
  }
});

test("ticks are symmetric nice values with 0 in the middle, at most five, the ends labelled", () => {
  assert.deepEqual(symmetricTicks(1, 0.25), [-1, -0.5, 0, 0.5, 1]);
  assert.deepEqual(symmetricTicks(0.6, 0.2), [-0.6, 0, 0.6]);
  assert.deepEqual(symmetricTicks(0.5, 0.25), [-0.5, -0.25, 0, 0.25, 0.5]);
  assert.deepEqual(symmetricTicks(0.2, 0.2), [-0.2, 0, 0.2]);
  assert.deepEqual(symmetricTicks(0.7, 0.2), [-0.6, 0, 0.6], "a fixed odd limit: the multiples inside it");
  for (let i = 0; i < 500; i++) {
    const m = Math.exp(-10 + 16 * ((i * 0.754877666) % 1));
    const { limit, step } = colorLimit(m);
    const t = symmetricTicks(limit, step);
    assert.ok(t.length % 2 === 1 && t.length >= 3 && t.length <= 5, `${m}: ${t}`);
    assert.equal(t[(t.length - 1) / 2], 0);
    t.forEach((v, j) => assert.equal(v + t[t.length - 1 - j], 0));
    assert.ok(Math.abs(t[t.length - 1] - limit) < 1e-9 * limit, `${m}: the bar ends on a labelled tick`);
    const gaps = t.slice(1).map((v, j) => v - t[j]);
    assert.ok(gaps.every((g) => Math.abs(g - gaps[0]) < 1e-9 * limit), `${m}: evenly spaced ${t}`);
  }
});

test("tick labels and readout values use short forms and a true minus sign", () => {
  assert.equal(formatTick(-0.6000000000000001), "−0.6");
  assert.equal(formatTick(0), "0");
  assert.equal(formatTick(0.25), "0.25");
  assert.equal(formatTick(-2e-7), "−2 × 10⁻⁷");
  assert.equal(formatTick(250000), "250000");
  assert.equal(formatSigned(-0.123), "−0.123");
  assert.equal(formatSigned(0.12345), "0.1235");
  assert.equal(formatSigned(-1.5e-6), "−0.0000015");
});

test("chip colours: zero is the neutral middle, signs go to opposite ends, the limit saturates", () => {
  assert.deepEqual(chipColor(0, 1), [247, 247, 247]);
  assert.deepEqual(chipColor(1, 1), [103, 0, 31]);
  assert.deepEqual(chipColor(-1, 1), [5, 48, 97]);
  assert.deepEqual(chipColor(5, 1), chipColor(1, 1), "values beyond the limit are clamped");
  const pos = chipColor(0.5, 1);
  const neg = chipColor(-0.5, 1);
  assert.ok(pos[0] > pos[2] && neg[2] > neg[0], "positive red, negative blue");
  // symmetric in lightness: ± the same value are equally far from white
  assert.ok(Math.abs(luminance(pos) - luminance(neg)) < 0.1);
});

test("text colour is black or white with WCAG contrast ≥ 4.5 on every chip colour", () => {
  assert.ok(Math.abs(contrast([0, 0, 0], [255, 255, 255]) - 21) < 1e-9);
  assert.deepEqual(textColor([247, 247, 247]), [0, 0, 0]);
  assert.deepEqual(textColor([103, 0, 31]), [255, 255, 255]);
  assert.deepEqual(textColor([5, 48, 97]), [255, 255, 255]);
  for (let i = 0; i <= 400; i++) {
    const bg = chipColor(-1 + i / 200, 1);
    const fg = textColor(bg);
    assert.ok(contrast(bg, fg) >= 4.5, `${bg} with ${fg}: ${contrast(bg, fg)}`);
  }
});

test("rowLimits: one shared limit across rows, or each row its own", () => {
  // two rows of five tokens; the shown sequence is tokens 1..4
  const data = Float32Array.from([9, 0.1, -0.4, 0.2, 0, /* row 1 */ -9, 0.05, 0.02, -0.08, 0]);
  const shared = rowLimits(data, 2, 5, 1, 5, true);
  assert.equal(shared.length, 2);
  assert.deepEqual(shared[0], shared[1]);
  assert.ok(Math.abs(shared[0].limit - 0.4) < 1e-6, "the ±9 outside the shown sequence does not count");
  const own = rowLimits(data, 2, 5, 1, 5, false);
  assert.ok(Math.abs(own[0].limit - 0.4) < 1e-6 && Math.abs(own[1].limit - 0.08) < 1e-6, JSON.stringify(own));
  const fixed = rowLimits(data, 2, 5, 1, 5, false, 3);
  assert.deepEqual(fixed.map((l) => l.limit), [3, 3]);
});

test("keyboard moves stay inside the grid", () => {
  assert.deepEqual(moveFocus("ArrowRight", 0, 3, 2, 5), [0, 4]);
  assert.deepEqual(moveFocus("ArrowRight", 0, 4, 2, 5), [0, 4]);
  assert.deepEqual(moveFocus("ArrowLeft", 1, 0, 2, 5), [1, 0]);
  assert.deepEqual(moveFocus("ArrowDown", 0, 2, 2, 5), [1, 2]);
  assert.deepEqual(moveFocus("ArrowDown", 1, 2, 2, 5), [1, 2]);
  assert.deepEqual(moveFocus("ArrowUp", 1, 2, 2, 5), [0, 2]);
  assert.deepEqual(moveFocus("Home", 1, 3, 2, 5), [1, 0]);
  assert.deepEqual(moveFocus("End", 1, 0, 2, 5), [1, 4]);
  assert.equal(moveFocus("a", 0, 0, 2, 5), null);
});

test("readout and accessible name label the value and carry the raw text", () => {
  assert.equal(readoutText("LRP attn_lrp", 3, " not", -0.8, "relevance"), "LRP attn_lrp · token 3 “·not” · relevance −0.8");
  assert.equal(tokenName("\n", 5, 0.012345, "relevance", "gradient"), '"\\n", token 5, relevance 0.01235, gradient');
  assert.equal(tokenName(" not", 3, -0.8, "relevance", "LRP"), '" not", token 3, relevance −0.8, LRP');
});
