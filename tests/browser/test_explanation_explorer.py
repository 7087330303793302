"""ExplanationExplorer in real JupyterLab + Chromium: it renders, hovering a pixel reads every method's
value at that pixel, and switching the target class reaches Python and updates the maps (switching
back to a class already computed is drawn from the view's cache)."""

from __future__ import annotations

import json
import re

import pytest
from classroom import contrast as _contrast
from classroom import low_end_contrast, to_docs
from classroom import luminance as _luminance
from classroom import rgb as _rgb
from harness import VIEW_LAYOUT, axe_violations

pytestmark = pytest.mark.browser


CELLS = [
    "import torch\n"
    "from nbexplain import zoo\n"
    "from nbexplain.widgets import ExplanationExplorer\n"
    "torch.manual_seed(0)\n"
    "net = zoo.cnn(width=4)\n"
    "x = torch.rand(3, 1, 28, 28)\n"
    "ex = ExplanationExplorer(net, x, methods=['gradient', 'smoothgrad', 'lrp:epsilon_plus_flat'],\n"
    "                         method_options={'smoothgrad': {'n_samples': 4}}, n_shown=2, cell_size=84)\n"
    "ex",
]

SEL = ".nbx-explanation-explorer"


def test_explorer_renders_hovers_and_switches_target(lab):
    nb = lab.open_notebook(CELLS, name="explanation_explorer")
    with nb:
        page = nb.page
        root = nb.view(SEL)
        page.locator(f"{SEL}[data-ready='true']").wait_for()
        assert root.get_attribute("data-n") == "2" and root.get_attribute("data-methods") == "3"
        assert page.locator(f"{SEL} .nbx-mapcell canvas").count() == 2 * 4
        texts = page.locator(f"{SEL} .nbx-predicted").all_inner_texts()
        assert len(texts) == 2 and all(t.startswith("predicted: ") for t in texts)

        # hover one pixel of the LRP map in row 0: every column of that row shows its value there
        canvas = page.locator(f"{SEL} .nbx-mapcell[data-row='0'][data-method='lrp:epsilon_plus_flat'] canvas")
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.52, box["y"] + box["height"] * 0.45)
        page.locator(f"{SEL}[data-hover]").wait_for(timeout=5000)
        row, r, c = (int(v) for v in root.get_attribute("data-hover").split(","))
        assert row == 0
        values = {}
        for key in ("gradient", "smoothgrad", "lrp:epsilon_plus_flat"):
            cell = page.locator(f"{SEL} .nbx-mapcell[data-row='0'][data-method='{key}']")
            assert cell.locator(".nbx-value").inner_text().strip() != ""
            values[key] = float(cell.get_attribute("data-value"))
        assert page.locator(f"{SEL} .nbx-mapcell[data-row='0'][data-method='input'] .nbx-value").inner_text() == f"row {r}, col {c}"
        expected = json.loads(nb.execute(
            f"import json; m = ex.maps_for(0); print(json.dumps({{k: float(v[{r}, {c}]) for k, v in m.items()}}))"
        ))
        for key, v in values.items():
            assert v == pytest.approx(expected[key], rel=1e-5, abs=1e-9), key
        # the same pixel is marked in every column of the row
        assert page.locator(f"{SEL} .nbx-mapcell[data-row='0'] .nbx-marker:visible").count() == 4
        nb.screenshot("explanation-explorer", root)

        # switch row 0 to another class: the request reaches Python, the maps change
        before_target = int(nb.execute("print(ex.targets[0])"))
        new_target = (before_target + 1) % 10
        before_map = nb.execute("print(float(abs(ex.maps_for(0)['gradient']).sum()))")
        page.locator(f"{SEL} .nbx-row[data-row='0'] select.nbx-target").select_option(str(new_target))
        nb.wait_for_output("print(ex.targets[0], ex.busy)", f"{new_target} False", timeout=20)
        page.locator(f"{SEL}[data-busy='false'] .nbx-row[data-row='0'][data-target='{new_target}'][data-cached='true']").wait_for(timeout=10000)
        assert nb.execute("print(float(abs(ex.maps_for(0)['gradient']).sum()))") != before_map
        assert page.locator(f"{SEL} .nbx-mapcell[data-row='0'][data-method='input'] .nbx-scores").inner_text() == f"explained: {new_target}"
        entries = int(nb.execute("print(len(ex.entries))"))

        # back to the first class: already computed, drawn from the view's cache, nothing recomputed
        page.locator(f"{SEL} .nbx-row[data-row='0'] select.nbx-target").select_option(str(before_target))
        page.locator(f"{SEL} .nbx-row[data-row='0'][data-target='{before_target}'][data-cached='true']").wait_for(timeout=2000)
        nb.wait_for_output("print(ex.targets[0])", str(before_target), timeout=10)
        assert int(nb.execute("print(len(ex.entries))")) == entries
        assert nb.page_errors == [], nb.page_errors  # the harness already drops the known harmless one


