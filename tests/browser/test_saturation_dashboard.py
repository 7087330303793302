"""SaturationDashboard in real JupyterLab + Chromium: one line per layer, growing after each epoch."""

from __future__ import annotations

import pytest
from classroom import contrast, fits_column, lab_dark, luminance, to_docs
from harness import ARTIFACTS, VIEW_LAYOUT, axe_violations, offline_only
from test_export import write_notebook

pytestmark = pytest.mark.browser

CELLS = [
    "import torch, nbexplain as nx\n"
    "from nbexplain.zoo import mlp\n"
    "from nbexplain.widgets import SaturationDashboard\n"
    "net = mlp(20, (16, 12, 8), seed=0)\n"
    "tracker = nx.SaturationTracker(net).start()\n"
    "dash = SaturationDashboard(tracker)\n"
    "def epoch(n=200):\n"
    "    with torch.no_grad():\n"
    "        net(torch.randn(n, 20))\n"
    "    return tracker.end_epoch()\n"
    "_ = epoch(); _ = epoch()\n"
    "dash",
]

# Points of each solid (train) line in the epochs figure: bqplot draws one <path class="line" id="curveN">
# per layer; legend swatches have no id and eval lines are dashed.
TRAIN_LINES = """f => Array.from(f.querySelectorAll('path.line[id^="curve"]'))
  .filter(p => (p.getAttribute('style') || '').includes('dasharray: none'))
  .map(p => (p.getAttribute('d') || '').split(/[ML]/).filter(s => s.trim()).length)"""


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dashboard_draws_one_line_per_layer_and_grows(lab):
    nb = lab.open_notebook(CELLS, name="saturation_dashboard")
    with nb:
        dash = nb.view(".nbx-saturation-dashboard")
        fig = nb.page.locator(".nbx-saturation-dashboard .bqplot").first
        fig.wait_for(state="visible")
        nb.page.wait_for_function(f"f => ({TRAIN_LINES})(f).length == 4", arg=fig.element_handle(), timeout=20000)
        points = fig.evaluate(TRAIN_LINES)
        assert points == [2, 2, 2, 2], points  # 4 layers × 2 epochs
        nb.execute("_ = epoch()")
        nb.page.wait_for_function(f"f => ({TRAIN_LINES})(f).every(n => n == 3)", arg=fig.element_handle(),
                                  timeout=20000)
        assert fig.evaluate(TRAIN_LINES) == [3, 3, 3, 3]
        # the summary line is a separate widget: its update may render a moment after the chart's
        nb.page.wait_for_function("el => el.innerText.includes('epoch 2')", arg=dash.element_handle(), timeout=20000)
        assert "epoch 2" in dash.inner_text()
        nb.screenshot("saturation_dashboard", dash)
        nb.execute("tracker.close()")
        assert nb.page_errors == [], nb.page_errors  # the harness already drops the known harmless one


# ---------------------------------------------------------------------------------------------------------------
# Classroom checks (issue 14): 800 px column, whole-epoch ticks, legends beside the charts, readable layer names,
# the whole summary, text ≥ 13 px, presentation scale, accessibility, and a console with no errors.



ROOT = ".nbx-saturation-dashboard"

# An autoencoder (six layers with long dotted names); epoch 0 has no eval pass (a NaN start of every eval line),
# probes cover only some layers, and one cell shows the dashboard before any epoch exists.
CLASS_CELLS = [
    "import torch, nbexplain as nx\n"
    "from nbexplain.zoo import dense_autoencoder\n"
    "from nbexplain.widgets import SaturationDashboard\n"
    "ae = dense_autoencoder(20, (16, 12), code=8, seed=0)\n"
    "tracker = nx.SaturationTracker(ae).start()\n"
    "dash = SaturationDashboard(tracker, title='autoencoder 20-16-12-8-12-16-20')\n"
    "def epoch(evaluate=True, probes=None):\n"
    "    with torch.no_grad():\n"
    "        ae.train(); ae(torch.randn(200, 20))\n"
    "        if evaluate:\n"
    "            ae.eval(); ae(torch.randn(100, 20)); ae.train()\n"
    "    return tracker.end_epoch(probes=probes)\n"
    "dash",
    "_ = epoch(evaluate=False); _ = epoch(); _ = epoch(probes={'encoder.fc1': 0.61, 'encoder.code': 0.72})",
]

TICKS = """(fig, cls) => Array.from(fig.querySelectorAll('g.axis')).map(a => Array.from(a.querySelectorAll('.tick text'))
  .map(t => t.textContent))"""
BOXES = """fig => { const axes = Array.from(fig.querySelectorAll('g.axis'));
  return axes.map(a => Array.from(a.querySelectorAll('.tick text')).map(t => { const r = t.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom, t.textContent]; })); }"""
RECT = "e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }"


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dashboard_in_an_800px_column_is_readable_and_console_clean(lab):
    nb = lab.open_notebook(CLASS_CELLS, name="saturation_dashboard_classroom", viewport=(800, 1400))
    with nb:
        root = nb.view(ROOT)
        figs = nb.page.locator(f"{ROOT} .bqplot")
        nb.page.wait_for_function(
            "r => r.innerText.includes('epoch 2 (latest)') && r.querySelectorAll('path.line[id^=\"curve\"]').length",
            arg=root.element_handle(), timeout=20000)
        nb.page.wait_for_timeout(800)  # bqplot animates its axes
        epochs_fig, layers_fig = figs.nth(0), figs.nth(1)

        # whole-epoch ticks, each once (no "0 0 0 1 1 1"); bqplot re-renders its axes asynchronously (on a loaded
        # machine the first drawing can still show its default ticks), so wait for the settled axis
        for _ in range(100):
            x_ticks = epochs_fig.evaluate(TICKS)[0]
            if x_ticks == ["0", "1", "2"]:
                break
            nb.page.wait_for_timeout(100)
        assert x_ticks == ["0", "1", "2"], x_ticks

        # legends: none drawn by bqplot over the data; the HTML legends sit below the plots and name every layer
        assert nb.page.locator(f"{ROOT} .bqplot g.legend text").count() == 0
        legend = nb.page.locator(f"{ROOT} .nbx-sd-legend").first
        assert legend.evaluate(RECT)[1] >= epochs_fig.evaluate(RECT)[3] - 1
        layers = ["encoder.fc1", "encoder.fc2", "encoder.code", "decoder.fc1", "decoder.fc2", "decoder.out"]
        assert [t.strip() for t in legend.locator(".nbx-sd-item").all_inner_texts()] == layers

        # layer names on the bar chart: short, and no two labels run into each other
        boxes = layers_fig.evaluate(BOXES)[0]
        assert [b[4] for b in boxes] == ["e.fc1", "e.fc2", "e.code", "d.fc1", "d.fc2", "d.out"]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not _overlap(a, b), (a, b)
            assert a[3] <= layers_fig.evaluate(RECT)[3] + 1, a  # inside the figure, not cut off at its bottom
        # the full name on hover
        nb.page.locator(f"{ROOT} .bqplot").nth(1).locator("g.bargroup rect").first.hover()
        tip = nb.page.locator(".bqplot_mark_tooltip").filter(has_text="encoder.fc1")
        tip.first.wait_for(state="visible", timeout=5000)
        nb.page.mouse.move(0, 0)

        # the summary: every layer with its labelled numbers, wrapped in the column (never clipped)
        table = nb.page.locator(f"{ROOT} table.nbx-sd-table")
        heads = table.locator("thead th").all_inner_texts()
        assert heads == ["layer", "saturation", "k of width", "probe accuracy", "train", "eval"]
        assert table.locator("tbody th").all_inner_texts() == layers
        assert nb.page.locator(f"{ROOT} .widget-html").last.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
        sat = nb.execute("r = tracker.history[-1].train['encoder.fc2']; print(f'{r.saturation:.2f}', "
                         "r.intrinsic_dimension, r.width)").split()
        row = table.locator("tbody tr").nth(1).locator("td").all_inner_texts()
        assert [row[0], row[2]] == [sat[0], f"{sat[1]} of {sat[2]}"], row
        assert table.locator("tbody tr").nth(2).locator("td").last.inner_text() == "0.720"
        assert table.locator("tbody tr").nth(1).locator("td").last.inner_text() == "–"  # no probe for fc2

        # 800 px: the charts stack, nothing sideways, text ≥ 13 px (bqplot's tick text included)
        a, b = epochs_fig.evaluate(RECT), layers_fig.evaluate(RECT)
        assert b[1] >= a[3] - 1 or b[0] >= a[2] - 1, (a, b)
        fits_column(root)
        nb.screenshot("saturation-dashboard-800", root)
        assert axe_violations(nb.page, ROOT) == []
        # JupyterLab's dark theme: the legends, captions and table follow its font colours
        with lab_dark(nb):
            nb.page.wait_for_timeout(500)
            assert axe_violations(nb.page, ROOT) == []
            nb.screenshot("saturation-dashboard-lab-dark", root)

        # presentation scale: larger text and charts, still in the column
        size = lambda: epochs_fig.locator("g.axis .tick text").first.evaluate(  # noqa: E731
            "e => parseFloat(getComputedStyle(e).fontSize)")
        before, height = size(), a[3] - a[1]
        nb.execute("dash.scale = 1.5")
        nb.page.wait_for_function(f"f => f.getBoundingClientRect().height > {height * 1.3}",
                                  arg=epochs_fig.element_handle(), timeout=10000)
        nb.page.wait_for_timeout(800)
        assert size() == pytest.approx(1.5 * before)
        fits_column(root)
        assert nb.page.locator(f"{ROOT} .widget-html").last.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
        nb.screenshot("saturation-dashboard-scaled", root)
        nb.execute("dash.scale = 1.0")

        # one more epoch with the dashboard on screen; still no console error
        nb.execute("_ = epoch()")
        nb.page.wait_for_function("r => r.innerText.includes('epoch 3 (latest)')", arg=root.element_handle(),
                                  timeout=20000)
        nb.page.wait_for_timeout(800)
        assert epochs_fig.evaluate(TICKS)[0] == ["0", "1", "2", "3"]

        nb.page.set_viewport_size({"width": 1400, "height": 1000})
        nb.page.wait_for_timeout(1000)
        a, b = epochs_fig.evaluate(RECT), layers_fig.evaluate(RECT)
        assert abs(a[1] - b[1]) < 2, (a, b)  # side by side in a wide column
        wide = root.evaluate(VIEW_LAYOUT)
        assert wide["contentRight"] <= wide["right"] + 1 and wide["min"] >= 13 - 0.01, wide
        # the table's caption reads on one line in a wide column (it wrapped to the narrow table's width)
        lines = root.locator("table.nbx-sd-table caption").evaluate(
            "c => c.getBoundingClientRect().height / parseFloat(getComputedStyle(c).lineHeight || '0')"
            " || c.getBoundingClientRect().height / (1.2 * parseFloat(getComputedStyle(c).fontSize))")
        assert lines < 1.6, lines
        assert "k = the number of dimensions that explain 0.99" in root.locator(".nbx-sd-note").inner_text()
        shot = nb.screenshot("saturation-dashboard-1400", root)
        to_docs(shot, shot.with_name("saturation-dashboard-800.png"))
        nb.execute("tracker.close()")
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors


# ---------------------------------------------------------------------------------------------------------------
# Theme (issue 14): bqplot's own dark-theme style colours axis labels orange and tick values at 54 % opacity; every
# chart text takes the view's text colour instead, readable (≥ 4.5 : 1) on the chart's background, in JupyterLab's
# light and dark themes and with theme='light' / 'dark' forced against them.


THEME_CELLS = [
    "import torch, nbexplain as nx\n"
    "from nbexplain.zoo import mlp\n"
    "from nbexplain.widgets import SaturationDashboard\n"
    "net = mlp(20, (16, 12), seed=0)\n"
    "tracker = nx.SaturationTracker(net).start()\n"
    "dash = SaturationDashboard(tracker)\n"
    "for _ in range(3):\n"
    "    with torch.no_grad():\n"
    "        net.train(); net(torch.randn(200, 20)); net.eval(); net(torch.randn(100, 20)); net.train()\n"
    "    _ = tracker.end_epoch()\n"
    "tracker.close()\n"
    "dash",
]

# Colours as seen: every text of the charts (tick values, axis labels) and the view's caption, each composited over
# the backgrounds behind it (alpha included), with that background.
SEEN_TEXT = """root => {
  const parse = s => { const m = (s || '').match(/[\\d.]+/g);
    return m && m.length >= 3 ? [+m[0], +m[1], +m[2], m.length > 3 ? +m[3] : 1] : null; };
  const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3]));
  const behind = e => { const layers = [];
    for (let n = e; n && n.nodeType === 1; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor); if (c && c[3] > 0) layers.push(c); }
    let bg = [255, 255, 255]; for (const c of layers.reverse()) bg = over(c, bg); return bg; };
  const seen = (e, colour) => { const bg = behind(e); return {text: e.textContent.trim(), fg: over(parse(colour), bg), bg}; };
  const charts = Array.from(root.querySelectorAll('.bqplot svg text'))
    .filter(t => t.getClientRects().length && t.textContent.trim())
    .map(t => seen(t, getComputedStyle(t).fill));
  const caption = root.querySelector('.nbx-sd-caption');
  return {charts, caption: seen(caption, getComputedStyle(caption).color), root: behind(root)};
}"""


def _check_theme(root, dark: bool) -> None:
    """Every chart text of the view ``root`` (a locator) readable on its background and in the view's own text
    colour; the view light or dark."""
    seen = root.evaluate(SEEN_TEXT)
    assert (luminance(seen["root"]) < 0.05) if dark else (luminance(seen["root"]) > 0.9), seen["root"]
    caption = seen["caption"]["fg"]
    assert contrast(caption, seen["caption"]["bg"]) >= 4.5, seen["caption"]
    texts = seen["charts"]
    assert {"epoch", "layer"} <= {t["text"] for t in texts}, texts  # axis labels among them, not only ticks
    for t in texts:
        assert contrast(t["fg"], t["bg"]) >= 4.5, t
        assert max(abs(a - b) for a, b in zip(t["fg"], caption, strict=True)) <= 2, (t, caption)


def _view_theme(nb, theme: str) -> None:
    nb.execute(f"dash.theme = '{theme}'")
    nb.page.locator(f"{ROOT}.nbx-theme-{theme}").wait_for(timeout=10000)
    nb.page.wait_for_timeout(300)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dashboard_chart_text_follows_the_theme(lab):
    nb = lab.open_notebook(THEME_CELLS, name="saturation_dashboard_theme")
    with nb:
        root = nb.view(ROOT)
        nb.page.wait_for_function(
            "r => r.innerText.includes('epoch 2 (latest)') && r.querySelectorAll('path.line[id^=\"curve\"]').length",
            arg=root.element_handle(), timeout=20000)
        nb.page.wait_for_timeout(800)  # bqplot animates its axes
        _check_theme(root, dark=False)  # JupyterLab light, theme='auto'
        _view_theme(nb, "dark")  # forced dark in a light JupyterLab
        _check_theme(root, dark=True)
        assert axe_violations(nb.page, ROOT) == []
        nb.screenshot("saturation-dashboard-theme-dark", root)
        with lab_dark(nb):
            nb.page.wait_for_timeout(500)
            _view_theme(nb, "auto")  # JupyterLab dark: bqplot's orange labels before
            _check_theme(root, dark=True)
            assert axe_violations(nb.page, ROOT) == []
            nb.screenshot("saturation-dashboard-lab-dark-auto", root)
            _view_theme(nb, "light")  # forced light in a dark JupyterLab
            _check_theme(root, dark=False)
        nb.page.wait_for_timeout(500)
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors


# ---------------------------------------------------------------------------------------------------------------
# Offline export (issue 14): the presentation scale and a forced theme are saved with the widget state, so an
# exported page shows the dashboard as it was — bqplot charts drawn from the local AMD modules, text 1.5× larger.


EXPORT_CELLS = [
    "import torch, nbexplain as nx\n"
    "from nbexplain.zoo import mlp\n"
    "from nbexplain.widgets import SaturationDashboard\n"
    "net = mlp(20, (16, 12, 8), seed=0)\n"
    "tracker = nx.SaturationTracker(net).start()\n"
    "plain = SaturationDashboard(tracker, title='scale 1')\n"
    "big = SaturationDashboard(tracker, title='scale 1.5, dark', theme='dark')\n"
    "for _ in range(2):\n"
    "    with torch.no_grad():\n"
    "        net(torch.randn(200, 20))\n"
    "    _ = tracker.end_epoch()\n"
    "tracker.close()\n"
    "big.scale = 1.5\n"
    "plain",
    "big",
]
FONT = "e => parseFloat(getComputedStyle(e).fontSize)"


def test_dashboard_scale_and_theme_survive_an_offline_export(chromium, tmp_path):
    from nbexplain.export import export_html

    write_notebook(tmp_path / "dash.ipynb", EXPORT_CELLS)
    page_path = export_html(tmp_path / "dash.ipynb", tmp_path / "out" / "dash.html", execute=True, timeout=120)
    context = chromium.browser.new_context(viewport={"width": 1200, "height": 2400})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    console: list[str] = []
    allowed, blocked = offline_only(context)
    page.on("pageerror", lambda e: errors.append(f"{getattr(e, 'name', 'Error')}: {getattr(e, 'message', e)}"))
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    try:
        page.goto(page_path.as_uri(), wait_until="load")
        roots = page.locator(ROOT)
        plain, big = roots.nth(0), roots.nth(1)
        big.wait_for()
        for root in (plain, big):  # both charts drawn: four train lines of two epochs, and the bars
            page.wait_for_function(f"f => ({TRAIN_LINES})(f).filter(n => n == 2).length == 4",
                                   arg=root.locator(".bqplot").first.element_handle(), timeout=30_000)
            assert root.locator(".bqplot .bargroup rect").count() > 0
        page.wait_for_timeout(800)  # bqplot animates its axes
        assert "scale 1.5" in big.inner_text() and "scale 1" in plain.inner_text()
        assert page.locator(".widget-error, .jupyter-widgets.widget-error").count() == 0

        # the scale: chart text (tick values and axis labels) 1.5× larger, and the charts taller
        for sel in (".bqplot g.axis .tick text", ".bqplot text.axislabel"):
            small, large = plain.locator(sel).first.evaluate(FONT), big.locator(sel).first.evaluate(FONT)
            assert small >= 13 - 0.01 and large == pytest.approx(1.5 * small), (sel, small, large)
        heights = [r.locator(".bqplot").first.evaluate("e => e.getBoundingClientRect().height") for r in roots.all()]
        assert heights[1] == pytest.approx(1.5 * heights[0], rel=0.02), heights
        # the theme: forced dark in the (light) exported page, every chart text readable in the view's colour
        assert "nbx-theme-dark" in (big.get_attribute("class") or "")
        _check_theme(big, dark=True)
        _check_theme(plain, dark=False)
        # the heading, legends and table in the views' sans-serif font, also with no JupyterLab to inherit it from
        fonts = plain.evaluate("r => [...r.querySelectorAll('*')].filter(e => e.childElementCount === 0"
                               " && e.textContent.trim() && !e.closest('svg')).map(e => getComputedStyle(e).fontFamily)")
        assert fonts and not [f for f in set(fonts) if "sans-serif" not in f and "monospace" not in f], set(fonts)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        big.screenshot(path=str(ARTIFACTS / "saturation-dashboard-export-scaled.png"))
    finally:
        context.close()
    assert blocked == [], blocked
    assert any(u.endswith("/dash_files/bqplot.js") for u in allowed), allowed
    assert errors == [], errors
    assert console == [], console


# ---------------------------------------------------------------------------------------------------------------
# The bqplot console errors of issue 14 (`translate(…,undefined)`, `<path> d: "null"`): bqplot puts each line's
# hidden label at its last point and draws a line with no finite point as "null". A layer run only in eval mode
# (no train value ever) and an epoch with only an eval pass (every train line ending in NaN) gave 39 errors over
# these steps; played through epochs, resized to 800 px while hidden and shown again, the console stays clean.

NAN_CELLS = [
    "import time, torch, nbexplain as nx\n"
    "from torch import nn\n"
    "from nbexplain.widgets import SaturationDashboard\n"
    "class Net(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        torch.manual_seed(0)\n"
    "        self.fc1, self.const, self.evalonly = nn.Linear(10, 8), nn.Linear(8, 6), nn.Linear(8, 4)\n"
    "        self.out = nn.Linear(6, 3)\n"
    "        nn.init.zeros_(self.const.weight)  # constant output: a dead layer\n"
    "    def forward(self, x):\n"
    "        h = torch.relu(self.fc1(x))\n"
    "        if not self.training:\n"
    "            self.evalonly(h)  # run in eval mode only\n"
    "        return self.out(self.const(h))\n"
    "net = Net()\n"
    "tracker = nx.SaturationTracker(net, layers=['fc1', 'const', 'evalonly', 'out']).start()\n"
    "def epoch(train=True, probes=None):\n"
    "    with torch.no_grad():\n"
    "        if train:\n"
    "            net.train(); net(torch.randn(64, 10))\n"
    "        net.eval(); net(torch.randn(32, 10)); net.train()\n"
    "    return tracker.end_epoch(probes=probes)\n"
    "dash = SaturationDashboard(tracker)\n"
    "dash",
]
DASHED = TRAIN_LINES.replace("includes('dasharray: none')", "includes('dasharray: none') === false")
PATHS = """f => Array.from(f.querySelectorAll('path.line[id^="curve"]')).map(p => p.getAttribute('d'))"""


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dashboard_with_missing_values_logs_no_svg_errors(lab):
    nb = lab.open_notebook(NAN_CELLS, name="saturation_dashboard_missing", viewport=(1400, 1000))
    with nb:
        root = nb.view(ROOT)
        fig = nb.page.locator(f"{ROOT} .bqplot").first
        nb.page.wait_for_timeout(500)
        for code in ("_ = epoch()",  # one epoch (drawn as a repeated point); evalonly has no train value
                     "_ = epoch(probes={'fc1': 0.5, 'const': float('nan')})",
                     "_ = epoch(train=False)",  # an eval pass only: every train line ends in NaN
                     "for _ in range(4):\n    _ = epoch(); time.sleep(0.05)"):  # played through
            nb.execute(code)
            nb.page.wait_for_timeout(600)
        # hidden, resized to 800 px, two more epochs, shown again
        nb.page.evaluate("() => document.querySelectorAll('.jp-Cell-outputWrapper').forEach(o => o.style.display = 'none')")
        nb.page.set_viewport_size({"width": 800, "height": 1000})
        nb.execute("for _ in range(2):\n    _ = epoch()")
        nb.page.wait_for_timeout(600)
        nb.page.evaluate("() => document.querySelectorAll('.jp-Cell-outputWrapper').forEach(o => o.style.display = '')")
        nb.page.wait_for_function("r => r.innerText.includes('epoch 8 (latest)')", arg=root.element_handle(),
                                  timeout=20000)
        nb.page.wait_for_timeout(1000)  # bqplot animates
        # what is drawn: three train lines (evalonly has none) of 8 points each (a gap at the eval-only epoch 2),
        # and four eval lines of 9 points; every path a real path
        assert fig.evaluate(TRAIN_LINES) == [8, 8, 8], fig.evaluate(TRAIN_LINES)
        assert fig.evaluate(DASHED) == [9, 9, 9, 9], fig.evaluate(DASHED)
        assert all(d and "NaN" not in d and "undefined" not in d for d in fig.evaluate(PATHS))
        row = nb.page.locator(f"{ROOT} table.nbx-sd-table tbody tr").nth(2)
        assert row.locator("th").inner_text() == "evalonly" and row.locator("td").first.inner_text() == "–"
        nb.execute("tracker.close()")
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors
