"""The public API's conventions that are settled, enforced by introspection (issue 12; more rules join as the
vocabulary is unified)."""

from __future__ import annotations

import inspect
import typing

import torch

import nbexplain as nx


def _public_callables() -> list[tuple[str, object]]:
    return [(n, getattr(nx, n)) for n in nx.__all__ if callable(getattr(nx, n, None))]


def test_every_class_a_public_function_returns_is_importable_from_nx() -> None:
    """A user can name (isinstance, type hints) whatever a public call gives back."""
    exported = {id(getattr(nx, n)) for n in nx.__all__}
    missing = []
    for name, obj in _public_callables():
        if inspect.isclass(obj) or not inspect.isfunction(obj):
            continue
        hints = typing.get_type_hints(obj, globalns=vars(inspect.getmodule(obj)))
        ret = hints.get("return")
        for t in typing.get_args(ret) or (ret,):
            origin = typing.get_origin(t) or t
            if inspect.isclass(origin) and origin.__module__.startswith("nbexplain") and id(origin) not in exported:
                missing.append(f"{name} -> {origin.__name__}")
    assert missing == [], missing


def test_every_public_name_has_a_docstring_with_an_example_or_is_a_plain_type() -> None:
    """Functions carry a runnable example (tests/test_docstrings.py runs them); every name has a docstring."""
    no_doc = [n for n, obj in _public_callables() if not (inspect.getdoc(obj) or "").strip()]
    assert no_doc == [], no_doc
    no_example = [
        n for n, obj in _public_callables()
        if inspect.isfunction(obj) and ">>>" not in (inspect.getdoc(obj) or "")
    ]
    assert no_example == [], no_example


def test_the_exported_result_types_are_the_returned_ones() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    x = torch.rand(16, 4)
    stats = nx.layer_statistics(net, x, ["0"])["0"]
    curve = nx.delta_curve(net, x, "0", stats, deltas=[0.9, 1.0], metric="agreement")
    assert isinstance(curve, nx.DeltaCurveResult)
    with nx.preserved(net) as snap:
        assert isinstance(snap, nx.ModelSnapshot)
