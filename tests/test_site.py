"""nbexplain.site without a browser or a kernel: cards read from the notebooks, layout, links, errors.

The real lessons are run and the site opened offline in Chromium by tests/browser/test_site.py.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbconvert")

from nbexplain.site import FILES, build_site, main, read_lesson  # noqa: E402

STATE = "application/vnd.jupyter.widget-state+json"
VIEW = "application/vnd.jupyter.widget-view+json"


def lesson(path: Path, markdown: list[str], with_widget: bool = True) -> Path:
    """A lesson notebook: Markdown cells, then a code cell showing one saved IntSlider."""
    cells = [nbformat.v4.new_markdown_cell(m) for m in markdown]
    nb = nbformat.v4.new_notebook(cells=cells)
    if with_widget:
        out = nbformat.v4.new_output("display_data", data={
            "text/plain": "IntSlider(value=3)", VIEW: {"version_major": 2, "version_minor": 0, "model_id": "m1"}})
        nb.cells.append(nbformat.v4.new_code_cell("w", outputs=[out]))
        nb.metadata["widgets"] = {STATE: {"version_major": 2, "version_minor": 0, "state": {"m1": {
            "model_name": "IntSliderModel", "model_module": "@jupyter-widgets/controls",
            "model_module_version": "2.0.0", "state": {"value": 3}}}}}
    nbformat.write(nb, str(path))
    return path


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if a.get("src"):
            self.srcs.append(a["src"])


def test_read_lesson_takes_the_title_and_the_first_prose_paragraph(tmp_path: Path) -> None:
    path = lesson(tmp_path / "03_rules.ipynb", [
        "# Lesson 3 — Which *pixels* carry `the` decision?\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |",
        "## Set-up\n\n* a list item\n* another",
        "A classifier says **3**. See [the paper](https://example.org).\n$f(x)$ decomposes.\n\nSecond paragraph.",
    ])
    got = read_lesson(path)
    assert got.title == "Lesson 3 — Which pixels carry the decision?"
    assert got.summary == "A classifier says **3**. See [the paper](https://example.org).\n$f(x)$ decomposes."
    assert got.page == "03_rules.html" and got.path == path


def test_read_lesson_heading_and_text_in_one_block_and_fallbacks(tmp_path: Path) -> None:
    got = read_lesson(lesson(tmp_path / "a.ipynb", ["# Title\nText right under it.\n\nNext."]))
    assert (got.title, got.summary) == ("Title", "Text right under it.")
    got = read_lesson(lesson(tmp_path / "07_no_heading.ipynb", [], with_widget=False))
    assert (got.title, got.summary) == ("07_no_heading", "")


def test_read_lesson_errors_name_the_argument(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"notebook: no such file .*missing\.ipynb"):
        read_lesson(tmp_path / "missing.ipynb")
    (tmp_path / "bad.ipynb").write_text("not json")
    with pytest.raises(ValueError, match=r"notebook: .*bad\.ipynb' is not a Jupyter notebook"):
        read_lesson(tmp_path / "bad.ipynb")


def test_site_layout_cards_navigation_and_relative_links(tmp_path: Path) -> None:
    src = tmp_path / "lessons"
    src.mkdir()
    paths = [
        lesson(src / "00_tour.ipynb", ["# A tour\n\nWhat the <views> show & why."]),
        lesson(src / "01_saturation.ipynb", ["# 01 · Saturation\n\nHow much of its width does a layer use?"]),
    ]
    index = build_site(paths, tmp_path / "site", execute=False, title="My course")
    site = tmp_path / "site"
    assert index == (site / "index.html").resolve()
    assert {p.name for p in site.iterdir()} == {"index.html", "00_tour.html", "01_saturation.html", FILES}
    assert {"require.js", "embed-amd.js", "anywidget.js"} <= {p.name for p in (site / FILES).iterdir()}

    text = index.read_text()
    cards = re.findall(r'<li class="nbx-card" data-notebook="([^"]+)"><a href="([^"]+)">.*?<h2 title="([^"]*)">'
                       r'(.*?)</h2><div class="nbx-summary">(.*?)</div>', text, re.S)
    assert [c[:4] for c in cards] == [
        ("00_tour.ipynb", "00_tour.html", "A tour", "A tour"),
        ("01_saturation.ipynb", "01_saturation.html", "01 · Saturation", "Saturation"),  # the number is shown apart
    ]
    assert re.findall(r'<span class="nbx-number">(.*?)</span>', text) == ["Lesson 0", "Lesson 1"]
    assert cards[0][4] == "<p>What the &lt;views&gt; show &amp; why.</p>"  # Markdown rendered, text escaped
    assert "<h1>My course</h1>" in text and "2 interactive lessons" in text

    page = (site / "01_saturation.html").read_text()
    nav = re.search(r'<nav class="nbx-site-nav".*?</nav>', page).group(0)
    assert 'href="index.html"' in nav and 'href="00_tour.html"' in nav and "A tour" in nav
    assert "nbx-next" not in nav  # the last lesson has no next
    # every page and the index link and load only files inside the site
    for html_file in site.glob("*.html"):
        parser = Links()
        parser.feed(html_file.read_text())
        for url in parser.hrefs + parser.srcs:
            if url.startswith(("#", "https://example.org")):
                continue
            assert not re.match(r"[a-z]+:", url) and not url.startswith("/"), (html_file.name, url)
            assert (site / url.split("#")[0].replace("%20", " ")).exists(), (html_file.name, url)
    paths_cfg = json.loads(re.search(r"require\.config\(\{paths: (\{.*?\})\}\);", page).group(1))
    assert paths_cfg["anywidget"] == f"{FILES}/anywidget"


def test_a_lesson_between_two_numbers_keeps_its_letter(tmp_path: Path) -> None:
    """00b_playground sits between the tour and lesson 1: its card says "Lesson 0b" and drops "00b · "."""
    paths = [lesson(tmp_path / "00_tour.ipynb", ["# A tour"]),
             lesson(tmp_path / "00b_playground.ipynb", ["# 00b · The playground\n\nA network on the plane."])]
    text = build_site(paths, tmp_path / "site", execute=False).read_text()
    assert re.findall(r'<span class="nbx-number">(.*?)</span>', text) == ["Lesson 0", "Lesson 0b"]
    titles = re.findall(r'<h2 title="([^"]*)">(.*?)</h2>', text)
    assert titles[1] == ("00b · The playground", "The playground")


def test_build_site_argument_errors(tmp_path: Path) -> None:
    a = lesson(tmp_path / "a.ipynb", ["# A"])
    (tmp_path / "other").mkdir()
    b = lesson(tmp_path / "other" / "a.ipynb", ["# A again"])
    with pytest.raises(ValueError, match="notebooks: no notebooks given"):
        build_site([], tmp_path / "site")
    with pytest.raises(ValueError, match=r"would both be written as a\.html; rename one"):
        build_site([a, b], tmp_path / "site", execute=False)
    with pytest.raises(ValueError, match="jobs: expected a positive int"):
        build_site([a], tmp_path / "site", jobs=0)
    with pytest.raises(ValueError, match="timeout: expected a positive int"):
        build_site([a], tmp_path / "site", timeout=0)
    with pytest.raises(FileNotFoundError, match="notebook: no such file"):
        build_site([tmp_path / "nope.ipynb"], tmp_path / "site")
    assert not (tmp_path / "site").exists()  # nothing written before the arguments are checked


def test_a_failing_lesson_names_itself_and_leaves_no_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = tmp_path / "00_ok.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Fine"),
                                                  nbformat.v4.new_code_cell("x = 1")]), str(ok))
    bad = tmp_path / "01_bad.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Bad"),
                                                  nbformat.v4.new_code_cell("1 / 0")]), str(bad))
    with pytest.raises(SystemExit) as exit_info:
        main([str(ok), str(bad), "-o", str(tmp_path / "site"), "--timeout", "60"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "01_bad.ipynb" in err and "ZeroDivisionError" in err and "00_ok.ipynb:" not in err
    assert not (tmp_path / "site" / "index.html").exists()


def test_cli_writes_the_site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = lesson(tmp_path / "00_a.ipynb", ["# A\n\nFirst."])
    assert main([str(a), "-o", str(tmp_path / "site"), "--no-execute", "--title", "T"]) == 0
    assert capsys.readouterr().out.strip() == str((tmp_path / "site" / "index.html").resolve())
    assert (tmp_path / "site" / "00_a.html").is_file()
