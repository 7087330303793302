"""ComplexityViewer in real JupyterLab + Chromium: renders; the order slider swaps precomputed
reconstructions with no kernel message; clicking an order selects its component and reaches Python."""

from __future__ import annotations

import pytest
from classroom import end_contrast, to_docs
from harness import VIEW_LAYOUT, axe_violations

pytestmark = pytest.mark.browser

CELLS = [
    "import torch, nbexplain as nx\n"
    "from collections import OrderedDict\n"
    "from torch import nn\n"
    "from nbexplain.widgets import ComplexityViewer\n"
    "torch.set_num_threads(1)\n"
    "torch.manual_seed(0)\n"
    "net = nn.Sequential(OrderedDict([('conv1', nn.Conv2d(1, 4, 3, padding=1)), ('relu1', nn.ReLU()),\n"
    "    ('pool', nn.MaxPool2d(2)), ('conv2', nn.Conv2d(4, 8, 3, padding=1)), ('relu2', nn.ReLU()),\n"
    "    ('flatten', nn.Flatten()), ('out', nn.Linear(8 * 4 * 4, 3))]))\n"
    "x, y = torch.rand(160, 1, 8, 8), torch.randint(0, 3, (160,))\n"
    "res = nx.decompose_complexity(net, (x[:120], y[:120]), (x[120:], y[120:]), 'conv2', orders=(0, 1, 2),\n"
    "    epochs=2, width=8, progress=False, reference_epochs=1)\n"
    "cv = ComplexityViewer(res, x[:4], order=0)\n"
    "cv",
]

# Sum of the red channel over every reconstruction canvas (what the user sees).
PIXELS = """root => Array.from(root.querySelectorAll('canvas.nbx-recon')).map(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + 3 * d[i + 2]; return s; })"""


def test_order_slider_is_local_and_click_selects_an_order(lab):
    nb = lab.open_notebook(CELLS, name="complexity_viewer")
    with nb:
        root = nb.view(".nbx-complexity-viewer")
        nb.page.locator(".nbx-complexity-viewer[data-ready='true']").wait_for()
        assert root.get_attribute("data-kind") == "images"
        assert root.get_attribute("data-orders") == "0,1,2"
        assert root.get_attribute("data-order") == "0"
        assert nb.page.locator(".nbx-complexity-viewer canvas.nbx-recon").count() == 4
        assert nb.page.locator(".nbx-complexity-viewer canvas.nbx-component").count() == 12
        # four metric charts, one bar per order
        for metric in ("energy", "reliability", "effectiveness", "overfitting"):
            bars = nb.page.locator(f".nbx-complexity-viewer [data-metric='{metric}'] rect.nbx-bar")
            assert bars.count() == 3, metric
        energy = [float(nb.page.locator(".nbx-complexity-viewer [data-metric='energy'] rect.nbx-bar")
                        .nth(i).get_attribute("data-value")) for i in range(3)]
        expected = [float(v) for v in nb.execute("print(*res.energy.tolist())").split()]
        assert energy == pytest.approx(expected, rel=1e-5)

        nb.reset_comm_count()
        slider = nb.page.locator(".nbx-complexity-viewer input.nbx-order-slider")
        before = root.evaluate(PIXELS)
        slider.fill("2")
        assert root.get_attribute("data-order") == "2"
        after = root.evaluate(PIXELS)
        assert before != after
        slider.fill("0")
        assert root.get_attribute("data-order") == "0" and root.evaluate(PIXELS) == before
        # the channel picker is local too
        nb.page.locator(".nbx-complexity-viewer select.nbx-channel").select_option("1")
        assert root.get_attribute("data-channel") == nb.execute("print(cv.channels[1])").strip()
        assert nb.comm_messages_sent() == 0  # nothing went to the kernel
        nb.screenshot("complexity_viewer", root)

        # clicking an order shows its component for every sample and tells Python
        sel_before = root.evaluate(PIXELS.replace("nbx-recon", "nbx-selected-component"))
        nb.page.locator(".nbx-complexity-viewer [data-metric='energy'] rect.nbx-bar-hit").nth(2).click()
        assert root.get_attribute("data-selected-order") == "2"
        assert root.evaluate(PIXELS.replace("nbx-recon", "nbx-selected-component")) != sel_before
        nb.wait_for_output("print(cv.selected_order)", "2")
        assert nb.comm_messages_sent() >= 1
        assert nb.page_errors == [], nb.page_errors


