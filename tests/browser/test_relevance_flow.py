"""RelevanceFlow in real JupyterLab + Chromium at 800 px: step with buttons, keys, slider, chart and Python;
hover readouts against the kernel's values; sample selector; fits the column; labels ≥ 13 px; no console errors."""

from __future__ import annotations

import pytest
from harness import VIEW_LAYOUT

pytestmark = pytest.mark.browser

CELLS = [
    "import torch\n"
    "from nbexplain import data, zoo\n"
    "from nbexplain.widgets import RelevanceFlow\n"
    "d = data.mnist()\n"
    "net = zoo.cnn(seed=0).eval()\n"
    "x = d.x_test[:2]\n"
    "w = RelevanceFlow.from_model(net, x, classes=[str(k) for k in range(10)], progress=False)\n"
    "w",
]

ROOT = ".nbx-relevance-flow"


def test_relevance_flow_steps_hover_and_sync(lab):
    nb = lab.open_notebook(CELLS, name="relevance_flow", viewport=(800, 1000))
    with nb:
        root = nb.view(ROOT)
        nb.page.locator(f"{ROOT}[data-ready='true']").wait_for()
        n_steps = int(nb.execute("print(len(w.result.steps))"))
        assert root.get_attribute("data-steps") == str(n_steps) and n_steps == 9
        assert root.get_attribute("data-step") == "0" and root.get_attribute("data-kind") == "bars"
        score = float(nb.execute("print(repr(float(w.score[0])))"))
        assert "score f = " in nb.page.locator(f"{ROOT} .nbx-flow-title").inner_text()

        # next button -> the kernel follows
        nb.page.locator(f"{ROOT} button.nbx-next").click()
        nb.wait_for_output("print(w.step)", "1")
        assert root.get_attribute("data-step-name") == "out"
        # hover the largest unit of the output layer: the readout shows the kernel's value
        unit = int(nb.execute("print(int(abs(w.shown()).argmax()))"))
        value = float(nb.execute(f"print(repr(float(w.shown()[{unit}])))"))
        nb.page.locator(f"{ROOT} svg.nbx-bars g[data-unit='{unit}'] rect.nbx-unit-hit").hover()
        nb.page.locator(f"{ROOT}[data-hover='1,{unit}']").wait_for(timeout=5000)
        text = nb.page.locator(f"{ROOT} .nbx-readout").inner_text()
        assert f"out · {unit}: R = " in text, text  # unit named by its class
        assert abs(float(root.get_attribute("data-value")) - value) <= 1e-6 * max(1.0, abs(value))
        assert "Epsilon" in nb.page.locator(f"{ROOT} .nbx-flow-info").inner_text()

        # keyboard: arrows on the focused view
        root.focus()
        nb.page.keyboard.press("ArrowRight")
        nb.page.keyboard.press("ArrowRight")
        nb.wait_for_output("print(w.step)", "3")

        # Python -> view: the input step, a map over the image
        nb.execute("w.step = 8")
        nb.page.locator(f"{ROOT}[data-step='8'][data-kind='map']").wait_for(timeout=5000)
        r, c = (int(v) for v in nb.execute("import numpy as np\n"
                                           "print(*np.unravel_index(abs(w.shown()).argmax(), (28, 28)))").split())
        value = float(nb.execute(f"print(repr(float(w.shown()[{r}, {c}])))"))
        canvas = nb.page.locator(f"{ROOT} .nbx-flow-pictures canvas").first
        box = canvas.bounding_box()
        nb.page.mouse.move(box["x"] + (c + 0.5) * box["width"] / 28, box["y"] + (r + 0.5) * box["height"] / 28)
        nb.page.locator(f"{ROOT}[data-hover='8,{r},{c}']").wait_for(timeout=5000)
        assert f"input · row {r}, col {c}: R = " in nb.page.locator(f"{ROOT} .nbx-readout").inner_text()
        assert abs(float(root.get_attribute("data-value")) - value) <= 1e-6 * max(1.0, abs(value))
        assert nb.page.locator(f"{ROOT} .nbx-flow-input").is_visible()  # the input beside the map
        assert "relevance R" in nb.page.locator(f"{ROOT} .nbx-cbar-label").inner_text()

        # clicking a step in the conservation chart selects it
        nb.page.locator(f"{ROOT} svg.nbx-chart rect.nbx-col[data-step='5']").click()
        nb.wait_for_output("print(w.step)", "5")
        assert "nbx-current" in (nb.page.locator(f"{ROOT} svg.nbx-chart rect.nbx-col[data-step='5']")
                                 .get_attribute("class") or "")
        chart = nb.page.locator(f"{ROOT} svg.nbx-chart").text_content()
        assert f"score f = {repr(float(f'{score:.4g}')).removesuffix('.0')}" in chart and "Σ relevance" in chart
        total5 = float(nb.execute("print(repr(float(w.totals[0, 5])))"))
        assert abs(float(root.get_attribute("data-total")) - total5) <= 1e-6 * max(1.0, abs(total5))

        # the slider
        nb.page.locator(f"{ROOT} input.nbx-step").fill("2")
        nb.wait_for_output("print(w.step)", "2")

        # the sample selector
        nb.page.locator(f"{ROOT} select.nbx-sample").select_option("1")
        nb.wait_for_output("print(w.sample)", "1")
        assert "sample 1" in nb.page.locator(f"{ROOT} .nbx-flow-title").inner_text()

        # fits the 800 px window, every label at least 13 px
        for step in ("0", "8"):
            nb.execute(f"w.step = {step}")
            nb.page.locator(f"{ROOT}[data-step='{step}']").wait_for(timeout=5000)
            layout = root.evaluate(VIEW_LAYOUT)
            assert layout["scroll"] <= layout["client"] + 1 and layout["right"] <= 800, layout
            assert layout["min"] >= 13 - 0.01, layout
        nb.screenshot("relevance-flow-800", root)
        # a wide window: the chart grows with the view and shows its numbers (Σ over each bar, Δ between bars)
        narrow = root.evaluate("r => r.clientWidth")
        nb.page.set_viewport_size({"width": 1400, "height": 1000})
        for _ in range(50):  # the view may sit in a shadow root: poll through the locator
            if root.evaluate("r => r.clientWidth") > narrow:
                break
            nb.page.wait_for_timeout(100)
        nb.page.locator(f"{ROOT} svg.nbx-chart text", has_text="Δ").first.wait_for(timeout=5000)
        layout = root.evaluate(VIEW_LAYOUT)
        assert layout["scroll"] <= layout["client"] + 1 and layout["min"] >= 13 - 0.01, layout
        total8 = float(nb.execute("print(repr(float(w.totals[1, 8])))"))
        assert f"{repr(float(f'{total8:.4g}')).removesuffix('.0')}" in \
            nb.page.locator(f"{ROOT} svg.nbx-chart").text_content()
        nb.screenshot("relevance-flow", root)
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors
