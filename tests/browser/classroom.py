"""Classroom checks (issue 14) shared by the browser tests of SimilarityGrid, AlignedDirections, RelevanceFlow and
ClassSensitivity: fits an 800 px column (also at ``scale = 1.5``), text ≥ 13 px, a visible focus ring, dark-theme
contrast, axe-core, and the 800 / 1400 px screenshots for the docs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from harness import VIEW_LAYOUT, axe_violations

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screens"

RGB = "e => getComputedStyle(e).backgroundColor"
COLOR = "e => getComputedStyle(e).color"


def rgb(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text[text.index("(") + 1 : text.index(")")].split(",")[:3])


def luminance(c: tuple[float, ...]) -> float:
    lin = [v / 255 / 12.92 if v / 255 <= 0.04045 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in c]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def fits_column(root: Any, width: int = 800) -> dict:
    """Nothing sideways (no scroll, no descendant past the root's right edge), inside the window, text ≥ 13 px."""
    layout = root.evaluate(VIEW_LAYOUT)
    assert layout["scroll"] <= layout["client"] + 1, f"sideways scroll: {layout}"
    if layout["contentRight"] > layout["right"] + 1:
        past = root.evaluate(
            "r => { const R = r.getBoundingClientRect().right; return [...r.querySelectorAll('*')]"
            ".filter(e => e.getBoundingClientRect().right > R + 1)"
            ".map(e => e.tagName + ':' + (e.textContent || '').slice(0, 40)).slice(0, 8); }")
        raise AssertionError(f"content past the right edge: {layout} {past}")
    assert layout["right"] <= width, f"wider than the window: {layout}"
    assert layout["min"] >= 13 - 0.01, f"text below 13 px: {layout}"
    return layout


def text_size(loc: Any) -> float:
    return float(loc.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))


def scaled(nb: Any, root_selector: str, var: str, probe: Any, factor: float = 1.5) -> None:
    """``<var>.scale = factor`` enlarges the text of ``probe`` by that factor and the view still fits."""
    before = text_size(probe)
    nb.execute(f"{var}.scale = {factor}")
    nb.page.locator(f"{root_selector}[data-scale='{factor:g}']").wait_for(timeout=5000)
    nb.page.wait_for_timeout(300)  # a resize-driven relayout (canvases, charts) runs on the next frame
    assert text_size(probe) == pytest.approx(factor * before, rel=0.02)
    fits_column(nb.page.locator(root_selector).first)


def has_focus_ring(loc: Any) -> bool:
    """The element has the focus and a visible outline (≥ 2 px) or box-shadow ring."""
    got = loc.evaluate(
        "e => { const s = getComputedStyle(e); return [document.activeElement === e, s.outlineStyle,"
        " parseFloat(s.outlineWidth), s.boxShadow]; }")
    return bool(got[0]) and ((got[1] != "none" and got[2] >= 2) or got[3] not in ("", "none"))


# The low end of the first shown sequential colour bar in a view, as drawn: a colour-bar canvas's first pixel, or the first
# stop of a scale bar's CSS gradient (js/lib/scalebar.ts).
LOW_END = """r => {
  const bar = [...r.querySelectorAll('canvas.nbx-colorbar, .nbx-scalebar[data-kind="sequential"] .nbx-scalebar-ramp')]
    .find(b => b.getClientRects().length > 0 && (b.tagName !== 'CANVAS'
               || !(b.getAttribute('aria-label') || '').startsWith('diverging')));
  if (!bar) return null;
  if (bar.tagName === 'CANVAS') {
    const d = bar.getContext('2d').getImageData(0, 0, 1, 1).data;
    return `rgb(${d[0]}, ${d[1]}, ${d[2]})`;
  }
  const m = /rgba?\\([^)]*\\)/.exec(getComputedStyle(bar).backgroundImage);
  return m ? m[0] : null;
}"""


# Both ends of the first shown diverging colour bar in a view, as drawn (canvas pixels or the CSS gradient's stops).
ENDS = """r => {
  const bar = [...r.querySelectorAll('canvas.nbx-colorbar, .nbx-scalebar[data-kind="diverging"] .nbx-scalebar-ramp, .nbx-cbar-ramp')]
    .find(b => b.getClientRects().length > 0 && (b.tagName !== 'CANVAS'
               || (b.getAttribute('aria-label') || '').startsWith('diverging') || b.dataset.kind === 'diverging'));
  if (!bar) return null;
  if (bar.tagName === 'CANVAS') {
    const d = bar.getContext('2d').getImageData(0, 0, bar.width, 1).data, n = d.length - 4;
    return [`rgb(${d[0]}, ${d[1]}, ${d[2]})`, `rgb(${d[n]}, ${d[n + 1]}, ${d[n + 2]})`];
  }
  const all = getComputedStyle(bar).backgroundImage.match(/rgba?\\([^)]*\\)/g);
  return all ? [all[0], all[all.length - 1]] : null;
}"""


def end_contrast(nb: Any, root_selector: str) -> float:
    """The lower contrast (WCAG) of the two ends of the view's diverging colour bar — the colours of its strongest
    negative and positive values — against the view's background (≥ 3 : 1 wanted; RdBu's own ends on JupyterLab's
    dark background are 1.44 : 1)."""
    root = nb.page.locator(root_selector).first
    ends = root.evaluate(ENDS)
    assert ends, "no diverging colour bar in the view"
    bg = rgb(root.evaluate(RGB))
    return min(contrast(rgb(e), bg) for e in ends)


def low_end_contrast(nb: Any, root_selector: str) -> float:
    """Contrast (WCAG) of the lowest colour of the view's sequential colour bar — the colour of a zero — against the
    view's background. WCAG 2.1 (1.4.11) asks ≥ 3 : 1 for graphical objects; viridis' dark end on JupyterLab's dark
    background is 1.24 : 1 (issue 14: "dark-theme maps that keep zero distinct from the background")."""
    root = nb.page.locator(root_selector).first
    low = root.evaluate(LOW_END)
    assert low, "no sequential colour bar in the view"
    return contrast(rgb(low), rgb(root.evaluate(RGB)))


def dark_theme(nb: Any, root_selector: str, var: str, text: str, sequential: bool = False,
               diverging: bool = False) -> tuple[float, ...]:
    """``theme='dark'``: a dark background, the ``text`` element readable on it (≥ 4.5 : 1), no axe violation; with
    ``sequential`` the view's sequential colour map keeps its low end (a zero) ≥ 3 : 1 from the background, with
    ``diverging`` its diverging map keeps both ends ≥ 3 : 1."""
    nb.execute(f"{var}.theme = 'dark'")
    nb.page.locator(f"{root_selector}[data-theme='dark']").wait_for(timeout=5000)
    root = nb.page.locator(root_selector).first
    bg = rgb(root.evaluate(RGB))
    assert luminance(bg) < 0.05, bg
    fg = rgb(nb.page.locator(text).first.evaluate(COLOR))
    assert contrast(fg, bg) >= 4.5, (fg, bg)
    if sequential:
        # the views recolour on the next animation frame after the theme attribute changes
        nb.page.wait_for_function(f"() => {{ const r = document.querySelector({root_selector!r}); return r && ({LOW_END})(r); }}")
        nb.page.wait_for_timeout(200)
        assert low_end_contrast(nb, root_selector) >= 3, "a zero on the sequential map looks like the dark background"
    if diverging:
        nb.page.wait_for_timeout(200)
        assert end_contrast(nb, root_selector) >= 3, "the strongest values look like the dark background"
    assert axe_violations(nb.page, root_selector) == []
    return bg


def _lab_theme(nb: Any, name: str, light: str) -> None:
    # JupyterLab shows a splash while it changes theme and removes it 200 ms after; a second change before that
    # removes it twice (a page error from JupyterLab itself): wait until it is gone, before and after
    nb.page.wait_for_function("() => !document.getElementById('jupyterlab-splash')", timeout=15000)
    nb.page.evaluate(f"() => window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{name}'}})")
    nb.page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'", timeout=15000)
    nb.page.wait_for_function("() => !document.getElementById('jupyterlab-splash')", timeout=15000)


