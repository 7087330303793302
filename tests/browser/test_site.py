"""`make site`'s output works from disk with every network request refused (issue 14, "a course site").

Every lesson in ``examples/`` (a glob: new lessons join by themselves) is run once, in two kernels at a time
with one torch thread each, and written by :func:`nbexplain.site.build_site`, as ``make site`` does. Chromium
then opens the site from ``file://`` with only ``file://`` requests let through:

- the index has one card per lesson, with the title and first paragraph read from the notebook, linking to
  a page that exists;
- every lesson page renders all its nbexplain views (``data-ready``) and its bqplot charts, with no page
  error, no console error and no failed request;
- on every page a control of a view (slider, menu, check box or button) changes the view's ``data-*``
  state, with no kernel.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from harness import ARTIFACTS, offline_only

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))

# data-* attributes of every nbexplain element, keyed by a stable path (what "the view's state" is here)
SNAPSHOT = """() => {
  const out = {};
  document.querySelectorAll('[class*="nbx-"]').forEach((el, i) => {
    for (const a of el.attributes) if (a.name.startsWith('data-') && a.name !== 'data-busy') out[i + ':' + a.name] = a.value;
  });
  return out;
}"""

# Controls of the views (sliders, menus, check boxes, buttons, then cells that take the focus); the ones
# that need a kernel (inside .nbx-needs-kernel), disabled or hidden ones are skipped.
CONTROLS = ("[data-ready] input[type=range], [data-ready] select, [data-ready] input[type=checkbox], "
            "[data-ready] button, [data-ready] [tabindex='0']")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site's index.html: built here, or ``$NBX_SITE/index.html`` to test a site built already
    (``make site && NBX_SITE=build/site pytest tests/browser/test_site.py``)."""
    from nbexplain.site import build_site

    assert NOTEBOOKS, f"no lessons in {EXAMPLES}"
    if os.environ.get("NBX_SITE"):
        index = Path(os.environ["NBX_SITE"]).resolve() / "index.html"
        assert index.is_file(), f"NBX_SITE={os.environ['NBX_SITE']}: no index.html there (run `make site`)"
        return index
    out = tmp_path_factory.mktemp("site")
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = before or "1"  # the kernels inherit it (as under `make site`)
    t0 = time.perf_counter()
    try:
        index = build_site(NOTEBOOKS, out, jobs=max(1, min(2, os.cpu_count() or 1)), timeout=300)
    finally:
        if before is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = before
    print(f"site built in {time.perf_counter() - t0:.0f} s")
    return index


class OfflinePage:
    """A page of its own context where only file:// requests are let through, and what went wrong."""

    def __init__(self, chromium, width: int = 1280) -> None:
        self.context = chromium.browser.new_context(viewport={"width": width, "height": 1000})
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.failed: list[str] = []
        self.errors: list[str] = []
        self.console: list[str] = []
        _, self.blocked = offline_only(self.context)
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(f"{getattr(e, 'name', 'Error')}: "
                                                               f"{getattr(e, 'message', e)}"))
        self.page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)

    def close(self) -> None:
        self.context.close()


def test_index_has_one_card_per_lesson(site: Path, chromium) -> None:
    from nbexplain.site import read_lesson

    view = OfflinePage(chromium)
    try:
        view.page.goto(site.as_uri(), wait_until="load")
        cards = view.page.locator(".nbx-card")
        assert cards.count() == len(NOTEBOOKS)
        for i, nb in enumerate(NOTEBOOKS):
            lesson = read_lesson(nb)
            card = cards.nth(i)
            assert card.get_attribute("data-notebook") == nb.name
            assert card.locator("h2").get_attribute("title") == lesson.title
            assert card.locator("h2").inner_text() in lesson.title  # shown without its "Lesson N —" prefix
            summary = card.locator(".nbx-summary").inner_text()
            assert lesson.summary and summary, (nb.name, lesson.summary)
            # the rendered paragraph reads like the notebook's (Markdown syntax gone, words kept)
            words = re.findall(r"[A-Za-z]{4,}", lesson.summary)[:8]
            assert all(w in summary for w in words), (words, summary)
            href = card.locator("a").get_attribute("href")
            assert href == f"{nb.stem}.html" and (site.parent / href).is_file()
        view.page.screenshot(path=str(ARTIFACTS / "site-index.png"), full_page=True)
    finally:
        view.close()
    assert view.blocked == [] and view.failed == [] and view.errors == [] and view.console == []


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_lesson_page_renders_and_reacts_offline(site: Path, chromium, notebook: Path) -> None:
    page_path = site.parent / f"{notebook.stem}.html"
    html = page_path.read_text()
    n_views = html.count('type="application/vnd.jupyter.widget-view+json"')
    view = OfflinePage(chromium)
    page = view.page
    try:
        page.goto(page_path.as_uri(), wait_until="load")
        # every nbexplain view renders (the html-manager renders them one by one after load)
        page.wait_for_function("() => document.querySelectorAll('[class*=\"nbx-\"][data-ready]').length > 0",
                               timeout=60_000)
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('[data-ready]')).every(e => e.dataset.ready === 'true')",
            timeout=60_000)
        roots = page.locator("[data-ready='true']").count()
        assert roots >= 1 and n_views >= roots, (roots, n_views)
        charts = html.count('"model_module": "bqplot"')
        if charts:  # bqplot figures draw their marks from the local modules
            page.locator(".bqplot svg").first.wait_for(timeout=60_000)
        assert page.locator(".widget-error, .jupyter-widgets-error-widget").count() == 0
        assert page.get_by_text("Error displaying widget").count() == 0
        assert page.locator("nav.nbx-site-nav a[href='index.html']").count() == 1

        # one control of a view changes the view's data-* state, in the page alone
        changed = None
        controls = page.locator(CONTROLS)
        tried = []
        for i in range(min(controls.count(), 40)):
            control = controls.nth(i)
            if not control.is_visible() or not control.is_enabled():
                continue
            if control.evaluate("c => !!c.closest('.nbx-needs-kernel')"):
                continue
            before = page.evaluate(SNAPSHOT)
            kind = control.evaluate("c => c.tagName.toLowerCase() + (c.type ? ':' + c.type : '')")
            tried.append(kind)
            if kind == "input:range":
                lo, hi, now = control.evaluate("c => [c.min || '0', c.max || '100', c.value]")
                if float(lo) == float(hi):
                    continue
                control.fill(lo if float(now) != float(lo) else hi)
            elif kind.startswith("select"):
                options = control.evaluate("s => Array.from(s.options).filter(o => !o.disabled).map(o => o.value)")
                current = control.input_value()
                others = [o for o in options if o != current]
                if not others:
                    continue
                control.select_option(others[0])
            else:
                control.click()
            try:
                page.wait_for_function(f"before => JSON.stringify(({SNAPSHOT})()) !== JSON.stringify(before)",
                                       arg=before, timeout=3000)
            except Exception:
                continue
            after = page.evaluate(SNAPSHOT)
            changed = (kind, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                              if before.get(k) != after.get(k)})
            break
        assert changed is not None, f"no control of {page_path.name} changed a data-* state (tried {tried})"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"site-{notebook.stem}.png"))
    finally:
        view.close()
    assert view.blocked == [], view.blocked
    assert view.failed == [], view.failed
    assert view.errors == [], view.errors
    assert view.console == [], view.console
