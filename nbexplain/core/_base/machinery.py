"""Small shared machinery every method uses: batch slices, the progress-bar policy, hook handles.

- :func:`batch_slices`: the one batching loop (``for sl in batch_slices(n, batch_size)``).
- :func:`progress_bar`: the one progress policy. ``progress=None`` (the default everywhere) shows a bar only
  once the work has run for more than :data:`PROGRESS_DELAY` seconds, so quick calls stay silent and long ones
  always report; ``True`` shows it at once, ``False`` never.
- :class:`Handles`: a removable collection of hook handles (forward hooks, tensor hooks, parametrizations'
  removal callbacks), removed together — also when the code between raised.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from types import FrameType
from typing import Any

from tqdm.auto import tqdm

__all__ = ["PROGRESS_DELAY", "batch_slices", "check_progress", "progress_bar", "Handles", "is_nbexplain_code"]

#: The installed ``nbexplain/`` package folder (with a trailing separator).
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep


def is_nbexplain_code(filename: str) -> bool:
    """Whether a source file (a frame's ``co_filename``) belongs to nbexplain itself, not to the user."""
    return os.path.abspath(filename).startswith(PACKAGE_DIR)

#: Seconds of work after which an automatic (``progress=None``) bar appears.
PROGRESS_DELAY = 2.0


_TORCH_DIR = f"{os.sep}torch{os.sep}"


def user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning issued by the calling function at the user's line: the first
    frame outside nbexplain and torch (torch sits between a forward hook and the line that ran the model).

    Examples
    --------
    >>> import warnings
    >>> def note():  # a function in nbexplain would warn like this
    ...     warnings.warn("look here", UserWarning, stacklevel=user_stacklevel())
    """
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_code.co_filename
        if not (is_nbexplain_code(name) or _TORCH_DIR in name or name.startswith("<frozen")):
            return level
        frame, level = frame.f_back, level + 1
    return 1


def batch_slices(n: int, batch_size: int, start: int = 0) -> Iterator[slice]:
    """Consecutive slices of at most ``batch_size`` rows covering ``range(start, n)``.

    Examples
    --------
    >>> [(s.start, s.stop) for s in batch_slices(5, 2)]
    [(0, 2), (2, 4), (4, 5)]
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be ≥ 1, got {batch_size}.")
    for lo in range(start, n, batch_size):
        yield slice(lo, min(lo + batch_size, n))


def check_progress(progress: Any, argname: str = "progress") -> bool | None:
    """``progress`` must be None (automatic), True or False."""
    if progress is None or isinstance(progress, bool):
        return progress
    raise TypeError(f"`{argname}` must be None (a bar once the work takes > {PROGRESS_DELAY:g} s), True or False, "
                    f"got {progress!r}.")


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    progress: bool | None = None,
    leave: bool = False,
    **kwargs: Any,
) -> Any:
    """A ``tqdm.auto`` bar following the one progress policy (see the module docstring).

    Examples
    --------
    >>> with progress_bar(total=3, desc="work", progress=False) as bar:
    ...     for _ in range(3):
    ...         _ = bar.update(1)
    """
    progress = check_progress(progress)
    return tqdm(
        iterable,
        total=total,
        desc=desc[:60],
        disable=progress is False,
        delay=PROGRESS_DELAY if progress is None else 0.0,
        leave=leave,
        **kwargs,
    )


class Handles:
    """Hook handles removed together: ``with Handles() as h: h.add(m.register_forward_hook(f))``.

    Anything with a ``remove()`` method can be added, and plain callables (run on removal). Removal runs
    every handle even when one of them raises, newest first, and leaves the collection empty.

    Examples
    --------
    >>> import torch
    >>> lin = torch.nn.Linear(2, 2)
    >>> with Handles() as hooks:
    ...     _ = hooks.add(lin.register_forward_hook(lambda *a: None))
    ...     len(lin._forward_hooks)
    1
    >>> len(lin._forward_hooks)
    0
    """

    def __init__(self) -> None:
        self._items: list[Any] = []

    def add(self, handle: Any) -> Any:
        """Keep ``handle`` (an object with ``remove()`` or a callable) and return it."""
        if not (hasattr(handle, "remove") or callable(handle)):
            raise TypeError(f"A handle needs a remove() method or must be callable, got {type(handle).__name__}.")
        self._items.append(handle)
        return handle

    def __len__(self) -> int:
        return len(self._items)

    def remove(self) -> None:
        """Remove every handle (newest first); the first error is raised after all were tried."""
        error: BaseException | None = None
        while self._items:
            h = self._items.pop()
            try:
                h.remove() if hasattr(h, "remove") else h()
            except BaseException as e:  # noqa: BLE001 - keep removing, re-raise the first afterwards
                error = error or e
        if error is not None:
            raise error

    def __enter__(self) -> Handles:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

