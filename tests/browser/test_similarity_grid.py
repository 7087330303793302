"""SimilarityGrid in real JupyterLab + Chromium: cells, client-side checkpoint slider / play / metric switch
(no kernel message), hover readout, click reaching Python."""

from __future__ import annotations

import pytest
from harness import axe_violations

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
    """Python twin of the view's ``formatNumber`` (4 significant digits) for |v| in [1e-3, 1e5)."""
    return repr(float(f"{v:.4g}")).removesuffix(".0")


def backgrounds(nb) -> list[str]:
    return nb.page.eval_on_selector_all(".nbx-similarity-grid .nbx-sim-cell", "els => els.map(e => e.style.background)")


def kernel_value(nb, metric: str, t: int, i: int, j: int) -> float:
    return float(nb.execute(f"import numpy as np; print(repr(float(np.float32(res.grids['{metric}'][{t}, {i}, {j}]))))"))


def test_similarity_grid_slider_hover_click(lab):
    nb = lab.open_notebook(CELLS, name="similarity_grid")
    with nb:
        root = nb.view(".nbx-similarity-grid")
        nb.page.locator(".nbx-similarity-grid[data-ready='true']").wait_for()
        cells = nb.page.locator(".nbx-similarity-grid .nbx-sim-cell")
        assert cells.count() == 16
        assert root.get_attribute("data-cells") == "16" and root.get_attribute("data-checkpoints") == "4"
        assert root.get_attribute("data-checkpoint") == "3"
        assert nb.page.locator(".nbx-similarity-grid .nbx-row-label").all_inner_texts() == ["fc1", "fc2", "fc3", "out"]
        last = backgrounds(nb)

        # the slider repaints from the grids already in the page: no message to the kernel
        nb.reset_comm_count()
        nb.page.locator(".nbx-similarity-grid input.nbx-checkpoint").fill("0")
        nb.page.locator(".nbx-similarity-grid[data-checkpoint='0']").wait_for(timeout=5000)
        first = backgrounds(nb)
        assert first != last and len(first) == 16
        cell = nb.page.locator(".nbx-similarity-grid .nbx-sim-cell[data-i='0'][data-j='1']")
        assert float(cell.get_attribute("data-value")) == kernel_value(nb, "svcca", 0, 0, 1)
        assert "checkpoint 0" in nb.page.locator(".nbx-similarity-grid .nbx-checkpoint-label").inner_text()

        # play runs to the last checkpoint on its own, still without the kernel
        nb.page.locator(".nbx-similarity-grid button.nbx-play").click()
        nb.page.locator(".nbx-similarity-grid[data-checkpoint='3'][data-playing='false']").wait_for(timeout=10_000)
        assert backgrounds(nb) == last
        nb.page.locator(".nbx-similarity-grid input.nbx-checkpoint").fill("1")
        nb.page.locator(".nbx-similarity-grid[data-checkpoint='1']").wait_for(timeout=5000)

        # metric switch: local too
        nb.page.locator(".nbx-similarity-grid select.nbx-metric").select_option("cka")
        nb.page.locator(".nbx-similarity-grid[data-metric='cka']").wait_for(timeout=5000)

        # hover: both layer names, the checkpoint and the value
        target = nb.page.locator(".nbx-similarity-grid .nbx-sim-cell[data-i='2'][data-j='1']")
        target.hover()
        nb.page.locator(".nbx-similarity-grid[data-hover='2,1']").wait_for(timeout=5000)
        value = kernel_value(nb, "cka", 1, 2, 1)
        text = nb.page.locator(".nbx-similarity-grid .nbx-readout").inner_text()
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
        # the chart follows the shown metric: linear CKA has no canonical correlations to draw
        assert nb.execute("print(g.spectrum_chart.title)").strip() == "linear CKA: no canonical correlations"

        # Python -> view (the selection follows the checkpoint)
        nb.execute("g.checkpoint = 2")
        nb.page.locator(".nbx-similarity-grid[data-checkpoint='2'][data-selected='2,2,1']").wait_for(timeout=5000)
        assert "nbx-selected" in (target.get_attribute("class") or "")
        assert nb.page_errors == [], nb.page_errors


DASHBOARD = [CELLS[0].removesuffix("g") + "g.dashboard()"]

# The side chart as drawn: its title (text and whether it fits the figure), the bars' heights in pixels
# and every legend entry bqplot drew (with its box and whether it overlaps a bar).
CHART_STATE = """fig => {
  const svg = fig.querySelector('svg') || fig;
  const box = svg.getBoundingClientRect();
  const title = fig.querySelector('text.mainheading');
  const t = title ? title.getBoundingClientRect() : null;
  const bars = Array.from(fig.querySelectorAll('rect.bar')).map(r => r.getBoundingClientRect())
    .filter(r => r.width > 0 && r.height > 0);
  const overlap = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  const legends = Array.from(fig.querySelectorAll('.legendtext'))
    .map(e => e.closest('g') || e).map(g => g.getBoundingClientRect()).filter(r => r.width > 0 && r.height > 0);
  const ylabel = Array.from(fig.querySelectorAll('.axislabel')).map(e => e.textContent);
  return {
    title: title ? title.textContent : null,
    titleFits: !!t && t.left >= box.left - 0.5 && t.right <= box.right + 0.5 && t.width > 0,
    bars: bars.length,
    legends: legends.length,
    legendOverBars: legends.some(l => bars.some(b => overlap(l, b))),
    axisLabels: ylabel,
    titleBox: t ? [t.left - box.left, t.right - box.left] : null,
    width: box.width,
    fontSize: title ? getComputedStyle(title).fontSize : null,
  };
}"""


def chart_state(nb) -> dict:
    return nb.page.locator(".bqplot").first.evaluate(CHART_STATE)


def wait_chart(nb, pred, timeout: float = 10.0) -> dict:
    import time

    end = time.monotonic() + timeout
    state = chart_state(nb)
    while not pred(state) and time.monotonic() < end:
        nb.page.wait_for_timeout(150)
        state = chart_state(nb)
    assert pred(state), repr(state)
    return state


def test_similarity_grid_side_chart_follows_the_grid(lab):
    nb = lab.open_notebook(DASHBOARD, name="similarity_grid_dashboard")
    with nb:
        nb.page.locator(".nbx-similarity-grid[data-ready='true']").wait_for(timeout=30_000)
        nb.view(".bqplot")
        state = wait_chart(nb, lambda s: s["title"] == "click a cell")
        assert state["bars"] == 0

        # click a cell at checkpoint 1 under SVCCA: its spectrum, with a title that fits the figure
        nb.page.locator(".nbx-similarity-grid input.nbx-checkpoint").fill("1")
        nb.page.locator(".nbx-similarity-grid[data-checkpoint='1']").wait_for(timeout=5000)
        nb.page.locator(".nbx-similarity-grid .nbx-sim-cell[data-i='2'][data-j='1']").click()
        n1 = int(nb.execute("print(g.result.spectrum(1, 2, 1, 'svcca').numel())"))
        state = wait_chart(nb, lambda s: s["title"] == "fc3 × fc2 @ checkpoint 1 · SVCCA" and s["bars"] == n1)
        assert state["titleFits"], state
        # the mean line is named on the y axis; no legend is drawn over the bars
        mean = float(nb.execute("print(g.result.spectrum(1, 2, 1, 'svcca').double().mean().item())"))
        assert f"ρ (dashed: mean {mean:.3f})" in state["axisLabels"], state
        assert state["legends"] == 0 and not state["legendOverBars"], state

        # play moves on: the selection and the chart move with it (same pair, the checkpoint shown)
        nb.page.locator(".nbx-similarity-grid button.nbx-play").click()
        nb.page.locator(".nbx-similarity-grid[data-checkpoint='3'][data-playing='false']").wait_for(timeout=10_000)
        nb.wait_for_output("print(g.selected)", "[3, 2, 1]")
        assert nb.page.locator(".nbx-similarity-grid").first.get_attribute("data-selected") == "3,2,1"
        cell = nb.page.locator(".nbx-similarity-grid .nbx-sim-cell[data-i='2'][data-j='1']")
        assert "nbx-selected" in (cell.get_attribute("class") or "")
        n3 = int(nb.execute("print(g.result.spectrum(3, 2, 1, 'svcca').numel())"))
        state = wait_chart(nb, lambda s: s["title"] == "fc3 × fc2 @ checkpoint 3 · SVCCA" and s["bars"] == n3)
        assert state["titleFits"], state
        heights = nb.page.locator(".bqplot").first.evaluate(
            "f => Array.from(f.querySelectorAll('rect.bar')).map(r => r.getBoundingClientRect().height)")
        spec3 = [float(v) for v in nb.execute("print(*g.result.spectrum(3, 2, 1, 'svcca').tolist())").split()]
        # bar heights are proportional to the checkpoint-3 spectrum (the y scale is fixed at 0…1)
        k = heights[0] / spec3[0]
        assert all(abs(h - k * v) <= 1.5 for h, v in zip(heights, spec3, strict=True)), (heights, spec3)

        # switching to CKA: no canonical correlations are shown for it, and the chart says so
        nb.page.locator(".nbx-similarity-grid select.nbx-metric").select_option("cka")
        nb.wait_for_output("print(g.metric)", "cka")
        state = wait_chart(nb, lambda s: s["title"] == "linear CKA: no canonical correlations"
                           and s["titleFits"])
        assert state["bars"] == 0, state
        assert nb.execute("print(g.selected_spectrum())").strip() == "None"
        nb.screenshot("similarity-grid-dashboard-cka")

        # back to SVCCA: the spectrum of the selected pair at the checkpoint shown returns
        nb.page.locator(".nbx-similarity-grid select.nbx-metric").select_option("svcca")
        wait_chart(nb, lambda s: s["title"] == "fc3 × fc2 @ checkpoint 3 · SVCCA" and s["bars"] == n3)

        # a long title widens the figure rather than being clipped
        nb.execute("g._fit_title(g.spectrum_chart, 'encoder.layers.11.self_attention.output_projection × "
                   "decoder.blocks.7.mlp.down_projection @ checkpoint 3 · SVCCA')")
        wait_chart(nb, lambda s: (s["title"] or "").startswith("encoder.layers.11") and s["titleFits"])
        assert nb.page_errors == [], nb.page_errors


CLASSROOM = [CELLS[0].replace("g = SimilarityGrid(res, cell_size=40, interval_ms=80)",
                              "g = SimilarityGrid(res, cell_size=40, show_values=True)")]


def test_similarity_grid_in_the_classroom(lab):
    """800 px column, values and labels ≥ 13 px, scale 1.5, keyboard (one tab stop, arrows, Enter/Space) with a
    focus ring and accessible names, axe-core in light and dark theme, screenshots, a clean console."""
    from classroom import RGB, contrast, dark_theme, fits_column, has_focus_ring, rgb, scaled, screenshots

    root_sel = ".nbx-similarity-grid"
    nb = lab.open_notebook(CLASSROOM, name="similarity_grid_classroom", viewport=(800, 1000))
    with nb:
        root = nb.view(root_sel)
        nb.page.locator(f"{root_sel}[data-ready='true']").wait_for()
        # the numbers in the cells are shown, at the label size (they were 0.75 em ≈ 9.75 px)
        assert root.get_attribute("data-values-shown") == "true"
        cell = nb.page.locator(f"{root_sel} .nbx-sim-cell[data-i='0'][data-j='0']")
        assert float(cell.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")) >= 13
        assert cell.inner_text() != ""
        fits_column(root)
        # every cell has an accessible name with both layers, the checkpoint and the value
        names = nb.page.locator(f"{root_sel} .nbx-sim-cell").evaluate_all(
            "es => es.map(e => e.getAttribute('aria-label'))")
        assert len(names) == 16 and all(n and " × " in n and "SVCCA" in n for n in names), names
        assert axe_violations(nb.page, root_sel) == []

        # keyboard: Tab from the metric menu lands on the grid's one tab stop, with a visible ring
        assert nb.page.locator(f"{root_sel} .nbx-sim-cell[tabindex='0']").count() == 1
        nb.page.locator(f"{root_sel} select.nbx-metric").focus()
        nb.page.keyboard.press("Tab")
        first = nb.page.locator(f"{root_sel} .nbx-sim-cell[data-i='0'][data-j='0']")
        assert has_focus_ring(first)
        nb.page.keyboard.press("ArrowRight")
        nb.page.locator(f"{root_sel}[data-hover='0,1']").wait_for(timeout=5000)
        assert "fc1 × fc2" in nb.page.locator(f"{root_sel} .nbx-readout").inner_text()
        nb.page.keyboard.press("Enter")
        nb.wait_for_output("print(g.selected)", "[3, 0, 1]")
        nb.page.keyboard.press("ArrowDown")
        nb.page.keyboard.press(" ")
        nb.wait_for_output("print(g.selected)", "[3, 1, 1]")
        assert nb.page.locator(f"{root_sel} .nbx-sim-cell[tabindex='0']").count() == 1
        # the checkpoint slider moves with the arrow keys
        nb.page.locator(f"{root_sel} input.nbx-checkpoint").focus()
        nb.page.keyboard.press("ArrowLeft")
        nb.page.locator(f"{root_sel}[data-checkpoint='2']").wait_for(timeout=5000)

        # cells asked bigger than the column shrink to fit it (4 × 200 px cells would not)
        nb.execute("g.cell_size = 200")
        nb.page.wait_for_function(
            "() => { const r = document.querySelector('.nbx-similarity-grid'); return +r.dataset.cellSize < 200; }",
            timeout=5000)
        fits_column(root)
        nb.execute("g.cell_size = 40")
        nb.page.locator(f"{root_sel}[data-cell-size='40']").wait_for(timeout=5000)

        # projector: scale 1.5 enlarges text and cells, still inside the column
        scaled(nb, root_sel, "g", nb.page.locator(f"{root_sel} .nbx-readout"))
        assert root.get_attribute("data-cell-size") == "60"
        nb.execute("g.scale = 1.0")
        nb.page.locator(f"{root_sel}[data-scale='1']").wait_for(timeout=5000)

        dark_theme(nb, root_sel, "g", f"{root_sel} .nbx-row-label", sequential=True)
        # what a student sees: the lowest cell (a 0 where the layers share nothing) is no darker than the bar says
        low = min(c.evaluate("e => [parseFloat(e.dataset.value), getComputedStyle(e).backgroundColor]")
                  for c in nb.page.locator(f"{root_sel} .nbx-sim-cell:not(.nbx-undefined)").all())
        assert contrast(rgb(low[1]), rgb(root.evaluate(RGB))) >= 3, low
        nb.execute("g.theme = 'auto'")
        nb.page.locator(f"{root_sel}[data-theme='auto']").wait_for(timeout=5000)
        screenshots(nb, "similarity-grid", root_sel)
        fits_column(root, 1400)
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors
