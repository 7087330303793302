"""ExplanationExplorer in real JupyterLab + Chromium: it renders, hovering a pixel reads every method's
value at that pixel, and switching the target class reaches Python and updates the maps (switching
back to a class already computed is drawn from the view's cache)."""

from __future__ import annotations

import json

import pytest

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
        assert page.locator(f"{SEL} .nbx-mapcell[data-row='0'][data-method='input'] .nbx-value").inner_text() == f"({r}, {c})"
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
  return out;
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
        # the input shows on each map as a thin dark grey line at the square's left edge (canvas x ≈ 24)
        for key in ("lrp:epsilon_plus_flat", "lrp:epsilon_gamma_box"):
            px = page.evaluate(EDGE_JS, f"{SEL} .nbx-mapcell[data-row='0'][data-method='{key}'] canvas")
            dark = [x for x, p in enumerate(px) if max(p) < 60 and max(p) - min(p) < 25]
            assert dark and all(18 <= x <= 30 for x in dark), (key, dark)
        assert nb.page_errors == [], nb.page_errors
