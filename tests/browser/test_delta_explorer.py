"""DeltaExplorer in real JupyterLab + Chromium: the δ slider swaps precomputed reconstructions locally."""

from __future__ import annotations

import json
import statistics

import pytest
from classroom import fits_column, to_docs
from harness import ARTIFACTS, VIEW_LAYOUT, axe_violations

pytestmark = pytest.mark.browser

CELLS = [
    "import torch, nbexplain as nx\n"
    "from nbexplain.zoo import dense_autoencoder, train\n"
    "from nbexplain.widgets import DeltaExplorer\n"
    "d = nx.data.mnist()\n"
    "ae = dense_autoencoder(784, (128,), code=32, seed=0)\n"
    "_ = train(ae, d.x_train[:2000], epochs=2, lr=3e-3, progress=False)\n"
    "ex = DeltaExplorer(ae, (d.x_test, d.y_test), n_samples=8, delta=0.9, max_stats_samples=2000, "
    "max_eval_samples=300)\n"
    "ex",
]

# Sum of the pixels of every reconstruction canvas (what the user sees).
PIXELS = """root => Array.from(root.querySelectorAll('canvas.nbx-recon')).map(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return s; })"""

# Move the slider to position p and time until the next frame has been painted.
MOVE = """async (root, p) => {
  const s = root.querySelector('input.nbx-delta-slider');
  const t0 = performance.now();
  s.value = String(p);
  s.dispatchEvent(new Event('input', {bubbles: true}));
  await new Promise(r => requestAnimationFrame(() => r()));
  return [performance.now() - t0, Number(root.dataset.repaintMs)];
}"""


def test_delta_slider_is_local_and_repaints_in_a_frame(lab):
    nb = lab.open_notebook(CELLS, name="delta_explorer")
    with nb:
        root = nb.view(".nbx-delta-explorer")
        nb.page.locator(".nbx-delta-explorer[data-ready='true']").wait_for()
        assert root.get_attribute("data-mode") == "reconstruction"
        assert nb.page.locator(".nbx-delta-explorer canvas.nbx-recon").count() == 8
        ks = json.loads(nb.execute("import json; print(json.dumps([ex.ks[int(i)] for i in ex.k_index]))"))
        assert int(root.get_attribute("data-k")) == int(nb.execute("print(ex.k)"))

        nb.reset_comm_count()
        slider = nb.page.locator(".nbx-delta-explorer input.nbx-delta-slider")
        low = 0
        high = len(ks) - 1
        slider.fill(str(low))
        k_low = int(root.get_attribute("data-k"))
        pix_low = root.evaluate(PIXELS)
        slider.fill(str(high))
        k_high = int(root.get_attribute("data-k"))
        pix_high = root.evaluate(PIXELS)
        assert (k_low, k_high) == (ks[low], ks[high]) and k_low < k_high
        assert pix_low != pix_high
        assert float(root.get_attribute("data-delta")) == 1.0
        # the random-subspace control is precomputed too (at a k below the width: at full width both
        # subspaces are the whole space and the images agree)
        mid = next(i for i, k in enumerate(ks) if k > k_low and k < max(ks))
        slider.fill(str(mid))
        pix_mid = root.evaluate(PIXELS)
        nb.page.locator(".nbx-delta-explorer input.nbx-random-toggle").check()
        assert root.get_attribute("data-subspace") == "random"
        assert root.evaluate(PIXELS) != pix_mid
        nb.page.locator(".nbx-delta-explorer input.nbx-random-toggle").uncheck()

        # repaint time, measured in the page: input event → next animation frame painted
        frames, work = [], []
        for i in range(40):
            total, sync = root.evaluate(MOVE, (i * 7) % len(ks))
            frames.append(total)
            work.append(sync)
        assert nb.comm_messages_sent() == 0  # nothing went to the kernel
        (ARTIFACTS / "delta_explorer_repaint.json").parent.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "delta_explorer_repaint.json").write_text(json.dumps(
            {"median_to_next_frame_ms": statistics.median(frames), "median_sync_work_ms": statistics.median(work),
             "samples": len(frames)}))
        print(f"repaint: median {statistics.median(work):.2f} ms of work, "
              f"{statistics.median(frames):.1f} ms to the next frame")
        nb.screenshot("delta_explorer", root)

        # asking for other samples goes to the kernel and comes back
        before = root.evaluate(PIXELS)
        nb.page.locator(".nbx-delta-explorer button.nbx-resample").click()
        nb.page.locator(".nbx-delta-explorer[data-busy='false']").wait_for(timeout=90000)
        assert nb.execute("print(ex.sample_seed)").strip() == "1"
        nb.page.wait_for_function(
            "([r, b]) => JSON.stringify(" + PIXELS + "(r)) !== JSON.stringify(b)", arg=[root.element_handle(), before],
            timeout=20000)
        assert nb.comm_messages_sent() >= 1
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors


CLASSIFIER_CELLS = [
    "import torch, nbexplain as nx\n"
    "from nbexplain.zoo import mlp, train\n"
    "from nbexplain.widgets import DeltaExplorer\n"
    "torch.set_num_threads(1)\n"
    "d = nx.data.digits()\n"
    "clf = mlp(64, (48, 24), n_classes=10, seed=0)\n"
    "_ = train(clf, d.x_train, d.y_train, epochs=15, lr=3e-3, progress=False)\n"
    "cx = DeltaExplorer(clf, (d.x_test, d.y_test), layer='fc1', n_samples=8, max_eval_samples=300)\n"
    "cx",
]

# What the user reads per sample: "predicted 7" (with ✗ when wrong), and which are marked wrong.
PREDICTIONS = """root => Array.from(root.querySelectorAll('span.nbx-pred')).map(
  s => [s.textContent, s.classList.contains('nbx-wrong')])"""


def js_format(v: float) -> str:
    """The view's formatNumber for values in [1e-3, 1e5): 4 significant digits, no trailing zeros."""
    s = repr(float(f"{v:.4g}"))
    return s[:-2] if s.endswith(".0") else s


def test_classifier_mode_shows_predictions_and_accuracy_per_k_locally(lab):
    nb = lab.open_notebook(CLASSIFIER_CELLS, name="delta_explorer_classifier")
    with nb:
        root = nb.view(".nbx-delta-explorer")
        nb.page.locator(".nbx-delta-explorer[data-ready='true']").wait_for()
        assert root.get_attribute("data-mode") == "accuracy"
        assert nb.page.locator(".nbx-delta-explorer canvas.nbx-recon").count() == 0
        assert nb.page.locator(".nbx-delta-explorer span.nbx-pred").count() == 8
        labels = json.loads(nb.execute("import json; print(json.dumps([int(v) for v in cx.labels]))"))
        titles = nb.page.locator(".nbx-delta-explorer span.nbx-title").all_text_contents()
        assert titles == [f"label {v}" for v in labels]
        ks = json.loads(nb.execute("print(json.dumps([cx.ks[int(i)] for i in cx.k_index]))"))
        acc = json.loads(nb.execute("print(json.dumps([float(v) for v in cx.metric]))"))
        preds = json.loads(nb.execute("print(json.dumps(cx.predictions.tolist()))"))

        nb.reset_comm_count()
        slider = nb.page.locator(".nbx-delta-explorer input.nbx-delta-slider")
        seen = {}
        for p in (0, len(ks) - 1):
            slider.fill(str(p))
            k = int(root.get_attribute("data-k"))
            assert k == ks[p]
            ki = sorted(set(ks)).index(k)
            shown = root.evaluate(PREDICTIONS)
            # the text is the precomputed prediction at this k; red marks exactly the wrong ones
            assert [t for t, _ in shown] == [f"predicted {v}" + (" ✗" if v != lab_ else "")
                                             for v, lab_ in zip(preds[ki], labels, strict=True)]
            assert [w for _, w in shown] == [v != lab_ for v, lab_ in zip(preds[ki], labels, strict=True)]
            text = nb.page.locator(".nbx-delta-explorer .nbx-k").text_content()
            assert f"accuracy {js_format(acc[ki])}" in text, (text, acc[ki])
            seen[p] = (k, shown, text)
        (k_lo, shown_lo, text_lo), (k_hi, shown_hi, text_hi) = seen[0], seen[len(ks) - 1]
        assert k_lo < k_hi and text_lo != text_hi and shown_lo != shown_hi
        assert acc[sorted(set(ks)).index(k_lo)] < acc[sorted(set(ks)).index(k_hi)]  # fewer directions, worse
        nb.page.locator(".nbx-delta-explorer input.nbx-random-toggle").check()
        assert root.get_attribute("data-subspace") == "random"
        assert "(random subspace)" in nb.page.locator(".nbx-delta-explorer .nbx-k").text_content()
        assert nb.comm_messages_sent() == 0  # every k was precomputed: nothing went to the kernel
        nb.screenshot("delta_explorer_classifier", root)

        # another layer is a kernel request; the view rebuilds for it
        nb.page.locator(".nbx-delta-explorer select.nbx-layer-select").select_option("fc2")
        nb.page.locator(".nbx-delta-explorer[data-layer='fc2'][data-busy='false']").wait_for(timeout=90000)
        assert nb.execute("print(cx.layer, cx.width)").split() == ["fc2", "24"]
        assert int(root.get_attribute("data-k")) <= 24
        assert nb.comm_messages_sent() >= 1
        assert nb.execute("print(cx.completed_request, repr(cx.error))").split() == ["1", "''"]
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors


# ---------------------------------------------------------------------------------------------------------------
# Classroom checks (issue 14): 800 px column, every number labelled (δ ticks, a named baseline, axis titles), text
# ≥ 13 px, presentation scale, keyboard and accessible names (axe, light and dark), kernel requests by the
# RequestWidget protocol, and a console with no errors.

ROOT = ".nbx-delta-explorer"
SMALL_CELLS = [
    "import torch, nbexplain as nx\n"
    "from nbexplain.zoo import dense_autoencoder, train\n"
    "from nbexplain.widgets import DeltaExplorer\n"
    "torch.set_num_threads(1)\n"
    "d = nx.data.digits()\n"
    "ae = dense_autoencoder(64, (32,), code=12, seed=0)\n"
    "_ = train(ae, d.x_train.reshape(len(d.x_train), -1), epochs=3, lr=3e-3, seed=0, progress=False)\n"
    "ex = DeltaExplorer(ae, d.x_test, n_samples=6, max_eval_samples=200)\n"
    "ex",
]


def test_delta_explorer_in_an_800px_column_is_labelled_legible_and_accessible(lab):
    nb = lab.open_notebook(SMALL_CELLS, name="delta_explorer_classroom", viewport=(800, 1200))
    with nb:
        root = nb.view(ROOT)
        nb.page.locator(f"{ROOT}[data-ready='true']").wait_for()
        base = float(nb.execute("print(repr(ex.baseline))"))

        # the δ chart: δ ticks at round values, a y axis with ticks and a title, a named baseline
        ticks = nb.page.locator(f"{ROOT} svg.nbx-metric-plot .nbx-delta-tick").all_text_contents()
        assert ticks[:3] == ["0.5", "0.9", "0.99"] and ticks[-1] == "1", ticks
        assert root.get_attribute("data-delta-ticks") == ",".join(ticks)
        titles = nb.page.locator(f"{ROOT} svg.nbx-metric-plot .nbx-axis-title").all_text_contents()
        assert titles == ["mean squared error", "δ, on a nines scale"], titles
        y_ticks = [t for t in nb.page.locator(f"{ROOT} svg.nbx-metric-plot .nbx-tick:not(.nbx-delta-tick)")
                   .all_text_contents()]
        assert len(y_ticks) >= 2 and all(float(v) >= 0 for v in y_ticks), y_ticks
        key = nb.page.locator(f"{ROOT} .nbx-metric-figure .nbx-chart-key").inner_text()
        assert f"no projection (baseline): {js_format(base)}" in key and "random k-dim subspace" in key, key
        assert nb.page.locator(f"{ROOT} svg.nbx-metric-plot line.nbx-baseline").count() == 1
        # the spectrum: nines ticks, both axis titles, the k marker labelled
        spec = nb.page.locator(f"{ROOT} svg.nbx-spectrum")
        assert spec.locator(".nbx-tick").all_text_contents()[:5] == ["0", "0.9", "0.99", "0.999", "0.9999"]
        assert spec.locator(".nbx-axis-title").all_text_contents() == ["cumulative share",
                                                                      "component (largest first)"]
        k = root.get_attribute("data-k")
        assert spec.locator(".nbx-k-label").text_content() == f"k = {k}"
        readout = nb.page.locator(f"{ROOT} .nbx-k").inner_text()
        assert readout.startswith(f"k = {k} of 12 directions · saturation ") and "mean squared error" in readout

        # keyboard: the slider moves with the arrows, the readout and the chart follow; nothing goes to the kernel
        nb.reset_comm_count()
        slider = nb.page.locator(f"{ROOT} input.nbx-delta-slider")
        p0 = int(root.get_attribute("data-position"))
        slider.press("ArrowLeft")
        slider.press("ArrowLeft")
        state = slider.evaluate("e => [document.activeElement === e, e.value]")
        assert int(root.get_attribute("data-position")) == p0 - 2, (p0, state)
        ring = slider.evaluate("e => { const s = getComputedStyle(e); return [document.activeElement === e, "
                               "s.outlineStyle, parseFloat(s.outlineWidth)]; }")
        assert ring[0] and ring[1] != "none" and ring[2] >= 1, ring
        assert "δ = " in slider.get_attribute("aria-valuetext")
        slider.press("End")
        assert root.get_attribute("data-delta") == "1" and root.get_attribute("data-k") == "12"
        assert nb.comm_messages_sent() == 0
        names = nb.page.locator(f"{ROOT} canvas").evaluate_all("cs => cs.map(c => c.getAttribute('aria-label'))")
        assert len(names) == 12 and all(names), names

        # fits the column, text ≥ 13 px (the charts' text included), accessible in light and dark
        fits_column(root)
        nb.screenshot("delta-explorer-800", root)
        assert axe_violations(nb.page, ROOT) == []
        nb.execute("ex.theme = 'dark'")
        nb.page.locator(f"{ROOT}[data-theme='dark']").wait_for(timeout=5000)
        assert axe_violations(nb.page, ROOT) == []
        nb.execute("ex.theme = 'auto'")

        # presentation scale: larger text and charts, still inside the column
        size = lambda: float(spec.locator(".nbx-tick").first.evaluate(  # noqa: E731
            "e => parseFloat(getComputedStyle(e).fontSize)"))
        before = size()
        nb.execute("ex.scale = 1.5")
        nb.page.locator(f"{ROOT}[data-scale='1.5']").wait_for(timeout=5000)
        assert size() == pytest.approx(1.5 * before)
        fits_column(root)
        nb.screenshot("delta-explorer-scaled", root)
        nb.execute("ex.scale = 1.0")
        nb.page.locator(f"{ROOT}[data-scale='1']").wait_for(timeout=5000)

        # other samples: one request message {type: request, id}; the kernel answers by completed_request
        nb.reset_comm_count()
        nb.page.locator(f"{ROOT} button.nbx-resample").click()
        nb.page.locator(f"{ROOT}[data-busy='false']").wait_for(timeout=60000)
        nb.wait_for_output("print(ex.completed_request, ex.sample_seed)", "1 1")
        assert nb.comm_messages_sent() == 1

        nb.page.set_viewport_size({"width": 1400, "height": 1000})
        nb.page.wait_for_timeout(500)
        layout = root.evaluate(VIEW_LAYOUT)
        assert layout["contentRight"] <= layout["right"] + 1 and layout["min"] >= 13 - 0.01, layout
        shot = nb.screenshot("delta-explorer-1400", root)
        to_docs(shot, shot.with_name("delta-explorer-800.png"))
        assert nb.page_errors == [], nb.page_errors
        assert nb.console_errors == [], nb.console_errors