@contextmanager
def lab_dark(nb: Any) -> Iterator[None]:
    """JupyterLab's dark theme for the block, always set back to light (the server's setting is shared by the
    session's other tests)."""
    try:
        _lab_theme(nb, "JupyterLab Dark", "false")
        yield
    finally:
        _lab_theme(nb, "JupyterLab Light", "true")


def to_docs(*shots: Path, folder: Path = DOCS) -> None:
    """Copy screenshots into the docs (``docs/screens`` unless ``folder``) when ``NBEXPLAIN_UPDATE_DOCS=1``."""
    if os.environ.get("NBEXPLAIN_UPDATE_DOCS") == "1":
        folder.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copyfile(shot, folder / shot.name)


def follows_lab_dark_theme(nb: Any, root_selector: str) -> None:
    """With ``theme='auto'``, switching JupyterLab to its dark theme recolours the view's sequential map (its low end
    ≥ 3 : 1 from the new background) and switching back restores viridis' own dark purple end. The server's theme
    setting is shared by the session's other tests: it is always set back to light."""
    root = nb.page.locator(root_selector).first
    low = lambda: rgb(root.evaluate(LOW_END))  # noqa: E731
    assert low() == (68, 1, 84)  # light: the whole of viridis
    with lab_dark(nb):
        for _ in range(50):  # the theme's CSS loads, then the view recolours on the next frame
            if luminance(rgb(root.evaluate(RGB))) < 0.05 and low() != (68, 1, 84):
                break
            nb.page.wait_for_timeout(100)
        assert low_end_contrast(nb, root_selector) >= 3
    for _ in range(50):
        if low() == (68, 1, 84):
            break
        nb.page.wait_for_timeout(100)
    assert low() == (68, 1, 84)


def follows_custom_background(nb: Any, root_selector: str) -> None:
    """A page style that darkens JupyterLab's background variable (a custom theme: no theme attribute changes)
    recolours the view's sequential map off the new background too, and removing it restores viridis' purple."""
    root = nb.page.locator(root_selector).first
    low = lambda: rgb(root.evaluate(LOW_END))  # noqa: E731
    assert low() == (68, 1, 84)
    nb.page.evaluate("""() => { const s = document.createElement('style'); s.id = 'nbx-test-custom-theme';
      s.textContent = 'body { --jp-layout-color0: #000000; }'; document.head.appendChild(s); }""")
    try:
        nb.page.wait_for_function(f"() => {{ const r = document.querySelector({root_selector!r});"
                                  f" return ({LOW_END})(r) !== 'rgb(68, 1, 84)'; }}", timeout=5000)
        assert rgb(root.evaluate(RGB)) == (0, 0, 0)
        assert low_end_contrast(nb, root_selector) >= 3
    finally:
        nb.page.evaluate("() => document.getElementById('nbx-test-custom-theme').remove()")
    nb.page.wait_for_function(f"() => {{ const r = document.querySelector({root_selector!r});"
                              f" return ({LOW_END})(r) === 'rgb(68, 1, 84)'; }}", timeout=5000)


def screenshots(nb: Any, name: str, root_selector: str, height: int = 2400) -> list[Path]:
    """``<name>-800`` in an 800 px wide window and ``<name>-1400`` in a 1400 px one (both ``height`` px tall, so
    that the whole view is above JupyterLab's status bar); copied to ``docs/screens`` with
    ``NBEXPLAIN_UPDATE_DOCS=1``. The window is left at 1400 px."""
    nb.page.evaluate("() => document.activeElement && document.activeElement.blur()")
    nb.page.set_viewport_size({"width": 800, "height": height})  # tall: the whole view above JupyterLab's status bar
    nb.page.wait_for_timeout(300)
    shots = [nb.screenshot(f"{name}-800", nb.page.locator(root_selector).first)]
    nb.page.set_viewport_size({"width": 1400, "height": height})
    nb.page.wait_for_timeout(400)
    shots.append(nb.screenshot(f"{name}-1400", nb.page.locator(root_selector).first))
    for shot in shots:
        assert shot.stat().st_size > 5_000, shot
    to_docs(*shots)
    return shots
