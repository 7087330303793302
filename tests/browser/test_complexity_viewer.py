"""ComplexityViewer in real JupyterLab + Chromium: renders; the order slider swaps precomputed
reconstructions with no kernel message; clicking an order selects its component and reaches Python."""

from __future__ import annotations

import pytest

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
