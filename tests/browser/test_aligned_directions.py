"""AlignedDirections in real JupyterLab + Chromium: strips and class labels, hover readout, click reaching
Python and drawing the overlay with ρ, the local row slider, fit in an 800 px column, label sizes."""

from __future__ import annotations

import pytest
from harness import axe_violations

pytestmark = pytest.mark.browser

CELLS = [
    "import torch, nbexplain as nx\n"
    "from nbexplain.widgets import AlignedDirections\n"
    "g = torch.Generator().manual_seed(0)\n"
    "labels = torch.tensor([2, 0, 1, 3] * 50)\n"
    "z = torch.randn(200, 4, generator=g, dtype=torch.float64) + labels[:, None]\n"
    "x = torch.relu(z @ torch.randn(4, 12, generator=g, dtype=torch.float64))\n"
    "y = torch.relu(z @ torch.randn(4, 10, generator=g, dtype=torch.float64))\n"
    "res = nx.svcca_directions(x, y, keep=0.99)\n"
    "w = AlignedDirections(res, x, y, labels, n=3, names=('seed 0', 'seed 1'), layer='fc1',\n"
    "                      class_names=['zero', 'one', 'two', 'three'])\n"
    "w",
]

SELECTOR = ".nbx-aligned-directions"


def test_aligned_directions_hover_click_rows(lab):
    nb = lab.open_notebook(CELLS, name="aligned_directions")
    with nb:
        root = nb.view(SELECTOR)
        nb.page.locator(f"{SELECTOR}[data-ready='true']").wait_for()
        assert root.get_attribute("data-inputs") == "200" and root.get_attribute("data-classes") == "4"
        assert nb.page.locator(f"{SELECTOR} canvas.nbx-ad-canvas").count() == 4
        # class labels under each block, in sorted order; 3 boundaries per block
        labels = nb.page.locator(f"{SELECTOR} .nbx-ad-axis").first.locator(".nbx-ad-class").all_inner_texts()
        assert labels == ["zero", "one", "two", "three"]
        assert nb.page.locator(f"{SELECTOR} .nbx-ad-bound").count() == 4 * 3
        rows = nb.page.locator(f"{SELECTOR} .nbx-ad-rowlabel").all_inner_texts()
        ids = nb.execute("print(w.neuron_ids_a[:3], w.neuron_ids_b[:3])").strip()
        assert rows[:3] == [f"neuron {i}" for i in eval(ids.split("] [")[0] + "]")], (rows, ids)
        rhos = eval(nb.execute("print([round(r, 2) for r in w.coefficients[:3]])"))
        assert rows[6:9] == [f"direction {i + 1} (ρ = {r:.2f})" for i, r in enumerate(rhos)], rows

        # hover the first direction strip of seed 1 at the middle of its width: input, class and value
        canvas = nb.page.locator(f"{SELECTOR} canvas.nbx-ad-canvas[data-kind='directions'][data-side='b']")
        box = canvas.bounding_box()
        nb.reset_comm_count()
        nb.page.mouse.move(box["x"] + box["width"] * 0.5 + 0.1, box["y"] + 5)
        nb.page.locator(f"{SELECTOR}[data-hover^='directions_b,0,']").wait_for(timeout=5000)
        col = int(root.get_attribute("data-hover").split(",")[2])
        expect = nb.execute(
            f"import numpy as np; print(w.input_ids[{col}], w.class_names[w.column_classes[{col}]], "
            f"repr(float(np.float32(res.y_variates[w.input_ids[{col}], 0]))))"
        ).split()
        text = nb.page.locator(f"{SELECTOR} .nbx-readout").inner_text()
        assert f"input #{expect[0]} (class {expect[1]})" in text and text.startswith("seed 1 · direction 1"), text
        assert float(root.get_attribute("data-value")) == pytest.approx(float(expect[2]), rel=1e-6)
        assert nb.comm_messages_sent() == 0

        # click the second direction: Python learns it, the overlay shows ρ
        nb.page.locator(f"{SELECTOR} .nbx-ad-rowlabel.nbx-ad-dir").nth(1).click()
        nb.wait_for_output("print(w.selected)", "1")
        rho = float(nb.execute("print(repr(w.selected_correlation))"))
        title = nb.page.locator(f"{SELECTOR} .nbx-ad-chart-title").inner_text()
        assert title.startswith("direction 2: ρ = ") and abs(float(title.split("= ")[1].split()[0]) - rho) < 1e-3, title
        assert nb.page.locator(f"{SELECTOR} svg.nbx-ad-chart path.nbx-ad-line-a").count() == 1
        assert nb.page.locator(f"{SELECTOR} svg.nbx-ad-chart path.nbx-ad-line-b").count() == 1

        # the rows slider repaints locally
        nb.reset_comm_count()
        nb.page.locator(f"{SELECTOR} input.nbx-ad-n").fill("5")
        nb.page.locator(f"{SELECTOR}[data-rows='5']").wait_for(timeout=5000)
        assert nb.page.locator(f"{SELECTOR} .nbx-ad-rowlabel").count() == 4 * 5
        assert nb.comm_messages_sent() == 0
        nb.screenshot("aligned-directions", root)

        # classroom standards: fits an 800 px column, no text below 13 px
        # in an 800 px column (this viewport's output area is wider) nothing overflows sideways
        width = root.evaluate("e => { e.style.width = '800px'; const w = e.scrollWidth; e.style.width = ''; return w; }")
        assert width <= 800, width
        small = root.evaluate(
            "e => [...e.querySelectorAll('*')].filter(n => [...n.childNodes].some(c => c.nodeType === 3 && c.textContent.trim()))"
            ".map(n => [n.textContent.slice(0, 20), parseFloat(getComputedStyle(n).fontSize)]).filter(p => p[1] < 13)"
        )
        assert small == [], small
        # Python -> view
        nb.execute("w.selected = -1")
        nb.page.locator(f"{SELECTOR}[data-selected='-1']").wait_for(timeout=5000)
        assert nb.page.locator(f"{SELECTOR} svg.nbx-ad-chart").count() == 0
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors


def test_aligned_directions_in_the_classroom(lab):
    """800 px column, text ≥ 13 px (rows, chart), scale 1.5, signed variates on a diverging map centred on 0,
    directions selectable from the keyboard with a focus ring, chart ticks, axe-core light and dark, screenshots."""
    from classroom import dark_theme, fits_column, has_focus_ring, scaled, screenshots

    nb = lab.open_notebook(CELLS, name="aligned_directions_classroom", viewport=(800, 1000))
    with nb:
        root = nb.view(SELECTOR)
        nb.page.locator(f"{SELECTOR}[data-ready='true']").wait_for()
        fits_column(root)
        # two colour keys: activations sequential per row, variates diverging (signed) per row
        keys = nb.page.locator(f"{SELECTOR} .nbx-ad-legend-row").all_inner_texts()
        assert len(keys) == 2 and "activation" in keys[0] and "variate" in keys[1] and "white: 0" in keys[1], keys
        # a variate of 0 would be white: the strip's colours straddle white (blue below zero, red above)
        px = nb.page.locator(f"{SELECTOR} canvas.nbx-ad-canvas[data-kind='directions'][data-side='a']").evaluate(
            "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, 1).data; const out = [];"
            " for (let i = 0; i < d.length; i += 4) out.push([d[i], d[i + 1], d[i + 2]]); return out; }")
        assert any(r > b + 40 for r, g, b in px) and any(b > r + 40 for r, g, b in px), px[:5]
        assert axe_violations(nb.page, SELECTOR) == []

        # keyboard: Tab from the rows slider reaches the first direction; Enter and Space select
        nb.page.locator(f"{SELECTOR} input.nbx-ad-n").focus()
        nb.page.keyboard.press("ArrowRight")  # the slider keeps its arrows
        nb.page.locator(f"{SELECTOR}[data-rows='4']").wait_for(timeout=5000)
        nb.page.keyboard.press("Tab")
        first = nb.page.locator(f"{SELECTOR} .nbx-ad-rowlabel.nbx-ad-dir").first
        assert has_focus_ring(first)
        nb.page.keyboard.press("Enter")
        nb.wait_for_output("print(w.selected)", "0")
        assert first.get_attribute("aria-pressed") == "true"
        nb.page.keyboard.press("Tab")
        nb.page.keyboard.press(" ")
        nb.wait_for_output("print(w.selected)", "1")
        texts = nb.page.locator(f"{SELECTOR} svg.nbx-ad-chart text").all_text_contents()
        assert "variate" in texts and "200 inputs sorted by class" in texts and "0" in texts, texts
        fits_column(root)

        scaled(nb, SELECTOR, "w", nb.page.locator(f"{SELECTOR} .nbx-ad-title").first)
        rows = nb.page.locator(f"{SELECTOR} .nbx-ad-rowlabel").first.evaluate(
            "e => [e.getBoundingClientRect().height, parseFloat(getComputedStyle(e).fontSize)]")
        assert rows[0] >= rows[1], rows  # rows grow with the text
        nb.execute("w.scale = 1.0")
        nb.page.locator(f"{SELECTOR}[data-scale='1']").wait_for(timeout=5000)

        dark_theme(nb, SELECTOR, "w", f"{SELECTOR} .nbx-ad-note", sequential=True, diverging=True)
        nb.execute("w.theme = 'auto'")
        nb.page.locator(f"{SELECTOR}[data-theme='auto']").wait_for(timeout=5000)
        screenshots(nb, "aligned-directions", SELECTOR)
        fits_column(root, 1400)
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors
