// JupyterLab binds the arrow keys in a notebook's command mode (e.g. ArrowRight: "move to the heading below")
// for any focused element inside the notebook, and its shortcut handler listens on the document in the bubbling
// phase and prevents the default action — so a focused <input type="range"> or <select> in a view would not
// move. Stopping those keys at the view's root keeps the controls' own keyboard behaviour.

const CONTROL_KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown"]);

/** True when `key` pressed on `target` belongs to the control itself (a slider or a select moves). */
export function ownsKey(target: EventTarget | null, key: string): boolean {
  if (!CONTROL_KEYS.has(key) || target === null || typeof (target as Element).tagName !== "string") return false;
  const el = target as HTMLElement;
  const tag = el.tagName.toLowerCase();
  return (tag === "input" && (el as HTMLInputElement).type === "range") || tag === "select";
}

/** Keep the arrow/Home/End/Page keys of the view's sliders and selects away from the notebook's shortcuts. */
export function keepControlKeys(root: HTMLElement): () => void {
  const stop = (ev: KeyboardEvent) => {
    if (ownsKey(ev.target, ev.key)) ev.stopPropagation();
  };
  root.addEventListener("keydown", stop);
  return () => root.removeEventListener("keydown", stop);
}