# Issue 14 (classroom): two viewers meant to be compared, in an 800 px column.
ROOT = ".nbx-complexity-viewer"
PAIR_CELLS = [
    CELLS[0].removesuffix("cv")
    + "torch.manual_seed(1)\n"
    "net2 = nn.Sequential(OrderedDict([('conv1', nn.Conv2d(1, 4, 3, padding=1)), ('relu1', nn.ReLU()),\n"
    "    ('pool', nn.MaxPool2d(2)), ('conv2', nn.Conv2d(4, 8, 3, padding=1)), ('relu2', nn.ReLU()),\n"
    "    ('flatten', nn.Flatten()), ('out', nn.Linear(8 * 4 * 4, 3))]))\n"
    "res2 = nx.decompose_complexity(net2, (x[:120], y[:120]), (x[120:], y[120:]), 'conv2', orders=(0, 1, 2),\n"
    "    epochs=2, width=8, progress=False, reference_epochs=1, seed=1)\n"
    "cv.titles = ['digit a', 'digit b', 'digit c', 'digit d']\n"
    "cv",
    "cv2 = ComplexityViewer(res2, x[:4], share_scales_with=cv)\n"
    "cv2",
]

BAR = f"{ROOT} .nbx-footer .nbx-scalebar"


def _bar(locator) -> dict:
    return locator.evaluate(
        "e => ({vmin: +e.dataset.vmin, vmax: +e.dataset.vmax, ticks: e.dataset.ticks.split(',').map(Number),"
        " labels: Array.from(e.querySelectorAll('.nbx-scalebar-tick')).map(t => t.textContent),"
        " order: e.dataset.order, role: e.dataset.role})")


