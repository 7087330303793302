"""SimilarityGrid in real JupyterLab + Chromium: cells, client-side checkpoint slider / play / metric switch
(no kernel message), hover readout, click reaching Python."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

CELLS = [
    "import torch, nbexplain as nx\n"
    "from nbexplain.zoo import mlp\n"
    "from nbexplain.widgets import SimilarityGrid\n"
    "x = torch.randn(200, 20, generator=torch.Generator().manual_seed(0))\n"
    "ckpts = [mlp(20, (16, 12, 8), seed=s) for s in range(4)]\n"
    "res = nx.similarity_grid(ckpts, x, ['fc1', 'fc2', 'fc3', 'out'], metric=['svcca', 'cka'], progress=False)\n"
    "g = SimilarityGrid(res, cell_size=40, interval_ms=80)\n"
    "g",
]


def js_format(v: float) -> str:
    """Python twin of the view's ``formatValue`` (4 significant digits) for |v| in [1e-3, 1e5)."""
    return repr(float(f"{v:.4g}")).removesuffix(".0")


def backgrounds(nb) -> list[str]:
    return nb.page.eval_on_selector_all(".nbx-similarity_grid .nbx-sim-cell", "els => els.map(e => e.style.background)")


def kernel_value(nb, metric: str, t: int, i: int, j: int) -> float:
    return float(nb.execute(f"import numpy as np; print(repr(float(np.float32(res.grids['{metric}'][{t}, {i}, {j}]))))"))


def test_similarity_grid_slider_hover_click(lab):
    nb = lab.open_notebook(CELLS, name="similarity_grid")
    with nb:
        root = nb.view(".nbx-similarity_grid")
        nb.page.locator(".nbx-similarity_grid[data-ready='true']").wait_for()
        cells = nb.page.locator(".nbx-similarity_grid .nbx-sim-cell")
        assert cells.count() == 16
        assert root.get_attribute("data-cells") == "16" and root.get_attribute("data-checkpoints") == "4"
        assert root.get_attribute("data-checkpoint") == "3"
        assert nb.page.locator(".nbx-similarity_grid .nbx-row-label").all_inner_texts() == ["fc1", "fc2", "fc3", "out"]
        last = backgrounds(nb)

        # the slider repaints from the grids already in the page: no message to the kernel
        nb.reset_comm_count()
        nb.page.locator(".nbx-similarity_grid input.nbx-checkpoint").fill("0")
        nb.page.locator(".nbx-similarity_grid[data-checkpoint='0']").wait_for(timeout=5000)
        first = backgrounds(nb)
        assert first != last and len(first) == 16
        cell = nb.page.locator(".nbx-similarity_grid .nbx-sim-cell[data-i='0'][data-j='1']")
        assert float(cell.get_attribute("data-value")) == kernel_value(nb, "svcca", 0, 0, 1)
        assert "checkpoint 0" in nb.page.locator(".nbx-similarity_grid .nbx-checkpoint-label").inner_text()

        # play runs to the last checkpoint on its own, still without the kernel
        nb.page.locator(".nbx-similarity_grid button.nbx-play").click()
        nb.page.locator(".nbx-similarity_grid[data-checkpoint='3'][data-playing='false']").wait_for(timeout=10_000)
        assert backgrounds(nb) == last
        nb.page.locator(".nbx-similarity_grid input.nbx-checkpoint").fill("1")
        nb.page.locator(".nbx-similarity_grid[data-checkpoint='1']").wait_for(timeout=5000)

        # metric switch: local too
        nb.page.locator(".nbx-similarity_grid select.nbx-metric").select_option("cka")
        nb.page.locator(".nbx-similarity_grid[data-metric='cka']").wait_for(timeout=5000)

        # hover: both layer names, the checkpoint and the value
        target = nb.page.locator(".nbx-similarity_grid .nbx-sim-cell[data-i='2'][data-j='1']")
        target.hover()
        nb.page.locator(".nbx-similarity_grid[data-hover='2,1']").wait_for(timeout=5000)
        value = kernel_value(nb, "cka", 1, 2, 1)
        text = nb.page.locator(".nbx-similarity_grid .nbx-readout").inner_text()
        assert "fc3 × fc2 @ checkpoint 1" in text and "linear CKA" in text, text
        assert text.rsplit(" ", 1)[1] == js_format(value), (text, value)
        assert float(root.get_attribute("data-value")) == value
        assert nb.comm_messages_sent() == 0
        nb.screenshot("similarity-grid-hover", root)

        # a click reaches Python, with the checkpoint and metric the view shows
        target.click()
        nb.wait_for_output("print(g.selected)", "[1, 2, 1]")
        assert nb.comm_messages_sent() >= 1
        assert nb.execute("print(g.checkpoint, g.metric)").strip() == "1 cka"
        assert "nbx-selected" in (target.get_attribute("class") or "")
        assert nb.execute("print(g.spectrum_chart.title)").strip().startswith("fc3 × fc2 @ checkpoint 1")

        # Python -> view
        nb.execute("g.checkpoint = 2")
        nb.page.locator(".nbx-similarity_grid[data-checkpoint='2']").wait_for(timeout=5000)
        assert nb.page_errors == [], nb.page_errors
