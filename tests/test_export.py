"""nbexplain.export without a browser: errors that name the fix, the assets folder, relative URLs, the CLI."""

from __future__ import annotations

import filecmp
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbconvert")

import nbexplain.export as export  # noqa: E402
from nbexplain.export import export_html, main  # noqa: E402

STATE = "application/vnd.jupyter.widget-state+json"
VIEW = "application/vnd.jupyter.widget-view+json"


def widget_notebook(with_state: bool = True, model_id: str = "m1") -> nbformat.NotebookNode:
    """A notebook with one saved widget view (an ipywidgets IntSlider), as JupyterLab would save it."""
    out = nbformat.v4.new_output(
        "display_data", data={"text/plain": "IntSlider(value=3)", VIEW: {"version_major": 2, "version_minor": 0,
                                                                           "model_id": model_id}})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("w", outputs=[out])])
    if with_state:
        nb.metadata["widgets"] = {STATE: {"version_major": 2, "version_minor": 0, "state": {"m1": {
            "model_name": "IntSliderModel", "model_module": "@jupyter-widgets/controls",
            "model_module_version": "2.0.0", "state": {"value": 3}}}}}
    return nb


def test_missing_notebook_names_the_argument(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"notebook: no such file .*nope\.ipynb"):
        export_html(tmp_path / "nope.ipynb")


def test_widgets_without_saved_state_say_to_execute(tmp_path: Path) -> None:
    path = tmp_path / "nostate.ipynb"
    nbformat.write(widget_notebook(with_state=False), str(path))
    with pytest.raises(ValueError, match=r"no saved widget state.*execute=True \(command line: --execute\)"):
        export_html(path)
    assert not (tmp_path / "nostate.html").exists()


def test_views_missing_from_a_saved_state_warn_and_fall_back_to_text(tmp_path: Path) -> None:
    nb = widget_notebook()
    nb.cells.append(widget_notebook(model_id="gone").cells[0])
    with pytest.warns(UserWarning, match=r"cells \[1\] are not in the notebook's saved widget state"):
        page = export_html(nb, tmp_path / "partial.html")
    assert "IntSlider(value=3)" in page.read_text()  # nbconvert shows the text form of the missing one


def test_missing_assets_say_to_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "ASSETS", tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"require\.js.*embed-amd\.js.*npm run build"):
        export_html(widget_notebook(), tmp_path / "page.html")


def test_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="output: required"):
        export_html(widget_notebook())
    with pytest.raises(ValueError, match=r"output: expected an \.html file name"):
        export_html(widget_notebook(), tmp_path / "page.pdf")
    with pytest.raises(TypeError, match="notebook: expected a path or an nbformat notebook"):
        export_html(42, tmp_path / "page.html")


def test_missing_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nbconvert", None)  # import of it raises ImportError
    with pytest.raises(ImportError, match=r"needs nbconvert.*nbexplain\[export\]"):
        export._require("nbconvert")


def test_page_and_assets_folder_with_relative_urls(tmp_path: Path) -> None:
    nb = widget_notebook()
    page = export_html(nb, tmp_path / "my page.html")
    assert page == (tmp_path / "my page.html").resolve()
    folder = tmp_path / "my page_files"
    names = {p.name for p in folder.iterdir()}
    assert {"require.js", "embed-amd.js", "anywidget.js", "requirejs.LICENSE.txt",
            "html-manager.LICENSE.txt", "NOTICE.txt"} <= names
    import anywidget

    assert filecmp.cmp(folder / "anywidget.js", Path(anywidget.__file__).parent / "nbextension" / "index.js",
                       shallow=False)
    html = page.read_text()
    # scripts come from the folder, by relative (URL-quoted) paths; nothing from a CDN
    assert '<script src="my%20page_files/require.js"></script>' in html
    assert "'my%20page_files/embed-amd.js'" in html
    paths = json.loads(re.search(r"require\.config\(\{paths: (\{.*?\})\}\);", html).group(1))
    assert paths["anywidget"] == "my%20page_files/anywidget"
    # the renderer's own modules resolve into the folder (their CSS loads Font Awesome from beside them)
    assert paths["@jupyter-widgets/base"] == "my%20page_files/%40jupyter-widgets--base"
    assert all(v.startswith("my%20page_files/") for v in paths.values()), paths
    assert "bqplot" not in paths and not (folder / "bqplot.js").exists()  # no bqplot chart in this page
    assert 'data-jupyter-widgets-cdn="my%20page_files/missing-modules/"' in html
    srcs = re.findall(r"""(?:src=|Src = )["']([^"']+)["']""", html)
    assert srcs and all(s.startswith("my%20page_files/") for s in srcs), srcs
    for cdn in ("cdnjs.cloudflare.com", "cdn.jsdelivr.net", "unpkg.com"):
        assert cdn not in html, cdn
    # the saved widget state is in the page, and the caller's notebook is untouched
    assert "IntSliderModel" in html and STATE in html
    assert nb.cells[0].outputs[0]["data"][VIEW]["model_id"] == "m1"


