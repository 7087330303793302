"""Heatmap in real JupyterLab + Chromium: real MNIST maps, hover readout, click-to-select, screenshot."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from classroom import contrast as _contrast
from classroom import end_contrast, low_end_contrast, to_docs
from classroom import luminance as _luminance
from classroom import rgb as _rgb
from harness import ARTIFACTS, VIEW_LAYOUT, axe_violations

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs"

# One test digit per class 0..7, shown as its difference from the mean training digit (a signed map
# over the digit itself): real data, and both signs, so the diverging colour map is exercised.
CELLS = [
    "import numpy as np\n"
    "from nbexplain.data import mnist\n"
    "from nbexplain.widgets import Heatmap\n"
    "d = mnist()\n"
    "idx = [int((d.y_test == k).nonzero()[0][0]) for k in range(8)]\n"
    "x = d.x_test[idx, 0].numpy()\n"
    "maps = x - d.x_train[:, 0].numpy().mean(axis=0)\n"
    "h = Heatmap(maps, images=d.x_test[idx], titles=[f'digit {k}' for k in range(8)],\n"
    "            label='x − mean digit', cell_size=112, columns=4)\n"
    "h",
]


def expected_maps() -> np.ndarray:
    """The same maps, computed in the test process from the same offline data."""
    from nbexplain.data import mnist

    d = mnist()
    idx = [int((d.y_test == k).nonzero()[0][0]) for k in range(8)]
    x = d.x_test[idx, 0].numpy()
    return (x - d.x_train[:, 0].numpy().mean(axis=0)).astype(np.float32)


def js_format(v: float) -> str:
    """Python twin of the view's ``formatNumber`` (4 significant digits) for |v| in [1e-3, 1e5)."""
    return repr(float(f"{v:.4g}")).removesuffix(".0")


