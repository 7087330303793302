"""The JS views and the Python widgets agree on the names of the synced traits.

Each view ``js/<bundle>.ts`` is read as text (no browser, no build): every name it reads or writes on the model
(``model.get("x")``, ``model.set("x", …)``), every ``"change:x"`` event it listens to, and every key of its
``interface State`` (the typed wire state) must be a synced trait (``.tag(sync=True)``) of the Python class whose
``_bundle`` is ``<bundle>``. A trait renamed on one side only then fails here instead of leaving a view that
silently reads ``undefined``. The other way round, every synced trait a Python class declares itself (not
inherited from the base classes) must be named in its view's ``State``: a trait nothing on the JS side knows is
a rename left half-done, or dead weight on the wire.
"""

from __future__ import annotations

import importlib
import pathlib
import re

import pytest

from nbexplain.widgets import _VIEWS
from nbexplain.widgets.base import NbxWidget

JS = pathlib.Path(__file__).resolve().parents[2] / "js"

_GET_SET = re.compile(r"\bmodel\s*\.\s*(?:get|set)\s*\(\s*[\"'`]([A-Za-z_]\w*)[\"'`]")
_CHANGE = re.compile(r"[\"'`]change:([A-Za-z_]\w*)[\"'`]")
_STATE = re.compile(r"\binterface\s+State\s*\{")
_KEY = re.compile(r"^\s*(?:readonly\s+)?([A-Za-z_]\w*)\s*\??\s*:")


def _strip_comments(src: str) -> str:
    """Source with // and /* */ comments removed (string contents kept; good enough for view files)."""
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    return re.sub(r"(?m)(^|[^:\"'`\\])//.*$", r"\1", src)


def state_keys(src: str) -> set[str]:
    """Keys of the first ``interface State { … }`` in TypeScript source ``src`` (nested types skipped)."""
    src = _strip_comments(src)
    m = _STATE.search(src)
    if m is None:
        return set()
    depth, start, members = 1, m.end(), []
    i = start
    while i < len(src) and depth:
        c = src[i]
        if c in "{([<":
            depth += 1
        elif c in "})]>" and not (c == ">" and src[i - 1] == "="):  # `=>` in a function type is no bracket
            depth -= 1
        if depth == 1 and c in ";\n" or depth == 0:
            members.append(src[start:i])
            start = i + 1
        i += 1
    return {k.group(1) for part in members if (k := _KEY.match(part))}


def used_names(src: str) -> dict[str, set[str]]:
    """The model names used by a view: ``get``/``set`` arguments, ``change:`` events and ``State`` keys."""
    code = _strip_comments(src)
    return {
        "model.get/set": set(_GET_SET.findall(code)),
        "change: event": set(_CHANGE.findall(code)),
        "interface State": state_keys(src),
    }


def synced(cls: type) -> set[str]:
    return {name for name, t in cls.class_traits().items() if t.metadata.get("sync")}


def mismatches(cls: type, src: str) -> list[str]:
    """Every name the view uses that ``cls`` does not sync, and every own synced trait ``State`` lacks."""
    traits = synced(cls)
    found = used_names(src)
    out = [
        f"{where} {name!r} is not a synced trait of {cls.__name__}"
        for where, names in found.items()
        for name in sorted(names - traits)
    ]
    inherited: set[str] = set()
    for base in cls.__mro__[1:]:
        if isinstance(base, type) and issubclass(base, NbxWidget):
            inherited |= synced(base)
    out += [
        f"synced trait {name!r} of {cls.__name__} is missing from the view's interface State"
        for name in sorted(traits - inherited - found["interface State"])
        if not name.startswith("_")
    ]
    return out


def _view_classes() -> dict[str, type]:
    classes = {}
    for name, module in _VIEWS.items():
        cls = getattr(importlib.import_module(f"nbexplain.widgets.{module}"), name)
        if getattr(cls, "_bundle", ""):  # SaturationDashboard is bqplot, with no view of its own
            classes[cls._bundle] = cls
    return classes


CLASSES = _view_classes()


def test_every_view_file_has_its_python_class():
    views = {p.stem for p in JS.glob("*.ts")}
    assert views == set(CLASSES), f"js/*.ts without a class: {views - set(CLASSES)}; bundles without a file: " \
        f"{set(CLASSES) - views}"


@pytest.mark.parametrize("bundle", sorted(CLASSES))
def test_view_names_are_synced_traits(bundle):
    src = (JS / f"{bundle}.ts").read_text(encoding="utf-8")
    found = used_names(src)
    assert found["interface State"], f"js/{bundle}.ts has no `interface State` to check"
    assert found["model.get/set"], f"js/{bundle}.ts reads no model names (has the scan stopped matching?)"
    assert mismatches(CLASSES[bundle], src) == []


@pytest.mark.parametrize("bundle", sorted(CLASSES))
def test_view_root_class_is_kebab_case(bundle):
    """Every root is ``nbx-<bundle with hyphens>`` (CSS class vocabulary: ``nbx-similarity-grid``, never ``_``)."""
    kinds = re.findall(r"\bviewRoot\(\s*[\"'`]([^\"'`]+)[\"'`]", (JS / f"{bundle}.ts").read_text(encoding="utf-8"))
    assert kinds == [bundle.replace("_", "-")]


def test_shared_helpers_use_base_class_traits():
    """js/lib/ helpers (applyScale, kernelRequests) read traits every view (or every RequestWidget) syncs."""
    from nbexplain.widgets.base import RequestWidget

    base = synced(RequestWidget)
    used = set()
    for path in sorted((JS / "lib").glob("*.ts")):
        code = _strip_comments(path.read_text(encoding="utf-8"))
        used |= set(_GET_SET.findall(code)) | set(_CHANGE.findall(code))
    assert {"scale", "completed_request"} <= used  # the scan still sees applyScale and kernelRequests
    assert used - base == set()


# The scanner itself, on a made-up view and class: a test that cannot fail checks nothing.

FAKE = """
// model.get("in_a_comment") is not code
interface State {
  title: string;
  values: WireTensor;
  pick?: { a: number; b: number };   // nested keys a and b are not state
  onDone: (x: number) => void;
}
function render({ model }: RenderProps<State>) {
  model.get("title");
  model.set( 'renamed_title', "x");
  model.on("change:values", f);
  model.on(`change:old_values`, f);
}
"""


def test_the_scan_finds_what_a_view_uses():
    found = used_names(FAKE)
    assert found == {
        "model.get/set": {"title", "renamed_title"},
        "change: event": {"values", "old_values"},
        "interface State": {"title", "values", "pick", "onDone"},
    }


def test_a_rename_on_either_side_is_reported():
    import traitlets

    class Fake(NbxWidget):
        title = traitlets.Unicode("").tag(sync=True)
        values = traitlets.Any(None).tag(sync=True)
        pick = traitlets.Any(None).tag(sync=True)
        onDone = traitlets.Any(None).tag(sync=True)
        python_only = traitlets.Int(0).tag(sync=True)
        not_synced = traitlets.Int(0)

    assert mismatches(Fake, FAKE) == [
        "model.get/set 'renamed_title' is not a synced trait of Fake",
        "change: event 'old_values' is not a synced trait of Fake",
        "synced trait 'python_only' of Fake is missing from the view's interface State",
    ]
