"""Notebook 7 (the ``notebook`` package) in real Chromium, and a clean server start-up log.

The same server that serves JupyterLab serves Notebook 7 at ``/tree`` and ``/notebooks/<path>`` (the
``notebook`` server extension, installed by ``make demo`` / ``make test``). A notebook opened there runs a
cell that shows a Heatmap; hovering reads a value in the page, clicking a map sets the Python trait, and
setting the trait in the kernel moves the selection in the page: the widget comm works both ways.

The server's start-up log must hold log records only: JupyterLab asks yarn for its registry when it
starts, and when Node loads JupyterLab's CommonJS ``yarn.js`` as an ES module (a ``"type": "module"``
package.json above the virtual environment), the failure prints a screen of minified JavaScript
("Fail to get yarn configuration") into the terminal of ``make demo``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

pytestmark = pytest.mark.browser

# One test digit per class 0..5 as its difference from the mean training digit (signed maps).
CELLS = [
    "%%md\n# Notebook 7",
    "import numpy as np\n"
    "from nbexplain.data import digits\n"
    "from nbexplain.widgets import Heatmap\n"
    "d = digits()\n"
    "idx = [int((d.y_test == k).nonzero()[0][0]) for k in range(6)]\n"
    "maps = d.x_test[idx, 0].numpy() - d.x_train[:, 0].numpy().mean(axis=0)\n"
    "h = Heatmap(maps, images=d.x_test[idx], titles=[f'digit {k}' for k in range(6)], cell_size=96, columns=3)\n"
    "h",
]


def expected_maps() -> np.ndarray:
    """The same maps, computed in the test process from the same offline data."""
    from nbexplain.data import digits

    d = digits()
    idx = [int((d.y_test == k).nonzero()[0][0]) for k in range(6)]
    return (d.x_test[idx, 0].numpy() - d.x_train[:, 0].numpy().mean(axis=0)).astype(np.float32)


def test_notebook7_serves_tree_and_runs_an_nbexplain_view(lab):
    # the Notebook 7 front end is served by the same server (a 404 without the `notebook` package)
    tree = lab.http.get(f"{lab.url}/tree", timeout=30)
    assert tree.status_code == 200, f"/tree answered HTTP {tree.status_code}: is the `notebook` package installed?"
    assert "Jupyter Notebook" in tree.text

    maps = expected_maps()
    with lab.open_notebook(CELLS, name="notebook7_heatmap", app="notebook") as nb:
        assert "/notebooks/notebook7_heatmap.ipynb" in nb.page.url
        # the page is Notebook 7's application, not JupyterLab's
        assert nb.page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"
        assert nb.page.locator("#main-panel, .jp-NotebookPanel").count() >= 1

        root = nb.view(".nbx-heatmap")
        nb.page.locator(".nbx-heatmap[data-ready='true']").wait_for()
        n, H, W = maps.shape
        assert root.get_attribute("data-n") == str(n)
        assert nb.page.locator(".nbx-heatmap .nbx-cell").count() == n

        # hover: read the exact value of the strongest pixel of map 2, in the page alone
        nb.reset_comm_count()
        r, c = divmod(int(np.argmax(np.abs(maps[2]))), W)
        canvas = nb.view(".nbx-heatmap .nbx-cell[data-index='2'] canvas")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        nb.page.mouse.move(box["x"] + (c + 0.5) * box["width"] / W, box["y"] + (r + 0.5) * box["height"] / H)
        nb.page.locator(f".nbx-heatmap[data-hover='2,{r},{c}']").wait_for(timeout=5000)
        assert float(root.get_attribute("data-value")) == float(maps[2, r, c])
        assert nb.comm_messages_sent() == 0

        # click -> the kernel's trait follows; kernel -> the page follows
        assert nb.execute("print(h.selected)").strip() == "-1"
        nb.page.locator(".nbx-heatmap .nbx-cell[data-index='4'] canvas").click()
        nb.wait_for_output("print(h.selected)", "4")
        assert root.get_attribute("data-selected") == "4"
        assert nb.execute("print(np.array_equal(h.selected_map, maps[4]))").strip() == "True"
        nb.execute("h.selected = 1")
        nb.page.locator(".nbx-heatmap[data-selected='1']").wait_for(timeout=5000)
        assert re.search(r"\bnbx-selected\b",
                         nb.page.locator(".nbx-heatmap .nbx-cell[data-index='1']").get_attribute("class") or "")
        nb.screenshot("notebook7-heatmap")
        assert nb.page_errors == [], nb.page_errors


def test_server_startup_log_is_clean(lab):
    """Up to "is running at", the server wrote log records only: no yarn failure, no screen of JavaScript."""
    log = lab.log_text()
    assert "is running at" in log, log[-3000:]
    startup = log[: log.index("is running at")]
    assert "Fail to get yarn configuration" not in startup, startup[:2000]
    records = re.compile(r"^\[[DIWEC] \d{4}-\d\d-\d\d [\d:.]+ \w+\]")
    strays = [line[:200] for line in startup.splitlines() if line.strip() and not records.match(line)]
    assert strays == [], strays
    assert not [line for line in startup.splitlines() if line.startswith(("[E ", "[C "))]
