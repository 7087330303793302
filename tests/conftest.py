"""Test-wide settings.

Hypothesis runs **derandomized** by default, so the property tests draw the same examples on every run and CI
cannot fail on an example no earlier run met. To search new examples locally:
``pytest --hypothesis-profile=explore`` (random seeds, more examples).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=500, print_blob=True)
settings.load_profile("ci")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of tiny networks (faster, far faster on a loaded machine); restored
    after. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
