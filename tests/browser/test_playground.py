"""Playground in real JupyterLab + Chromium at 800 px: play, pause, step, rewind (the first frame identical after
it), the kernel answering another cell while training, hover a neuron (mouse and keyboard), the plane readout
against the kernel's relevance field, the δ slider against the kernel's k(δ), timeline scrubbing, PNG export,
the dark theme, labels ≥ 13 px, no console errors; and an exported page that replays offline."""

from __future__ import annotations

import numpy as np
import pytest
from classroom import contrast as _contrast
from classroom import luminance as _luminance
from classroom import rgb as _rgb
from classroom import screenshots
from harness import ARTIFACTS, VIEW_LAYOUT, axe_violations, offline_only

pytestmark = pytest.mark.browser

ROOT = ".nbx-playground"
SETUP = "from nbexplain.widgets import Playground\npg = Playground('moons', n=300, seed=0)\n"
CELLS = [SETUP + "pg"]


def _attr(root, name: str) -> str:  # noqa: ANN001
    return root.get_attribute(name) or ""


def test_playground_trains_live_and_every_control_works(lab):
    nb = lab.open_notebook(CELLS, name="playground", viewport=(800, 1200))
    with nb:
        root = nb.view(ROOT)
        nb.page.locator(f"{ROOT}[data-ready='true'][data-frame]").wait_for()
        assert _attr(root, "data-state") == "idle" and _attr(root, "data-epoch") == "0"
        first_hash = _attr(root, "data-frame-hash")
        assert nb.page.locator(f"{ROOT} .nbx-pg-neuron").count() == 2 + 8 + 8 + 2
        assert nb.page.locator(f"{ROOT} .nbx-pg-edges line").count() == 2 * 8 + 8 * 8 + 8 * 2
        assert nb.page.locator(f"{ROOT} button.nbx-pg-play.nbx-needs-kernel").count() == 1

        # play: frames stream in and the kernel still answers another cell
        nb.page.locator(f"{ROOT} button.nbx-pg-play").click()
        nb.page.locator(f"{ROOT}[data-state='training']").wait_for(timeout=10_000)
        start = int(_attr(root, "data-frame"))
        nb.page.wait_for_function(f"() => +document.querySelector('{ROOT}').dataset.frame > {start + 10}", timeout=20_000)
        assert nb.execute("print(6 * 7)").strip() == "42"
        assert nb.execute("print(pg.state)").strip() == "training"

        # pause (the same button): training stops, the recording arrives
        nb.page.locator(f"{ROOT} button.nbx-pg-play").click()
        nb.page.locator(f"{ROOT}[data-state='paused']").wait_for(timeout=10_000)
        state = nb.execute("print(pg.state, pg.trainer.epoch, len(pg.frames), pg.trainer.steps)").split()
        assert state[0] == "paused" and int(state[1]) >= 1
        steps = int(state[3])
        nb.page.locator(f"{ROOT}[data-recorded='{state[2]}']").wait_for(timeout=10_000)
        nb.page.wait_for_timeout(300)
        assert int(nb.execute("print(pg.trainer.steps)")) == steps  # nothing trained after the pause
        epoch = int(state[1])
        info = nb.execute("print(pg.frame['epoch'], pg.frames[-1].epoch, pg.trainer.epoch, pg.recording['count'])")
        assert _attr(root, "data-epoch") == str(epoch), (info, _attr(root, "data-timeline"), _attr(root, "data-frame"))
        assert nb.page.locator(f"{ROOT} .nbx-pg-loss path.nbx-pg-line").count() == 2
        ticks = nb.page.locator(f"{ROOT} .nbx-pg-loss text.nbx-pg-tick").evaluate_all("es => es.map(e => e.textContent)")
        assert "0" in ticks and all(t.lstrip("−-").replace(".", "", 1).isdigit() for t in ticks)

        nb.page.wait_for_timeout(400)  # the charts follow at most every 250 ms
        nb.screenshot("playground-charts", nb.page.locator(f"{ROOT} .nbx-pg-charts"))

        # step: one more epoch
        nb.page.locator(f"{ROOT} button.nbx-pg-step").click()
        nb.page.locator(f"{ROOT}[data-epoch='{epoch + 1}']").wait_for(timeout=10_000)
        assert int(nb.execute("print(pg.trainer.epoch)")) == epoch + 1

        # hover a neuron: enlarged; keyboard focus + Enter pins it
        nb.page.locator(f"{ROOT} .nbx-pg-neuron[data-neuron='1:3']").hover()
        nb.page.locator(f"{ROOT}[data-hovered-neuron='act1:3']").wait_for(timeout=5000)
        assert nb.page.locator(f"{ROOT} .nbx-pg-enlarge").is_visible()
        assert "act1 unit 3" in nb.page.locator(f"{ROOT} .nbx-pg-big-title").inner_text()
        nb.page.locator(f"{ROOT} .nbx-pg-neuron[data-neuron='2:5']").focus()
        nb.page.keyboard.press("Enter")
        nb.page.locator(f"{ROOT}[data-hovered-neuron='act2:5'][data-pinned='true']").wait_for(timeout=5000)

        # hover the plane: the readout's relevance is the kernel's field at that point
        box = nb.page.locator(f"{ROOT} .nbx-pg-plane").bounding_box()
        nb.page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.6 * box["height"])
        nb.page.locator(f"{ROOT}[data-relevance]").wait_for(timeout=5000)
        readout = nb.page.locator(f"{ROOT} .nbx-pg-readout").inner_text()
        assert "p(class 0)" in readout and "act1:" in readout and "Σ" in readout and "output logit" in readout
        x, y = (float(v) for v in _attr(root, "data-hover").split(","))
        rx, ry, out = (float(v) for v in _attr(root, "data-relevance").split(","))
        want = nb.execute(
            f"import numpy as np\next = pg.data.extent; f = pg.frame['relevance']; q = f.shape[1]\n"
            f"c = min(q - 1, int(({x} - ext[0]) / (ext[1] - ext[0]) * q)); r = min(q - 1, int((ext[3] - {y}) / (ext[3] - ext[2]) * q))\n"
            "print(*f[:, r, c].tolist())").split()
        assert np.allclose([rx, ry, out], [float(v) for v in want], rtol=1e-5, atol=1e-4)
        nb.page.locator(f"{ROOT} select.nbx-pg-field").select_option("which input")
        nb.page.locator(f"{ROOT}[data-field='which input']").wait_for(timeout=5000)

        # δ slider: local; k(δ) is the kernel's intrinsic dimension at each end
        nb.reset_comm_count()
        slider = nb.page.locator(f"{ROOT} input.nbx-pg-delta-slider")
        slider.press("Home")
        ks = nb.execute("print(int(pg.projection['ks'][0]), int(pg.projection['ks'][-1]), pg.projection['width'])").split()
        nb.page.locator(f"{ROOT}[data-k='{ks[0]}']").wait_for(timeout=5000)
        slider.press("End")
        nb.page.locator(f"{ROOT}[data-k='{ks[1]}'][data-delta='1']").wait_for(timeout=5000)
        assert "of 8" in nb.page.locator(f"{ROOT} .nbx-pg-delta-text").inner_text() and ks[2] == "8"
        nb.page.locator(f"{ROOT} input.nbx-pg-random").check()
        nb.page.locator(f"{ROOT}[data-basis='random']").wait_for(timeout=5000)
        nb.wait_for_output("print(pg.basis, pg.delta)", "random 1.0")

        # the timeline replays the recording without the kernel
        nb.reset_comm_count()
        t = nb.page.locator(f"{ROOT} input.nbx-pg-time")
        t.press("Home")
        nb.page.locator(f"{ROOT}[data-timeline='0']").wait_for(timeout=5000)
        assert _attr(root, "data-frame-hash") == first_hash and _attr(root, "data-epoch") == "0"
        t.press("ArrowRight")
        try:
            nb.page.locator(f"{ROOT}[data-timeline='1']").wait_for(timeout=5000)
        except Exception:
            raise AssertionError((t.evaluate("e => [e.value, e.max, e.disabled, document.activeElement.className]"),
                                  nb.page_errors)) from None
        assert _attr(root, "data-frame-hash") != first_hash
        assert nb.comm_messages_sent() == 0

        # PNG of the canvases
        with nb.page.expect_download() as dl:
            nb.page.locator(f"{ROOT} button.nbx-pg-png").click()
        path = dl.value.path()
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"

        # rewind: the identical first frame, in the view and in Python
        nb.execute("first = pg.frames[0]")
        nb.page.locator(f"{ROOT} button.nbx-pg-rewind").click()
        nb.page.locator(f"{ROOT}[data-state='idle'][data-epoch='0'][data-timeline='live']").wait_for(timeout=10_000)
        assert _attr(root, "data-frame-hash") == first_hash
        assert nb.execute("print(pg.frames[0].same_as(first), len(pg.frames))").strip() == "True 1"

        # keyboard: the play button by focus and Enter, twice
        nb.page.locator(f"{ROOT} button.nbx-pg-play").focus()
        nb.page.keyboard.press("Enter")
        nb.page.locator(f"{ROOT}[data-state='training']").wait_for(timeout=10_000)
        nb.page.keyboard.press("Enter")
        nb.page.locator(f"{ROOT}[data-state='paused']").wait_for(timeout=10_000)

        # fits 800 px, labels ≥ 13 px
        layout = root.evaluate(VIEW_LAYOUT)
        assert layout["scroll"] <= layout["client"] + 1 and layout["right"] <= 800, f"{layout}"
        assert layout["contentRight"] <= layout["right"] + 1, f"{layout}"
        assert layout["min"] >= 13 - 0.01, f"{layout}"
        nb.screenshot("playground-800", root)
        assert axe_violations(nb.page, ROOT) == []
        # each chart's rotated y-axis title sits clear of its tick labels (it overlapped "0.72" before)
        overlaps = nb.page.evaluate("""() => [...document.querySelectorAll('.nbx-playground svg.nbx-pg-svg')].map(svg => {
          const title = [...svg.querySelectorAll('text.nbx-pg-label')].find(t => t.getAttribute('transform'));
          if (!title) return 0;
          const a = title.getBoundingClientRect();
          return [...svg.querySelectorAll('text.nbx-pg-tick')].filter(t => { const b = t.getBoundingClientRect();
            return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom; }).length; })""")
        assert overlaps and not any(overlaps), overlaps

        # dark theme
        nb.execute("pg.theme = 'dark'")
        nb.page.locator(f"{ROOT}[data-theme='dark']").wait_for(timeout=5000)
        bg = _rgb(root.evaluate("e => getComputedStyle(e).backgroundColor"))
        assert _luminance(bg) < 0.05
        # no value is drawn in the page's own colour: the neurons' maps (RdBu, its darkest ends cut) and the CKA
        # strip (viridis from its blue) stay ≥ 3 : 1 from the dark background, after the view recoloured
        darkest = """() => [...document.querySelectorAll('.nbx-playground canvas.nbx-pg-neuron')].map(c => {
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let best = [255, 255, 255], lo = 1e9;
          for (let i = 0; i < d.length; i += 4) { const l = 0.2126 * d[i] + 0.7152 * d[i + 1] + 0.0722 * d[i + 2];
            if (l < lo) { lo = l; best = [d[i], d[i + 1], d[i + 2]]; } } return best; })"""
        for _ in range(30):
            maps = nb.page.evaluate(darkest)
            if maps and min(_contrast(tuple(p), bg) for p in maps) >= 3:
                break
            nb.page.wait_for_timeout(100)
        assert maps and min(_contrast(tuple(p), bg) for p in maps) >= 3, maps
        cka = nb.page.locator(f"{ROOT} rect.nbx-pg-sim-cell").evaluate_all("rs => rs.map(r => r.getAttribute('fill'))")
        assert cka and min(_contrast(_rgb(f), bg) for f in cka if f.startswith("rgb")) >= 3, cka
        nb.screenshot("playground-dark", root)
        assert axe_violations(nb.page, ROOT) == []
        nb.execute("pg.theme = 'auto'")
        nb.page.locator(f"{ROOT}[data-theme='auto']").wait_for(timeout=5000)
        # docs/screens/playground-{800,1400}.png: a run trained 12 epochs, the probabilities over the plane
        nb.execute("pg.rewind()\npg.basis = 'eigen'\npg.train(12)")
        nb.page.locator(f"{ROOT} select.nbx-pg-field").select_option("probabilities")
        nb.page.locator(f"{ROOT}[data-epoch='12'][data-field='probabilities'][data-basis='eigen'][data-k]").wait_for(
            timeout=20_000)  # the basis set in Python redraws the δ panel
        assert "top eigen-directions of act2" in nb.page.locator(f"{ROOT} .nbx-pg-delta-text").inner_text()
        screenshots(nb, "playground", ROOT, height=3000)  # at 800 px the view is taller than 2400 px

        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors


def test_playground_exported_page_replays_offline(chromium, tmp_path):
    from test_export import write_notebook

    from nbexplain.export import export_html

    write_notebook(tmp_path / "playground.ipynb", [SETUP + "pg.train(4)\npg"])
    page_path = export_html(tmp_path / "playground.ipynb", tmp_path / "out" / "playground.html", execute=True,
                            timeout=180)
    context = chromium.browser.new_context(viewport={"width": 900, "height": 1200})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    _, blocked = offline_only(context)
    page.on("pageerror", lambda e: errors.append(f"{getattr(e, 'name', 'Error')}: {getattr(e, 'message', e)}"))
    try:
        page.goto(page_path.as_uri(), wait_until="load")
        root = page.locator(f"{ROOT}[data-ready='true'][data-frame]")
        root.wait_for()
        assert root.get_attribute("data-recorded") == "5" and root.get_attribute("data-epoch") == "4"
        latest = root.get_attribute("data-frame-hash")
        t = page.locator(f"{ROOT} input.nbx-pg-time")
        t.focus()
        page.keyboard.press("Home")
        page.locator(f"{ROOT}[data-timeline='0'][data-epoch='0']").wait_for(timeout=5000)
        assert root.get_attribute("data-frame-hash") != latest
        page.keyboard.press("ArrowRight")
        page.locator(f"{ROOT}[data-timeline='1'][data-epoch='1']").wait_for(timeout=5000)
        page.locator(f"{ROOT} input.nbx-pg-delta-slider").focus()
        page.keyboard.press("Home")
        page.locator(f"{ROOT}[data-k='1']").wait_for(timeout=5000)
        page.locator(f"{ROOT} .nbx-pg-neuron[data-neuron='2:0']").hover()
        page.locator(f"{ROOT}[data-hovered-neuron='act2:0']").wait_for(timeout=5000)
        page.screenshot(path=str(ARTIFACTS / "playground-offline.png"))
        assert blocked == [], blocked
        assert errors == [], errors
    finally:
        context.close()


def test_playground_in_notebook7_plays_pauses_and_projects(lab):
    with lab.open_notebook(CELLS, name="playground_nb7", app="notebook", viewport=(800, 1200)) as nb:
        assert nb.page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"
        root = nb.view(ROOT)
        nb.page.locator(f"{ROOT}[data-ready='true'][data-frame]").wait_for()
        play = nb.page.locator(f"{ROOT} button.nbx-pg-play")
        play.click()
        nb.page.locator(f"{ROOT}[data-state='training']").wait_for(timeout=10_000)
        start = int(_attr(root, "data-frame"))
        nb.page.wait_for_function(f"() => +document.querySelector('{ROOT}').dataset.frame > {start + 5}", timeout=20_000)
        play.click()
        nb.page.locator(f"{ROOT}[data-state='paused']").wait_for(timeout=10_000)
        assert nb.execute("print(pg.state)").strip() == "paused"
        slider = nb.page.locator(f"{ROOT} input.nbx-pg-delta-slider")
        slider.press("End")
        width = nb.execute("print(pg.projection['width'], int(pg.projection['ks'][-1]))").split()
        nb.page.locator(f"{ROOT}[data-k='{width[1]}'][data-delta='1']").wait_for(timeout=5000)
        nb.page.locator(f"{ROOT} .nbx-pg-neuron[data-neuron='1:0']").hover()
        nb.page.locator(f"{ROOT}[data-hovered-neuron='act1:0']").wait_for(timeout=5000)
        layout = root.evaluate(VIEW_LAYOUT)
        assert layout["scroll"] <= layout["client"] + 1 and layout["contentRight"] <= layout["right"] + 1, f"{layout}"
        nb.screenshot("playground-notebook7", root)
        assert nb.page_errors == [], nb.page_errors