# A ViT: attention rollout (patch tokens on the 4×4 grid) beside gradient × input, both at image size.
VIT_CELLS = [
    "import torch\n"
    "import nbexplain as nx\n"
    "from nbexplain.architectures import vit\n"
    "from nbexplain.widgets import ExplanationExplorer\n"
    "vnet = vit()\n"
    "xv = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))\n"
    "exv = ExplanationExplorer(vnet, xv, methods=['attention_rollout', 'gradient_x_input'], n_shown=1,\n"
    "                          cell_size=128, continuity_shifts=None)\n"
    "exv",
]


def test_explorer_shows_vit_attention_rollout_at_image_size(lab):
    nb = lab.open_notebook(VIT_CELLS, name="explanation_explorer_vit")
    with nb:
        page = nb.page
        root = nb.view(SEL)
        page.locator(f"{SEL}[data-ready='true']").wait_for()
        assert nb.execute("print(tuple(exv.maps.shape[-2:]), exv.source_shape)").strip() == "(16, 16) [16, 16]"
        canvas = page.locator(f"{SEL} .nbx-mapcell[data-row='0'][data-method='attention_rollout'] canvas")
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] * (13.5 / 16), box["y"] + box["height"] * (6.5 / 16))
        page.locator(f"{SEL}[data-hover='0,6,13']").wait_for(timeout=5000)
        cell = page.locator(f"{SEL} .nbx-mapcell[data-row='0'][data-method='attention_rollout']")
        # pixel (6, 13) lies in patch (1, 3): patch token 1 + 1·4 + 3 of the class token's rollout row
        want = float(nb.execute("print(repr(float(nx.attention_rollout(vnet, xv[:1]).tokens[0, 8])))"))
        assert float(cell.get_attribute("data-value")) == pytest.approx(want, rel=1e-5)
        assert root.get_attribute("data-methods") == "2"
        assert nb.page_errors == [], nb.page_errors


# Issue 14 items 1 and 3: two LRP composites whose titles differ only at the end, and an input with sharp edges
# (a bright square on black) so its outline is predictable on every map.
OUTLINE_CELLS = [
    "import torch\n"
    "from nbexplain import zoo\n"
    "from nbexplain.widgets import ExplanationExplorer\n"
    "torch.manual_seed(0)\n"
    "net = zoo.cnn(width=4)\n"
    "x = torch.zeros(1, 1, 28, 28)\n"
    "x[0, 0, 8:20, 8:20] = 1.0\n"
    "eo = ExplanationExplorer(net, x, methods=['lrp:epsilon_plus_flat', 'lrp:epsilon_gamma_box'], n_shown=1,\n"
    "                         cell_size=84)\n"
    "eo",
]

HEAD_JS = """(el) => { const s = getComputedStyle(el);
  return { ws: s.whiteSpace, to: s.textOverflow, sw: el.scrollWidth, cw: el.clientWidth, text: el.textContent }; }"""

EDGE_JS = """(sel) => {
  const c = document.querySelector(sel);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const y = Math.round(c.height / 2);
  const out = [];
  for (let x = 0; x < c.width / 2; x++) out.push(Array.from(d.slice(4 * (y * c.width + x), 4 * (y * c.width + x) + 3)));
  return {px: out, width: c.width};
}"""


def test_explorer_default_is_opaque_with_outline_and_titles_wrap(lab):
    nb = lab.open_notebook(OUTLINE_CELLS, name="explanation_explorer_outline")
    with nb:
        page = nb.page
        root = nb.view(SEL)
        page.locator(f"{SEL}[data-ready='true']").wait_for()
        assert root.get_attribute("data-opacity") == "1"
        assert root.get_attribute("data-outline") == "true"
        # both composites' full names are readable: the heads wrap inside their column, nothing is cut off
        for key in ("lrp:epsilon_plus_flat", "lrp:epsilon_gamma_box"):
            t = page.locator(f"{SEL} .nbx-explorer-head[data-method='{key}']").evaluate(HEAD_JS)
            assert t["text"] == f"LRP {key.split(':')[1]}"
            assert t["ws"] != "nowrap" and t["to"] != "ellipsis", t
            assert t["sw"] <= t["cw"] + 1, t
        # the input shows on each map as a thin dark grey line at the square's left edge (8/28 of the width)
        for key in ("lrp:epsilon_plus_flat", "lrp:epsilon_gamma_box"):
            got = page.evaluate(EDGE_JS, f"{SEL} .nbx-mapcell[data-row='0'][data-method='{key}'] canvas")
            dark = [x / got["width"] for x, p in enumerate(got["px"]) if max(p) < 60 and max(p) - min(p) < 25]
            assert dark and all(0.2 <= x <= 0.36 for x in dark), (key, dark)
        assert nb.page_errors == [], nb.page_errors


# Issue 14 items 4, 6, 7, 9 and keyboard/axe: four methods (two LRP composites) on two samples in an 800 px column.
CLASS_CELLS = [
    "import torch\n"
    "from nbexplain import zoo\n"
    "from nbexplain.widgets import ExplanationExplorer\n"
    "torch.manual_seed(0)\n"
    "net = zoo.cnn(width=4)\n"
    "x = torch.rand(3, 1, 28, 28)\n"
    "ec = ExplanationExplorer(net, x, methods=['gradient', 'gradient_x_input', 'lrp:epsilon_plus_flat',\n"
    "                                          'lrp:epsilon_gamma_box'], n_shown=2, cell_size=96,\n"
    "                          method_options={'gradient': {'absolute': True}})  # one unsigned (sequential) map\n"
    "ec",
]
KEYS = ["gradient", "gradient_x_input", "lrp:epsilon_plus_flat", "lrp:epsilon_gamma_box"]

_RGB = "e => getComputedStyle(e).backgroundColor"
_FG = "e => getComputedStyle(e).color"
FOCUS_JS = """e => { const s = getComputedStyle(e);
  return [document.activeElement === e, s.outlineStyle, parseFloat(s.outlineWidth)]; }"""


def js_format(v: float) -> str:
    """Python twin of the view's score format (``formatNumber``, 4 significant digits, for |v| in [1e-3, 1e5),
    with a true minus sign)."""
    return repr(float(f"{v:.4g}")).removesuffix(".0").replace("-", "−")


def _fits(root) -> dict:
    layout = root.evaluate(VIEW_LAYOUT)
    assert layout["scroll"] <= layout["client"] + 1 and layout["contentRight"] <= layout["right"] + 1, layout
    assert layout["min"] >= 13 - 0.01, layout
    return layout


def test_explorer_fits_800_px_with_labelled_scores_scale_keyboard_and_dark_theme(lab):
    nb = lab.open_notebook(CLASS_CELLS, name="explanation_explorer_classroom", viewport=(800, 2000))
    with nb:
        page = nb.page
        root = nb.view(SEL)
        page.locator(f"{SEL}[data-ready='true']").wait_for()
        assert root.get_attribute("data-methods") == "4"

        # fits the column: every LRP column is on screen (the rows wrap), nothing scrolls sideways, text ≥ 13 px
        _fits(root)
        right = root.bounding_box()["x"] + root.bounding_box()["width"]
        for i in range(2):
            for key in ["input", *KEYS]:
                box = page.locator(f"{SEL} .nbx-mapcell[data-row='{i}'][data-method='{key}'] canvas").bounding_box()
                assert box and box["width"] >= 90 and box["x"] + box["width"] <= right + 1, (i, key, box)
        # the rows wrap alike, so a method's maps stay in one column
        for key in KEYS:
            xs = [page.locator(f"{SEL} .nbx-mapcell[data-row='{i}'][data-method='{key}']").bounding_box()["x"]
                  for i in range(2)]
            assert abs(xs[0] - xs[1]) < 1, (key, xs)

        # every number labelled: no `±… · Σ/f … · cont …`; the scores named and equal to the kernel's
        text = root.inner_text()
        assert "±" not in text and "Σ/f" not in text and not re.search(r"\bcont\b", text), text
        scores = json.loads(nb.execute("import json; print(json.dumps(ec.scores_for(0)))"))
        for key in KEYS:
            lines = page.locator(f"{SEL} .nbx-mapcell[data-row='0'][data-method='{key}'] .nbx-score").all_inner_texts()
            want = []
            if scores[key]["conservation"] is not None:
                want.append(f"conservation {js_format(scores[key]['conservation'])}")
            want.append(f"continuity {js_format(scores[key]['continuity'])}")
            assert lines == want, (key, lines, want)
        assert scores["lrp:epsilon_plus_flat"]["conservation"] is not None  # LRP distributes the score
        legend = page.locator(f"{SEL} .nbx-explorer-legend").inner_text()
        assert "conservation = sum of the map ÷ the explained class score" in legend, legend
        assert "continuity = " in legend and "RdBu" in legend and "viridis" in legend, legend

        # each map's colour bar: nice ticks, 0 among them, ends covering the map (signed maps symmetric)
        kinds = json.loads(nb.execute("print(json.dumps({m['key']: m['kind'] for m in ec.methods}))"))
        tops = json.loads(nb.execute(
            "print(json.dumps({k: [float(abs(v).max()), float(v.min())] for k, v in ec.maps_for(0).items()}))"))
        for key in KEYS:
            bar = page.locator(f"{SEL} .nbx-mapcell[data-row='0'][data-method='{key}'] .nbx-scalebar")
            ticks = [float(v) for v in bar.get_attribute("data-ticks").split(",")]
            lo, hi = float(bar.get_attribute("data-vmin")), float(bar.get_attribute("data-vmax"))
            assert 0 in ticks and ticks[0] == lo and ticks[-1] == hi, (key, ticks, lo, hi)
            top = tops[key][0]
            assert top * (1 - 1e-5) <= hi <= 1.5 * top, (key, hi, top)
            if kinds[key] == "diverging":
                assert lo == -hi, (key, lo, hi)
            labels = bar.locator(".nbx-scalebar-tick").all_inner_texts()
            assert len(labels) == len(ticks) and all(len(t) <= 7 for t in labels), labels
            name = bar.locator(".nbx-scalebar-ramp").get_attribute("aria-label")
            assert name.startswith("colour scale of ") and ("zero" in name or "low" in name), name

        # hover: every value named
        canvas = page.locator(f"{SEL} .nbx-mapcell[data-row='0'][data-method='lrp:epsilon_plus_flat'] canvas")
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        page.locator(f"{SEL}[data-hover]").wait_for(timeout=5000)
        value = page.locator(f"{SEL} .nbx-mapcell[data-row='0'][data-method='gradient'] .nbx-value").inner_text()
        assert value.startswith("value "), value
        assert page.locator(f"{SEL} .nbx-readout").inner_text().startswith("sample 0 · row ")
        page.mouse.move(0, 0)
        nb.screenshot("explanation-explorer-800", root)
        assert axe_violations(nb.page, SEL) == []

        # keyboard: the opacity slider moves with arrows (focus ring visible); "more samples" asks the kernel
        # through the shared request queue
        slider = page.locator(f"{SEL} input.nbx-opacity")
        slider.focus()
        page.keyboard.press("ArrowLeft")
        page.locator(f"{SEL}[data-opacity='0.99']").wait_for(timeout=5000)
        focus = slider.evaluate(FOCUS_JS)
        assert focus[0] and focus[1] != "none" and focus[2] >= 2, focus
        nb.wait_for_output("print(ec.opacity)", "0.99")
        page.keyboard.press("End")
        page.locator(f"{SEL}[data-opacity='1']").wait_for(timeout=5000)
        page.keyboard.press("Tab")
        more = page.locator(f"{SEL} button.nbx-more")
        assert more.evaluate(FOCUS_JS)[0]
        page.keyboard.press("Enter")
        page.locator(f"{SEL}[data-n='3'][data-busy='false']").wait_for(timeout=60000)
        assert nb.execute("print(ec.n_shown, ec.busy, ec.completed_request >= 1)").strip() == "3 False True"
        sel = page.locator(f"{SEL} .nbx-row[data-row='0'] select.nbx-target")
        sel.focus()
        focus = sel.evaluate(FOCUS_JS)
        assert focus[0] and focus[1] != "none" and focus[2] >= 2, focus
        assert sel.evaluate("e => e.labels.length && e.labels[0].textContent.startsWith('explain class')")

        # presentation scale: bigger text and maps, still inside the column
        head = page.locator(f"{SEL} .nbx-mapcell[data-row='0'][data-method='gradient'] .nbx-explorer-head")
        size = lambda: float(head.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))  # noqa: E731
        before, width = size(), canvas.bounding_box()["width"]
        nb.execute("ec.scale = 1.5")
        page.locator(f"{SEL}[data-scale='1.5']").wait_for(timeout=5000)
        assert size() == pytest.approx(1.5 * before)
        assert canvas.bounding_box()["width"] >= 1.4 * width
        _fits(root)
        nb.screenshot("explanation-explorer-scaled", root)
        nb.execute("ec.scale = 1.0")
        page.locator(f"{SEL}[data-scale='1']").wait_for(timeout=5000)

        # dark theme: dark background, titles and scores readable, zero (white) distinct from the background
        nb.execute("ec.theme = 'dark'")
        page.locator(f"{SEL}[data-theme='dark']").wait_for(timeout=5000)
        bg = _rgb(root.evaluate(_RGB))
        assert _luminance(bg) < 0.05, bg
        for css in (".nbx-explorer-head", ".nbx-score", ".nbx-explorer-legend", ".nbx-scalebar-tick", ".nbx-control"):
            fg = _rgb(page.locator(f"{SEL} {css}").first.evaluate(_FG))
            assert _contrast(fg, bg) >= 4.5, (css, fg, bg)
        assert _contrast((247, 247, 247), bg) > 3
        # the unsigned maps (gradient: |∂f/∂x|, viridis) keep their zero distinct from the dark background
        page.wait_for_timeout(300)
        assert low_end_contrast(nb, SEL) >= 3
        nb.screenshot("explanation-explorer-dark", root)
        assert axe_violations(nb.page, SEL) == []
        nb.execute("ec.theme = 'auto'")
        page.locator(f"{SEL}[data-theme='auto']").wait_for(timeout=5000)

        # the pictures for the docs: 800 px (above) and a wide window
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.set_viewport_size({"width": 1400, "height": 1400})
        page.wait_for_timeout(300)
        _fits(root)
        wide = nb.screenshot("explanation-explorer-1400", root)
        to_docs(wide.with_name("explanation-explorer-800.png"), wide)

        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors
