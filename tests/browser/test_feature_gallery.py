"""FeatureGallery in real JupyterLab + Chromium: images render, a click shows the top examples from
precomputed state, and a re-run request from the controls reaches Python (latest request wins)."""

from __future__ import annotations

import re

import pytest
from classroom import fits_column, low_end_contrast, to_docs
from harness import VIEW_LAYOUT, axe_violations

pytestmark = pytest.mark.browser

CELLS = [
    "import torch\n"
    "from nbexplain import zoo\n"
    "from nbexplain.data import mnist\n"
    "from nbexplain.widgets import FeatureGallery\n"
    "d = mnist()\n"
    "net = zoo.cnn(width=8)\n"
    "g = FeatureGallery(net, d.x_test[:200], 'conv2', [0, 1, 2, 3, 4, 5], steps=16, k=5,\n"
    "                   value_range=(0, 1), progress=False)\n"
    "g",
]


def test_feature_gallery_renders_clicks_and_reruns(lab):
    nb = lab.open_notebook(CELLS, name="feature_gallery")
    with nb:
        page = nb.page
        root = nb.view(".nbx-feature-gallery")
        page.locator(".nbx-feature-gallery[data-ready='true']").wait_for()
        assert root.get_attribute("data-n") == "6"
        assert page.locator(".nbx-feature-gallery .nbx-cell").count() == 6
        # the images are drawn: the first unit's canvas holds the kernel's pixels (not blank)
        drawn = page.evaluate(
            """() => {
              const c = document.querySelector('.nbx-feature-gallery .nbx-cell[data-index="0"] canvas.nbx-canvas');
              const ctx = c.getContext('2d');
              const d = ctx.getImageData(0, 0, c.width, c.height).data;
              let lo = 255, hi = 0;
              for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
              return [c.width, c.height, lo, hi];
            }"""
        )
        assert drawn[0] > 0 and drawn[1] > 0
        expected = nb.execute("print(int(g.images[0].min()), int(g.images[0].max()))").split()
        lo, hi = int(expected[0]), int(expected[1])
        assert hi > lo and abs(drawn[2] - lo) <= 2 and abs(drawn[3] - hi) <= 2, (drawn, lo, hi)
        assert page.locator(".nbx-feature-gallery .nbx-percentile").first.inner_text().startswith("percentile")

        # click a unit: its top examples appear at once from precomputed state
        assert root.get_attribute("data-top-shown") == "0"
        page.locator(".nbx-feature-gallery .nbx-cell[data-index='2']").click()
        page.locator(".nbx-feature-gallery[data-top-shown='5']").wait_for(timeout=5000)
        assert page.locator(".nbx-feature-gallery .nbx-top").count() == 5
        shown = [int(page.locator(".nbx-feature-gallery .nbx-top").nth(j).get_attribute("data-example"))
                 for j in range(5)]
        assert nb.execute("print(g.top.indices[2].tolist())").strip() == str(shown)
        nb.wait_for_output("print(g.selected)", "2")
        nb.screenshot("feature-gallery", root)

        # a re-run request from the controls reaches Python and the view updates
        runs = int(nb.execute("print(g.runs)"))
        page.locator(".nbx-feature-gallery select.nbx-param").select_option("pixel")
        page.locator(".nbx-feature-gallery select.nbx-steps").select_option("32")  # arrives while busy: latest wins
        nb.wait_for_output("print(g.runs, g.param, g.steps, g.busy)", lambda out: out.split()[1:] == ["pixel", "32", "False"],
                           timeout=30)
        page.locator(".nbx-feature-gallery[data-busy='false'][data-param='pixel'][data-steps='32']").wait_for(timeout=10000)
        final_runs = int(nb.execute("print(g.runs)"))
        assert runs + 1 <= final_runs <= runs + 2
        assert nb.execute("print(g.result.settings['param'], g.result.settings['steps'])").strip() == "pixel 32"
        assert root.get_attribute("data-completed") == root.get_attribute("data-requested")
        assert nb.page_errors == [], nb.page_errors  # the harness already drops the known harmless one


