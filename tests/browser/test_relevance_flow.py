"""RelevanceFlow in real JupyterLab + Chromium at 800 px: step with buttons, keys, slider, chart and Python;
hover readouts against the kernel's values; sample selector; fits the column; labels ≥ 13 px; no console errors."""

from __future__ import annotations

import re

import pytest
from harness import VIEW_LAYOUT, axe_violations

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
        assert "relevance R" in nb.page.locator(f"{ROOT} .nbx-colorbar-wrap .nbx-scalebar-caption").inner_text()

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
        # every number of the chart is written out ("Δ −0.000705", never "Δ −7.054e-4")
        deltas = nb.page.locator(f"{ROOT} svg.nbx-chart text", has_text="Δ").all_text_contents()
        assert len(deltas) == n_steps - 1 and all(re.fullmatch(r"Δ (0|[−+]\d+(\.\d+)?)", t) for t in deltas), deltas
        assert not re.search(r"\de[-+]?\d", nb.page.locator(f"{ROOT} svg.nbx-chart").text_content())
        layout = root.evaluate(VIEW_LAYOUT)
        assert layout["scroll"] <= layout["client"] + 1 and layout["min"] >= 13 - 0.01, layout
        total8 = float(nb.execute("print(repr(float(w.totals[1, 8])))"))
        assert f"{repr(float(f'{total8:.4g}')).removesuffix('.0')}" in \
            nb.page.locator(f"{ROOT} svg.nbx-chart").text_content()
        nb.screenshot("relevance-flow", root)
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors


def test_relevance_flow_in_the_classroom(lab):
    """800 px column for the bars and the map steps, text ≥ 13 px, scale 1.5, round ticks on the bar axis and the
    conservation chart (with an x-axis title), arrow keys on the view and on the slider, axe-core light and dark."""
    from classroom import dark_theme, fits_column, has_focus_ring, scaled, screenshots

    nb = lab.open_notebook(CELLS, name="relevance_flow_classroom", viewport=(800, 1000))
    with nb:
        root = nb.view(ROOT)
        nb.page.locator(f"{ROOT}[data-ready='true']").wait_for()
        fits_column(root)
        # the bar axis: −m, 0, +m at a round m that covers the largest |R|
        ticks = [float(t.replace("−", "-")) for t in nb.page.locator(f"{ROOT} svg.nbx-bars .nbx-bar-tick").all_text_contents()]
        biggest = float(nb.execute("print(repr(float(abs(w.shown()).max())))"))
        assert len(ticks) == 3 and ticks[1] == 0 and ticks[0] == -ticks[2] and biggest <= ticks[2] <= 2.5 * biggest, ticks
        assert float(f"{ticks[2]:.2g}") == ticks[2], ticks  # a round value
        # the conservation chart: y ticks with 0 among them, both axes titled
        yt = [float(t.replace("−", "-")) for t in nb.page.locator(f"{ROOT} svg.nbx-chart .nbx-y-tick").all_text_contents()]
        assert 0 in yt and len(yt) >= 3, yt
        chart = nb.page.locator(f"{ROOT} svg.nbx-chart").text_content()
        assert "Σ relevance" in chart and "layer (output → input)" in chart
        assert axe_violations(nb.page, ROOT) == []

        # keyboard: the view takes ←/→ with a visible focus ring; the slider keeps its own arrows
        root.focus()
        assert has_focus_ring(root)
        nb.page.keyboard.press("ArrowRight")
        nb.wait_for_output("print(w.step)", "1")
        nb.page.locator(f"{ROOT} input.nbx-step").focus()
        nb.page.keyboard.press("ArrowRight")
        nb.wait_for_output("print(w.step)", "2")
        nb.page.keyboard.press("Tab")  # on to the next button
        assert has_focus_ring(nb.page.locator(f"{ROOT} button.nbx-next"))

        nb.execute("w.step = 8")
        nb.page.locator(f"{ROOT}[data-step='8'][data-kind='map']").wait_for(timeout=5000)
        fits_column(root)
        # the colour bar ends at ±(a round value ≥ max |R|), labelled at nice ticks with 0 among them; the labels
        # are the ticks, written out or over one shared power of ten (not -5.513e-4)
        bar = nb.page.locator(f"{ROOT} .nbx-colorbar-wrap .nbx-scalebar")
        lo, hi = float(bar.get_attribute("data-vmin")), float(bar.get_attribute("data-vmax"))
        ticks = [float(t) for t in bar.get_attribute("data-ticks").split(",")]
        biggest = float(nb.execute("print(repr(float(abs(w.shown()).max())))"))
        assert lo == -hi and ticks[0] == lo and ticks[-1] == hi and 0 in ticks, (lo, hi, ticks)
        assert biggest <= hi <= 2.5 * biggest and float(f"{hi:.2g}") == hi, (hi, biggest)
        labels = bar.locator(".nbx-scalebar-tick").all_inner_texts()
        k = int(bar.get_attribute("data-exponent"))
        assert [float(t.replace("−", "-")) * 10.0**k for t in labels] == pytest.approx(ticks), (labels, k, ticks)
        assert not any("e" in t for t in labels), labels
        if k:
            assert bar.locator(".nbx-scalebar-factor").inner_text() == "(× 10" + "".join(
                "⁰¹²³⁴⁵⁶⁷⁸⁹"[int(d)] if d.isdigit() else "⁻" for d in str(k)) + ")", k
        assert axe_violations(nb.page, ROOT) == []
        scaled(nb, ROOT, "w", nb.page.locator(f"{ROOT} .nbx-flow-title"))
        assert nb.page.locator(f"{ROOT} svg.nbx-chart text").first.evaluate(
            "e => parseFloat(getComputedStyle(e).fontSize)") >= 1.5 * 13 - 0.01
        nb.execute("w.step = 0")
        nb.page.locator(f"{ROOT}[data-step='0']").wait_for(timeout=5000)
        nb.page.wait_for_timeout(200)
        fits_column(root)
        nb.execute("w.scale = 1.0")
        nb.page.locator(f"{ROOT}[data-scale='1']").wait_for(timeout=5000)

        nb.execute("w.step = 8")  # the input's relevance map, drawn with its colour bar
        nb.page.locator(f"{ROOT}[data-step='8']").wait_for(timeout=5000)
        dark_theme(nb, ROOT, "w", f"{ROOT} .nbx-flow-caption", diverging=True)
        nb.execute("w.theme = 'auto'")
        nb.page.locator(f"{ROOT}[data-theme='auto']").wait_for(timeout=5000)
        screenshots(nb, "relevance-flow", ROOT)
        fits_column(root, 1400)
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors
