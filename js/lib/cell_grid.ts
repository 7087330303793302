// Keyboard and size for views drawn as a grid of coloured cells (SimilarityGrid, ClassSensitivity): one tab stop
// (a roving tabindex), arrows / Home / End move between cells, Enter / Space activate the focused cell, and a
// cell size that fits the column it is shown in.

/** The cell a key moves to from (i, j) in a rows × cols grid, or null for keys the grid does not handle. */
export function moveInGrid(key: string, i: number, j: number, rows: number, cols: number): [number, number] | null {
  if (rows <= 0 || cols <= 0) return null;
  const clamp = (v: number, n: number) => Math.min(n - 1, Math.max(0, v));
  switch (key) {
    case "ArrowRight": return [i, clamp(j + 1, cols)];
    case "ArrowLeft": return [i, clamp(j - 1, cols)];
    case "ArrowDown": return [clamp(i + 1, rows), j];
    case "ArrowUp": return [clamp(i - 1, rows), j];
    case "Home": return [i, 0];
    case "End": return [i, cols - 1];
    default: return null;
  }
}

/**
 * Side of a square cell in CSS px: the wanted `size` × `scale`, shrunk so that `cols` cells fit in `available`
 * px (never below `min`). `available` ≤ 0 (not laid out yet) keeps the wanted size.
 */
export function fitCellSize(size: number, scale: number, cols: number, available: number, min = 8): number {
  const wanted = Math.round(size * scale);
  if (!(available > 0) || cols <= 0) return wanted;
  return Math.max(min, Math.min(wanted, Math.floor(available / cols)));
}

/** Whether a number of `chars` characters of a monospace font of `fontPx` fits inside a cell `cellPx` wide. */
export function valueFits(chars: number, fontPx: number, cellPx: number): boolean {
  return chars * 0.62 * fontPx + 4 <= cellPx;
}

export interface CellGridKeys {
  /** Make (i, j) the grid's tab stop (without moving the focus). */
  setStop(i: number, j: number): void;
  /** The cell that is the tab stop. */
  stop(): [number, number];
}

/**
 * Keyboard for a grid of cells inside `container`: `cell(i, j)` returns the element (each gets tabIndex −1 but
 * the tab stop 0), `onFocus(i, j)` runs when a cell gets the focus (show its readout), `activate(i, j)` on
 * Enter / Space. Call `setStop` after rebuilding the cells.
 */
export function cellGridKeys(
  container: HTMLElement,
  size: () => [number, number],
  cell: (i: number, j: number) => HTMLElement | undefined,
  onFocus: (i: number, j: number) => void,
  activate: (i: number, j: number) => void,
): CellGridKeys {
  let at: [number, number] = [0, 0];
  const setStop = (i: number, j: number) => {
    const [rows, cols] = size();
    for (let a = 0; a < rows; a++) for (let b = 0; b < cols; b++) {
      const c = cell(a, b);
      if (c) c.tabIndex = a === i && b === j ? 0 : -1;
    }
    at = [i, j];
  };
  const indexOf = (target: EventTarget | null): [number, number] | null => {
    const el = target instanceof HTMLElement ? target : null;
    if (!el || el.dataset.row === undefined || el.dataset.col === undefined || !container.contains(el)) return null;
    return [Number(el.dataset.row), Number(el.dataset.col)];
  };
  container.addEventListener("focusin", (ev) => {
    const ij = indexOf(ev.target);
    if (!ij) return;
    if (ij[0] !== at[0] || ij[1] !== at[1]) setStop(ij[0], ij[1]);
    onFocus(ij[0], ij[1]);
  });
  container.addEventListener("keydown", (ev) => {
    const ij = indexOf(ev.target);
    if (!ij) return;
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      ev.stopPropagation();
      activate(ij[0], ij[1]);
      return;
    }
    const [rows, cols] = size();
    const next = moveInGrid(ev.key, ij[0], ij[1], rows, cols);
    if (!next) return;
    ev.preventDefault();
    ev.stopPropagation(); // the view's own arrow keys (checkpoint) are for outside the grid
    setStop(next[0], next[1]);
    cell(next[0], next[1])?.focus();
  });
  return { setStop, stop: () => at };
}
