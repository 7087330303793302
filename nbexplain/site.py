"""A static course site from lesson notebooks: an index of cards and one offline page per lesson.

:func:`build_site` runs every notebook (each in a fresh kernel, in the notebook's folder), writes each as an
HTML page with :func:`nbexplain.export.export_html`, and writes ``index.html``: one card per lesson with
its title (the first Markdown heading) and its first paragraph, both read from the notebook. The pages
share one assets folder (``lessons_files/``: require.js, the widget renderer, anywidget's and, when a page
has bqplot charts, bqplot's front ends, with their licences), and every URL is relative, so the output
directory can be zipped, put on any static host or opened from disk: students need no Python, no kernel
and no network. The views work on the state saved when the lesson ran (sliders, hovers, toggles); the
controls that ask the kernel for new work are greyed out.

Command line (``make site`` runs it on ``examples/*.ipynb``)::

    python -m nbexplain.site examples/*.ipynb -o build/site [--jobs 2] [--timeout S] [--title T]
"""

from __future__ import annotations

import argparse
import html
import os
import re
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

__all__ = ["Lesson", "build_site", "read_lesson", "main"]

#: The assets folder the pages share.
FILES = "lessons_files"


@dataclass(frozen=True)
class Lesson:
    """What the index shows of one notebook.

    Attributes
    ----------
    path : pathlib.Path
        The notebook.
    page : str
        The file name of its HTML page in the site (``<notebook stem>.html``).
    title : str
        Its first Markdown heading (the file name when it has none), as plain text.
    summary : str
        Its first paragraph of Markdown after the title, as Markdown source ("" when it has none).
    """

    path: Path
    page: str
    title: str
    summary: str


def read_lesson(notebook: str | os.PathLike[str]) -> Lesson:
    """The title and first paragraph of a lesson notebook, read from its Markdown cells.

    Parameters
    ----------
    notebook : str or os.PathLike
        The ``.ipynb`` file.

    Returns
    -------
    Lesson

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is not a notebook (not JSON with a list of cells).

    Examples
    --------
    >>> import json, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "01_intro.ipynb"
    >>> cell = {"cell_type": "markdown", "metadata": {}, "source": "# Intro\\n\\nWhat a *layer* keeps.\\n\\nMore."}
    >>> _ = path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    >>> lesson = read_lesson(path)
    >>> lesson.title, lesson.summary, lesson.page
    ('Intro', 'What a *layer* keeps.', '01_intro.html')
    """
    import json

    path = Path(notebook)
    if not path.is_file():
        raise FileNotFoundError(f"notebook: no such file {str(path)!r}; pass the path of an .ipynb file")
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb["cells"]
        if not isinstance(cells, list):
            raise TypeError
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"notebook: {str(path)!r} is not a Jupyter notebook (.ipynb JSON with cells)") from exc
    title, summary = "", ""
    for cell in cells:
        if cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        for block in re.split(r"\n\s*\n", text.strip()):
            block = block.strip()
            if not block:
                continue
            heading = re.match(r"#{1,6}\s+(.*)", block)
            if heading and "\n" not in block:
                if not title:
                    title = _plain(heading.group(1))
                continue
            if heading:  # a heading followed by text in the same block
                if not title:
                    title = _plain(heading.group(1))
                block = block.split("\n", 1)[1].strip()
            if _is_paragraph(block):
                summary = block
                break
        if summary:
            break
    return Lesson(path=path, page=f"{path.stem}.html", title=title or path.stem, summary=summary)


def _plain(markdown: str) -> str:
    """Inline Markdown as plain text (emphasis, code and link syntax removed)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"[*_`]+", "", text)
    return text.strip()


def _is_paragraph(block: str) -> bool:
    """Prose, not a table, list, code fence, quote, image, HTML block or rule."""
    first = block.lstrip()
    return not (first.startswith(("|", "```", "~~~", ">", "<", "![", "---", "***", "$$"))
                or re.match(r"([-*+]|\d+[.)])\s", first))


def build_site(
    notebooks: Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str] = "build/site",
    *,
    execute: bool = True,
    timeout: int = 600,
    jobs: int = 1,
    title: str = "nbexplain lessons",
) -> Path:
    """Run lesson notebooks and write them as a static site that works offline.

    Parameters
    ----------
    notebooks : iterable of str or os.PathLike
        The lessons, shown in this order (pass ``sorted(glob(...))`` for file-name order). Their page
        names are the notebooks' stems, so two notebooks may not share a stem.
    output : str or os.PathLike
        The site's directory (created; files of the same names are replaced, others left alone).
    execute : bool
        Run each notebook first (a fresh kernel of this Python, in the notebook's folder), so the pages
        hold current widget state. Without it the notebooks must hold saved widget state.
    timeout : int
        Seconds each cell may run.
    jobs : int
        How many notebooks run at once (each in its own kernel). Lessons that set one torch thread
        (``OMP_NUM_THREADS=1``) run best with ``jobs`` = the number of cores.
    title : str
        The heading of the index page.

    Returns
    -------
    pathlib.Path
        The absolute path of ``index.html``.

    Raises
    ------
    ValueError
        No notebooks, two with the same stem, or a bad ``jobs``/``timeout``.
    FileNotFoundError
        A notebook does not exist.
    RuntimeError
        A notebook raised while running (the message names it and shows the error).

    Examples
    --------
    >>> import glob
    >>> from nbexplain.site import build_site
    >>> build_site(sorted(glob.glob("examples/*.ipynb")), "build/site", jobs=2)  # doctest: +SKIP
    PosixPath('.../build/site/index.html')
    """
    paths = [Path(p) for p in notebooks]
    if not paths:
        raise ValueError("notebooks: no notebooks given; pass the lesson files, e.g. sorted(glob('examples/*.ipynb'))")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected a positive int (how many lessons run at once), got {jobs!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise ValueError(f"timeout: expected a positive int of seconds per cell, got {timeout!r}")
    lessons = [read_lesson(p) for p in paths]  # checks every file before the long part starts
    stems: dict[str, Path] = {}
    for lesson in lessons:
        if lesson.page in stems:
            raise ValueError(f"notebooks: {str(stems[lesson.page])!r} and {str(lesson.path)!r} would both be "
                             f"written as {lesson.page}; rename one")
        stems[lesson.page] = lesson.path
    out = Path(output).resolve()
    out.mkdir(parents=True, exist_ok=True)

    tasks = [(str(lesson.path), str(out / lesson.page), execute, timeout) for lesson in lessons]
    failures: list[str] = []
    if jobs == 1 or len(tasks) == 1:
        results = [_export_one(*task) for task in tasks]
    else:
        # processes, not threads: each export drives its own kernel through its own event loop
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_export_one, *zip(*tasks, strict=True)))
    for lesson, error in zip(lessons, results, strict=True):
        if error is not None:
            failures.append(f"{lesson.path.name}: {error}")
    if failures:
        raise RuntimeError("these lessons failed to run, so the site was not finished:\n" + "\n".join(failures))

    for i, lesson in enumerate(lessons):
        page = out / lesson.page
        prev = lessons[i - 1] if i > 0 else None
        nxt = lessons[i + 1] if i + 1 < len(lessons) else None
        page.write_text(_with_navigation(page.read_text(encoding="utf-8"), title, prev, nxt), encoding="utf-8")
    index = out / "index.html"
    index.write_text(_index_html(title, lessons), encoding="utf-8")
    return index


def _export_one(notebook: str, page: str, execute: bool, timeout: int) -> str | None:
    """Export one lesson into the shared folder; the error as text when it fails (processes can't raise all)."""
    from .export import export_html

    try:
        export_html(notebook, page, execute=execute, timeout=timeout, files=FILES)
    except Exception as exc:  # reported together, with the lesson's name, by build_site
        return _strip_ansi(f"{type(exc).__name__}: {exc}")
    return None


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


_CSS = """
:root { color-scheme: light dark; --bg: #fafafa; --card: #ffffff; --fg: #1f2328; --muted: #57606a;
  --line: #d0d7de; --accent: #0b5cad; }
@media (prefers-color-scheme: dark) { :root { --bg: #111418; --card: #1b1f24; --fg: #e6edf3;
  --muted: #9da7b3; --line: #30363d; --accent: #6cb6ff; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 17px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header, main, footer { max-width: 1100px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 40px; } header h1 { margin: 0 0 8px; font-size: 2rem; }
header p, footer { color: var(--muted); }
.nbx-cards { list-style: none; padding: 0; margin: 24px 0; display: grid; gap: 20px;
  grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); }
.nbx-card { margin: 0; }
.nbx-card a { display: flex; flex-direction: column; height: 100%; padding: 20px; border: 1px solid var(--line);
  border-radius: 10px; background: var(--card); color: inherit; text-decoration: none; }
.nbx-card a:hover, .nbx-card a:focus-visible { border-color: var(--accent); outline: 2px solid var(--accent);
  outline-offset: 1px; }
.nbx-card .nbx-number { color: var(--muted); font-size: 0.85rem; letter-spacing: 0.04em; }
.nbx-card h2 { margin: 4px 0 10px; font-size: 1.25rem; color: var(--accent); }
.nbx-card .nbx-summary { margin: 0; font-size: 0.95rem; display: -webkit-box; -webkit-box-orient: vertical;
  -webkit-line-clamp: 9; line-clamp: 9; overflow: hidden; }
.nbx-card .nbx-summary p { margin: 0; }
.nbx-card code { font-size: 0.9em; }
footer { padding-bottom: 40px; font-size: 0.9rem; }
"""

_NAV_CSS = (
    ".nbx-site-nav{display:flex;gap:1.5em;flex-wrap:wrap;padding:10px 24px;font:15px/1.4 system-ui,sans-serif;"
    "border-bottom:1px solid rgba(127,127,127,.35)}.nbx-site-nav a{color:inherit}"
    ".nbx-site-nav .nbx-next{margin-left:auto}"
)


def _markdown(text: str) -> str:
    """Markdown as HTML for a card (nbconvert's mistune; escaped text where it is missing)."""
    try:
        import mistune

        if hasattr(mistune, "create_markdown"):  # mistune 2 and 3: raw HTML in the text is escaped
            rendered = mistune.create_markdown(escape=True, plugins=["strikethrough"])(text)
        else:  # pragma: no cover - mistune 0.8
            rendered = mistune.markdown(text, escape=True)
        return str(rendered).strip()
    except ImportError:  # pragma: no cover - mistune comes with nbconvert (the export extra)
        return f"<p>{html.escape(text)}</p>"


def _number(lesson: Lesson) -> str:
    match = re.match(r"(\d+)([a-z]?)[_\-. ]", lesson.path.name)  # 00b_playground: a lesson between 0 and 1
    return f"Lesson {int(match.group(1))}{match.group(2)}" if match else lesson.path.stem


def _card_title(lesson: Lesson) -> str:
    """The title without a leading lesson number ("Lesson 2 — ", "01 · "): the card shows the number."""
    stripped = re.sub(r"^(lesson\s+)?\d+[a-z]?\s*[—–·:.\-]\s*", "", lesson.title, flags=re.I)
    return stripped or lesson.title


def _index_html(title: str, lessons: Sequence[Lesson]) -> str:
    cards = []
    for lesson in lessons:
        cards.append(
            f'<li class="nbx-card" data-notebook="{html.escape(lesson.path.name)}">'
            f'<a href="{html.escape(lesson.page)}">'
            f'<span class="nbx-number">{html.escape(_number(lesson))}</span>'
            f'<h2 title="{html.escape(lesson.title)}">{html.escape(_card_title(lesson))}</h2>'
            f'<div class="nbx-summary">{_markdown(lesson.summary) if lesson.summary else ""}</div>'
            "</a></li>"
        )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{html.escape(title)}</h1>\n"
        f"<p>{len(lessons)} interactive lessons. Each page works offline in any browser, with no Python: "
        "sliders, hovers and toggles use the results saved when the lesson ran. Controls that need a "
        "running kernel are greyed out.</p></header>\n"
        f'<main><ul class="nbx-cards">\n' + "\n".join(cards) + "\n</ul></main>\n"
        "<footer>Built with nbexplain. Open a lesson in Jupyter to run it yourself and change it.</footer>\n"
        "</body>\n</html>\n"
    )


def _with_navigation(page: str, title: str, prev: Lesson | None, nxt: Lesson | None) -> str:
    """The exported page with a bar of links to the index and the neighbouring lessons."""
    links = [f'<a class="nbx-home" href="index.html">← {html.escape(title)}</a>']
    if prev is not None:
        links.append(f'<a class="nbx-prev" href="{html.escape(prev.page)}">‹ {html.escape(prev.title)}</a>')
    if nxt is not None:
        links.append(f'<a class="nbx-next" href="{html.escape(nxt.page)}">{html.escape(nxt.title)} ›</a>')
    bar = f'<style>{_NAV_CSS}</style><nav class="nbx-site-nav" aria-label="lessons">{"".join(links)}</nav>'
    match = re.search(r"<body[^>]*>", page)
    if match is None:  # pragma: no cover - nbconvert's templates always have a body
        return page
    return page[: match.end()] + "\n" + bar + page[match.end():]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m nbexplain.site NOTEBOOK.ipynb ... [-o DIR] [--jobs N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m nbexplain.site",
        description="Run lesson notebooks and write a static site (index + one offline page per lesson).",
    )
    parser.add_argument("notebooks", nargs="+", help="the .ipynb files, in the order of the index")
    parser.add_argument("-o", "--output", default="build/site", help="the site's directory (build/site)")
    parser.add_argument("--jobs", type=int, default=1, help="lessons run at once, each in its own kernel (1)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (600)")
    parser.add_argument("--title", default="nbexplain lessons", help="the index page's heading")
    parser.add_argument("--no-execute", dest="execute", action="store_false",
                        help="export the widget state saved in the notebooks instead of running them")
    args = parser.parse_args(argv)
    try:
        index = build_site(args.notebooks, args.output, execute=args.execute, timeout=args.timeout,
                           jobs=args.jobs, title=args.title)
    except (OSError, ValueError, RuntimeError, ImportError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