def hover_pixel(nb, cell_index: int, row: int, col: int, h: int, w: int) -> None:
    canvas = nb.view(f".nbx-heatmap .nbx-cell[data-index='{cell_index}'] canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box and box["width"] > 0
    nb.page.mouse.move(box["x"] + (col + 0.5) * box["width"] / w, box["y"] + (row + 0.5) * box["height"] / h)


def test_heatmap_hover_click_select(lab):
    with ThreadPoolExecutor(1) as pool:
        want = pool.submit(expected_maps)  # loads MNIST while the notebook runs
        nb = lab.open_notebook(CELLS, name="heatmap_mnist", device_scale_factor=2)
        maps = want.result()
    with nb:
        n, H, W = maps.shape
        root = nb.view(".nbx-heatmap")
        nb.page.locator(".nbx-heatmap[data-ready='true']").wait_for()
        assert root.get_attribute("data-n") == str(n)
        assert root.get_attribute("data-cmap") == "diverging"
        assert nb.page.locator(".nbx-heatmap .nbx-cell").count() == n
        # the kernel holds exactly the maps computed here
        assert nb.execute("print(h.data.shape, h.source_shape)").strip() == f"({n}, {H}, {W}) [{H}, {W}]"

        nb.reset_comm_count()
        readout = nb.page.locator(".nbx-heatmap .nbx-readout")
        # hover the strongest pixel of one map and a negative pixel of another
        for i, pick in ((2, np.argmax(np.abs(maps[2]))), (5, np.argmin(maps[5]))):
            r, c = divmod(int(pick), W)
            value = float(maps[i, r, c])
            assert abs(value) >= 1e-3
            hover_pixel(nb, i, r, c, H, W)
            nb.page.locator(f".nbx-heatmap[data-hover='{i},{r},{c}']").wait_for(timeout=5000)
            text = readout.inner_text()
            # every number named: the map, the pixel, and the value under the colour bar's caption
            assert text == f"digit {i} · row {r}, col {c} · x − mean digit {js_format(value)}", (text, value)
            # the exact float32 the view used
            assert float(root.get_attribute("data-value")) == value
            # and the kernel agrees on that pixel
            assert float(nb.execute(f"print(repr(float(h.data[{i}, {r}, {c}])))")) == value
        # hovering is client-side only: no message to the kernel
        assert nb.comm_messages_sent() == 0
        nb.screenshot("heatmap-hover", root)

        # click a map -> the Python trait follows
        assert nb.execute("print(h.selected)").strip() == "-1"
        nb.page.locator(".nbx-heatmap .nbx-cell[data-index='3'] canvas").click()
        nb.wait_for_output("print(h.selected)", "3")
        assert root.get_attribute("data-selected") == "3"
        assert "nbx-selected" in (nb.page.locator(".nbx-heatmap .nbx-cell[data-index='3']").get_attribute("class") or "")
        assert nb.comm_messages_sent() >= 1
        assert nb.execute("print(np.array_equal(h.selected_map, maps[3]))").strip() == "True"

        # Python -> view
        nb.execute("h.selected = 6")
        nb.page.locator(".nbx-heatmap[data-selected='6']").wait_for(timeout=5000)
        assert re.search(r"\bnbx-selected\b",
                         nb.page.locator(".nbx-heatmap .nbx-cell[data-index='6']").get_attribute("class") or "")

        # the picture for the README: hover a pixel of the selected map
        r, c = divmod(int(np.argmax(maps[6])), W)
        hover_pixel(nb, 6, r, c, H, W)
        nb.page.locator(f".nbx-heatmap[data-hover='6,{r},{c}']").wait_for(timeout=5000)
        shot = nb.screenshot("heatmap", root)
        assert shot == ARTIFACTS / "heatmap.png" and shot.stat().st_size > 10_000
        to_docs(shot, folder=DOCS)  # the README's picture, refreshed on request only (make test leaves the tree clean)

        assert nb.page_errors == [], nb.page_errors


# A ViT's patch relevance: 4×4 patch maps over 16×16 images, shown at image size with no extra code.
PATCH_CELLS = [
    "import torch\n"
    "from nbexplain.widgets import Heatmap\n"
    "g = torch.Generator().manual_seed(0)\n"
    "images = torch.rand(2, 1, 16, 16, generator=g)\n"
    "patches = torch.randn(2, 4, 4, generator=g)\n"
    "hp = Heatmap(patches, images=images, titles=['patch map 0', 'patch map 1'], cell_size=128)\n"
    "hp",
]


def test_heatmap_shows_a_vit_patch_map_at_image_size(lab):
    nb = lab.open_notebook(PATCH_CELLS, name="heatmap_patches")
    with nb:
        root = nb.view(".nbx-heatmap")
        nb.page.locator(".nbx-heatmap[data-ready='true']").wait_for()
        assert nb.execute("print(hp.maps.shape, hp.source_shape)").strip() == "(2, 16, 16) [16, 16]"
        # pixel (13, 2) of map 1 lies in patch (3, 0): the readout is in image pixels, the value the patch's
        hover_pixel(nb, 1, 13, 2, 16, 16)
        nb.page.locator(".nbx-heatmap[data-hover='1,13,2']").wait_for(timeout=5000)
        want = float(nb.execute("print(repr(float(patches[1, 3, 0])))"))
        assert float(root.get_attribute("data-value")) == pytest.approx(want, rel=1e-6)
        assert "row 13, col 2 · value " in nb.page.locator(".nbx-heatmap .nbx-readout").inner_text()
        assert nb.page_errors == [], nb.page_errors


# Issue 14 items 1 and 3: two inputs of opposite brightness (a bright square on black, a dark square on white)
# under the same all-zero map, with titles too long for one line of the cell.
OUTLINE_CELLS = [
    "import torch\n"
    "from nbexplain.widgets import Heatmap\n"
    "img = torch.zeros(2, 1, 16, 16)\n"
    "img[0, 0, 4:12, 4:12] = 1.0\n"
    "img[1] = 1.0 - img[0]\n"
    "ho = Heatmap(torch.zeros(2, 16, 16), images=img, cmap='diverging', vmin=-1.0, vmax=1.0, cell_size=96,\n"
    "             titles=['label 0 · predicted 7 (p = 0.98)', 'conv1 · channel 12 · mean response'])\n"
    "ho",
]

PIXELS_JS = """([i, pts]) => {
  const c = document.querySelectorAll('.nbx-heatmap .nbx-cell canvas')[i];
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  return pts.map(([x, y]) => Array.from(d.slice(4 * (y * c.width + x), 4 * (y * c.width + x) + 3)));
}"""

TITLE_JS = """(el) => { const s = getComputedStyle(el);
  return { ws: s.whiteSpace, to: s.textOverflow, sw: el.scrollWidth, cw: el.clientWidth, h: el.offsetHeight,
           lh: parseFloat(s.fontSize), text: el.textContent }; }"""


def test_heatmap_default_is_opaque_with_outline_and_titles_wrap(lab):
    nb = lab.open_notebook(OUTLINE_CELLS, name="heatmap_outline")
    with nb:
        root = nb.view(".nbx-heatmap")
        nb.page.locator(".nbx-heatmap[data-ready='true']").wait_for()
        assert root.get_attribute("data-opacity") == "1"
        assert root.get_attribute("data-outline") == "true"
        corner, centre = (5, 5), (48, 48)
        row = [(x, 48) for x in range(16, 33)]  # across the square's left edge (canvas x = 24)
        a = nb.page.evaluate(PIXELS_JS, [0, [corner, centre, *row]])
        b = nb.page.evaluate(PIXELS_JS, [1, [corner, centre, *row]])
        # opacity 1: off the outline, zero has the same colour over black and over white — the colour bar's
        # neutral colour, near white — inside and outside the square
        assert a[0] == b[0] == a[1] == b[1], (a[:2], b[:2])
        assert min(a[0]) > 230, a[0]
        # the input is still visible: a dark outline on the square's edge, in both cells
        for px in (a[2:], b[2:]):
            assert min(sum(p) for p in px) < 3 * 60, px
        # the slider still blends: at 0.5 the two inputs show through differently
        nb.page.evaluate("""() => { const s = document.querySelector('.nbx-heatmap .nbx-opacity');
          s.value = '0.5'; s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); }""")
        nb.page.locator(".nbx-heatmap[data-opacity='0.5']").wait_for(timeout=5000)
        a5 = nb.page.evaluate(PIXELS_JS, [0, [corner]])[0]
        b5 = nb.page.evaluate(PIXELS_JS, [1, [corner]])[0]
        assert sum(b5) - sum(a5) > 3 * 80, (a5, b5)
        nb.wait_for_output("print(ho.opacity)", "0.5")

        # titles wrap inside the cell instead of ending in an ellipsis: the full text shows, nothing overflows
        for i, want in enumerate(["label 0 · predicted 7 (p = 0.98)", "conv1 · channel 12 · mean response"]):
            t = nb.page.locator(f".nbx-heatmap .nbx-cell[data-index='{i}'] .nbx-title").evaluate(TITLE_JS)
            assert t["text"] == want
            assert t["ws"] != "nowrap" and t["to"] != "ellipsis", t
            assert t["sw"] <= t["cw"] + 1, t
            assert t["h"] > 1.8 * t["lh"], t  # it took more than one line
        assert nb.page_errors == [], nb.page_errors


# Issue 14 items 4, 6, 7, 9 and keyboard/axe: five maps of tiny signed values (largest |value| 1.007e-4, which the
# colour bar must not show as its end), long titles, cells 160 px wide in 5 columns: 840 px, wider than the column.
CLASS_CELLS = [
    "import numpy as np\n"
    "from nbexplain.widgets import Heatmap\n"
    "rng = np.random.default_rng(0)\n"
    "tiny = (rng.standard_normal((5, 12, 12)) * 2e-5).astype(np.float32)\n"
    "tiny[0, 0, 0], tiny[1, 0, 0], tiny[2, 0, 0] = 1.007e-4, -0.9e-4, 0.0\n"
    "imgs = rng.random((5, 1, 12, 12))\n"
    "ht = Heatmap(tiny, images=imgs, titles=[f'class {k} · relevance of the predicted label' for k in range(5)],\n"
    "             label='relevance', cell_size=160, columns=5)\n"
    "ht",
]
ROOT = ".nbx-heatmap"
_RGB = "e => getComputedStyle(e).backgroundColor"
_FG = "e => getComputedStyle(e).color"
FOCUS_JS = """e => { const s = getComputedStyle(e);
  return [document.activeElement === e, s.outlineStyle, parseFloat(s.outlineWidth)]; }"""


def _fits(root) -> None:
    layout = root.evaluate(VIEW_LAYOUT)
    assert layout["scroll"] <= layout["client"] + 1 and layout["contentRight"] <= layout["right"] + 1, layout
    assert layout["min"] >= 13 - 0.01, layout


def test_heatmap_fits_800_px_nice_colour_bar_keyboard_scale_and_dark_theme(lab):
    nb = lab.open_notebook(CLASS_CELLS, name="heatmap_classroom", viewport=(800, 1000))
    with nb:
        page = nb.page
        root = nb.view(ROOT)
        page.locator(f"{ROOT}[data-ready='true']").wait_for()
        # fits the column: the maps shrink (not below 7em) and wrap onto more rows, titles wrap, text ≥ 13 px
        _fits(root)
        right = root.bounding_box()["x"] + root.bounding_box()["width"]
        boxes = [page.locator(f"{ROOT} .nbx-cell[data-index='{i}'] canvas").bounding_box() for i in range(5)]
        assert all(b["x"] + b["width"] <= right + 1 and 7 * 13 - 8 <= b["width"] <= 160 for b in boxes), boxes
        assert 1 < len({round(b["y"]) for b in boxes}) <= 5, boxes

        # the colour bar: symmetric nice ends covering the data (1.5e-4, not 1.007e-4), 0 a labelled tick
        bar = page.locator(f"{ROOT} .nbx-footer .nbx-scalebar")
        ticks = [float(v) for v in bar.get_attribute("data-ticks").split(",")]
        assert ticks[0] == -1.5e-4 and ticks[-1] == 1.5e-4 and 0 in ticks, ticks
        # tick labels without e-notation: a shared "× 10⁻⁴" written once beside them
        labels = bar.locator(".nbx-scalebar-tick").all_inner_texts()
        assert labels[0] == "−1.5" and labels[-1] == "1.5" and "0" in labels, labels
        assert bar.locator(".nbx-scalebar-factor").inner_text() == "(× 10⁻⁴)" and bar.get_attribute("data-exponent") == "-4"
        assert "1.007e-4" not in root.inner_text() and not re.search(r"\de[-+]?\d", root.inner_text()), root.inner_text()
        assert bar.locator(".nbx-scalebar-caption").inner_text() == "relevance (× 10⁻⁴)"
        assert "blue negative, white zero, red positive" in bar.locator(".nbx-scalebar-ramp").get_attribute("aria-label")
        # given limits are kept as given
        nb.execute("ht.set_maps(tiny, imgs, vmin=-2e-4, vmax=2e-4, titles=ht.titles)")
        page.locator(f"{ROOT}[data-vmax='0.0002']").wait_for(timeout=5000)
        nb.execute("ht.set_maps(tiny, imgs, titles=ht.titles)")
        page.locator(f"{ROOT}[data-vmax='0.00015']").wait_for(timeout=5000)

        # hover: the readout names the map, the pixel and the value by the colour bar's caption
        box = boxes[0]
        page.mouse.move(box["x"] + 0.5 * box["width"] / 12, box["y"] + 0.5 * box["height"] / 12)
        page.locator(f"{ROOT}[data-hover='0,0,0']").wait_for(timeout=5000)
        text = page.locator(f"{ROOT} .nbx-readout").inner_text()
        assert text == "class 0 · relevance of the predicted label · row 0, col 0 · relevance 0.0001007", text
        page.mouse.move(0, 0)
        nb.screenshot("heatmap-800", root)
        assert axe_violations(page, ROOT) == []

        # keyboard: Tab moves between maps with a visible focus ring, Enter and Space select (aria-pressed)
        page.locator(f"{ROOT} .nbx-cell[data-index='0']").focus()
        page.keyboard.press("Tab")
        cell1 = page.locator(f"{ROOT} .nbx-cell[data-index='1']")
        focus = cell1.evaluate(FOCUS_JS)
        assert focus[0] and focus[1] != "none" and focus[2] >= 2, focus
        assert cell1.get_attribute("aria-label").startswith("class 1 · relevance of the predicted label: relevance 2 of 5")
        page.keyboard.press("Enter")
        nb.wait_for_output("print(ht.selected)", "1")
        assert cell1.get_attribute("aria-pressed") == "true"
        page.keyboard.press("Tab")
        page.keyboard.press(" ")
        nb.wait_for_output("print(ht.selected)", "2")
        assert cell1.get_attribute("aria-pressed") == "false"
        # the opacity slider moves with the arrow keys and the kernel follows
        slider = page.locator(f"{ROOT} input.nbx-opacity")
        slider.focus()
        page.keyboard.press("ArrowLeft")
        page.locator(f"{ROOT}[data-opacity='0.99']").wait_for(timeout=5000)
        assert slider.evaluate(FOCUS_JS)[2] >= 2
        nb.wait_for_output("print(ht.opacity)", "0.99")
        page.keyboard.press("End")
        page.locator(f"{ROOT}[data-opacity='1']").wait_for(timeout=5000)

        # presentation scale: titles 1.5× larger, maps no smaller, still inside the column
        title = page.locator(f"{ROOT} .nbx-cell[data-index='0'] .nbx-title")
        size = lambda: float(title.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))  # noqa: E731
        before = size()
        nb.execute("ht.scale = 1.5")
        page.locator(f"{ROOT}[data-scale='1.5']").wait_for(timeout=5000)
        assert size() == pytest.approx(1.5 * before) and before >= 13
        _fits(root)
        nb.execute("ht.scale = 1.0")
        page.locator(f"{ROOT}[data-scale='1']").wait_for(timeout=5000)

        # dark theme: dark background, readable titles and ticks, the white zero distinct from the background
        nb.execute("ht.theme = 'dark'")
        page.locator(f"{ROOT}[data-theme='dark']").wait_for(timeout=5000)
        bg = _rgb(root.evaluate(_RGB))
        assert _luminance(bg) < 0.05, bg
        for css in (".nbx-title", ".nbx-scalebar-tick", ".nbx-scalebar-caption", ".nbx-readout", ".nbx-control"):
            fg = _rgb(page.locator(f"{ROOT} {css}").first.evaluate(_FG))
            assert _contrast(fg, bg) >= 4.5, (css, fg, bg)
        # map 2's pixel (0, 0) is exactly 0: the lightest canvas pixel of its block (off the input's outline)
        zero = nb.page.evaluate("""() => { const c = document.querySelector('.nbx-heatmap .nbx-cell[data-index="2"] canvas');
          const n = Math.floor(c.width / 12) - 1;
          const d = c.getContext('2d').getImageData(0, 0, n, n).data;
          let best = [0, 0, 0];
          for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > best[0] + best[1] + best[2])
            best = [d[i], d[i + 1], d[i + 2]];
          return best; }""")
        assert tuple(zero) == (247, 247, 247), zero
        assert _contrast(tuple(zero), bg) > 3, (zero, bg)
        assert end_contrast(nb, ROOT) >= 3  # and the strongest values are not the page's colour either
        nb.screenshot("heatmap-dark", root)
        assert axe_violations(page, ROOT) == []
        # an unsigned map in the dark theme: its zero (viridis' low end) stays distinct from the background
        nb.execute("ht.cmap = 'sequential'")
        page.locator(f"{ROOT}[data-cmap='sequential']").wait_for(timeout=5000)
        assert low_end_contrast(nb, ROOT) >= 3
        nb.execute("ht.cmap = 'diverging'")
        page.locator(f"{ROOT}[data-cmap='diverging']").wait_for(timeout=5000)
        nb.execute("ht.theme = 'auto'")
        page.locator(f"{ROOT}[data-theme='auto']").wait_for(timeout=5000)

        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.wait_for_timeout(300)
        _fits(root)
        # wide enough for the five columns asked for (5 × 168 px + gaps): one row of 160 px maps
        if root.evaluate("e => e.clientWidth") >= 5 * 168 + 4 * 8 + 12:
            boxes = [page.locator(f"{ROOT} .nbx-cell[data-index='{i}'] canvas").bounding_box() for i in range(5)]
            assert len({round(b["y"]) for b in boxes}) == 1 and all(abs(b["width"] - 160) < 1 for b in boxes), boxes
        wide = nb.screenshot("heatmap-1400", root)
        to_docs(ARTIFACTS / "heatmap-800.png", wide)
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors
