"""A notebook exported with ``nbexplain.export`` works in Chromium with every network request refused.

The notebook (a dense autoencoder trained in seconds on the digits, a DeltaExplorer, a Heatmap and a
SimilarityGrid of three small checkpoints) is
executed and exported, the page and its ``_files/`` folder are moved elsewhere (relative URLs), and the
``file://`` page is opened with only ``file://`` requests let through: the views render from the saved
widget state, the δ slider swaps reconstructions, hovering the heatmap reads values, the similarity grid's
checkpoint slider and metric switch recolour the cells — with no kernel.
"""

from __future__ import annotations

import json
import re
import shutil
import time

import pytest
from harness import ARTIFACTS, offline_only

pytestmark = pytest.mark.browser

CELLS = [
    "%%md\n# Exported offline",
    "import json, torch\n"
    "import nbexplain as nx\n"
    "from nbexplain.zoo import dense_autoencoder, train\n"
    "from nbexplain.widgets import DeltaExplorer, Heatmap\n"
    "torch.set_num_threads(1)\n"
    "d = nx.data.digits()\n"
    "ae = dense_autoencoder(64, (32,), code=12, seed=0)\n"
    "_ = train(ae, d.x_train, epochs=5, lr=3e-3, progress=False)\n"
    "ex = DeltaExplorer(ae, (d.x_test, d.y_test), n_samples=6, max_stats_samples=1000, max_eval_samples=200)\n"
    "print('KS=' + json.dumps([int(ex.ks[int(i)]) for i in ex.k_index]))\n"
    "ex",
    "maps = d.x_test[:4, 0] - d.x_train[:, 0].mean(0)\n"
    "h = Heatmap(maps, images=d.x_test[:4], titles=[f'digit {int(v)}' for v in d.y_test[:4]], cell_size=96)\n"
    "h",
    "from nbexplain.zoo import mlp\n"
    "from nbexplain.widgets import SimilarityGrid\n"
    "ckpts = [mlp(64, (16, 8), seed=s) for s in range(3)]\n"
    "res = nx.similarity_grid(ckpts, d.x_test, ['fc1', 'fc2', 'out'], metric=['svcca', 'cka'], progress=False)\n"
    "g = SimilarityGrid(res, cell_size=40)\n"
    "g",
]

# Sum of the red channel of every reconstruction canvas (what the user sees).
PIXELS = """root => Array.from(root.querySelectorAll('canvas.nbx-recon')).map(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return s; })"""


def js_format(v: float) -> str:
    """Python twin of the views' ``formatNumber`` (4 significant digits) for |v| in [1e-3, 1e5)."""
    return repr(float(f"{v:.4g}")).removesuffix(".0")