# Issue 14 item 1: long unit titles wrap inside their cell instead of ending in an ellipsis.
TITLE_CELLS = [
    "import torch\n"
    "from nbexplain import zoo\n"
    "from nbexplain.widgets import FeatureGallery\n"
    "net = zoo.cnn(width=4)\n"
    "gt = FeatureGallery(net, torch.rand(20, 1, 28, 28), 'conv1', [0, 1], steps=4, k=2, value_range=(0, 1),\n"
    "                    titles=['conv1 · channel 0 · stroke detector', 'conv1 · channel 1 · blob detector'],\n"
    "                    progress=False)\n"
    "gt",
]


def test_feature_gallery_titles_wrap(lab):
    nb = lab.open_notebook(TITLE_CELLS, name="feature_gallery_titles")
    with nb:
        page = nb.page
        page.locator(".nbx-feature-gallery[data-ready='true']").wait_for()
        for i, want in enumerate(["conv1 · channel 0 · stroke detector", "conv1 · channel 1 · blob detector"]):
            t = page.locator(f".nbx-feature-gallery .nbx-cell[data-index='{i}'] .nbx-title").evaluate(
                """(el) => { const s = getComputedStyle(el);
                  return { ws: s.whiteSpace, to: s.textOverflow, sw: el.scrollWidth, cw: el.clientWidth,
                           h: el.offsetHeight, fs: parseFloat(s.fontSize), text: el.textContent }; }""")
            assert t["text"] == want
            assert t["ws"] != "nowrap" and t["to"] != "ellipsis", t
            assert t["sw"] <= t["cw"] + 1, t
            assert t["h"] > 1.8 * t["fs"], t  # it took more than one line
        assert nb.page_errors == [], nb.page_errors


# Issue 14 (classroom): an 800 px column, words instead of codes, opaque maps with a true colour bar, keyboard,
# projector scale, dark theme, screenshots for the docs.
ROOT = ".nbx-feature-gallery"


def _short(v: float) -> str:
    """Python twin of the view's formatTick: 3 significant digits, true minus sign."""
    text = repr(float(f"{v:.3g}")).removesuffix(".0")
    return text.replace("-", "−")


