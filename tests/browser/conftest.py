"""Fixtures for the real-browser tests: one JupyterLab + one Chromium for the whole session.

Use the ``lab`` fixture and mark the test ``@pytest.mark.browser``::

    @pytest.mark.browser
    def test_my_view(lab):
        nb = lab.open_notebook(["import nbexplain as nx", "w = nx.widgets.MyView(...); w"], name="my_view")
        root = nb.view(".nbx-myview")
        ...
        assert nb.page_errors == []

Tests that need only a browser (e.g. opening an exported HTML page) use the ``chromium`` fixture, the
:class:`harness.Chromium` that ``lab`` shares (one Playwright per process).

A missing Chromium or Playwright fails the run under CI (``CI=true``) and skips the browser tests
elsewhere, with the reason. See ``harness.py`` for the API.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Chromium, Lab, browser_available  # noqa: E402

_TRUTHY = {"1", "true", "yes", "on"}


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in _TRUTHY


def _say(config: pytest.Config, *lines: str) -> None:
    """Write to the terminal past pytest's output capture (the timings are worth seeing)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capman is not None:
        with capman.global_and_fixture_disabled():
            for line in lines:
                reporter.write_line(line)
    else:
        for line in lines:
            reporter.write_line(line)


def _require_browser(lab: bool) -> None:
    ok, why = browser_available(lab=lab)
    if not ok:
        if _under_ci():
            pytest.fail(f"browser tests cannot run under CI: {why}", pytrace=False)
        pytest.skip(f"browser tests skipped: {why}")


@pytest.fixture(scope="session")
def chromium(request: pytest.FixtureRequest):
    """A started :class:`harness.Chromium` (headless Debian Chromium under Playwright), shared by the session."""
    _require_browser(lab=False)
    t0 = time.perf_counter()
    instance = Chromium().start()
    _say(request.config, f"\n[browser] Chromium started in {time.perf_counter() - t0:.1f} s")
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest, chromium: Chromium):
    """A started :class:`harness.Lab` (JupyterLab on 127.0.0.1 + the shared Chromium), shared by the session."""
    _require_browser(lab=True)
    t0 = time.perf_counter()
    instance = Lab(chromium=chromium).start()
    elapsed = time.perf_counter() - t0
    _say(
        request.config,
        f"\n[browser] JupyterLab started in {elapsed:.1f} s "
        f"(server {instance.startup_seconds['server']:.1f} s) at {instance.url}",
    )
    try:
        yield instance
    finally:
        instance.stop()
        if instance.timings:
            _say(
                request.config,
                "\n[browser] notebook timings (s): page load / kernel ready / run all",
                *(f"[browser]   {path}: {t.get('page', float('nan')):.1f} / {t.get('kernel', float('nan')):.1f}"
                  f" / {t.get('run_all', float('nan')):.1f}" for path, t in instance.timings),
            )
