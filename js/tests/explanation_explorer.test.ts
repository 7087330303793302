// Unit tests of the ExplanationExplorer's request coalescing and cache lookup.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Coalescer, findEntry } from "../explanation_explorer";

test("findEntry looks up (sample, target) pairs in the cache", () => {
  const entries: Array<[number, number]> = [[0, 3], [1, 5], [0, 7]];
  assert.equal(findEntry(entries, 0, 7), 2);
  assert.equal(findEntry(entries, 1, 5), 1);
  assert.equal(findEntry(entries, 1, 3), -1);
  assert.equal(findEntry([], 0, 0), -1);
});

test("Coalescer keeps one request in flight and only the latest pending one", () => {
  const sent: Array<[number, string]> = [];
  const c = new Coalescer<string>((id, req) => sent.push([id, req]), 10);
  assert.equal(c.busy, false);
  c.request("a");
  c.request("b");
  c.request("c"); // replaces "b": latest wins
  assert.deepEqual(sent, [[11, "a"]]);
  assert.equal(c.busy, true);
  c.completed(10); // an older completion does not release the current request
  assert.deepEqual(sent, [[11, "a"]]);
  c.completed(11);
  assert.deepEqual(sent, [[11, "a"], [12, "c"]]);
  c.completed(12);
  assert.equal(c.busy, false);
  c.request("d");
  assert.deepEqual(sent.at(-1), [13, "d"]);
});
