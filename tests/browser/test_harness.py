"""The harness itself, on a plain ipywidgets notebook: render, interact, reach Python, count comms."""

from __future__ import annotations

import pytest
from harness import NotebookCellError, axe_violations, decode_ws_frame

pytestmark = pytest.mark.browser

SLIDER_CELLS = [
    "import sys, ipywidgets as widgets\nprint(sys.executable)",
    "seen = []\n"
    "s = widgets.IntSlider(value=3, min=0, max=10, description='nbx')\n"
    "s.observe(lambda change: seen.append(change['new']), names='value')\n"
    "s",
]


def test_slider_renders_and_reaches_python(lab):
    with lab.open_notebook(SLIDER_CELLS, name="harness_slider") as nb:
        # the kernel is this project's interpreter
        import sys

        assert nb.execute("import sys; print(sys.executable)").strip() == sys.executable

        slider = nb.view(".widget-slider")
        assert nb.execute("print(s.value, seen)").strip() == "3 []"

        nb.reset_comm_count()
        assert nb.comm_messages_sent() == 0
        handle = slider.locator(".noUi-handle")
        handle.focus()
        nb.page.keyboard.press("ArrowRight")
        nb.page.keyboard.press("ArrowRight")

        nb.wait_for_output("print(s.value)", "5")
        assert nb.execute("print(seen[-1])").strip() == "5"
        assert nb.comm_messages_sent() >= 1
        # the view shows the new value too
        assert slider.locator(".widget-readout").inner_text().strip() == "5"

        # Python -> view
        nb.reset_comm_count()
        nb.execute("s.value = 9")
        slider.locator(".widget-readout").filter(has_text="9").wait_for()
        assert nb.comm_messages_sent() == 0  # a kernel-side change sends nothing back from the page

        path = nb.screenshot("harness_slider")
        assert path.exists() and path.stat().st_size > 1000
        assert nb.page_errors == [], nb.page_errors


def test_execute_reports_kernel_errors(lab):
    with lab.open_notebook(["x = 41"], name="harness_errors") as nb:
        assert nb.execute("print(x + 1)").strip() == "42"
        with pytest.raises(NotebookCellError, match="ZeroDivisionError"):
            nb.execute("1 / 0")
        # the kernel is still usable after an error
        assert nb.execute("print('ok')").strip() == "ok"


def test_failing_cell_is_reported_with_source_and_traceback(lab):
    with pytest.raises(NotebookCellError) as info:
        lab.open_notebook(["a = 1", "def f():\n    raise ValueError('boom from cell')\nf()", "b = 2"],
                          name="harness_failing")
    text = str(info.value)
    assert "raise ValueError('boom from cell')" in text
    assert "ValueError: boom from cell" in text
    assert "cell 1" in text


def test_decode_ws_frame_formats():
    import json

    header = {"msg_type": "comm_msg", "msg_id": "abc"}
    msg = {"header": header, "parent_header": {}, "metadata": {}, "content": {"data": {}}}
    # text frame
    assert decode_ws_frame(json.dumps({**msg, "channel": "shell"})) == ("shell", header)
    # v1.kernel.websocket.jupyter.org binary frame, with one buffer
    parts = [json.dumps(p).encode() for p in (header, {}, {}, {"data": {}})] + [b"\x00\x01\x02"]
    channel = b"shell"
    offsets = [8 * (1 + 1 + len(parts) + 1)]
    offsets.append(offsets[-1] + len(channel))
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    frame = (len(offsets).to_bytes(8, "little") + b"".join(o.to_bytes(8, "little") for o in offsets)
             + channel + b"".join(parts))
    assert decode_ws_frame(frame) == ("shell", header)
    # legacy binary frame: JSON + one buffer
    body = json.dumps({**msg, "channel": "shell"}).encode()
    buf = b"\x05\x06"
    frame = (2).to_bytes(4, "big") + (12).to_bytes(4, "big") + (12 + len(body)).to_bytes(4, "big") + body + buf
    assert decode_ws_frame(frame) == ("shell", header)
    assert decode_ws_frame(b"\x00garbage") == (None, None)
    assert decode_ws_frame("not json") == (None, None)


def test_axe_check_finds_violations_and_passes_clean_markup(chromium):
    """The accessibility check the view tests rely on can fail: an unlabelled slider and an image without alt
    text are reported (serious/critical), the same markup fixed is not, and only the selected element counts."""
    page = chromium.browser.new_page()
    try:
        page.set_content(
            "<main><div id='bad'><input type='range'><img src='data:,'></div>"
            "<div id='good'><label>δ <input type='range'></label><img src='data:,' alt='input digit'></div></main>"
        )
        bad = axe_violations(page, "#bad")
        assert any(v.startswith("label (critical)") for v in bad), bad
        assert any(v.startswith("image-alt (critical)") for v in bad), bad
        assert axe_violations(page, "#good") == []
    finally:
        page.close()
