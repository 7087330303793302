"""Each grid view watches its size once (issue 14, "Views share one skeleton"): AlignedDirections, ClassSensitivity
and SimilarityGrid used to watch the same resize twice, through ``connect`` (on the view's root) and through an
extra ``onVisible`` on the output element around it, so one resize rebuilt them twice. Counted in the browser: the
ResizeObserver / IntersectionObserver ``observe`` calls whose target is a view's root or the element holding it."""

from __future__ import annotations

import pytest
from test_aligned_directions import CELLS as ALIGNED
from test_class_sensitivity import CELLS as SENSITIVITY
from test_similarity_grid import CELLS as GRID

pytestmark = pytest.mark.browser

VIEWS = (".nbx-aligned-directions", ".nbx-class-sensitivity", ".nbx-similarity-grid")

# installed before the cells run (and so before the views render): remember every element an observer watches
WATCH = """() => {
  window.__nbxWatched = [];
  for (const [name, O] of [["ResizeObserver", ResizeObserver], ["IntersectionObserver", IntersectionObserver]]) {
    const observe = O.prototype.observe;
    O.prototype.observe = function (target, ...rest) {
      window.__nbxWatched.push([name, target]);
      return observe.call(this, target, ...rest);
    };
  }
}"""

# per observer kind, how many observe calls target the view (its root, or the output element holding the root)
COUNT = """(sel) => {
  const out = {};
  for (const [kind, t] of window.__nbxWatched) {
    if (t.matches?.(sel) || t.querySelector?.(":scope > " + sel)) out[kind] = (out[kind] || 0) + 1;
  }
  return out;
}"""


def test_each_view_watches_its_size_once(lab):
    nb = lab.open_notebook(ALIGNED + SENSITIVITY + GRID, name="resize_watch", run=False, viewport=(800, 1000))
    with nb:
        nb.page.evaluate(WATCH)
        nb.run_all()
        for sel in VIEWS:
            nb.page.locator(f"{sel}[data-ready='true']").wait_for()
            assert nb.page.evaluate(COUNT, sel) == {"ResizeObserver": 1, "IntersectionObserver": 1}, sel
        # the one watcher still follows the width: wider, then back to the 800 px column, each view fits again
        nb.page.set_viewport_size({"width": 1400, "height": 1000})
        nb.page.wait_for_timeout(500)
        nb.page.set_viewport_size({"width": 800, "height": 1000})
        nb.page.wait_for_timeout(500)
        for sel in VIEWS:
            layout = nb.view(sel).evaluate("r => [r.scrollWidth, r.clientWidth, r.getBoundingClientRect().right]")
            assert layout[0] <= layout[1] + 1 and layout[2] <= 800, (sel, layout)
        assert nb.page_errors == [], nb.page_errors
