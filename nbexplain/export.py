"""Static HTML export of a notebook whose nbexplain views keep working offline.

nbconvert's HTML page loads require.js and the widget renderer from CDNs, so opened offline it shows
blank outputs. :func:`export_html` writes the page and, beside it, a folder ``<name>_files/`` with
everything the views need:

- ``require.js`` (npm ``requirejs``) and ``embed-amd.js`` (npm ``@jupyter-widgets/html-manager``, which
  renders saved widget state without a kernel), both copied into ``nbexplain/static/export/`` by
  ``npm run build`` and shipped in the wheel;
- ``anywidget.js``: the AMD module of the *installed* ``anywidget`` Python package (its
  ``nbextension/index.js``), the front end of the exact version that wrote the widget state.

- ``bqplot.js`` and ``bqscales.js``, only when the saved widget state has bqplot charts (the
  ``SaturationDashboard``'s, or your own): the AMD builds that the installed ``bqplot`` and ``bqscales``
  wheels ship (``share/jupyter/nbextensions/<name>/index.js``, found through each distribution's file
  list, so ``--user`` and virtual-environment installs work alike), with their licences. bqplot needs
  both: its scales are ``bqscales`` models.

Every URL in the page is relative, so the HTML file and its folder can be zipped and opened anywhere.
The page makes no network request: a widget module that is not available locally fails to load from the
folder instead of a CDN and shows as an error in its output only. Math and Mermaid diagrams are shown as
their source (their renderers live on CDNs).

The views interact on precomputed state (docs/architecture.md), so sliders, hovers and toggles work in the page;
the controls that ask the kernel for new work (another sample, another layer; CSS class
``nbx-needs-kernel``) are greyed out and inert.

Command line::

    python -m nbexplain.export NOTEBOOK.ipynb [-o OUT.html] [--execute] [--timeout S] [--kernel NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["export_html", "main", "ASSETS"]

#: Where ``npm run build`` copies require.js and embed-amd.js (and their licences).
ASSETS = Path(__file__).resolve().parent / "static" / "export"
_BUILT = ("require.js", "embed-amd.js")
_STATE_MIME = "application/vnd.jupyter.widget-state+json"
_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
_KERNEL = "nbexplain-export"
_INSTALL_HINT = 'install it with `pip install "nbexplain[export]"`'
# Widget modules whose front ends installed Python packages ship as AMD modules: require.js name ->
# (distribution, the module's path among the distribution's files). A page gets the whole group of a
# module its saved state uses (bqplot's scale models are bqscales models).
_AMD_MODULES = {
    "bqplot": ("bqplot", "share/jupyter/nbextensions/bqplot/index.js"),
    "bqscales": ("bqscales", "share/jupyter/nbextensions/bqscales/index.js"),
}
_AMD_GROUPS = (("bqplot", "bqscales"),)

# The lab template, with require.js told where anywidget's module is, widget modules that are not in
# the folder looked up in the folder instead of a CDN, no MathJax/Mermaid from CDNs, and the views'
# controls that ask the kernel for new work (class nbx-needs-kernel) greyed out: there is no kernel.
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block extra_css -%}
<style type="text/css">
.nbx-needs-kernel { pointer-events: none; opacity: 0.45; }
</style>
{%- endblock extra_css -%}
{%- block html_head_js_requirejs -%}
{{ super() }}
<script data-jupyter-widgets-cdn="{{ resources.nbexplain_missing }}">
require.config({paths: {{ resources.nbexplain_paths }}});
</script>
{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def export_html(
    notebook: str | os.PathLike[str] | Any,
    output: str | os.PathLike[str] | None = None,
    *,
    execute: bool = False,
    timeout: int = 600,
    kernel_name: str | None = None,
    files: str | None = None,
) -> Path:
    """Write a notebook as a self-contained HTML page whose widgets render and respond offline.

    Parameters
    ----------
    notebook : str, os.PathLike or nbformat.NotebookNode
        The ``.ipynb`` file, or a notebook already in memory (then it runs, if ``execute``, in the
        current directory). The file on disk is never modified.
    output : str or os.PathLike, optional
        The HTML file to write; default: the notebook's path with ``.html``. The assets go to the
        folder ``<output stem>_files/`` beside it (created or refreshed).
    execute : bool
        Run the notebook first (in a fresh kernel, in the notebook's folder) so that the widget state
        saved in the page is current; views of widgets closed while it ran (finished progress bars) are
        left out, as the live front end showed them. Without it, the notebook must already hold saved
        widget state (JupyterLab: Settings → Save Widget State Automatically); a view whose model is
        not in it is shown as text, with a warning.
    timeout : int
        Seconds each cell may run when ``execute`` is true.
    kernel_name : str, optional
        The kernelspec to execute with; default: a kernel of this Python interpreter (the one that has
        nbexplain installed), whatever the notebook's metadata names.
    files : str, optional
        The name of the assets folder, beside the HTML file; default ``<output stem>_files``. Pages
        written into one directory can share one folder (``nbexplain.site`` does): what a page needs is
        added to what is there.

    Returns
    -------
    pathlib.Path
        The absolute path of the HTML file.

    Raises
    ------
    FileNotFoundError
        The notebook file does not exist, or the bundled assets are missing (run ``npm run build``).
    ValueError
        The notebook has widget outputs but no saved widget state (export with ``execute=True``).
    ImportError
        nbconvert, nbformat or nbclient is not installed (the ``export`` extra).
    nbclient.exceptions.CellExecutionError
        A cell raised while executing.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import nbformat
    >>> from nbexplain.export import export_html
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Results")])
    >>> page = export_html(nb, pathlib.Path(tempfile.mkdtemp()) / "results.html")
    >>> page.name, sorted(p.name for p in (page.parent / "results_files").glob("*.js"))
    ('results.html', ['anywidget.js', 'embed-amd.js', 'require.js'])
    >>> import shutil; shutil.rmtree(page.parent)

    Running a notebook and exporting it (starts a kernel; takes as long as the notebook):

    >>> export_html("examples/00_tour.ipynb", "tour.html", execute=True)  # doctest: +SKIP
    PosixPath('.../tour.html')
    """
    nbformat = _require("nbformat")
    if isinstance(notebook, (str, os.PathLike)):
        source = Path(notebook)
        if not source.is_file():
            raise FileNotFoundError(f"notebook: no such file {str(source)!r}; pass the path of an .ipynb file")
        nb = nbformat.read(str(source), as_version=4)
        cwd = source.resolve().parent
        default_output = source.with_suffix(".html")
    elif isinstance(notebook, dict) and "cells" in notebook:
        nb = nbformat.from_dict(json.loads(json.dumps(notebook)))  # a copy: never edit the caller's notebook
        cwd = Path.cwd()
        default_output = None
    else:
        raise TypeError(f"notebook: expected a path or an nbformat notebook, got {type(notebook).__name__}")
    if output is None:
        if default_output is None:
            raise TypeError("output: required when the notebook is given in memory")
        output = default_output
    out = Path(output).resolve()
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"output: expected an .html file name, got {str(output)!r}")
    if files is None:
        files = f"{out.stem}_files"
    elif not isinstance(files, str) or files.strip(".") == "" or "/" in files or "\\" in files:
        raise ValueError(f"files: expected the plain name of a folder beside the page, got {files!r}")
    anywidget_js = _anywidget_module()
    missing = [name for name in _BUILT if not (ASSETS / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the widget renderer for exported pages is missing ({', '.join(str(ASSETS / m) for m in missing)}); "
            "run `npm run build` in the nbexplain source tree (or `make js`), or install a released wheel, "
            "which ships it"
        )

    if execute:
        _drop_closed(nb, _execute(nb, cwd, timeout, kernel_name))
    _check_widget_state(nb)

    folder = out.parent / files
    folder.mkdir(parents=True, exist_ok=True)
    for asset in sorted(ASSETS.iterdir()):
        if asset.is_file():
            shutil.copyfile(asset, folder / asset.name)
    shutil.copyfile(anywidget_js, folder / "anywidget.js")
    licence = _licence("anywidget")
    if licence is not None:
        shutil.copyfile(licence, folder / "anywidget.LICENSE.txt")
    modules = _copy_amd_modules(_modules_used(nb), folder)

    out.write_text(_render(nb, out, folder.name, modules), encoding="utf-8")
    return out


def _require(module: str) -> Any:
    """Import an optional dependency of the export, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"nbexplain.export needs {module}: {_INSTALL_HINT}") from exc


