// Unit test of js/lib/native_keys.ts: which keys a view keeps from JupyterLab's command-mode shortcuts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ownsKey } from "../lib/native_keys";

const el = (tagName: string, type = "") => ({ tagName, type }) as unknown as EventTarget;

test("ownsKey: a slider's and a select's navigation keys belong to them, nothing else does", () => {
  assert.equal(ownsKey(el("INPUT", "range"), "ArrowRight"), true);
  assert.equal(ownsKey(el("INPUT", "range"), "Home"), true);
  assert.equal(ownsKey(el("SELECT"), "ArrowDown"), true);
  assert.equal(ownsKey(el("INPUT", "range"), "Enter"), false);
  assert.equal(ownsKey(el("INPUT", "checkbox"), "ArrowRight"), false);
  assert.equal(ownsKey(el("DIV"), "ArrowRight"), false);
  assert.equal(ownsKey(null, "ArrowRight"), false);
});
