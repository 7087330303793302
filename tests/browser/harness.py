"""Real-browser test harness: one JupyterLab server and one Debian Chromium per test session.

The ``lab`` fixture (see ``conftest.py``) is a :class:`Lab`. Each test opens its own notebook page::

    nb = lab.open_notebook(["import ipywidgets as w", "s = w.IntSlider(); s"], name="slider")
    nb.view(".widget-slider")                # locator of a rendered view, waited for
    nb.execute("print(s.value)")             # stdout of code run in the notebook's own kernel
    nb.comm_messages_sent()                  # comm_msg frames the page sent to the kernel
    nb.screenshot("slider")                  # tests/browser/artifacts/slider.png
    nb.page_errors                           # uncaught page errors (known harmless one filtered)
    nb.close()

Everything the server and the kernels write (config, runtime files, settings, workspaces, IPython
profile, notebooks) lives in one temporary directory that is removed afterwards. Nothing is fetched
from the network: the server binds 127.0.0.1 and Chromium runs with networking features disabled.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
CHROMIUM = os.environ.get("NBX_CHROMIUM", "/usr/bin/chromium")

# Chromium flags measured on these machines (NOTES.md): without the networking ones it stalls on lookups.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

# Notebook 7.6.5 / JupyterLab logs this once on start-up; it is harmless (NOTES.md).
KNOWN_HARMLESS_PAGE_ERRORS = ("reading 'schema'",)
# Notebook 7.6.5's own notebook page sometimes runs its router's 'filebrowser:open-path' before (or without) the file
# browser plugin that registers it — an upstream start-up race, raised from notebook_core.js, seen in one of two CI
# runs; nothing of nbexplain's is involved. Ignored on Notebook 7 pages only.
KNOWN_HARMLESS_NOTEBOOK7_PAGE_ERRORS = ("Command 'filebrowser:open-path' not registered",)

SERVER_START_TIMEOUT = 90.0
KERNEL_READY_TIMEOUT = 120.0
RUN_ALL_TIMEOUT = 240.0


class HarnessError(RuntimeError):
    """The harness could not bring the server, the browser, a page or a kernel into the expected state."""


class NotebookCellError(AssertionError):
    """A cell of a notebook opened by :meth:`Lab.open_notebook` raised."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser_available(lab: bool = True) -> tuple[bool, str]:
    """Whether the real-browser tests can run here (``lab``: JupyterLab too), and if not, why."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return False, (
            f"Chromium not found at {CHROMIUM} (install Debian's package: `apt-get install -y chromium`; "
            "never `playwright install`)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        return False, f"the Playwright Python package is not importable ({exc}); pip install -e '.[test]'"
    import importlib.util

    if lab and importlib.util.find_spec("jupyterlab") is None:  # (importing it costs ~6 s; finding it is enough)
        return False, "JupyterLab is not installed in this interpreter; pip install -e '.[test]'"
    return True, ""


class Chromium:
    """Playwright driving Debian's Chromium with the flags above (one per test session; see conftest).

    Parameters
    ----------
    headed : bool
        Show the browser window (debugging on a desktop); default from ``NBX_BROWSER_HEADED=1``.
    """

    def __init__(self, headed: bool | None = None) -> None:
        self.headed = bool(int(os.environ.get("NBX_BROWSER_HEADED", "0"))) if headed is None else headed
        self._pw = None
        self.browser = None

    def start(self) -> Chromium:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        args = [a for a in CHROMIUM_ARGS if not (self.headed and a == "--headless")]
        self.browser = self._pw.chromium.launch(
            executable_path=CHROMIUM, headless=not self.headed, args=args, timeout=60_000,
        )
        return self

    def stop(self) -> None:
        if self.browser is not None:
            with contextlib.suppress(Exception):
                self.browser.close()
            self.browser = None
        if self._pw is not None:
            with contextlib.suppress(Exception):
                self._pw.stop()
            self._pw = None


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


# ---------------------------------------------------------------------------------------------------
# kernel websocket frames
# ---------------------------------------------------------------------------------------------------

_CHANNELS = {"shell", "iopub", "stdin", "control", "hb"}


def decode_ws_frame(payload: str | bytes) -> tuple[str | None, dict | None]:
    """(channel, header) of a frame on a kernel websocket, in any of the three wire formats.

    - text frames: one JSON message with ``channel`` and ``header`` (legacy protocol, no buffers);
    - binary frames of the legacy protocol: uint32 big-endian buffer count, uint32 BE offsets, then the
      JSON message and the buffers;
    - binary frames of ``v1.kernel.websocket.jupyter.org`` (what JupyterLab 4 negotiates): uint64
      little-endian offset count, uint64 LE offsets, then the channel name, header, parent header,
      metadata, content and buffers.

    Returns ``(None, None)`` for anything else.
    """
    if isinstance(payload, str):
        try:
            msg = json.loads(payload)
        except ValueError:
            return None, None
        if isinstance(msg, dict) and isinstance(msg.get("header"), dict):
            return msg.get("channel"), msg["header"]
        return None, None

    data = bytes(payload)
    # v1 protocol
    if len(data) >= 16:
        n = int.from_bytes(data[:8], "little")
        if 3 <= n <= 4096 and len(data) >= 8 * (n + 1):
            offsets = [int.from_bytes(data[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(n)]
            if offsets[0] == 8 * (n + 1) and all(a <= b for a, b in zip(offsets, offsets[1:], strict=False)) and offsets[-1] <= len(data):
                try:
                    channel = data[offsets[0] : offsets[1]].decode("utf-8")
                    header = json.loads(data[offsets[1] : offsets[2]])
                except (UnicodeDecodeError, ValueError):
                    channel, header = None, None
                if channel in _CHANNELS and isinstance(header, dict):
                    return channel, header
    # legacy binary protocol
    if len(data) >= 8:
        nbufs = int.from_bytes(data[:4], "big")
        if 1 <= nbufs <= 4096 and len(data) >= 4 * (nbufs + 1):
            offsets = [int.from_bytes(data[4 * (i + 1) : 4 * (i + 2)], "big") for i in range(nbufs)]
            if offsets[0] == 4 * (nbufs + 1):
                end = offsets[1] if nbufs > 1 else len(data)
                try:
                    msg = json.loads(data[offsets[0] : end])
                except ValueError:
                    return None, None
                if isinstance(msg, dict) and isinstance(msg.get("header"), dict):
                    return msg.get("channel"), msg["header"]
    return None, None


# ---------------------------------------------------------------------------------------------------
# JavaScript run in the page (JupyterLab exposes its app as window.jupyterapp: expose_app_in_browser)
# ---------------------------------------------------------------------------------------------------

_JS_NOTEBOOK_STATE = """
(path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return {ready: false, why: 'window.jupyterapp not there yet'};
  let panel = null;
  for (const w of app.shell.widgets('main')) {
    if (w && w.context && w.context.path === path) { panel = w; break; }
  }
  if (!panel) return {ready: false, why: 'notebook panel not open yet'};
  if (!panel.context.isReady || !panel.content || !panel.content.model)
    return {ready: false, why: 'notebook model not loaded yet'};
  const sc = panel.sessionContext;
  const kernel = sc && sc.session ? sc.session.kernel : null;
  const summary = (o) => {
    if (o.output_type === 'error') return {output_type: 'error', ename: o.ename, evalue: o.evalue,
                                           traceback: o.traceback};
    if (o.output_type === 'stream') return {output_type: 'stream', name: o.name,
                                            text: String(o.text).slice(-4000)};
    return {output_type: o.output_type, mimes: Object.keys(o.data || {})};
  };
  const cells = [];
  const model = panel.content.model;
  for (let i = 0; i < model.cells.length; i++) {
    const c = model.cells.get(i);
    const item = {index: i, type: c.type, source: c.sharedModel.getSource()};
    if (c.type === 'code') {
      item.count = c.executionCount;
      item.state = (c.executionState === undefined) ? null : c.executionState;
      item.outputs = c.outputs.toJSON().map(summary);
    }
    cells.push(item);
  }
  const prompts = Array.from(panel.node.querySelectorAll('.jp-InputPrompt')).map(n => n.textContent);
  return {
    ready: true,
    current: app.shell.currentWidget === panel,
    sessionReady: !!(sc && sc.isReady),
    kernelId: kernel ? kernel.id : null,
    kernelStatus: kernel ? kernel.status : null,
    connectionStatus: kernel ? kernel.connectionStatus : null,
    dialogs: Array.from(document.querySelectorAll('.jp-Dialog')).map(d => d.textContent.slice(0, 300)),
    prompts,
    cells,
  };
}
"""

_JS_RUN_ALL = """
async (path) => {
  const app = window.jupyterapp;
  let panel = null;
  for (const w of app.shell.widgets('main')) {
    if (w && w.context && w.context.path === path) { panel = w; break; }
  }
  if (!panel) throw new Error('notebook panel ' + path + ' is not open');
  app.shell.activateById(panel.id);
  await app.commands.execute('notebook:run-all-cells');
  return true;
}
"""


# ---------------------------------------------------------------------------------------------------
# the server + browser
# ---------------------------------------------------------------------------------------------------


class Lab:
    """One JupyterLab server on 127.0.0.1 and one headless Chromium, shared by every test of a session.

    Parameters
    ----------
    headed : bool
        Show the browser window (debugging on a desktop); default from ``NBX_BROWSER_HEADED=1``.
    chromium : Chromium, optional
        A started browser to share (it is left running by :meth:`stop`); default: start one.
    """

    def __init__(self, headed: bool | None = None, chromium: Chromium | None = None) -> None:
        self.headed = bool(int(os.environ.get("NBX_BROWSER_HEADED", "0"))) if headed is None else headed
        self._shared = chromium
        self.tmp = Path(tempfile.mkdtemp(prefix="nbx-lab-"))
        self.root = self.tmp / "root"
        self.token = uuid.uuid4().hex + uuid.uuid4().hex
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen | None = None
        self.log_path = self.tmp / "server.log"
        self._log_file = None
        self._own: Chromium | None = None
        self.browser = None
        self.open_notebooks: list[Notebook] = []
        self.startup_seconds: dict[str, float] = {}
        #: (notebook path, {"page": s, "kernel": s, "run_all": s}) for every notebook opened
        self.timings: list[tuple[str, dict[str, float]]] = []
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {self.token}"

    # -- environment ---------------------------------------------------------------------------------
    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        dirs = {
            "JUPYTER_CONFIG_DIR": self.tmp / "config",
            "JUPYTER_RUNTIME_DIR": self.tmp / "runtime",
            "JUPYTER_DATA_DIR": self.tmp / "data",
            "JUPYTERLAB_SETTINGS_DIR": self.tmp / "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": self.tmp / "lab-workspaces",
            "IPYTHONDIR": self.tmp / "ipython",
        }
        for key, path in dirs.items():
            path.mkdir(parents=True, exist_ok=True)
            env[key] = str(path)
        env["JUPYTER_PLATFORM_DIRS"] = "1"
        # JUPYTER_PATH comes first in every search path (a venv otherwise prefers its own share/jupyter,
        # whose python3 kernelspec says just "python"): our kernelspec below wins.
        env["JUPYTER_PATH"] = str(self.tmp / "path")
        env.pop("JUPYTER_CONFIG_PATH", None)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("MPLBACKEND", "Agg")
        env.pop("ANYWIDGET_HMR", None)  # no file watching under test

        settings = dirs["JUPYTERLAB_SETTINGS_DIR"]
        _write_json(settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
                    {"fetchNews": "false", "checkForUpdates": False})
        _write_json(settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
                    {"autoStartDefaultKernel": True})
        # The notebook's kernel is this interpreter (the project's .venv), whatever else is installed.
        _write_json(self.tmp / "path" / "kernels" / "python3" / "kernel.json", {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (nbexplain test)",
            "language": "python",
            "metadata": {"debugger": False},
        })
        return env

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> Lab:
        t0 = time.perf_counter()
        self.root.mkdir(parents=True, exist_ok=True)
        env = self._environment()
        last_error = ""
        for _attempt in range(3):  # the free port can be taken between our probe and the server's bind
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            cmd = [
                sys.executable, "-m", "jupyter", "lab",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.root_dir={self.root}",
                "--ServerApp.allow_root=True",
                f"--IdentityProvider.token={self.token}",
                "--ServerApp.terminals_enabled=False",
                "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
                "--LabApp.expose_app_in_browser=True",
                # Notebook 7 (the `notebook` package, a server extension of the same server) exposes it too
                "--JupyterNotebookApp.expose_app_in_browser=True",
            ]
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            self.proc = subprocess.Popen(
                cmd, cwd=self.root, env=env, stdout=self._log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
            try:
                self._wait_for_server()
                break
            except HarnessError as exc:
                last_error = str(exc)
                self._stop_server()
        else:
            raise HarnessError(f"JupyterLab did not start after 3 attempts: {last_error}")
        t1 = time.perf_counter()
        self.startup_seconds["server"] = t1 - t0
        self._start_browser()
        self.startup_seconds["browser"] = time.perf_counter() - t1
        return self

    def log_text(self) -> str:
        """Everything the server (and its kernels) wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def _wait_for_server(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(f"jupyter lab exited with {self.proc.returncode}:\n{self._log_tail()}")
            try:
                r = self.http.get(f"{self.url}/api/status", timeout=5)
                if r.status_code == 200:
                    # the lab page itself must be served too (extensions loaded)
                    r2 = self.http.get(f"{self.url}/lab", timeout=10)
                    if r2.status_code == 200:
                        return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise HarnessError(f"jupyter lab did not answer within {SERVER_START_TIMEOUT:.0f} s:\n{self._log_tail()}")

    def _start_browser(self) -> None:
        if self._shared is None:
            self._own = Chromium(self.headed).start()
        self.browser = (self._shared or self._own).browser

    def stop(self) -> None:
        for nb in list(self.open_notebooks):
            with contextlib.suppress(Exception):
                nb.close()
        if self._own is not None:
            self._own.stop()
            self._own = None
        self.browser = None
        self._stop_server()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _stop_server(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            # the server shuts its kernels down on SIGTERM; then make sure its process group is gone
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # stray kernels of our own server's group
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- REST helpers --------------------------------------------------------------------------------
    def api(self, method: str, path: str, retries: int = 20, **kwargs: Any) -> Any:
        """Call the server's REST API, retrying the HTTP 500s it answers while a kernel starts."""
        last: Exception | None = None
        for _ in range(retries):
            try:
                r = self.http.request(method, f"{self.url}{path}", timeout=15, **kwargs)
            except requests.RequestException as exc:
                last = exc
                time.sleep(0.25)
                continue
            if r.status_code >= 500:
                last = HarnessError(f"{method} {path}: HTTP {r.status_code} {r.text[:200]}")
                time.sleep(0.25)
                continue
            r.raise_for_status()
            return r.json() if r.content else None
        raise HarnessError(f"{method} {path} kept failing: {last}")

    # -- notebooks -----------------------------------------------------------------------------------
    def write_notebook(self, cells: Iterable[str], name: str) -> str:
        """Write an nbformat 4.5 notebook of code cells (a cell starting with ``%%md`` is markdown).

        The JSON is written directly: importing ``nbformat`` (jsonschema) costs seconds on a loaded machine.
        """
        path = name if name.endswith(".ipynb") else f"{name}.ipynb"
        if "/" in path or "\\" in path or path.startswith("."):
            raise ValueError(f"name must be a plain file name, got {name!r}")
        nb_cells = []
        for src in cells:
            if not isinstance(src, str):
                raise TypeError(f"cells must be strings of source code, got {type(src).__name__}")
            if src.startswith("%%md\n"):
                nb_cells.append({"cell_type": "markdown", "id": uuid.uuid4().hex[:12], "metadata": {},
                                 "source": src[len("%%md\n"):]})
            else:
                nb_cells.append({"cell_type": "code", "id": uuid.uuid4().hex[:12], "metadata": {},
                                 "execution_count": None, "outputs": [], "source": src})
        notebook = {
            "cells": nb_cells,
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        (self.root / path).write_text(json.dumps(notebook, indent=1))
        return path

    def open_notebook(self, cells: list[str], name: str, run: bool = True,
                      viewport: tuple[int, int] = (1280, 1000), device_scale_factor: float = 1,
                      app: str = "lab") -> Notebook:
        """Write ``cells`` to ``<name>.ipynb``, open it in a new page, wait for its kernel, run all cells.

        ``run=False`` only opens the page and waits for the kernel (call ``nb.run_all()`` yourself).
        ``device_scale_factor=2`` renders at high DPI (sharper screenshots for the docs).
        ``app="notebook"`` opens it in Notebook 7 (``/notebooks/<name>.ipynb``) instead of JupyterLab.

        Raises :class:`NotebookCellError` (with the cell's source and traceback) if a cell raised, and
        :class:`HarnessError` if the page, the kernel or the run did not get ready in time.
        """
        if self.browser is None:
            raise HarnessError("Lab.start() was not called")
        if app not in ("lab", "notebook"):
            raise ValueError(f"app must be 'lab' (JupyterLab) or 'notebook' (Notebook 7), got {app!r}")
        wanted = name if name.endswith(".ipynb") else f"{name}.ipynb"
        if any(nb.path == wanted for nb in self.open_notebooks):
            raise ValueError(f"a notebook named {wanted!r} is already open in this session; close it "
                             "(use `with nb:`) or pick another name")
        path = self.write_notebook(cells, name)
        nb = Notebook(self, path, viewport, device_scale_factor, app=app)
        self.open_notebooks.append(nb)
        self.timings.append((path, nb.open_seconds))
        try:
            nb._open()
            if run:
                nb.run_all()
        except BaseException:
            # keep the evidence, free the kernel
            with contextlib.suppress(Exception):
                nb.screenshot(f"FAILED-{Path(path).stem}")
            with contextlib.suppress(Exception):
                nb.close()
            raise
        return nb


# ---------------------------------------------------------------------------------------------------
# one notebook page
# ---------------------------------------------------------------------------------------------------


class Notebook:
    """A notebook opened in its own browser page, with its own kernel. Created by :meth:`Lab.open_notebook`."""

    def __init__(self, lab: Lab, path: str, viewport: tuple[int, int], device_scale_factor: float = 1,
                 app: str = "lab") -> None:
        self.lab = lab
        self.path = path
        self.app = app
        self.name = Path(path).stem
        self.context = lab.browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=device_scale_factor,
        )
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.page_errors: list[str] = []
        self.ignored_page_errors: list[str] = []
        self.console_errors: list[str] = []
        self._comm_lock = threading.Lock()
        self._comm_msgs: list[dict] = []
        self.kernel_id: str | None = None
        self.session_id: str | None = None
        self.open_seconds: dict[str, float] = {}
        self._closed = False
        self.page.on("pageerror", self._on_page_error)
        self.page.on("console", self._on_console)
        self.page.on("websocket", self._on_websocket)

    # -- event handlers ------------------------------------------------------------------------------
    def _on_page_error(self, error: Any) -> None:
        text = f"{getattr(error, 'name', 'Error')}: {getattr(error, 'message', error)}"
        stack = getattr(error, "stack", None)
        harmless = KNOWN_HARMLESS_PAGE_ERRORS + (KNOWN_HARMLESS_NOTEBOOK7_PAGE_ERRORS if self.app == "notebook" else ())
        if any(k in text for k in harmless):
            self.ignored_page_errors.append(text)
        else:
            self.page_errors.append(text + (f"\n{stack}" if stack else ""))

    def _on_console(self, msg: Any) -> None:
        if msg.type == "error":
            self.console_errors.append(msg.text)

    def _on_websocket(self, ws: Any) -> None:
        if "/api/kernels/" not in ws.url or "/channels" not in ws.url:
            return

        def on_sent(payload: str | bytes) -> None:
            channel, header = decode_ws_frame(payload)
            if header and header.get("msg_type") == "comm_msg":
                with self._comm_lock:
                    self._comm_msgs.append({"channel": channel, "msg_id": header.get("msg_id"),
                                            "time": time.monotonic()})

        ws.on("framesent", on_sent)

    # -- opening and running -------------------------------------------------------------------------
    def _open(self) -> None:
        t0 = time.perf_counter()
        if self.app == "notebook":  # Notebook 7: one notebook per page, no workspace
            url = f"{self.lab.url}/notebooks/{quote(self.path)}?token={self.lab.token}"
        else:
            workspace = f"nbx-{self.name}-{uuid.uuid4().hex[:8]}"  # a fresh workspace: nothing else restored
            url = (f"{self.lab.url}/lab/workspaces/{quote(workspace)}/tree/{quote(self.path)}"
                   f"?token={self.lab.token}")
        self.page.goto(url, wait_until="domcontentloaded", timeout=60_000)
        self._wait_until(lambda s: s.get("ready") and s.get("kernelId"), KERNEL_READY_TIMEOUT,
                         "the notebook to load and get a kernel")
        t1 = time.perf_counter()
        self.open_seconds["page"] = t1 - t0
        self._wait_for_kernel()
        self.open_seconds["kernel"] = time.perf_counter() - t1

    def state(self) -> dict:
        """The notebook as the page sees it: cells (source, execution count, outputs), kernel status."""
        return self.page.evaluate(_JS_NOTEBOOK_STATE, self.path)

    def _wait_until(self, pred: Callable[[dict], Any], timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        state: dict = {}
        while True:
            state = self.state()
            if state.get("dialogs"):
                raise HarnessError(f"a dialog appeared while waiting for {what}: {state['dialogs']}")
            if pred(state):
                return state
            if time.monotonic() > deadline:
                raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}; last state: "
                                   f"{_short_state(state)}\nserver log:\n{self.lab._log_tail(30)}")
            self.page.wait_for_timeout(100)

    def _wait_for_kernel(self) -> None:
        """Until the server lists this notebook's kernel as idle with the page connected (NOTES.md race)."""
        deadline = time.monotonic() + KERNEL_READY_TIMEOUT
        last: Any = None
        while time.monotonic() < deadline:
            sessions = self.lab.api("GET", "/api/sessions")
            mine = [s for s in sessions if s.get("path") == self.path and s.get("kernel")]
            if mine:
                self.session_id = mine[0]["id"]
                self.kernel_id = mine[0]["kernel"]["id"]
                kernels = self.lab.api("GET", "/api/kernels")
                k = next((k for k in kernels if k["id"] == self.kernel_id), None)
                last = k
                if k and k.get("connections", 0) >= 1 and k.get("execution_state") == "idle":
                    s = self.state()
                    if (s.get("kernelId") == self.kernel_id and s.get("connectionStatus") == "connected"
                            and s.get("kernelStatus") == "idle" and s.get("sessionReady")):
                        return
                    last = {"server": k, "page": _short_state(s)}
            self.page.wait_for_timeout(200)
        raise HarnessError(f"kernel of {self.path} not ready in {KERNEL_READY_TIMEOUT:.0f} s: {last}\n"
                           f"server log:\n{self.lab._log_tail(30)}")

    def run_all(self, timeout: float = RUN_ALL_TIMEOUT) -> dict:
        """Run every cell (JupyterLab's ``notebook:run-all-cells``) and wait until all have executed.

        Raises :class:`NotebookCellError` with the failing cell's source and traceback.
        """
        t0 = time.perf_counter()
        self.page.evaluate(_JS_RUN_ALL, self.path)

        def done(s: dict) -> bool:
            if not s.get("ready"):
                return False
            code = [c for c in s["cells"] if c["type"] == "code"]
            if any(o["output_type"] == "error" for c in code for o in c["outputs"]):
                return s.get("kernelStatus") == "idle"
            if any("*" in (p or "") for p in s["prompts"]):
                return False
            if any(c.get("state") == "running" for c in code):
                return False
            if any(c["count"] is None for c in code if c["source"].strip()):
                return False
            return s.get("kernelStatus") == "idle"

        state = self._wait_until(done, timeout, f"all cells of {self.path} to run")
        # the server agrees the kernel is idle too
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            k = self.lab.api("GET", f"/api/kernels/{self.kernel_id}")
            if k.get("execution_state") == "idle":
                break
            self.page.wait_for_timeout(100)
        self.open_seconds["run_all"] = time.perf_counter() - t0
        errors = [c for c in state["cells"] if c["type"] == "code"
                  and any(o["output_type"] == "error" for o in c["outputs"])]
        if errors:
            raise NotebookCellError(_format_cell_errors(self.path, errors))
        return state

    # -- kernel access -------------------------------------------------------------------------------
    def execute(self, code: str, timeout: float = 30) -> str:
        """Run ``code`` in this notebook's kernel (a second websocket client) and return its stdout.

        Raises :class:`NotebookCellError` (with the traceback) when the code raises, and
        :class:`HarnessError` on a timeout. Does not touch the page.
        """
        import websocket  # websocket-client, a dependency of jupyter_server

        if self.kernel_id is None:
            raise HarnessError("the notebook has no kernel yet")
        ws_url = (f"ws://127.0.0.1:{self.lab.port}/api/kernels/{self.kernel_id}/channels"
                  f"?session_id={uuid.uuid4().hex}&token={self.lab.token}")
        ws = websocket.create_connection(ws_url, timeout=timeout,
                                         header=[f"Authorization: token {self.lab.token}"])
        try:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps({
                "header": {"msg_id": msg_id, "username": "nbx-test", "session": uuid.uuid4().hex,
                           "msg_type": "execute_request", "version": "5.3",
                           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
            }))
            stdout: list[str] = []
            stderr: list[str] = []
            reply: dict | None = None
            idle = False
            deadline = time.monotonic() + timeout
            while not (reply is not None and idle):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise HarnessError(f"execute timed out after {timeout} s: {code!r}; stdout so far: "
                                       f"{''.join(stdout)!r}")
                ws.settimeout(remaining)
                try:
                    raw = ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                msg = json.loads(raw) if isinstance(raw, str) else _legacy_binary_json(raw)
                if not msg or msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                mtype = msg["header"]["msg_type"]
                content = msg.get("content", {})
                if mtype == "stream":
                    (stdout if content.get("name") == "stdout" else stderr).append(content.get("text", ""))
                elif mtype == "error":
                    pass  # reported from the execute_reply below
                elif mtype == "status" and content.get("execution_state") == "idle":
                    idle = True
                elif mtype == "execute_reply":
                    reply = content
            if reply.get("status") != "ok":
                tb = "\n".join(reply.get("traceback", []))
                raise NotebookCellError(
                    f"code raised in the kernel of {self.path}:\n{code}\n"
                    f"{reply.get('ename')}: {reply.get('evalue')}\n{_strip_ansi(tb)}")
            return "".join(stdout)
        finally:
            with contextlib.suppress(Exception):
                ws.close()

    def wait_for_output(self, code: str, expected: str | Callable[[str], bool], timeout: float = 15) -> str:
        """Re-run ``code`` until its stripped stdout equals ``expected`` (or ``expected(out)`` is true).

        Returns the last output; raises AssertionError with it on a timeout. For Python state that a
        view updates asynchronously (a click's comm message must first reach the kernel).
        """
        check = expected if callable(expected) else (lambda out: out.strip() == expected)
        deadline = time.monotonic() + timeout
        out = ""
        while True:
            out = self.execute(code)
            if check(out):
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"after {timeout} s, {code!r} printed {out.strip()!r}, expected {expected!r}")
            self.page.wait_for_timeout(100)

    # -- comm traffic --------------------------------------------------------------------------------
    def comm_messages_sent(self, settle_ms: int = 150) -> int:
        """How many ``comm_msg`` messages the page has sent to the kernel since open / the last reset.

        First lets ``settle_ms`` of page time pass so frames already on their way are counted.
        """
        if settle_ms > 0:
            self.page.wait_for_timeout(settle_ms)
        self.page.evaluate("1")  # drain pending Playwright events
        with self._comm_lock:
            return len(self._comm_msgs)

    def reset_comm_count(self, settle_ms: int = 150) -> None:
        """Forget the comm messages counted so far (after letting in-flight ones arrive)."""
        if settle_ms > 0:
            self.page.wait_for_timeout(settle_ms)
        self.page.evaluate("1")
        with self._comm_lock:
            self._comm_msgs.clear()

    # -- views and screenshots -----------------------------------------------------------------------
    def view(self, selector: str, index: int = 0, timeout: float = 30) -> Any:
        """The Playwright locator of the ``index``-th element matching ``selector``, once it is visible."""
        loc = self.page.locator(selector).nth(index)
        loc.wait_for(state="visible", timeout=timeout * 1000)
        return loc

    def screenshot(self, name: str, selector: str | Any | None = None) -> Path:
        """Save a PNG of the page (or of one element) to ``tests/browser/artifacts/<name>.png``."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / (name if name.endswith(".png") else f"{name}.png")
        if selector is None:
            self.page.screenshot(path=str(path))
        else:
            loc = self.page.locator(selector).first if isinstance(selector, str) else selector
            loc.screenshot(path=str(path))
        return path

    # -- teardown ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the page and shut its kernel down."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.context.close()
        if self.session_id is not None:
            with contextlib.suppress(Exception):
                self.lab.api("DELETE", f"/api/sessions/{self.session_id}", retries=3)
        elif self.kernel_id is not None:
            with contextlib.suppress(Exception):
                self.lab.api("DELETE", f"/api/kernels/{self.kernel_id}", retries=3)
        with contextlib.suppress(ValueError):
            self.lab.open_notebooks.remove(self)

    def __enter__(self) -> Notebook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


def _legacy_binary_json(data: bytes) -> dict | None:
    nbufs = int.from_bytes(data[:4], "big")
    offsets = [int.from_bytes(data[4 * (i + 1) : 4 * (i + 2)], "big") for i in range(nbufs)]
    end = offsets[1] if nbufs > 1 else len(data)
    try:
        return json.loads(data[offsets[0] : end])
    except (ValueError, IndexError):
        return None


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def _format_cell_errors(path: str, cells: list[dict]) -> str:
    parts = [f"{len(cells)} cell(s) of {path} raised:"]
    for c in cells:
        parts.append(f"--- cell {c['index']} ---\n{c['source']}")
        for o in c["outputs"]:
            if o["output_type"] == "error":
                parts.append(_strip_ansi("\n".join(o.get("traceback") or [f"{o['ename']}: {o['evalue']}"])))
            elif o["output_type"] == "stream":
                parts.append(f"[{o['name']}] {o['text']}")
    return "\n".join(parts)


def _short_state(state: dict) -> dict:
    if not state.get("ready"):
        return state
    return {
        "kernelId": state.get("kernelId"), "kernelStatus": state.get("kernelStatus"),
        "connectionStatus": state.get("connectionStatus"), "sessionReady": state.get("sessionReady"),
        "prompts": state.get("prompts"),
        "counts": [c.get("count") for c in state.get("cells", []) if c["type"] == "code"],
    }


def offline_only(context: Any) -> tuple[list[str], list[str]]:
    """Refuse every request of a Playwright browser ``context`` that is not a ``file://`` URL (a page opened from
    disk with no network). Returns the lists ``(allowed, blocked)`` of URLs, filled as the page loads."""
    allowed: list[str] = []
    blocked: list[str] = []

    def gate(route: Any) -> None:
        url = route.request.url
        if url.startswith("file://"):
            allowed.append(url)
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", gate)
    return allowed, blocked


#: ``root.evaluate(VIEW_LAYOUT)`` on a view's root: the smallest rendered font size of any text in it (SVG text
#: scaled by its viewBox) and where, and whether anything overflows sideways — ``scroll``/``client`` widths of the
#: root, its ``right`` edge, the right edge of its widest descendant (``contentRight``, ``widest``).
VIEW_LAYOUT = """root => {
  let min = 1e9, where = "";
  for (const e of root.querySelectorAll("*")) {
    if (!e.getClientRects().length) continue;
    const own = Array.from(e.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    let size = parseFloat(getComputedStyle(e).fontSize);
    const svg = e.closest("svg");
    if (svg && svg.viewBox.baseVal && svg.viewBox.baseVal.width) {
      size *= svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    }
    if (size < min) { min = size; where = e.tagName + ":" + e.textContent.slice(0, 30); }
  }
  let right = 0, widest = "";
  for (const e of root.querySelectorAll("*")) {
    const r = e.getBoundingClientRect().right;
    if (r > right) { right = r; widest = e.tagName + "." + e.className; }
  }
  return {min, where, scroll: root.scrollWidth, client: root.clientWidth,
          right: root.getBoundingClientRect().right, contentRight: right, widest};
}"""


#: axe-core (an npm devDependency, installed by ``npm ci``): the accessibility rules the views are checked against.
AXE_JS = HERE.parents[1] / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page: Any, selector: str, impacts: Iterable[str] = ("serious", "critical")) -> list[str]:
    """Run axe-core on the element(s) matching ``selector`` and return its violations of the given impacts,
    one readable line each (rule, impact, help and the first offending nodes); ``[]`` when there are none.

    Page-level rules that a widget inside a notebook cannot satisfy (landmarks, the page's title and language)
    are not run. A missing axe-core is an error, never a silent pass.
    """
    if not AXE_JS.is_file():
        raise HarnessError(f"axe-core is missing ({AXE_JS}); run `npm ci` in the repository root.")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_JS))
    wanted = sorted(set(impacts))
    result = page.evaluate(
        """async ([selector, wanted]) => {
          const r = await window.axe.run({include: [[selector]]}, {
            rules: {region: {enabled: false}, "landmark-one-main": {enabled: false},
                    "page-has-heading-one": {enabled: false}, "document-title": {enabled: false},
                    "html-has-lang": {enabled: false}},
            resultTypes: ["violations"],
          });
          return r.violations.filter(v => wanted.includes(v.impact)).map(v =>
            `${v.id} (${v.impact}): ${v.help} — ` +
            v.nodes.slice(0, 3).map(n => n.target.join(" ") + (n.failureSummary ? " [" +
              n.failureSummary.replace(/\\s+/g, " ").slice(0, 160) + "]" : "")).join("; "));
        }""",
        [selector, wanted],
    )
    return list(result)
