"""JupyterLab starts without printing a screen of minified JavaScript (issue 14, item 10).

At start-up JupyterLab asks yarn for the npm registry (``node <jupyter_builder>/yarn.js config --json``).
``yarn.js`` is CommonJS; Node reads a ``.js`` file as an ES module when the nearest ``package.json`` above it
says ``"type": "module"``. This repository's ``package.json`` is such a file for every path inside it, the
``.venv`` of ``make demo`` included, so a ``"type": "module"`` there makes yarn crash and JupyterLab log its
whole minified source line ("Fail to get yarn configuration"). The repository's own Node scripts are
``.mjs`` and need no package type.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_package_json_does_not_make_the_venv_an_es_module_scope() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    assert package.get("type", "commonjs") == "commonjs", (
        'package.json: "type": "module" makes Node load every .js file below the repository as an ES module, '
        "JupyterLab's yarn.js in .venv included (it then crashes at start-up); name ES module scripts *.mjs"
    )


def test_jupyterlab_yarn_probe_logs_no_error() -> None:
    """The call JupyterLab makes at start-up (``AppOptions.registry``) runs yarn without an error."""
    pytest.importorskip("jupyterlab")
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH: JupyterLab then skips the yarn probe")
    from jupyterlab.commands import AppOptions

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("nbx-test-yarn-probe")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = Keep()
    logger.addHandler(handler)
    try:
        registry = AppOptions(logger=logger).registry
    finally:
        logger.removeHandler(handler)
    errors = [r.getMessage()[:300] for r in records if r.levelno >= logging.WARNING]
    assert errors == [], errors
    assert registry.startswith("https://")
