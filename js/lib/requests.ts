// One request queue for every view that asks the kernel for new work (the Python side is
// `nbexplain.widgets.base.RequestWidget`): the view sends {type, id, ...request}; the kernel answers by raising
// the synced `completed_request` to that id. At most one request is in flight; while it runs only the latest
// wanted request is kept (older pending ones are dropped: latest wins).

/** Latest-wins queue of kernel requests, matched by id. Pure (no DOM, no model): unit-tested on its own. */
export class RequestQueue<T> {
  private inflight: number | null = null;
  private pending: T | null = null;
  private next: number;
  /**
   * @param send   sends request `req` under `id` to the kernel
   * @param start  the last id already used (ids must grow across re-renders of one model: pass
   *               the model's `completed_request`)
   */
  constructor(private readonly send: (id: number, req: T) => void, start = 0) {
    this.next = start;
  }
  /** Ask for `req`: sent now when nothing is in flight, otherwise kept as the one pending request. */
  request(req: T): void {
    if (this.inflight === null) this.dispatch(req);
    else this.pending = req;
  }
  /** The kernel finished every request up to `id`. Returns true when nothing is in flight any more. */
  completed(id: number): boolean {
    if (this.inflight !== null && id >= this.inflight) {
      this.inflight = null;
      if (this.pending !== null) {
        const req = this.pending;
        this.pending = null;
        this.dispatch(req);
      }
    }
    return this.inflight === null;
  }
  /** A request is in flight or pending. */
  get busy(): boolean {
    return this.inflight !== null || this.pending !== null;
  }
  /** The id of the last request sent. */
  get lastId(): number {
    return this.next;
  }
  private dispatch(req: T): void {
    this.next += 1;
    this.inflight = this.next;
    this.send(this.next, req);
  }
}

interface RequestModel {
  get(name: "completed_request"): unknown;
  send(content: Record<string, unknown>): void;
  on(event: string, callback: () => void): void;
  off(event: string, callback: () => void): void;
}

/**
 * Wire a {@link RequestQueue} to a widget model speaking the RequestWidget protocol: requests go out as
 * `{type, id, ...req}`, `change:completed_request` completes them, and `root.dataset.busy` shows whether one is
 * in flight (the `.nbx-busy` indicator follows it in CSS). `onIdle` runs when the last request is answered.
 * Returns the queue and the cleanup that stops listening.
 */
export function kernelRequests<T extends Record<string, unknown>>(
  model: RequestModel,
  root: HTMLElement,
  type: string,
  onIdle?: () => void,
): { queue: RequestQueue<T>; cleanup: () => void } {
  const start = Number(model.get("completed_request")) || 0;
  const queue = new RequestQueue<T>((id, req) => {
    root.dataset.busy = "true";
    model.send({ ...req, type, id });
  }, start);
  const done = () => {
    if (queue.completed(Number(model.get("completed_request")) || 0)) {
      root.dataset.busy = "false";
      onIdle?.();
    }
  };
  model.on("change:completed_request", done);
  return { queue, cleanup: () => model.off("change:completed_request", done) };
}
