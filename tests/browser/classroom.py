"""Classroom checks (issue 14) shared by the browser tests of SimilarityGrid, AlignedDirections, RelevanceFlow and
ClassSensitivity: fits an 800 px column (also at ``scale = 1.5``), text ≥ 13 px, a visible focus ring, dark-theme
contrast, axe-core, and the 800 / 1400 px screenshots for the docs."""

from __future__ import annotations

import os
import shutil
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


def dark_theme(nb: Any, root_selector: str, var: str, text: str) -> tuple[float, ...]:
    """``theme='dark'``: a dark background, the ``text`` element readable on it (≥ 4.5 : 1), no axe violation."""
    nb.execute(f"{var}.theme = 'dark'")
    nb.page.locator(f"{root_selector}[data-theme='dark']").wait_for(timeout=5000)
    root = nb.page.locator(root_selector).first
    bg = rgb(root.evaluate(RGB))
    assert luminance(bg) < 0.05, bg
    fg = rgb(nb.page.locator(text).first.evaluate(COLOR))
    assert contrast(fg, bg) >= 4.5, (fg, bg)
    assert axe_violations(nb.page, root_selector) == []
    return bg


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
    if os.environ.get("NBEXPLAIN_UPDATE_DOCS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copyfile(shot, DOCS / shot.name)
    return shots