def test_feature_gallery_in_a_classroom(lab):
    nb = lab.open_notebook(CELLS, name="feature_gallery_classroom", viewport=(800, 1000))
    with nb:
        page = nb.page
        root = nb.view(ROOT)
        page.locator(f"{ROOT}[data-ready='true']").wait_for()

        # words a student reads: "percentile 100", "final objective 3.21"
        pcts = nb.execute("print(*g.percentiles)").split()
        for i, p in enumerate(pcts):
            text = page.locator(f"{ROOT} .nbx-cell[data-index='{i}'] .nbx-percentile").inner_text()
            want = "100" if float(p) >= 99.95 else repr(round(float(p), 1)).removesuffix(".0")
            assert text == f"percentile {want}", (text, p)
        finals = [float(v) for v in nb.execute("print(*g.finals)").split()]
        assert page.locator(f"{ROOT} .nbx-objective").all_inner_texts() == [f"final objective {_short(v)}" for v in finals]
        assert "percentile = the share (%) of the real examples" in root.locator(".nbx-legend").inner_text()

        # keyboard: Tab onto a unit (visible focus ring), Enter selects it in Python
        page.locator(f"{ROOT} .nbx-cell[data-index='0']").focus()
        page.keyboard.press("Tab")
        cell = page.locator(f"{ROOT} .nbx-cell[data-index='1']")
        ring = cell.evaluate("e => [document.activeElement === e, getComputedStyle(e).outlineStyle,"
                             " parseFloat(getComputedStyle(e).outlineWidth)]")
        assert ring[0] and ring[1] != "none" and ring[2] >= 2, ring
        page.keyboard.press("Enter")
        nb.wait_for_output("print(g.selected)", "1")
        page.locator(f"{ROOT}[data-top-shown='5']").wait_for(timeout=5000)
        assert cell.get_attribute("aria-pressed") == "true"

        # the top examples: "sample #230 · activation 0.506", maps opaque by default, a colour bar that covers them
        idx = nb.execute("print(*g.top.indices[1].tolist())").split()
        vals = [float(v) for v in nb.execute("print(*g.top.values[1].tolist())").split()]
        assert page.locator(f"{ROOT} .nbx-top-value").all_inner_texts() == [
            f"sample #{i} · activation {_short(v)}" for i, v in zip(idx, vals, strict=True)]
        assert root.locator("input.nbx-opacity").input_value() == "1"
        bar = root.locator(".nbx-detail .nbx-scalebar")
        lo, hi = (float(v) for v in nb.execute("m = g.top_maps[5:10]; print(m.min(), m.max())").split())
        vmin, vmax = float(bar.get_attribute("data-vmin")), float(bar.get_attribute("data-vmax"))
        ticks = [float(t) for t in bar.get_attribute("data-ticks").split(",")]
        assert bar.get_attribute("data-kind") == ("diverging" if lo < 0 else "sequential")
        assert vmin <= min(lo, 0.0) and hi <= vmax <= 2 * hi and 0.0 in ticks and ticks[-1] == vmax, (lo, hi, vmin, vmax, ticks)
        # opaque: the map hides the example (only its outline shows); at opacity 0 the example shows through
        pixels = "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; " \
                 "let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + 2 * d[i + 1] + 3 * d[i + 2]; return s; }"
        canvas = root.locator("canvas.nbx-top-canvas").first
        opaque = canvas.evaluate(pixels)
        root.locator("input.nbx-opacity").fill("0")
        assert canvas.evaluate(pixels) != opaque
        root.locator("input.nbx-opacity").fill("1")
        assert canvas.evaluate(pixels) == opaque

        # fits the column, labels >= 13 px, accessible
        fits_column(root)
        assert axe_violations(page, ROOT) == []
        page.set_viewport_size({"width": 800, "height": 2000})
        page.wait_for_timeout(300)
        shot = nb.screenshot("feature-gallery-800", root)

        # projector scale: bigger text and images, still inside the column
        size = lambda: float(root.locator(".nbx-percentile").first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))  # noqa: E731
        width = lambda: float(root.locator(".nbx-cell canvas.nbx-canvas").first.evaluate("e => e.getBoundingClientRect().width"))  # noqa: E731
        before, wide = size(), width()
        nb.execute("g.scale = 1.5")
        page.locator(f"{ROOT}[data-scale='1.5']").wait_for(timeout=5000)
        assert size() == pytest.approx(1.5 * before) and width() == pytest.approx(1.5 * wide, abs=1.5)
        layout = root.evaluate(VIEW_LAYOUT)
        assert layout["scroll"] <= layout["client"] + 1 and layout["contentRight"] <= layout["right"] + 1, layout
        nb.screenshot("feature-gallery-scaled", root)
        # a fixed column count asks for more than fits: the view takes fewer columns instead of overflowing
        nb.execute("g.columns = 6")
        page.wait_for_function("() => document.querySelector('.nbx-feature-gallery .nbx-grid').style.display === 'grid'")
        layout = root.evaluate(VIEW_LAYOUT)
        assert layout["scroll"] <= layout["client"] + 1 and layout["contentRight"] <= layout["right"] + 1, layout
        nb.execute("g.columns = 0")
        nb.execute("g.scale = 1.0")

        # dark theme: accessible too
        nb.execute("g.theme = 'dark'")
        page.locator(f"{ROOT}[data-theme='dark']").wait_for(timeout=5000)
        assert axe_violations(page, ROOT) == []
        # unsigned activation maps (here conv2's, made non-negative as after a ReLU) are drawn on viridis: their
        # zero is not the dark page's colour
        nb.execute("import numpy as np; g.top_maps = np.abs(g.top_maps)")
        page.locator(f"{ROOT} .nbx-scalebar[data-kind='sequential']").wait_for(timeout=5000)
        assert low_end_contrast(nb, ROOT) >= 3
        nb.execute("g.theme = 'auto'")

        page.set_viewport_size({"width": 1400, "height": 1400})
        page.wait_for_timeout(300)
        layout = root.evaluate(VIEW_LAYOUT)
        assert layout["scroll"] <= layout["client"] + 1 and layout["contentRight"] <= layout["right"] + 1, layout
        big = nb.screenshot("feature-gallery-1400", root)
        to_docs(shot, big)
        assert re.fullmatch(r"\d+", root.get_attribute("data-completed"))
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors
