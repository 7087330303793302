"""Every docstring example in the package runs and prints what it claims (the runnable-example standard)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import nbexplain


def _modules() -> list[str]:
    names = ["nbexplain"]
    for info in pkgutil.walk_packages(nbexplain.__path__, "nbexplain."):
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name} (details above)"
