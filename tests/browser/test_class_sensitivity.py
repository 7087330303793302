"""ClassSensitivity in real JupyterLab + Chromium: values in cells, the local checkpoint slider and play, hover
readout, click reaching Python and drawing the class's curves with learned-at rings, fit and label sizes."""

from __future__ import annotations

import pytest
from harness import axe_violations

pytestmark = pytest.mark.browser

CELLS = [
    "import torch, nbexplain as nx\n"
    "from nbexplain.widgets import ClassSensitivity\n"
    "def mlp(seed):\n"
    "    torch.manual_seed(seed)\n"
    "    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.ReLU(),\n"
    "                               torch.nn.Linear(8, 4))\n"
    "x = torch.randn(400, 6, generator=torch.Generator().manual_seed(0))\n"
    "res = nx.class_sensitivity({f'step {s}': mlp(s) for s in range(4)}, x, ['1', '3'], keep=1.0, progress=False)\n"
    "w = ClassSensitivity(res, threshold=0.8, class_names=['cat', 'dog', 'cow', 'fox'], interval_ms=80)\n"
    "w",
]

SELECTOR = ".nbx-class-sensitivity"


def backgrounds(nb) -> list[str]:
    return nb.page.eval_on_selector_all(f"{SELECTOR} .nbx-cs-cell", "els => els.map(e => e.style.background)")


def test_class_sensitivity_slider_hover_click(lab):
    nb = lab.open_notebook(CELLS, name="class_sensitivity")
    with nb:
        root = nb.view(SELECTOR)
        nb.page.locator(f"{SELECTOR}[data-ready='true']").wait_for()
        assert root.get_attribute("data-cells") == "8" and root.get_attribute("data-checkpoint") == "3"
        assert nb.page.locator(f"{SELECTOR} .nbx-row-label").all_inner_texts() == ["cat", "dog", "cow", "fox"]
        assert nb.page.locator(f"{SELECTOR} .nbx-col-label").all_inner_texts() == ["1", "3"]
        cell = nb.page.locator(f"{SELECTOR} .nbx-cs-cell[data-c='2'][data-l='0']")
        assert cell.inner_text() == f"{float(nb.execute('print(float(res.values[3, 0, 2]))')):.2f}"
        last = backgrounds(nb)

        # slider: local repaint, no kernel message
        nb.reset_comm_count()
        nb.page.locator(f"{SELECTOR} input.nbx-checkpoint").fill("0")
        nb.page.locator(f"{SELECTOR}[data-checkpoint='0']").wait_for(timeout=5000)
        assert backgrounds(nb) != last
        value = float(nb.execute("import numpy as np; print(repr(float(np.float32(res.values[0, 0, 2]))))"))
        assert float(cell.get_attribute("data-value")) == value
        assert cell.inner_text() == f"{value:.2f}"
        nb.page.locator(f"{SELECTOR} button.nbx-play").click()
        nb.page.locator(f"{SELECTOR}[data-checkpoint='3'][data-playing='false']").wait_for(timeout=10_000)
        assert backgrounds(nb) == last
        nb.page.locator(f"{SELECTOR} input.nbx-checkpoint").fill("1")
        nb.page.locator(f"{SELECTOR}[data-checkpoint='1']").wait_for(timeout=5000)

        # hover: class, layer, checkpoint and value
        cell.hover()
        nb.page.locator(f"{SELECTOR}[data-hover='2,0']").wait_for(timeout=5000)
        text = nb.page.locator(f"{SELECTOR} .nbx-readout").inner_text()
        assert text.startswith("class cow × 1 @ step 1 — SVCCA "), text
        assert nb.comm_messages_sent() == 0

        # click: Python learns the class and the checkpoint; the chart draws one line per layer
        cell.click()
        nb.wait_for_output("print(w.selected_class, w.checkpoint)", "2 1")
        assert nb.page.locator(f"{SELECTOR} .nbx-cs-chart-title").inner_text() == "class cow over training"
        assert nb.page.locator(f"{SELECTOR} svg.nbx-cs-chart path[data-layer]").count() == 2
        learned = eval(nb.execute("print([row[2] for row in w.learned_at])"))
        assert nb.page.locator(f"{SELECTOR} circle.nbx-cs-learned").count() == sum(t >= 0 for t in learned)
        legend = nb.page.locator(f"{SELECTOR} .nbx-cs-legend-item:not(.nbx-cs-key)").all_inner_texts()
        labels = ["step 0", "step 1", "step 2", "step 3"]
        assert legend == [f"layer {name}: SVCCA ≥ 0.8 " + (f"from {labels[t]}" if t >= 0 else "not reached")
                          for name, t in zip(["1", "3"], learned, strict=True)], legend

        # Python -> view: a new threshold recomputes learned-at in core and redraws the legend
        nb.execute("w.threshold = 0.05")
        nb.page.locator(f"{SELECTOR} .nbx-cs-legend-item", has_text="≥ 0.05 from step 0").first.wait_for(timeout=5000)
        nb.screenshot("class-sensitivity", root)

        # in an 800 px column (this viewport's output area is wider) nothing overflows sideways
        width = root.evaluate("e => { e.style.width = '800px'; const w = e.scrollWidth; e.style.width = ''; return w; }")
        assert width <= 800, width
        small = root.evaluate(
            "e => [...e.querySelectorAll('*')].filter(n => [...n.childNodes].some(c => c.nodeType === 3 && c.textContent.trim()))"
            ".map(n => [n.textContent.slice(0, 20), parseFloat(getComputedStyle(n).fontSize)]).filter(p => p[1] < 13)"
        )
        assert small == [], small
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors


def test_class_sensitivity_in_the_classroom(lab):
    """800 px column, text ≥ 13 px (cells, chart), scale 1.5, keyboard (one tab stop, arrows, Enter/Space) with a
    focus ring and accessible names, a labelled threshold and chart ticks, axe-core light and dark, screenshots."""
    from classroom import (
        dark_theme,
        fits_column,
        follows_custom_background,
        follows_lab_dark_theme,
        has_focus_ring,
        scaled,
        screenshots,
    )

    nb = lab.open_notebook(CELLS, name="class_sensitivity_classroom", viewport=(800, 1000))
    with nb:
        root = nb.view(SELECTOR)
        nb.page.locator(f"{SELECTOR}[data-ready='true']").wait_for()
        fits_column(root)
        names = nb.page.locator(f"{SELECTOR} .nbx-cs-cell").evaluate_all("es => es.map(e => e.getAttribute('aria-label'))")
        assert len(names) == 8 and all(n and n.startswith("class ") and "SVCCA" in n for n in names), names
        assert axe_violations(nb.page, SELECTOR) == []

        # keyboard: Tab from the slider reaches the grid's one tab stop; arrows move, Enter / Space select
        nb.page.locator(f"{SELECTOR} input.nbx-checkpoint").focus()
        nb.page.keyboard.press("ArrowLeft")  # the slider keeps its arrow keys (JupyterLab binds them otherwise)
        nb.page.locator(f"{SELECTOR}[data-checkpoint='2']").wait_for(timeout=5000)
        nb.page.keyboard.press("Tab")
        assert has_focus_ring(nb.page.locator(f"{SELECTOR} .nbx-cs-cell[data-c='0'][data-l='0']"))
        nb.page.keyboard.press("ArrowDown")
        nb.page.keyboard.press("ArrowRight")
        nb.page.locator(f"{SELECTOR}[data-hover='1,1']").wait_for(timeout=5000)
        assert nb.page.locator(f"{SELECTOR} .nbx-readout").inner_text().startswith("class dog × 3 @ step 2")
        nb.page.keyboard.press("Enter")
        nb.wait_for_output("print(w.selected_class, w.checkpoint)", "1 2")
        nb.page.keyboard.press("ArrowDown")
        nb.page.keyboard.press(" ")
        nb.wait_for_output("print(w.selected_class)", "2")
        # the chart: y ticks, axis titles and a threshold line that says what it is
        texts = nb.page.locator(f"{SELECTOR} svg.nbx-cs-chart text").all_text_contents()
        assert {"0", "0.5", "1", "SVCCA", "checkpoint (4 in all)"} <= set(texts), texts
        keys = nb.page.locator(f"{SELECTOR} .nbx-cs-key").all_inner_texts()
        assert keys == ["dashed line: threshold, SVCCA 0.8", "vertical line: the checkpoint shown (step 2)"], keys
        fits_column(root)
        assert axe_violations(nb.page, SELECTOR) == []

        scaled(nb, SELECTOR, "w", nb.page.locator(f"{SELECTOR} .nbx-readout"))
        assert nb.page.locator(f"{SELECTOR} svg.nbx-cs-chart text").first.evaluate(
            "e => parseFloat(getComputedStyle(e).fontSize)") >= 1.5 * 13 - 0.01
        nb.execute("w.scale = 1.0")
        nb.page.locator(f"{SELECTOR}[data-scale='1']").wait_for(timeout=5000)

        dark_theme(nb, SELECTOR, "w", f"{SELECTOR} .nbx-row-label", sequential=True)
        nb.execute("w.theme = 'auto'")
        nb.page.locator(f"{SELECTOR}[data-theme='auto']").wait_for(timeout=5000)
        follows_lab_dark_theme(nb, SELECTOR)
        follows_custom_background(nb, SELECTOR)
        screenshots(nb, "class-sensitivity", SELECTOR)
        fits_column(root, 1400)
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors


def test_a_view_rendered_in_jupyterlab_dark_starts_on_its_dark_map(lab):
    """Rendered while JupyterLab is already dark (theme='auto'): the view's map is lifted off the dark background
    from the start — a view built before it is attached sees no background, and recolours once it is shown."""
    from classroom import LOW_END, lab_dark, low_end_contrast

    nb = lab.open_notebook(CELLS, name="class_sensitivity_lab_dark", run=False, viewport=(1000, 1000))
    with nb:
        with lab_dark(nb):
            nb.run_all()
            nb.page.locator(f"{SELECTOR}[data-ready='true']").wait_for()
            nb.page.wait_for_function(f"() => ({LOW_END})(document.querySelector({SELECTOR!r})) !== 'rgb(68, 1, 84)'",
                                      timeout=5000)
            assert low_end_contrast(nb, SELECTOR) >= 3
        assert nb.page_errors == [], nb.page_errors
