"""Heatmap in real JupyterLab + Chromium: real MNIST maps, hover readout, click-to-select, screenshot."""

from __future__ import annotations

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from harness import ARTIFACTS

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
    """Python twin of the view's ``formatValue`` (4 significant digits) for |v| in [1e-3, 1e5)."""
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
            assert f"digit {i}" in text and f"row {r}, col {c}:" in text, text
            shown = text.rsplit(":", 1)[1].strip()
            assert shown == js_format(value), (text, value)
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
        if os.environ.get("NBEXPLAIN_UPDATE_DOCS") == "1":  # refresh the README's screenshot on request only,
            DOCS.mkdir(exist_ok=True)  # so that `make test` leaves the working tree clean
            shutil.copyfile(shot, DOCS / "heatmap.png")

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
        assert "row 13, col 2:" in nb.page.locator(".nbx-heatmap .nbx-readout").inner_text()
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
