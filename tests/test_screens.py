"""docs/screens holds the classroom screenshots of every view (issue 14: "a screenshot of each lesson's main view
at 800 px and at 1400 px is in docs/"): ``<view>-800.png`` and ``<view>-1400.png``, written by the views' browser
tests (``tests/browser/classroom.py: screenshots``) and copied there with ``NBEXPLAIN_UPDATE_DOCS=1``."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENS = ROOT / "docs" / "screens"


def _views() -> list[str]:
    """Every anywidget view (a ``js/<name>.ts`` with a default export), kebab-case, plus the bqplot dashboard."""
    names = [p.stem.replace("_", "-") for p in sorted((ROOT / "js").glob("*.ts"))
             if re.search(r"^export default\b", p.read_text(encoding="utf-8"), re.M)]
    return [*names, "saturation-dashboard"]


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_the_views_are_found():
    views = _views()
    assert {"heatmap", "token-heatmap", "relevance-flow", "saturation-dashboard"} <= set(views), views


@pytest.mark.parametrize("view", _views())
def test_every_view_has_its_800_and_1400_px_screenshots(view: str):
    for width in (800, 1400):
        shot = SCREENS / f"{view}-{width}.png"
        assert shot.is_file(), f"{shot.relative_to(ROOT)} is missing: run tests/browser/test_{view.replace('-', '_')}.py " \
                               "with NBEXPLAIN_UPDATE_DOCS=1"
        w, _ = _png_size(shot)
        assert 100 < w <= width, (shot.name, w)  # the view's own box, inside its window


def test_the_index_links_every_pair():
    """docs/screens/README.md (lesson → view → pictures) names every picture, and only pictures that exist."""
    index = (SCREENS / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\(([a-z-]+-(?:800|1400)\.png)\)", index))
    assert linked == {f"{v}-{w}.png" for v in _views() for w in (800, 1400)}, linked
