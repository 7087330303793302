"""Running a :class:`~nbexplain.widgets.Playground`: the live training loop on the kernel's event loop, play /
pause / step / train / rewind, and the view's commands. The Playground class takes these methods from
:class:`PlaygroundRun`; every number drawn still comes from ``nbexplain.core.playground``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

__all__ = ["PlaygroundRun", "single_thread"]

#: Seconds of SGD between two frames while training live.
_SLICE_S = 0.012
#: Seconds the loop is left to the kernel after each frame.
_YIELD_S = 0.005

_THREADS_LOCK = threading.Lock()
_THREADS_USERS: list[int] = []  # [the thread count to restore] while any block is inside single_thread()


@contextmanager
def single_thread() -> Iterator[None]:
    """torch on one thread inside the block, restored when the last such block (in any thread) ends: the
    playground's tensors are tiny, and on a busy machine intra-op threads only contend (measured: a training
    step and a frame 10× slower with two)."""
    with _THREADS_LOCK:
        _THREADS_USERS.append(torch.get_num_threads() if not _THREADS_USERS else _THREADS_USERS[0])
        torch.set_num_threads(1)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            restore = _THREADS_USERS.pop()
            if not _THREADS_USERS:
                torch.set_num_threads(restore)



class PlaygroundRun:
    """Training and commands of the Playground (a mixin: the widget holds the traits, the run and its frames).

    It relies on the widget's ``trainer``, ``data``, ``state``/``error``/``history``/``projection`` traits,
    ``epoch_limit``, ``_lock``, ``_task``, ``_recording`` and its frame methods (``_push_frame``,
    ``_on_epoch``, ``_compute_projection``, ``_history``, ``_sync_recording``)."""

    # provided by the widget (see the class docstring)
    trainer: Any
    data: Any
    state: Any
    error: Any
    history: Any
    projection: Any
    epoch_limit: Any
    _lock: threading.RLock
    _task: asyncio.Task | None
    _recording: Any

    if TYPE_CHECKING:  # for the type checker only: at run time these are the widget's (and ipywidgets') own
        def _push_frame(self, record: bool = True) -> Any: ...
        def _on_epoch(self) -> None: ...
        def _compute_projection(self) -> None: ...
        def _history(self, similarity: bool = True) -> dict[str, Any]: ...
        def _sync_recording(self) -> None: ...
        def hold_sync(self) -> Any: ...

    # ---------------------------------------------------------------- training
    def _advance(self, batches: int) -> None:
        """SGD on ``batches`` minibatches (fewer at the epoch limit), noting each finished epoch."""
        t = self.trainer
        while batches > 0 and not self._limit_reached():
            b = min(batches, self.trainer.batches_left())
            before = t.epoch
            t.step(b)
            batches -= b
            if t.epoch != before:
                self._on_epoch()

    def _epoch(self) -> None:
        """Train to the end of the current epoch (a whole one when none is under way)."""
        self._advance(self.trainer.batches_left())

    def _limit_reached(self) -> bool:
        return self.epoch_limit > 0 and self.trainer.epoch >= self.epoch_limit

    def _settle(self, state: str) -> None:
        """Training stopped: δ projections, the recording and the state go to the view in one update."""
        with self.hold_sync():
            self._compute_projection()
            self.history = self._history()
            self._sync_recording()
            self.state = state

    def play(self) -> None:
        """Train live in the background (an asyncio task on the kernel's event loop) until paused or the epoch
        limit. Raises in a plain script (no running event loop): use :meth:`train` there."""
        if self.state == "training":
            return
        if self._limit_reached():
            raise RuntimeError(f"The run reached `epoch_limit`={self.epoch_limit}; raise it (or set 0 for no limit) "
                               "or .rewind() to train again.")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("Playground.play() trains in the background on a running event loop (a Jupyter "
                               "kernel's); none is running here. In a script, call .train(epochs) instead.") from None
        self.state = "training"
        if self._task is None or self._task.done():  # a task paused a moment ago may still be winding down
            self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            while self.state == "training":
                with self._lock, single_thread():
                    if self.state != "training":  # paused while this task waited for the lock
                        break
                    t0, per_batch = time.perf_counter(), 0.0
                    while (left := _SLICE_S - (time.perf_counter() - t0)) > 0 and not self._limit_reached() \
                            and self.state == "training":
                        batches = max(1, min(64, int(left / per_batch))) if per_batch > 0 else 1
                        t1 = time.perf_counter()
                        self._advance(batches)
                        per_batch = (time.perf_counter() - t1) / batches
                    if self.state != "training":
                        break
                    self._push_frame()
                    if self._limit_reached():
                        self._settle("done")
                        break
                # Other cells and the view's messages are served here. A kernel message takes a chain of a few
                # loop callbacks: a short sleep (rather than sleep(0), one loop pass) lets the whole chain run.
                await asyncio.sleep(_YIELD_S)
        except Exception as err:  # shown in the view; the widget stays usable
            with self._lock:
                self.error = f"{type(err).__name__}: {err}"
                self._settle("paused")
        finally:
            self._task = None

    def pause(self) -> None:
        """Stop live training now (after the minibatch in progress); the recording goes to the view."""
        with self._lock:  # waits for a slice of SGD in progress (a view's message may come from another thread)
            if self.state == "training":
                with single_thread():
                    self._push_frame()
                    self._settle("paused")

    def step(self, batches: int | None = None) -> None:
        """Train one epoch (or ``batches`` minibatches) and show it; pauses live training first."""
        if batches is not None and (not isinstance(batches, int) or batches < 1):
            raise ValueError(f"`batches` must be a positive integer (minibatches) or None for one epoch, got {batches!r}.")
        self.pause()
        with self._lock, single_thread():
            if batches is None:
                self._epoch()
            else:
                self._advance(batches)
            self._push_frame()
            self._settle("done" if self._limit_reached() else "paused")

    def train(self, epochs: int) -> None:
        """Train ``epochs`` epochs synchronously (for scripts and tests), one recorded frame per epoch."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"`epochs` must be a positive integer, got {epochs!r}.")
        self.pause()
        from ..core._base.machinery import progress_bar

        with self._lock, single_thread(), progress_bar(total=epochs, desc="Playground") as bar:
            for _ in range(epochs):
                if self._limit_reached():
                    break
                self._epoch()
                self._push_frame()
                bar.update(1)
            self._settle("done" if self._limit_reached() else "paused")

    def rewind(self) -> None:
        """Back to the identical initial weights and batch order; the recording starts over."""
        self.pause()
        with self._lock, single_thread(), self.hold_sync():
            self.trainer.rewind()
            self._recording.clear()
            self.error = ""
            self.history = self._history()
            self._push_frame()
            self.projection = {}
            self._sync_recording()
            self.state = "idle"

    # ---------------------------------------------------------------- view messages and settings
    def _handle_message(self, _widget: Any, content: Any, buffers: list) -> None:
        if not isinstance(content, dict) or content.get("type") != "command":
            return
        action = content.get("action")
        try:
            if action == "pause":  # takes the lock itself, right after the slice in progress
                self.pause()
                return
            with self._lock:
                self._command(action)
        except Exception as err:  # shown in the view
            self.error = f"{type(err).__name__}: {err}"

    def _command(self, action: Any) -> None:
        if action == "play":
            self.play()
        elif action == "step":
            self.step()
        elif action == "rewind":
            self.rewind()