def test_complexity_viewer_in_a_classroom(lab):
    nb = lab.open_notebook(PAIR_CELLS, name="complexity_viewer_pair", viewport=(800, 1000))
    with nb:
        page = nb.page
        page.locator(f"{ROOT}[data-ready='true']").nth(1).wait_for()
        root, root2 = nb.view(ROOT, 0), nb.view(ROOT, 1)

        # fits the 800 px column: the table reflows (two blocks), nothing sideways, every label >= 13 px
        for r in (root, root2):
            layout = r.evaluate(VIEW_LAYOUT)
            assert layout["scroll"] <= layout["client"] + 1 and layout["contentRight"] <= layout["right"] + 1, layout
            assert layout["right"] <= 800 and layout["min"] >= 13 - 0.01, layout

        # every chart has a y axis at nice values including 0, labelled ticks and an x title
        for metric in ("energy", "reliability", "effectiveness", "overfitting"):
            svg = page.locator(f"{ROOT} [data-metric='{metric}'] svg.nbx-chart").first
            ticks = [float(t) for t in svg.get_attribute("data-ticks").split(",")]
            assert 0.0 in ticks and len(ticks) >= 2, (metric, ticks)
            labels = svg.locator("text.nbx-ytick").evaluate_all("es => es.map(e => e.textContent)")
            assert [float(t.replace("−", "-")) for t in labels] == pytest.approx(ticks), (metric, labels)
            assert svg.locator("text.nbx-xtitle").text_content() == "order"
            vals = [float(b.get_attribute("data-value")) for b in svg.locator("rect.nbx-bar").all()]
            assert min(ticks) <= min(vals + [0.0]) and max(ticks) >= max(vals + [0.0]), (metric, ticks, vals)

        # the colour bars describe what is drawn: feature and components, each at nice ends covering the data
        ch = int(nb.execute("print(cv.channel_index)"))
        fmax = float(nb.execute(f"print(max(abs(cv.feature[:, {ch}]).max(), abs(cv.recon[:, :, {ch}]).max()))"))
        bars = page.locator(BAR)
        assert bars.count() == 4  # two per viewer
        fbar, cbar = _bar(root.locator(".nbx-footer .nbx-scalebar").nth(0)), _bar(root.locator(".nbx-footer .nbx-scalebar").nth(1))
        assert fbar["role"] == "feature" and cbar["role"] == "components"
        assert fbar["vmin"] == -fbar["vmax"] and 0.0 in fbar["ticks"] and "0" in fbar["labels"]

        # the two viewers share one scale: same colour limits and the same chart axes
        shared = nb.execute("print(cv.feature_limit, cv2.feature_limit, cv.component_limit, cv2.component_limit)").split()
        assert shared[0] == shared[1] and shared[2] == shared[3]
        assert float(shared[0]) >= fmax * (1 - 1e-6)
        fbar2 = _bar(root2.locator(".nbx-footer .nbx-scalebar").nth(0))
        assert fbar2["vmax"] == fbar["vmax"] and float(shared[0]) <= fbar["vmax"] <= 4 / 3 * float(shared[0])
        assert _bar(root2.locator(".nbx-footer .nbx-scalebar").nth(1))["vmax"] == cbar["vmax"]
        for metric in ("energy", "reliability", "effectiveness", "overfitting"):
            t1, t2 = (r.locator(f"[data-metric='{metric}'] svg.nbx-chart").get_attribute("data-ticks") for r in (root, root2))
            assert t1 == t2, (metric, t1, t2)
        assert float(root.locator("canvas.nbx-recon").first.get_attribute("data-vmax")) == fbar["vmax"]

        # scale each order separately: one bar per order, each matching its order's drawn maps (no stale bar)
        root.locator("input.nbx-normalize").check()
        order_bars = root.locator(".nbx-footer .nbx-scalebar[data-order]")
        assert order_bars.count() == 3 and root.locator(".nbx-footer .nbx-scalebar").count() == 4
        for o in range(3):
            b = _bar(order_bars.nth(o))
            m = float(nb.execute(f"print(abs(cv.components[{o}, :, {ch}]).max())"))
            assert m <= b["vmax"] * (1 + 1e-6) and b["vmax"] <= 4 / 3 * m + 1e-12, (o, m, b)
            drawn = root.locator(f"canvas.nbx-component[data-index='{o}']").first.get_attribute("data-vmax")
            assert float(drawn) == b["vmax"], (o, drawn, b)
        root.locator("input.nbx-normalize").uncheck()
        assert root.locator(".nbx-footer .nbx-scalebar").count() == 2

        # keyboard: Tab reaches the order headings (visible focus ring); Enter and Space select an order
        root.locator(".nbx-order-head[data-index='0']").focus()
        page.keyboard.press("Tab")
        head = root.locator(".nbx-order-head[data-index='1']")
        ring = head.evaluate("e => [document.activeElement === e, getComputedStyle(e).outlineStyle,"
                             " parseFloat(getComputedStyle(e).outlineWidth)]")
        assert ring[0] and ring[1] != "none" and ring[2] >= 2, ring
        page.keyboard.press("Enter")
        nb.wait_for_output("print(cv.selected_order)", "1")
        page.keyboard.press("Shift+Tab")
        page.keyboard.press(" ")
        nb.wait_for_output("print(cv.selected_order)", "0")
        slider = root.locator("input.nbx-order-slider")
        slider.focus()
        page.keyboard.press("ArrowRight")
        assert root.get_attribute("data-order") == "1"  # (JupyterLab binds ArrowRight in command mode)
        assert axe_violations(page, ROOT) == []
        page.set_viewport_size({"width": 800, "height": 2600})  # tall enough for the whole view in the picture
        page.wait_for_timeout(300)
        shot = nb.screenshot("complexity-viewer-800", root)

        # projector scale: larger text, still inside the column
        size = lambda: float(root.locator(".nbx-cv-rowtitle").first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))  # noqa: E731
        before = size()
        nb.execute("cv.scale = 1.5")
        page.locator(f"{ROOT}[data-scale='1.5']").wait_for(timeout=5000)
        assert size() == pytest.approx(1.5 * before)
        layout = root.evaluate(VIEW_LAYOUT)
        assert layout["scroll"] <= layout["client"] + 1 and layout["contentRight"] <= layout["right"] + 1, (layout["widest"], layout["contentRight"], layout["right"], root.evaluate(
            "r => { const out = []; for (let e = r; e && out.length < 8; e = e.parentElement) out.push([e.className, e.getBoundingClientRect().width, getComputedStyle(e).display]); return out; }"))
        assert layout["min"] >= 1.5 * 13 - 0.01, layout
        nb.screenshot("complexity-viewer-scaled", root)
        nb.execute("cv.scale = 1.0")

        # dark theme: accessible, labels readable
        nb.execute("cv.theme = 'dark'")
        page.locator(f"{ROOT}[data-theme='dark']").first.wait_for(timeout=5000)
        assert axe_violations(page, ROOT) == []
        # the strongest components (RdBu's ends) are not drawn in the dark page's own colour
        page.wait_for_timeout(200)
        assert end_contrast(nb, ROOT) >= 3
        nb.execute("cv.theme = 'auto'")

        # 1400 px: the whole table shows (it clipped its last column before)
        page.set_viewport_size({"width": 1400, "height": 1600})
        page.wait_for_timeout(300)
        layout = root.evaluate(VIEW_LAYOUT)
        assert layout["scroll"] <= layout["client"] + 1 and layout["contentRight"] <= layout["right"] + 1, layout
        wide = nb.screenshot("complexity-viewer-1400", root)
        to_docs(shot, wide)
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors
