"""Test-wide settings.

Hypothesis runs **derandomized** by default, so the property tests draw the same examples on every run and CI
cannot fail on an example no earlier run met. To search new examples locally:
``pytest --hypothesis-profile=explore`` (random seeds, more examples).
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=500, print_blob=True)
settings.load_profile("ci")
