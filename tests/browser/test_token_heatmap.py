"""TokenHeatmap in real JupyterLab + Chromium at 800 px: hover readout, click and keyboard selection synced to
Python, the sequence selector and per-row scales, wrapping in the column, labels ≥ 13 px, the presentation scale,
the dark theme, no console errors; and an exported page that works offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from classroom import contrast as _contrast
from classroom import end_contrast, lab_dark, to_docs
from classroom import luminance as _luminance
from classroom import rgb as _rgb
from harness import ARTIFACTS, VIEW_LAYOUT, axe_violations, offline_only

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs"
ROOT = ".nbx-token-heatmap"

# A long text (it must wrap at 800 px) with whitespace tokens and line breaks, three rows of signed values
# given by a formula, so that this process knows every value without asking the kernel.
SETUP = (
    "import numpy as np\n"
    "from nbexplain.widgets import TokenHeatmap\n"
    "words = ('The film was not good , but the acting was not bad at all .'.split() * 6)[:80]\n"
    "tokens = [w if i == 0 else ' ' + w for i, w in enumerate(words)]\n"
    "tokens[20] = '\\n'; tokens[41] = '  '; tokens[60] = '\\n'\n"
    "T = len(tokens)\n"
    "vals = np.stack([np.sin(0.7 * np.arange(T) + r) * (r + 1) / 3 for r in range(3)])\n"
    "vals[:, 5] = 0.0\n"
    "short = ['not', ' bad', '!']\n"
    "w = TokenHeatmap([tokens, short], {'LRP attn_lrp': [vals[0], np.array([0.5, -0.25, 0.0])],\n"
    "                                   'gradient × input': [vals[1], np.array([0.1, 0.2, -0.3])],\n"
    "                                   'attention rollout': [vals[2], np.array([0.3, 0.3, 0.4])]})\n"
)
CELLS = [SETUP + "w"]


def expected() -> tuple[list[str], np.ndarray]:
    """The tokens and float32 values the notebook builds, computed here."""
    words = ("The film was not good , but the acting was not bad at all .".split() * 6)[:80]
    tokens = [w if i == 0 else " " + w for i, w in enumerate(words)]
    tokens[20], tokens[41], tokens[60] = "\n", "  ", "\n"
    vals = np.stack([np.sin(0.7 * np.arange(len(tokens)) + r) * (r + 1) / 3 for r in range(3)])
    vals[:, 5] = 0.0
    return tokens, vals.astype(np.float32)


def js_format(v: float) -> str:
    """Python twin of the view's ``formatSigned`` for |v| in [1e-3, 1e5): 4 significant digits, true minus."""
    return repr(float(f"{v:.4g}")).removesuffix(".0").replace("-", "−")


def shown(raw: str) -> str:
    return raw.replace(" ", "·").replace("\n", "⏎")


_RGB = "e => getComputedStyle(e).backgroundColor"


def cell(row: int, tok: int) -> str:
    return f"{ROOT} .nbx-token-row[data-row='{row}'] .nbx-token[data-index='{tok}']"


def test_token_heatmap_hover_click_keyboard_and_layout(lab):
    tokens, vals = expected()
    T = len(tokens)
    nb = lab.open_notebook(CELLS, name="token_heatmap", viewport=(800, 1000))
    with nb:
        root = nb.view(ROOT)
        nb.page.locator(f"{ROOT}[data-ready='true']").wait_for()
        assert root.get_attribute("data-rows") == "3" and root.get_attribute("data-tokens") == str(T)
        assert nb.page.locator(f"{ROOT} .nbx-token").count() == 3 * T
        assert nb.execute("print(T, np.array_equal(w.relevance[:, :T], vals.astype(np.float32)))").strip() == f"{T} True"

        # hover: the readout names the row, the token and the labelled value; no message to the kernel
        nb.reset_comm_count()
        readout = nb.page.locator(f"{ROOT} .nbx-readout")
        for r, t in ((1, 3), (0, 9), (2, 20)):
            nb.page.locator(cell(r, t)).hover()
            nb.page.locator(f"{ROOT}[data-hovered='{r},{t}']").wait_for(timeout=5000)
            label = ["LRP attn_lrp", "gradient × input", "attention rollout"][r]
            assert readout.inner_text() == f"{label} · token {t} “{shown(tokens[t])}” · relevance {js_format(vals[r, t])}"
            assert float(root.get_attribute("data-value")) == float(vals[r, t])
        assert "−" in readout.inner_text() or vals[2, 20] >= 0
        assert nb.comm_messages_sent() == 0

        # whitespace is visible, the raw text is in the accessible name
        assert nb.page.locator(cell(0, 20)).inner_text() == "⏎"
        assert nb.page.locator(cell(0, 41)).inner_text() == "··"
        assert nb.page.locator(cell(0, 20)).get_attribute("aria-label").startswith('"\\n", token 20, relevance ')
        assert nb.page.locator(cell(0, 3)).get_attribute("aria-label").startswith('" not", token 3, relevance ')
        names = nb.page.locator(f"{ROOT} [role='gridcell']").evaluate_all("es => es.map(e => e.getAttribute('aria-label'))")
        assert len(names) == 3 * T and all(n and "relevance" in n for n in names)
        assert nb.page.locator(f"{ROOT} [role='grid'] [role='row']").count() == 3
        assert nb.page.locator(f"{ROOT} [role='rowheader']").all_inner_texts()[:1] == ["LRP attn_lrp"]

        # click -> Python
        assert nb.execute("print(w.selected)").strip() == "(-1, -1)"
        nb.page.locator(cell(2, 7)).click()
        nb.wait_for_output("print(w.selected)", "(2, 7)")
        assert root.get_attribute("data-selected") == "2,7"
        assert nb.page.locator(cell(2, 7)).get_attribute("aria-selected") == "true"
        assert float(nb.execute("print(repr(w.selected_value))")) == float(vals[2, 7])

        # keyboard: one tab stop, arrows move the focus (readout follows), Enter / Space select
        assert nb.page.locator(f"{ROOT} .nbx-token[tabindex='0']").count() == 1
        nb.page.keyboard.press("ArrowLeft")
        nb.page.locator(f"{ROOT}[data-hovered='2,6']").wait_for(timeout=5000)
        focus = nb.page.locator(cell(2, 6)).evaluate(
            "e => { const s = getComputedStyle(e); return [document.activeElement === e || e.matches(':focus'),"
            " s.outlineStyle, parseFloat(s.outlineWidth)]; }")
        assert focus[0] and focus[1] != "none" and focus[2] >= 2, focus  # a visible focus ring
        nb.page.keyboard.press("Enter")
        nb.wait_for_output("print(w.selected)", "(2, 6)")
        nb.page.keyboard.press("ArrowUp")
        nb.page.keyboard.press("End")
        nb.page.keyboard.press(" ")
        nb.wait_for_output("print(w.selected)", f"(1, {T - 1})")
        assert nb.page.locator(f"{ROOT} .nbx-token[tabindex='0']").count() == 1

        # Python -> view
        nb.execute("w.selected = (0, 3)")
        nb.page.locator(f"{ROOT}[data-selected='0,3']").wait_for(timeout=5000)

        # the shared colour bar: nice ticks, 0 in the middle, ends at ±limit ≥ max|value|
        bar = nb.page.locator(f"{ROOT} .nbx-footer .nbx-cbar")
        ticks = [float(v) for v in bar.get_attribute("data-ticks").split(",")]
        limit = float(bar.get_attribute("data-limit"))
        m = float(np.abs(vals).max())
        assert ticks[len(ticks) // 2] == 0 and ticks[-1] == -ticks[0] == pytest.approx(limit)
        assert m <= limit <= 1.5 * m
        assert bar.locator(".nbx-cbar-tick").all_inner_texts() == [
            ("−" if v < 0 else "") + repr(abs(v)).removesuffix(".0") for v in ticks]
        # zero is the white middle of the map; the biggest values are the darkest ends
        assert _rgb(nb.page.locator(cell(0, 5)).evaluate(_RGB)) == (247, 247, 247)

        # fits an 800 px column: wraps, nothing sideways, labels ≥ 13 px
        layout = root.evaluate(VIEW_LAYOUT)
        assert layout["scroll"] <= layout["client"] + 1 and layout["right"] <= 800, f"{layout}"
        assert layout["contentRight"] <= layout["right"] + 1, f"{layout}"
        assert layout["min"] >= 13 - 0.01, f"{layout}"
        lines = nb.page.locator(f"{ROOT} .nbx-token-row[data-row='0'] .nbx-token").evaluate_all(
            "es => new Set(es.map(e => Math.round(e.getBoundingClientRect().top))).size")
        assert lines >= 4, lines  # the long row wraps onto several lines (and the two newline tokens break)
        nb.screenshot("token-heatmap-800", root)
        assert axe_violations(nb.page, ROOT) == []

        # per-row scales: one colour bar per row, each spanning that row
        nb.page.locator(f"{ROOT} input.nbx-shared-scale").uncheck()
        nb.wait_for_output("print(w.shared_scale)", "False")
        row_bars = nb.page.locator(f"{ROOT} .nbx-row-head .nbx-cbar")
        assert row_bars.count() == 3 and nb.page.locator(f"{ROOT} .nbx-footer .nbx-cbar").count() == 0
        for r in range(3):
            lim = float(row_bars.nth(r).get_attribute("data-limit"))
            assert float(np.abs(vals[r]).max()) <= lim <= 1.5 * float(np.abs(vals[r]).max())
        nb.execute("w.shared_scale = True")
        nb.page.locator(f"{ROOT}[data-shared='true']").wait_for(timeout=5000)

        # presentation scale: bigger text, still inside the column
        size = lambda: float(nb.page.locator(cell(0, 0)).evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))  # noqa: E731
        before = size()
        nb.execute("w.scale = 1.5")
        nb.page.locator(f"{ROOT}[data-scale='1.5']").wait_for(timeout=5000)
        assert size() == pytest.approx(1.5 * before)
        layout = root.evaluate(VIEW_LAYOUT)
        assert layout["scroll"] <= layout["client"] + 1 and layout["contentRight"] <= layout["right"] + 1, f"{layout}"
        nb.screenshot("token-heatmap-scaled", root)
        nb.execute("w.scale = 1.0")

        # another sequence: switched in the browser, the kernel follows and the selection is cleared
        nb.page.locator(f"{ROOT} select.nbx-sequence").select_option("1")
        nb.wait_for_output("print(w.sequence, w.selected)", "1 (-1, -1)")
        assert root.get_attribute("data-tokens") == "3" and nb.page.locator(f"{ROOT} .nbx-token").count() == 9
        nb.page.locator(cell(0, 1)).hover()
        nb.page.locator(f"{ROOT}[data-hovered='0,1']").wait_for(timeout=5000)
        assert readout.inner_text() == "LRP attn_lrp · token 1 “·bad” · relevance −0.25"
        nb.execute("w.sequence = 0")
        nb.page.locator(f"{ROOT}[data-sequence='0'][data-tokens='{T}']").wait_for(timeout=5000)

        # dark theme: a dark background, zero chips stay distinct from it, labels stay readable
        nb.execute("w.theme = 'dark'")
        nb.page.locator(f"{ROOT}[data-theme='dark']").wait_for(timeout=5000)
        bg = _rgb(root.evaluate(_RGB))
        assert _luminance(bg) < 0.05, bg
        zero = _rgb(nb.page.locator(cell(0, 5)).evaluate(_RGB))
        assert _contrast(zero, bg) > 3, (zero, bg)
        # the strongest chips (the colour bar's ends) are not the page's colour either
        nb.page.wait_for_timeout(200)
        assert end_contrast(nb, ROOT) >= 3
        chips = nb.page.locator(f"{ROOT} .nbx-token").evaluate_all("cs => cs.map(c => getComputedStyle(c).backgroundColor)")
        assert min(_contrast(_rgb(c), bg) for c in chips) >= 3, chips
        label = nb.page.locator(f"{ROOT} .nbx-row-label").first.evaluate("e => getComputedStyle(e).color")
        assert _contrast(_rgb(label), bg) >= 4.5, label
        for r, t in ((0, 5), (1, 3), (2, 7)):
            chip = nb.page.locator(cell(r, t)).evaluate("e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).color]")
            assert _contrast(_rgb(chip[0]), _rgb(chip[1])) >= 4.5, chip
        nb.screenshot("token-heatmap-dark", root)
        assert axe_violations(nb.page, ROOT) == []
        nb.execute("w.theme = 'auto'")
        nb.page.locator(f"{ROOT}[data-theme='auto']").wait_for(timeout=5000)
        # JupyterLab's own dark theme: the view follows it through the theme variables
        with lab_dark(nb):
            for _ in range(50):
                bg = _rgb(root.evaluate(_RGB))
                if _luminance(bg) < 0.05:
                    break
                nb.page.wait_for_timeout(100)
            assert _luminance(bg) < 0.05, bg
            label = nb.page.locator(f"{ROOT} .nbx-row-label").first.evaluate("e => getComputedStyle(e).color")
            assert _contrast(_rgb(label), bg) >= 4.5, (label, bg)
            assert _contrast(_rgb(nb.page.locator(cell(0, 5)).evaluate(_RGB)), bg) > 3
            nb.screenshot("token-heatmap-lab-dark", root)

        # the picture for the docs, in a wide window
        nb.page.set_viewport_size({"width": 1200, "height": 1000})
        nb.page.wait_for_timeout(300)
        nb.page.locator(cell(1, 3)).hover()
        nb.page.locator(f"{ROOT}[data-hovered='1,3']").wait_for(timeout=5000)
        shot = nb.screenshot("token-heatmap", root)
        assert shot == ARTIFACTS / "token-heatmap.png" and shot.stat().st_size > 10_000
        to_docs(shot, folder=DOCS)
        # and the classroom pair every view has in docs/screens (800 px column, 1400 px window)
        from classroom import screenshots

        nb.page.mouse.move(0, 0)
        screenshots(nb, "token-heatmap", ROOT)

        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors


def test_token_heatmap_exported_page_works_offline(chromium, tmp_path):
    from test_export import write_notebook

    from nbexplain.export import export_html

    write_notebook(tmp_path / "tokens.ipynb", [SETUP + "w"])
    page_path = export_html(tmp_path / "tokens.ipynb", tmp_path / "out" / "tokens.html", execute=True, timeout=120)
    tokens, vals = expected()

    context = chromium.browser.new_context(viewport={"width": 900, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors = []
    _, blocked = offline_only(context)
    page.on("pageerror", lambda e: errors.append(f"{getattr(e, 'name', 'Error')}: {getattr(e, 'message', e)}"))
    try:
        page.goto(page_path.as_uri(), wait_until="load")
        root = page.locator(f"{ROOT}[data-ready='true']")
        root.wait_for()
        assert root.get_attribute("data-tokens") == str(len(tokens))
        page.locator(cell(1, 3)).hover()
        page.locator(f"{ROOT}[data-hovered='1,3']").wait_for(timeout=5000)
        assert page.locator(f"{ROOT} .nbx-readout").inner_text() == (
            f"gradient × input · token 3 “·not” · relevance {js_format(vals[1, 3])}")
        page.locator(cell(0, 4)).click()
        page.locator(f"{ROOT}[data-selected='0,4']").wait_for(timeout=5000)
        # every sequence is in the page: switching needs no kernel
        page.locator(f"{ROOT} select.nbx-sequence").select_option("1")
        page.locator(f"{ROOT}[data-sequence='1'][data-tokens='3']").wait_for(timeout=5000)
        assert page.locator(f"{ROOT} .nbx-token").count() == 9
        page.screenshot(path=str(ARTIFACTS / "token-heatmap-offline.png"))
        assert blocked == [], blocked
        assert errors == [], errors
    finally:
        context.close()
