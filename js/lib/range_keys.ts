// Arrow keys on a range slider inside a notebook: JupyterLab's command-mode shortcuts see the keydown first and
// cancel the browser's default step, so a focused slider would not move. `keyboardRange` steps the slider itself
// (arrows by one step, PageUp/PageDown by a tenth of the range, Home/End to the ends), keeps the key away from the
// notebook, and fires the same `input` and `change` events as a drag.

/** The value a key moves a slider to, or null for keys that do not move it. Pure: unit-tested. */
export function rangeKeyValue(key: string, value: number, min: number, max: number, step: number): number | null {
  const span = max - min;
  const s = step > 0 ? step : span / 100;
  let v: number;
  switch (key) {
    case "ArrowLeft": case "ArrowDown": v = value - s; break;
    case "ArrowRight": case "ArrowUp": v = value + s; break;
    case "PageDown": v = value - Math.max(s, span / 10); break;
    case "PageUp": v = value + Math.max(s, span / 10); break;
    case "Home": v = min; break;
    case "End": v = max; break;
    default: return null;
  }
  // snap to the step grid (as the browser does) and clamp
  v = min + Math.round((v - min) / s) * s;
  v = Math.min(max, Math.max(min, v));
  return Number(v.toPrecision(12));
}

/** Make `input` (type=range) keyboard-operable inside a notebook. Returns the cleanup. */
export function keyboardRange(input: HTMLInputElement): () => void {
  const onKey = (ev: KeyboardEvent) => {
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const v = rangeKeyValue(ev.key, Number(input.value), Number(input.min || 0), Number(input.max || 100),
      Number(input.step || 1));
    if (v === null) return;
    ev.preventDefault();
    ev.stopPropagation();
    if (String(v) === input.value) return;
    input.value = String(v);
    input.dispatchEvent(new Event("input", { bubbles: true }));
    input.dispatchEvent(new Event("change", { bubbles: true }));
  };
  input.addEventListener("keydown", onKey);
  return () => input.removeEventListener("keydown", onKey);
}
