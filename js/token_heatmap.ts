// TokenHeatmap view: text tokens as chips coloured by relevance (diverging, centred on zero), one row per method
// or target, wrapping like text. Pure render from model state; the intents sent back are `selected`,
// `sequence` and `shared_scale`. Hover and focus only change the readout (no kernel message).
import type { AnyModel, RenderProps } from "@anywidget/types";
import { colorOf, contrastRatio as contrast, divergingTrim, luminance, type RGB } from "./lib/colormap";
import { backgroundOf, batched, connect, h, injectStyle, onThemeChange, themeHandler, viewRoot } from "./lib/dom";
import { formatNumber, formatTick, signed } from "./lib/nice_ticks";
import { niceScale } from "./lib/scalebar";
import { decodeTensor, type WireTensor } from "./lib/tensor";

export { formatTick }; // (tested with the view's own helpers)

interface State {
  tokens: string[][];
  relevance: WireTensor;
  offsets: number[];
  labels: string[];
  sequence: number;
  selected: [number, number];
  shared_scale: boolean;
  vmax: number;
  value_label: string;
  scale: number;
  theme: string;
}

// ---------------------------------------------------------------------------------------------------------------
// pure logic (js/tests/token_heatmap.test.ts)
// ---------------------------------------------------------------------------------------------------------------

/** One piece of a token as drawn: visible text, or a marker standing for whitespace / an invisible character. */
export interface Segment {
  text: string;
  marker: boolean;
}

export interface TokenDisplay {
  segments: Segment[];
  /** The drawn text (segments joined). */
  text: string;
  /** The token is only whitespace (or empty). */
  whitespace: boolean;
  /** The token ends a line: the next token starts on a new line, as in the original text. */
  breakAfter: boolean;
}

const MARKERS: Record<string, string> = { " ": "·", "\t": "→", "\n": "⏎", "\r": "⏎", "\u00a0": "·" };
// Other characters that draw nothing: C0/C1 controls, zero-width characters, other Unicode spaces.
const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\ufeff]/;

/** How a token is drawn: whitespace replaced by visible markers (the raw text goes in the accessible name). */
export function displayToken(raw: string): TokenDisplay {
  const segments: Segment[] = [];
  const push = (text: string, marker: boolean) => {
    const last = segments[segments.length - 1];
    if (last && last.marker === marker) last.text += text;
    else segments.push({ text, marker });
  };
  const chars = Array.from(raw);
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (c === "\r" && chars[i + 1] === "\n") continue; // CRLF: one line break
    if (c in MARKERS) push(MARKERS[c], true);
    else if (INVISIBLE.test(c)) push("◌", true);
    else push(c, false);
  }
  if (segments.length === 0) segments.push({ text: "∅", marker: true });
  return {
    segments,
    text: segments.map((s) => s.text).join(""),
    whitespace: segments.every((s) => s.marker),
    breakAfter: /[\n\r]$/.test(raw),
  };
}

/**
 * The colour limit L (the scale spans −L … L) and its tick step. Automatic (`fixed` ≤ 0): the largest |value|
 * rounded up to a multiple of a nice step, so the bar ends on labelled nice numbers and the largest value keeps
 * at least two thirds of the colour range; all-zero data get L = 1. A fixed limit is kept as given.
 */
export function colorLimit(maxAbs: number, fixed = 0): { limit: number; step: number } {
  const auto = !(fixed > 0);
  const { scale, step } = niceScale({ kind: "diverging", vmin: 0, vmax: auto ? maxAbs : fixed }, auto);
  return { limit: scale.vmax, step };
}

/**
 * Symmetric tick values −L … 0 … L at multiples of the step: at most five labels, so they never collide on a
 * 240 px bar; 0 always in the middle and, for an automatic limit (a multiple of the step), the ends labelled.
 */
export function symmetricTicks(limit: number, step: number): number[] {
  const n = Math.max(1, Math.floor(limit / step + 1e-9));
  let k = 1; // take every k-th multiple, k the smallest divisor of n leaving at most two per side
  while (n / k > 2 || n % k !== 0) k++;
  const ticks: number[] = [];
  for (let i = -n; i <= n; i += k) ticks.push(i === 0 ? 0 : Number((i * step).toPrecision(12)));
  return ticks;
}

