"""SaturationDashboard in real JupyterLab + Chromium: one line per layer, growing after each epoch."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

CELLS = [
    "import torch, nbexplain as nx\n"
    "from nbexplain.zoo import mlp\n"
    "from nbexplain.widgets import SaturationDashboard\n"
    "net = mlp(20, (16, 12, 8), seed=0)\n"
    "tracker = nx.SaturationTracker(net).start()\n"
    "dash = SaturationDashboard(tracker)\n"
    "def epoch(n=200):\n"
    "    with torch.no_grad():\n"
    "        net(torch.randn(n, 20))\n"
    "    return tracker.end_epoch()\n"
    "_ = epoch(); _ = epoch()\n"
    "dash",
]

# Points of each solid (train) line in the epochs figure: bqplot draws one <path class="line" id="curveN">
# per layer; legend swatches have no id and eval lines are dashed.
TRAIN_LINES = """f => Array.from(f.querySelectorAll('path.line[id^="curve"]'))
  .filter(p => (p.getAttribute('style') || '').includes('dasharray: none'))
  .map(p => (p.getAttribute('d') || '').split(/[ML]/).filter(s => s.trim()).length)"""


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dashboard_draws_one_line_per_layer_and_grows(lab):
    nb = lab.open_notebook(CELLS, name="saturation_dashboard")
    with nb:
        dash = nb.view(".nbx-saturation-dashboard")
        fig = nb.page.locator(".nbx-saturation-dashboard .bqplot").first
        fig.wait_for(state="visible")
        nb.page.wait_for_function(f"f => ({TRAIN_LINES})(f).length == 4", arg=fig.element_handle(), timeout=20000)
        points = fig.evaluate(TRAIN_LINES)
        assert points == [2, 2, 2, 2], points  # 4 layers × 2 epochs
        nb.execute("_ = epoch()")
        nb.page.wait_for_function(f"f => ({TRAIN_LINES})(f).every(n => n == 3)", arg=fig.element_handle(),
                                  timeout=20000)
        assert fig.evaluate(TRAIN_LINES) == [3, 3, 3, 3]
        # the summary line is a separate widget: its update may render a moment after the chart's
        nb.page.wait_for_function("el => el.innerText.includes('epoch 2')", arg=dash.element_handle(), timeout=20000)
        assert "epoch 2" in dash.inner_text()
        nb.screenshot("saturation_dashboard", dash)
        nb.execute("tracker.close()")
        assert nb.page_errors == [], nb.page_errors  # the harness already drops the known harmless one
