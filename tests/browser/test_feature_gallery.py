"""FeatureGallery in real JupyterLab + Chromium: images render, a click shows the top examples from
precomputed state, and a re-run request from the controls reaches Python (latest request wins)."""

from __future__ import annotations

import pytest

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
        assert page.locator(".nbx-feature-gallery .nbx-percentile").first.inner_text().startswith(("p", "no data"))

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