/** A value as the readout shows it (4 significant digits, true minus sign). */
export function formatSigned(v: number): string {
  return signed(formatNumber(v));
}

/** Largest |value| in `data[start, end)`. */
export function maxAbs(data: ArrayLike<number>, start: number, end: number): number {
  let m = 0;
  for (let i = start; i < end; i++) {
    const a = Math.abs(data[i]);
    if (a > m) m = a;
  }
  return m;
}

/**
 * Colour limits per row for tokens `[start, end)` of each row of a row-major `(rows, total)` array: one limit
 * shared by all rows (so colours compare across rows) or each row its own.
 */
export function rowLimits(
  data: ArrayLike<number>, rows: number, total: number, start: number, end: number, shared: boolean, fixed = 0,
): Array<{ limit: number; step: number }> {
  const own = Array.from({ length: rows }, (_, r) => maxAbs(data, r * total + start, r * total + end));
  if (shared) {
    const one = colorLimit(Math.max(0, ...own), fixed);
    return own.map(() => one);
  }
  return own.map((m) => colorLimit(m, fixed));
}

// the WCAG luminance and contrast of js/lib/colormap.ts (re-exported: the view's tests use them by these names)
export { contrast, luminance };

const BLACK: RGB = [0, 0, 0];
const WHITE: RGB = [255, 255, 255];

/** Black or white text, whichever contrasts more with the chip colour (always ≥ 4.58 : 1). */
export function textColor(bg: RGB): RGB {
  return contrast(bg, BLACK) >= contrast(bg, WHITE) ? BLACK : WHITE;
}

/**
 * Chip colour of a value under a symmetric limit (diverging RdBu, zero = the neutral middle); `trim` cuts RdBu's
 * darkest ends on a dark page (`divergingTrim`), so the strongest chips do not look like the background.
 */
export function chipColor(v: number, limit: number, trim = 0): RGB {
  return colorOf(v, { kind: "diverging", vmin: -limit, vmax: limit, floor: trim });
}

/** The accessible name of a token: its raw text (quoted, escapes visible), position and labelled value. */
export function tokenName(raw: string, index: number, value: number, valueLabel: string, rowLabel: string): string {
  return `${JSON.stringify(raw)}, token ${index}, ${valueLabel} ${formatSigned(value)}, ${rowLabel}`;
}

/** The readout line for one token. */
export function readoutText(rowLabel: string, index: number, raw: string, value: number, valueLabel: string): string {
  return `${rowLabel} · token ${index} “${displayToken(raw).text}” · ${valueLabel} ${formatSigned(value)}`;
}