def test_a_notebook_file_defaults_to_html_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "lesson.ipynb"
    nbformat.write(widget_notebook(), str(path))
    before = path.read_bytes()
    assert export_html(str(path)) == (tmp_path / "lesson.html").resolve()
    assert (tmp_path / "lesson_files" / "embed-amd.js").is_file()
    assert path.read_bytes() == before


def test_execute_stores_widget_state_and_drops_closed_widgets(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import ipywidgets as w\nkept = w.IntSlider(value=7, description='kept')\nkept"),
        nbformat.v4.new_code_cell("gone = w.Button(description='closed'); display(gone); gone.close()"),
    ])
    path = tmp_path / "live.ipynb"
    nbformat.write(nb, str(path))
    page = export_html(path, execute=True, timeout=60)
    html = page.read_text()
    assert "IntSliderModel" in html and '"description": "kept"' in html
    views = re.findall(r'"model_id": "([0-9a-f]+)"', html)
    assert len(views) == 1  # the closed button's view is left out, as JupyterLab showed it
    assert nbformat.read(str(path), as_version=4).cells[0].outputs == []  # the file is not modified


def test_cli_writes_the_page_and_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cli.ipynb"
    nbformat.write(widget_notebook(), str(path))
    assert main([str(path), "-o", str(tmp_path / "out" / "cli.html")]) == 0
    assert capsys.readouterr().out.strip() == str((tmp_path / "out" / "cli.html").resolve())
    assert (tmp_path / "out" / "cli_files" / "require.js").is_file()

    nbformat.write(widget_notebook(with_state=False), str(path))
    with pytest.raises(SystemExit) as exit_info:
        main([str(path)])
    assert exit_info.value.code == 1
    assert "--execute" in capsys.readouterr().err

    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")]), str(path))
    with pytest.raises(SystemExit) as exit_info:
        main([str(path), "--execute", "--timeout", "60"])
    assert exit_info.value.code == 1
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_importing_nbexplain_does_not_import_nbconvert() -> None:
    code = ("import sys, nbexplain, nbexplain.export\n"
            "print(sorted(m for m in ('nbconvert', 'nbclient', 'nbformat') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def bqplot_notebook() -> nbformat.NotebookNode:
    """A notebook whose saved state has a bqplot figure (model module "bqplot") and a bqscales scale."""
    nb = widget_notebook()
    nb.metadata["widgets"][STATE]["state"].update({
        "fig": {"model_name": "FigureModel", "model_module": "bqplot", "model_module_version": "^0.6.1",
                "state": {"_view_module": "bqplot", "marks": ["IPY_MODEL_sc"]}},
        "sc": {"model_name": "LinearScaleModel", "model_module": "bqscales", "model_module_version": "^0.3",
               "state": {"_view_module": "bqscales"}},
    })
    return nb


def test_bqplot_charts_get_the_installed_amd_modules(tmp_path: Path) -> None:
    from importlib import metadata

    page = export_html(bqplot_notebook(), tmp_path / "charts.html")
    folder = tmp_path / "charts_files"
    for name in ("bqplot", "bqscales"):
        shipped = [f for f in metadata.distribution(name).files
                   if str(f).replace("\\", "/").endswith(f"share/jupyter/nbextensions/{name}/index.js")]
        assert len(shipped) == 1, shipped
        assert filecmp.cmp(folder / f"{name}.js", Path(str(shipped[0].locate())), shallow=False)
        assert "Apache" in (folder / f"{name}.LICENSE.txt").read_text()
    paths = json.loads(re.search(r"require\.config\(\{paths: (\{.*?\})\}\);", page.read_text()).group(1))
    assert paths["bqplot"] == "charts_files/bqplot" and paths["bqscales"] == "charts_files/bqscales"


def test_a_scale_alone_brings_bqplot_too(tmp_path: Path) -> None:
    nb = bqplot_notebook()
    del nb.metadata["widgets"][STATE]["state"]["fig"]
    export_html(nb, tmp_path / "scale.html")
    assert {"bqplot.js", "bqscales.js"} <= {p.name for p in (tmp_path / "scale_files").iterdir()}


def test_missing_chart_package_warns_and_writes_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(export._AMD_MODULES, "bqscales", ("no-such-distribution-nbx", "x/index.js"))
    with pytest.warns(UserWarning, match=r"not installed here: bqscales \(install the `no-such-distribution-nbx`"):
        page = export_html(bqplot_notebook(), tmp_path / "charts.html")
    names = {p.name for p in (tmp_path / "charts_files").iterdir()}
    assert "bqplot.js" in names and "bqscales.js" not in names
    assert '"bqscales"' not in page.read_text().split("require.config", 1)[1].split("</script>", 1)[0]


def test_renderer_fonts_ship_with_the_page(tmp_path: Path) -> None:
    """html-manager's CSS asks for Font Awesome's WOFF2 files beside its modules: the folder has them."""
    export_html(widget_notebook(), tmp_path / "page.html")
    text = (tmp_path / "page_files" / "embed-amd.js").read_text(errors="replace")
    wanted = set(re.findall(r'"([0-9a-f]{20}\.woff2)"', text))
    assert wanted and wanted <= {p.name for p in (tmp_path / "page_files").iterdir()}
    assert "OFL" in (tmp_path / "page_files" / "fontawesome-free.LICENSE.txt").read_text()