def _anywidget_module() -> Path:
    """The AMD front-end module shipped by the installed anywidget package."""
    import anywidget

    path = Path(anywidget.__file__).resolve().parent / "nbextension" / "index.js"
    if not path.is_file():
        raise FileNotFoundError(
            f"anywidget's front-end module is missing ({path}); reinstall anywidget "
            "(`pip install --force-reinstall anywidget`)"
        )
    return path


def _licence(distribution: str) -> Path | None:
    """The licence file of an installed distribution (from its dist-info), if it ships one."""
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.upper().startswith(("LICENSE", "LICENCE", "COPYING")) and ".dist-info" in str(f):
            path = Path(str(f.locate()))
            if path.is_file():
                return path
    return None


def _distribution_file(distribution: str, suffix: str) -> Path | None:
    """The installed file of ``distribution`` whose recorded path ends with ``suffix`` (None if absent)."""
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if str(f).replace("\\", "/").endswith(suffix):
            path = Path(str(f.locate())).resolve()
            if path.is_file():
                return path
    return None


def _modules_used(nb: Any) -> set[str]:
    """The widget modules (``model_module`` and ``view_module``) named in ``nb``'s saved widget state."""
    state = nb.get("metadata", {}).get("widgets", {}).get(_STATE_MIME, {}).get("state", {})
    used: set[str] = set()
    for model in state.values():
        if isinstance(model, dict):
            used.add(str(model.get("model_module", "")))
            used.add(str(model.get("state", {}).get("_view_module", "")))
    used.discard("")
    return used


def _copy_amd_modules(used: set[str], folder: Path) -> list[str]:
    """Copy the AMD front ends of the modules in ``used`` (and their group) into ``folder``.

    Returns the require.js names copied. A module the page needs whose package is not installed here is
    left out with a warning: its outputs show an error in the page, the rest works.
    """
    wanted: set[str] = set()
    for group in _AMD_GROUPS:
        if used & set(group):
            wanted |= set(group)
    wanted |= used & set(_AMD_MODULES)
    copied, missing = [], []
    for name in sorted(wanted):
        distribution, suffix = _AMD_MODULES[name]
        source = _distribution_file(distribution, suffix)
        if source is None:
            missing.append(f"{name} (install the `{distribution}` package)")
            continue
        shutil.copyfile(source, folder / f"{name}.js")
        licence = _licence(distribution)
        if licence is not None:
            shutil.copyfile(licence, folder / f"{name}.LICENSE.txt")
        copied.append(name)
    if missing:
        warnings.warn(
            f"the page's widget state uses front ends that are not installed here: {', '.join(missing)}; "
            "their outputs show an error in the page",
            stacklevel=3,
        )
    return copied


def _execute(nb: Any, cwd: Path, timeout: int, kernel_name: str | None) -> set[str]:
    """Run every cell of ``nb`` in place, storing the widget state in its metadata.

    Returns the ids of the widgets closed while it ran (finished progress bars, for instance).
    """
    _require("nbclient")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    closed: set[str] = set()

    class Client(NotebookClient):
        def handle_comm_msg(self, outs: list, msg: dict, cell_index: int) -> None:
            if msg["msg_type"] == "comm_close":
                closed.add(msg["content"]["comm_id"])
            super().handle_comm_msg(outs, msg, cell_index)

    with tempfile.TemporaryDirectory(prefix="nbx-export-") as tmp:
        kwargs: dict[str, Any] = {}
        if kernel_name is None:
            # A kernel of this interpreter: the notebook's own kernelspec may name another Python.
            spec = Path(tmp) / "kernels" / _KERNEL
            spec.mkdir(parents=True)
            (spec / "kernel.json").write_text(json.dumps({
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (nbexplain export)",
                "language": "python",
            }))
            ksm = KernelSpecManager(kernel_dirs=[str(spec.parent)], ensure_native_kernel=False)
            kwargs["km"] = AsyncKernelManager(kernel_name=_KERNEL, kernel_spec_manager=ksm)
            kernel_name = _KERNEL
        client = Client(
            nb, timeout=timeout, kernel_name=kernel_name, store_widget_state=True,
            resources={"metadata": {"path": str(cwd)}}, **kwargs,
        )
        client.execute()
    return closed


def _widget_outputs(nb: Any) -> list[tuple[int, list, Any]]:
    """``(cell index, the cell's outputs, output)`` for every widget view in ``nb``."""
    found = []
    for index, cell in enumerate(nb.get("cells", [])):
        outputs = cell.get("outputs", [])
        for out in outputs:
            view = out.get("data", {}).get(_VIEW_MIME)
            if isinstance(view, dict):
                found.append((index, outputs, out))
    return found


def _drop_closed(nb: Any, closed: set[str]) -> None:
    """Remove the views of widgets closed while executing: the live front end no longer showed them."""
    for _, outputs, out in _widget_outputs(nb):
        if out["data"][_VIEW_MIME].get("model_id") in closed:
            outputs.remove(out)


def _check_widget_state(nb: Any) -> None:
    """Widget outputs need the notebook's saved widget state; views without theirs are shown as text."""
    views = _widget_outputs(nb)
    state = nb.get("metadata", {}).get("widgets", {}).get(_STATE_MIME, {}).get("state", {})
    cells = sorted({i for i, _, out in views if out["data"][_VIEW_MIME].get("model_id") not in state})
    if cells and not state:
        raise ValueError(
            f"notebook: it has widget outputs (cells {cells}) but no saved widget state, so the page would "
            "show them as text; export with execute=True (command line: --execute), or turn on Settings → "
            "Save Widget State Automatically in JupyterLab, re-run the notebook and save it"
        )
    if cells:
        warnings.warn(
            f"the widgets shown in cells {cells} are not in the notebook's saved widget state (closed, or "
            "re-run after saving): the page shows them as text. Export with execute=True for a fresh state.",
            stacklevel=3,
        )


def _renderer_modules() -> list[str]:
    """The named AMD modules that ``embed-amd.js`` defines (``@jupyter-widgets/base``, ...)."""
    import re

    text = (ASSETS / "embed-amd.js").read_text(encoding="utf-8", errors="replace")
    return sorted(set(re.findall(r"""define\(["'](@jupyter-widgets/[^"']+)["']""", text)))


def _render(nb: Any, out: Path, folder: str, modules: Sequence[str] = ()) -> str:
    """The HTML of ``nb``, loading its scripts from ``folder`` (relative to the page).

    ``modules``: the widget modules copied into ``folder`` as ``<name>.js`` besides anywidget.
    """
    import jinja2

    nbconvert = _require("nbconvert")
    base = quote(folder)
    exporter = nbconvert.HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"nbexplain_offline.html.j2": _TEMPLATE})],
        template_file="nbexplain_offline.html.j2",
        require_js_url=f"{base}/require.js",
        widget_renderer_url=f"{base}/embed-amd.js",
    )
    paths = {"anywidget": f"{base}/anywidget", **{m: f"{base}/{quote(m)}" for m in modules}}
    # The renderer's own modules (defined inside embed-amd.js) load Font Awesome's fonts from beside their
    # require.js URL: point those URLs into the folder, where the build put the fonts.
    for name in _renderer_modules():
        paths[name] = f"{base}/{quote(name.replace('/', '--'))}"
    resources = {
        "metadata": {"name": out.stem},
        # JSON inside a <script>: "</" must not close it
        "nbexplain_paths": json.dumps(paths).replace("</", "<\\/"),
        "nbexplain_missing": f"{base}/missing-modules/",
    }
    html, _ = exporter.from_notebook_node(nb, resources=resources)
    return html


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m nbexplain.export NOTEBOOK.ipynb [-o OUT.html] [--execute]``."""
    parser = argparse.ArgumentParser(
        prog="python -m nbexplain.export",
        description="Write a notebook as an HTML page (plus a <name>_files/ folder) whose nbexplain views "
        "work offline.",
    )
    parser.add_argument("notebook", help="the .ipynb file")
    parser.add_argument("-o", "--output", help="the HTML file (default: the notebook's name with .html)")
    parser.add_argument("--execute", action="store_true", help="run the notebook first (stores widget state)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell with --execute (600)")
    parser.add_argument("--kernel", default=None, help="kernelspec for --execute (default: this Python)")
    args = parser.parse_args(argv)
    try:
        page = export_html(args.notebook, args.output, execute=args.execute, timeout=args.timeout,
                           kernel_name=args.kernel)
    except Exception as exc:
        # our argument errors, and a cell that raised or timed out while executing (nbclient's errors)
        if not (isinstance(exc, (OSError, ValueError, TypeError, ImportError))
                or type(exc).__module__.startswith("nbclient")):
            raise
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
