// Unit tests of the one request queue (js/lib/requests.ts) every kernel-asking view uses.
import assert from "node:assert/strict";
import { test } from "node:test";
import { RequestQueue, kernelRequests } from "../lib/requests";

test("RequestQueue keeps one request in flight and only the newest pending one, matched by id", () => {
  const sent: Array<[number, string]> = [];
  const q = new RequestQueue<string>((id, r) => sent.push([id, r]), 10);
  assert.equal(q.busy, false);
  q.request("a");
  q.request("b");
  q.request("c");
  assert.deepEqual(sent, [[11, "a"]]);
  assert.equal(q.busy, true);
  assert.equal(q.completed(10), false); // an older completion changes nothing
  assert.equal(q.completed(11), false); // "a" done → "c" (latest) is sent, "b" dropped
  assert.deepEqual(sent, [[11, "a"], [12, "c"]]);
  assert.equal(q.completed(12), true);
  assert.equal(q.busy, false);
  assert.equal(q.lastId, 12);
  q.request("d");
  assert.equal(q.completed(99), true); // a later id answers everything before it
  assert.deepEqual(sent.at(-1), [13, "d"]);
});

test("kernelRequests sends {type, id, ...} and follows completed_request and busy", () => {
  const handlers = new Map<string, () => void>();
  const state: Record<string, unknown> = { completed_request: 4 };
  const messages: Array<Record<string, unknown>> = [];
  const model = {
    get: (name: "completed_request") => state[name],
    send: (c: Record<string, unknown>) => messages.push(c),
    on: (e: string, f: () => void) => handlers.set(e, f),
    off: (e: string) => handlers.delete(e),
  };
  const root = { dataset: {} as Record<string, string> } as unknown as HTMLElement;
  let idle = 0;
  const { queue, cleanup } = kernelRequests<{ sample: number }>(model, root, "more", () => idle++);
  queue.request({ sample: 3 });
  assert.deepEqual(messages, [{ sample: 3, type: "more", id: 5 }]); // ids continue after the model's last answer
  assert.equal(root.dataset.busy, "true");
  state.completed_request = 5;
  handlers.get("change:completed_request")?.();
  assert.equal(root.dataset.busy, "false");
  assert.equal(idle, 1);
  cleanup();
  assert.equal(handlers.size, 0);
});
