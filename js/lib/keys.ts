// Keyboard inside a notebook: JupyterLab binds the arrow keys (and Home/End/PageUp/PageDown) in command mode to
// notebook commands for any focused element in a cell; its handler cancels the browser's default action, so a focused
// <input type=range> or <select> of a view would not move. Keeping those keys inside the view lets the browser do
// what it does everywhere else (sliders step, page and jump to the ends; menus change).

const NAVIGATION = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown"]);

/**
 * Keep the arrow keys of a view's own sliders and menus inside the view: JupyterLab binds ArrowLeft/Right (and
 * Up/Down) in command mode to notebook commands for any focused element in a cell, which takes the keys away
 * from an `<input type=range>` before it moves. Other keys (Shift+Enter…) still reach JupyterLab.
 * Returns the cleanup.
 */
export function keepNavigationKeys(root: HTMLElement): () => void {
  const keep = (ev: KeyboardEvent) => {
    const t = ev.target;
    if (NAVIGATION.has(ev.key) && (t instanceof HTMLInputElement || t instanceof HTMLSelectElement)) ev.stopPropagation();
  };
  root.addEventListener("keydown", keep);
  return () => root.removeEventListener("keydown", keep);
}