def write_notebook(path, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(c[len("%%md\n"):]) if c.startswith("%%md\n") else nbformat.v4.new_code_cell(c)
        for c in cells
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def test_exported_page_renders_and_interacts_offline(chromium, tmp_path):
    from nbexplain.data import digits
    from nbexplain.export import export_html

    t0 = time.perf_counter()
    write_notebook(tmp_path / "offline.ipynb", CELLS)
    page_path = export_html(tmp_path / "offline.ipynb", tmp_path / "out" / "offline.html", execute=True, timeout=120)
    t_export = time.perf_counter() - t0
    assert page_path == tmp_path / "out" / "offline.html" and (tmp_path / "out" / "offline_files").is_dir()

    # the page and its folder, moved as a unit: every URL is relative
    moved = tmp_path / "moved elsewhere"
    moved.mkdir()
    shutil.move(str(page_path), moved / "offline.html")
    shutil.move(str(tmp_path / "out" / "offline_files"), moved / "offline_files")
    html = (moved / "offline.html").read_text()
    ks = json.loads(re.search(r"KS=(\[[0-9, ]*\])", html).group(1))

    context = chromium.browser.new_context(viewport={"width": 1200, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(30_000)
    requested, errors = [], []
    allowed, blocked = offline_only(context)
    page.on("request", lambda r: requested.append(r.url))
    page.on("pageerror", lambda e: errors.append(f"{getattr(e, 'name', 'Error')}: {getattr(e, 'message', e)}"))
    try:
        t1 = time.perf_counter()
        page.goto((moved / "offline.html").as_uri(), wait_until="load")
        root = page.locator(".nbx-delta-explorer[data-ready='true']")
        root.wait_for()
        t_render = time.perf_counter() - t1

        # the DeltaExplorer: the slider swaps precomputed reconstructions, no kernel involved
        assert root.get_attribute("data-mode") == "reconstruction"
        assert page.locator(".nbx-delta-explorer").count() == 1 and page.locator(".nbx-heatmap").count() == 1
        assert page.locator(".nbx-delta-explorer canvas.nbx-recon").count() == 6
        slider = page.locator(".nbx-delta-explorer input.nbx-delta-slider")
        slider.fill("0")
        k_low, pix_low = int(root.get_attribute("data-k")), root.evaluate(PIXELS)
        slider.fill(str(len(ks) - 1))
        k_high, pix_high = int(root.get_attribute("data-k")), root.evaluate(PIXELS)
        assert (k_low, k_high) == (ks[0], ks[-1]) and k_low < k_high
        assert pix_low != pix_high and all(p > 0 for p in pix_high)
        page.locator(".nbx-delta-explorer input.nbx-random-toggle").check()
        assert root.get_attribute("data-subspace") == "random"
        page.locator(".nbx-delta-explorer input.nbx-random-toggle").uncheck()
        # asking for other samples needs a kernel: greyed out and inert in the static page
        resample = page.locator(".nbx-delta-explorer button.nbx-resample")
        assert resample.evaluate("b => getComputedStyle(b).pointerEvents") == "none"

        # the Heatmap: four signed maps, and hovering reads the exact saved value
        heat = page.locator(".nbx-heatmap[data-ready='true']")
        heat.wait_for()
        assert heat.get_attribute("data-n") == "4" and heat.get_attribute("data-cmap") == "diverging"
        assert page.locator(".nbx-heatmap .nbx-cell").count() == 4
        d = digits()
        maps = (d.x_test[:4, 0] - d.x_train[:, 0].mean(0)).numpy()
        i, (r, c) = 1, divmod(int(abs(maps[1]).argmax()), maps.shape[2])
        canvas = page.locator(f".nbx-heatmap .nbx-cell[data-index='{i}'] canvas")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        h, w = maps.shape[1:]
        page.mouse.move(box["x"] + (c + 0.5) * box["width"] / w, box["y"] + (r + 0.5) * box["height"] / h)
        page.locator(f".nbx-heatmap[data-hover='{i},{r},{c}']").wait_for(timeout=5000)
        assert float(heat.get_attribute("data-value")) == pytest.approx(float(maps[i, r, c]), abs=1e-6)
        readout = page.locator(".nbx-heatmap .nbx-readout").inner_text()
        assert readout.endswith(js_format(float(heat.get_attribute("data-value")))), readout

        # the SimilarityGrid: the checkpoint slider and the metric switch are local, precomputed state
        grid = page.locator(".nbx-similarity-grid[data-ready='true']")
        grid.wait_for()
        assert grid.get_attribute("data-cells") == "9" and grid.get_attribute("data-checkpoints") == "3"
        colours = ".nbx-similarity-grid .nbx-sim-cell"
        last = page.eval_on_selector_all(colours, "els => els.map(e => e.style.background)")
        page.locator(".nbx-similarity-grid input.nbx-checkpoint").fill("0")
        page.locator(".nbx-similarity-grid[data-checkpoint='0']").wait_for(timeout=5000)
        first = page.eval_on_selector_all(colours, "els => els.map(e => e.style.background)")
        assert first != last
        page.locator(".nbx-similarity-grid select.nbx-metric").select_option("cka")
        page.locator(".nbx-similarity-grid[data-metric='cka']").wait_for(timeout=5000)
        assert page.eval_on_selector_all(colours, "els => els.map(e => e.style.background)") != first

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "export.png"), full_page=True)
    finally:
        context.close()

    # nothing but the page's own folder was asked for
    assert blocked == [], blocked
    assert not [u for u in requested if u.startswith(("http:", "https:", "ws:", "wss:"))], requested
    assert any(u.endswith("/offline_files/anywidget.js") for u in allowed), allowed
    assert errors == [], errors
    print(f"export (execute) {t_export:.1f} s, offline render {t_render:.1f} s")


# A SaturationDashboard (bqplot line and bar charts) after two epochs, and a plain bqplot chart.
BQPLOT_CELLS = [
    "%%md\n# bqplot offline",
    "import torch, nbexplain as nx\n"
    "from nbexplain.zoo import mlp\n"
    "from nbexplain.widgets import SaturationDashboard\n"
    "torch.manual_seed(0)\n"
    "net = mlp(20, (16, 12, 8), seed=0)\n"
    "tracker = nx.SaturationTracker(net).start()\n"
    "dash = SaturationDashboard(tracker)\n"
    "for _ in range(2):\n"
    "    with torch.no_grad():\n"
    "        net(torch.randn(200, 20))\n"
    "    _ = tracker.end_epoch()\n"
    "tracker.close()\n"
    "dash",
    "import bqplot.pyplot as plt\n"
    "fig = plt.figure(title='plain bqplot')\n"
    "_ = plt.plot([0, 1, 2, 3], [0.0, 1.0, 4.0, 9.0])\n"
    "fig",
]

# The points of every drawn line of a bqplot figure (what the user sees as curves).
LINE_POINTS = """root => Array.from(root.querySelectorAll('.bqplot path.line'))
  .map(p => (p.getAttribute('d') || '').split(/[ML]/).filter(s => s.trim()).length)"""


def test_exported_bqplot_charts_render_offline(chromium, tmp_path):
    from nbexplain.export import export_html

    write_notebook(tmp_path / "charts.ipynb", BQPLOT_CELLS)
    page_path = export_html(tmp_path / "charts.ipynb", tmp_path / "charts.html", execute=True, timeout=120)
    folder = tmp_path / "charts_files"
    assert {"bqplot.js", "bqscales.js", "bqplot.LICENSE.txt", "bqscales.LICENSE.txt"} <= {p.name for p in folder.iterdir()}

    context = chromium.browser.new_context(viewport={"width": 1200, "height": 1400})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors, console, failed = [], [], []
    allowed, blocked = offline_only(context)
    page.on("pageerror", lambda e: errors.append(f"{getattr(e, 'name', 'Error')}: {getattr(e, 'message', e)}"))
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("requestfailed", lambda r: failed.append(r.url))
    try:
        page.goto(page_path.as_uri(), wait_until="load")
        dash = page.locator(".nbx-saturation-dashboard")
        dash.wait_for()
        # the dashboard's charts are bqplot figures drawn from the local AMD modules: one line per layer,
        # two epochs each, in the epochs chart
        page.wait_for_function(f"el => ({LINE_POINTS})(el).filter(n => n == 2).length >= 4",
                               arg=dash.element_handle(), timeout=30_000)
        assert dash.locator(".bqplot").count() >= 2
        assert dash.locator(".bqplot rect.bargroup, .bqplot .bargroup rect, .bqplot g.bar rect").count() > 0
        # the plain chart: one line of four points, and the figure's title
        plain = page.locator(".bqplot", has_text="plain bqplot")
        plain.wait_for()
        assert plain.evaluate(LINE_POINTS.replace(".bqplot path.line", "path.line")) == [4]
        assert page.locator(".jupyter-widgets.widget-error, .widget-error").count() == 0
        assert "Error" not in (page.locator(".jp-OutputArea-output").all_inner_texts() or [""])[0]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "export-bqplot.png"), full_page=True)
    finally:
        context.close()
    assert blocked == [], blocked
    assert any(u.endswith("/charts_files/bqplot.js") for u in allowed), allowed
    assert any(u.endswith("/charts_files/bqscales.js") for u in allowed), allowed
    assert errors == [], errors
    assert failed == [], failed  # the folder holds everything the page asks for (fonts included)
    assert console == [], console  # nothing failed to load, and the charts draw no NaN into the SVG