/** The cell a key moves the focus to (rows of `counts[r]` tokens), or null for other keys. */
export function moveFocus(key: string, row: number, tok: number, rows: number, count: number): [number, number] | null {
  const last = count - 1;
  switch (key) {
    case "ArrowRight": return [row, Math.min(last, tok + 1)];
    case "ArrowLeft": return [row, Math.max(0, tok - 1)];
    case "ArrowDown": return [Math.min(rows - 1, row + 1), tok];
    case "ArrowUp": return [Math.max(0, row - 1), tok];
    case "Home": return [row, 0];
    case "End": return [row, last];
    default: return null;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// view
// ---------------------------------------------------------------------------------------------------------------

const CSS = `
.nbx-root.nbx-token-heatmap { --nbx-scale: 1; font-size: calc(max(13px, var(--jp-ui-font-size1, 13px)) * var(--nbx-scale)); }
.nbx-token-heatmap .nbx-token-rows { display: flex; flex-direction: column; gap: 0.6em; }
.nbx-token-heatmap .nbx-token-row { display: flex; flex-direction: column; gap: 0.25em; }
.nbx-token-heatmap .nbx-row-head { display: flex; flex-wrap: wrap; align-items: center; gap: 0.4em 1.2em; }
.nbx-token-heatmap .nbx-row-label { font-weight: 600; color: var(--nbx-fg); overflow-wrap: anywhere; }
.nbx-token-heatmap .nbx-token-flow { line-height: 1.9; max-width: 100%;
  font-size: calc(max(13px, var(--jp-content-font-size1, 14px)) * var(--nbx-scale));
  font-family: var(--jp-content-font-family, system-ui, sans-serif); }
.nbx-token-heatmap .nbx-token { display: inline-block; padding: 0 0.22em; margin: 0.12em 0.08em;
  border: 1px solid rgba(128, 128, 128, 0.45); border-radius: 3px; line-height: 1.45; white-space: pre;
  max-width: 100%; overflow-wrap: anywhere; word-break: break-all; white-space: pre-wrap; cursor: pointer; }
.nbx-token-heatmap .nbx-token:hover { border-color: var(--nbx-fg); }
.nbx-token-heatmap .nbx-token:focus-visible { outline: 3px solid var(--nbx-accent); outline-offset: 2px; }
.nbx-token-heatmap .nbx-token.nbx-selected { border-color: var(--nbx-fg); box-shadow: 0 0 0 2px var(--nbx-fg);
  font-weight: 700; }
.nbx-token-heatmap .nbx-ws { opacity: 0.7; }
.nbx-token-heatmap .nbx-cbar-slot { min-width: 0; max-width: 100%; }
.nbx-token-heatmap .nbx-cbar { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 0.3em 0.5em;
  color: var(--nbx-fg); max-width: 100%; min-width: 0; }
.nbx-token-heatmap .nbx-cbar-caption { line-height: 1.2; }
.nbx-token-heatmap .nbx-cbar-body { position: relative; width: calc(240px * var(--nbx-scale));
  max-width: calc(100% - 2.4em); min-width: 8em; padding-bottom: 1.4em; margin: 0 1.2em; }
.nbx-token-heatmap .nbx-cbar-ramp { height: 0.8em; border: 1px solid var(--nbx-border); }
.nbx-token-heatmap .nbx-cbar-tick { position: absolute; top: 0.8em; transform: translateX(-50%);
  display: flex; flex-direction: column; align-items: center; line-height: 1.1; white-space: nowrap; }
.nbx-token-heatmap .nbx-cbar-tick::before { content: ""; width: 1px; height: 0.3em; background: var(--nbx-fg); }
.nbx-token-heatmap .nbx-readout { overflow-wrap: anywhere; }
.nbx-token-heatmap .nbx-control { color: var(--nbx-fg); }
.nbx-token-heatmap select, .nbx-token-heatmap input { font: inherit; }
.nbx-token-heatmap select { max-width: 100%; min-width: 0; }
.nbx-token-heatmap .nbx-control { max-width: 100%; min-width: 0; flex-wrap: wrap; }
.nbx-token-heatmap select:focus-visible, .nbx-token-heatmap input:focus-visible { outline: 2px solid var(--nbx-accent); }
`;

const css = (rgb: RGB) => `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;

/** A horizontal colour bar for −limit … limit with labelled nice ticks (0 in the middle). */
function colorBar(limit: number, step: number, caption: string, trim: number): HTMLDivElement {
  const bar = h("div", "nbx-cbar");
  const cap = h("span", "nbx-cbar-caption", caption);
  const body = h("div", "nbx-cbar-body");
  const ramp = h("div", "nbx-cbar-ramp");
  const stops: string[] = [];
  for (let i = 0; i <= 20; i++) stops.push(`${css(chipColor(-limit + (2 * limit * i) / 20, limit, trim))} ${i * 5}%`);
  ramp.style.background = `linear-gradient(to right, ${stops.join(", ")})`;
  ramp.setAttribute("role", "img");
  const ticks = symmetricTicks(limit, step);
  ramp.setAttribute("aria-label", `colour scale for ${caption}: blue negative, white zero, red positive, from `
    + `${formatTick(-limit)} to ${formatTick(limit)}`);
  body.appendChild(ramp);
  for (const t of ticks) {
    const tick = h("span", "nbx-cbar-tick", formatTick(t));
    tick.style.left = `${(50 * (t + limit)) / limit}%`;
    tick.setAttribute("aria-hidden", "true");
    body.appendChild(tick);
  }
  bar.dataset.ticks = ticks.join(",");
  bar.dataset.limit = String(limit);
  bar.append(cap, body);
  return bar;
}

function render({ model, el }: RenderProps<State>) {
  const root = viewRoot("token-heatmap", model.get("theme"));
  injectStyle(el, CSS);
  el.appendChild(root);

  const controls = h("div", "nbx-controls");
  const seqLabel = h("label", "nbx-control", "sequence");
  const seqSelect = h("select", "nbx-sequence");
  seqLabel.appendChild(seqSelect);
  const sharedLabel = h("label", "nbx-control");
  const shared = h("input", "nbx-shared-scale");
  shared.type = "checkbox";
  sharedLabel.append(shared, document.createTextNode("one colour scale for all rows"));
  controls.append(seqLabel, sharedLabel);
  const grid = h("div", "nbx-token-rows");
  grid.setAttribute("role", "grid");
  const footer = h("div", "nbx-footer");
  const barSlot = h("div", "nbx-cbar-slot");
  const readout = h("div", "nbx-readout");
  readout.setAttribute("aria-live", "polite");
  footer.append(barSlot, readout);
  root.append(controls, grid, footer);

  let values: Float32Array = new Float32Array(0);
  let total = 0;
  let start = 0;
  let raws: string[] = [];
  let cells: HTMLSpanElement[][] = [];
  let active: [number, number] = [0, 0];
  const hint = "hover or focus a token to read its value · click, Enter or Space selects it";

  const value = (r: number, t: number) => values[r * total + start + t];
  const rowLabel = (r: number) => model.get("labels")[r] ?? `row ${r}`;

  function inspect(r: number, t: number) {
    readout.textContent = readoutText(rowLabel(r), t, raws[t], value(r, t), model.get("value_label"));
    root.dataset.hovered = `${r},${t}`;
    root.dataset.value = String(value(r, t));
  }

  function leave() {
    delete root.dataset.hovered;
    const [r, t] = model.get("selected") ?? [-1, -1];
    if (r >= 0 && cells[r]?.[t]) inspect(r, t);
    else readout.textContent = cells.length ? hint : "no tokens";
    if (!(r >= 0)) delete root.dataset.value;
  }

  function markSelected() {
    const [sr, st] = model.get("selected") ?? [-1, -1];
    cells.forEach((row, r) => row.forEach((c, t) => {
      const on = r === sr && t === st;
      c.classList.toggle("nbx-selected", on);
      c.setAttribute("aria-selected", String(on));
    }));
    root.dataset.selected = sr >= 0 ? `${sr},${st}` : "";
  }

  function setActive(r: number, t: number, focus: boolean) {
    const old = cells[active[0]]?.[active[1]];
    if (old) old.tabIndex = -1;
    active = [r, t];
    const cell = cells[r]?.[t];
    if (!cell) return;
    cell.tabIndex = 0;
    if (focus) cell.focus();
  }

  function select(r: number, t: number) {
    model.set("selected", [r, t]);
    model.save_changes();
    markSelected();
  }

  function applyScale() {
    root.style.setProperty("--nbx-scale", String(model.get("scale") || 1));
    root.dataset.scale = String(model.get("scale") || 1);
  }

  function build() {
    const trim = divergingTrim(backgroundOf(root)); // on a dark page RdBu's darkest ends are cut
    const rel = decodeTensor(model.get("relevance"));
    const tokens = model.get("tokens") ?? [];
    const offsets = model.get("offsets") ?? [];
    const labels = model.get("labels") ?? [];
    const S = tokens.length;
    const seq = Math.min(Math.max(0, model.get("sequence")), Math.max(0, S - 1));
    const rows = rel.shape.length === 2 ? rel.shape[0] : 0;
    values = rel.data as Float32Array;
    total = rel.shape.length === 2 ? rel.shape[1] : 0;
    raws = tokens[seq] ?? [];
    start = offsets[seq] ?? 0;
    const T = raws.length;
    const ok = rows > 0 && T > 0 && start + T <= total;
    const valueLabel = model.get("value_label");
    const sharedScale = model.get("shared_scale");
    const limits = ok ? rowLimits(values, rows, total, start, start + T, sharedScale, model.get("vmax")) : [];

    // controls
    seqSelect.replaceChildren();
    tokens.forEach((toks, s) => {
      const preview = toks.map((t) => displayToken(t).text).join(" ");
      const option = h("option", "", `${s}: ${preview.length > 40 ? preview.slice(0, 39) + "…" : preview}`);
      option.value = String(s);
      seqSelect.appendChild(option);
    });
    seqSelect.value = String(seq);
    seqLabel.style.display = S > 1 ? "" : "none";
    shared.checked = sharedScale;
    sharedLabel.style.display = rows > 1 ? "" : "none";

    grid.replaceChildren();
    grid.setAttribute("aria-label", `tokens of sequence ${seq} coloured by ${valueLabel}`);
    cells = [];
    for (let r = 0; ok && r < rows; r++) {
      const row = h("div", "nbx-token-row");
      row.setAttribute("role", "row");
      row.dataset.row = String(r);
      const head = h("div", "nbx-row-head");
      head.setAttribute("role", "rowheader");
      head.appendChild(h("span", "nbx-row-label", labels[r] ?? `row ${r}`));
      if (!sharedScale) head.appendChild(colorBar(limits[r].limit, limits[r].step, `${valueLabel}, this row`, trim));
      const flow = h("div", "nbx-token-flow");
      flow.setAttribute("role", "presentation");
      const rowCells: HTMLSpanElement[] = [];
      for (let t = 0; t < T; t++) {
        const raw = raws[t];
        const v = value(r, t);
        const d = displayToken(raw);
        const cell = h("span", "nbx-token");
        for (const seg of d.segments) {
          if (seg.marker) cell.appendChild(h("span", "nbx-ws", seg.text));
          else cell.appendChild(document.createTextNode(seg.text));
        }
        const bg = chipColor(v, limits[r].limit, trim);
        cell.style.background = css(bg);
        cell.style.color = css(textColor(bg));
        cell.setAttribute("role", "gridcell");
        cell.setAttribute("aria-label", tokenName(raw, t, v, valueLabel, labels[r] ?? `row ${r}`));
        cell.dataset.index = String(t);
        cell.tabIndex = -1;
        cell.addEventListener("pointerenter", () => inspect(r, t));
        cell.addEventListener("focus", () => {
          setActive(r, t, false);
          inspect(r, t);
        });
        cell.addEventListener("click", () => {
          setActive(r, t, false);
          select(r, t);
        });
        cell.addEventListener("keydown", (ev) => {
          if (ev.key === "Enter" || ev.key === " ") {
            ev.preventDefault();
            select(r, t);
            return;
          }
          const next = moveFocus(ev.key, r, t, rows, T);
          if (next) {
            ev.preventDefault();
            setActive(next[0], next[1], true);
          }
        });
        flow.appendChild(cell);
        if (d.breakAfter) flow.appendChild(document.createElement("br"));
        rowCells.push(cell);
      }
      flow.addEventListener("pointerleave", leave);
      row.append(head, flow);
      grid.appendChild(row);
      cells.push(rowCells);
    }
    barSlot.replaceChildren();
    if (ok && sharedScale) barSlot.appendChild(colorBar(limits[0].limit, limits[0].step, valueLabel, trim));
    const [ar, at] = active;
    setActive(ok && ar < rows ? ar : 0, ok && at < T ? at : 0, false);
    root.dataset.rows = String(ok ? rows : 0);
    root.dataset.tokens = String(ok ? T : 0);
    root.dataset.sequence = String(seq);
    root.dataset.sequences = String(S);
    root.dataset.shared = String(sharedScale);
    applyScale();
    markSelected();
    leave();
    root.dataset.ready = "true";
  }

  const rebuild = batched(build); // set_data changes several traits in one message: rebuild once

  seqSelect.addEventListener("change", () => {
    model.set("sequence", Number(seqSelect.value));
    model.set("selected", [-1, -1]);
    model.save_changes();
    build(); // local: every sequence is already here, so this works in an exported page too
  });
  shared.addEventListener("change", () => {
    model.set("shared_scale", shared.checked);
    model.save_changes();
    build();
  });

  const onTheme = themeHandler(root, model);
  const events: Array<[string, () => void]> = [
    ["change:tokens", rebuild], ["change:relevance", rebuild], ["change:offsets", rebuild],
    ["change:labels", rebuild], ["change:sequence", rebuild], ["change:shared_scale", rebuild],
    ["change:vmax", rebuild], ["change:value_label", rebuild], ["change:selected", () => { markSelected(); leave(); }],
    ["change:scale", applyScale], ["change:theme", onTheme],
  ];
  build();
  return connect(el, root, model, events, () => undefined, onThemeChange(root, rebuild));
}

export default { render };
export type { AnyModel };
