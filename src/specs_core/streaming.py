"""Run one search in a worker thread and hand its committed steps over as they happen.

The search (``Specs.solve``) is blocking and reports each committed step through its ``on_step``
callback. :class:`SolveStream` runs it in a dedicated thread that feeds a queue, and is read
either synchronously (``for item in stream``) or asynchronously (``async for item in
stream.aiter()``) without blocking the event loop. The thread is always joined: a consumer that
stops early cancels the search before its next model call (or at its next committed step,
whichever comes first), and an error raised by the search is re-raised to the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass

from specs_core.search import SearchCancelled, cancellable
from specs_core.types import SearchResult, StepCallback, StepRecord

__all__ = ["Solve", "SolveStream"]

Solve = Callable[[StepCallback], SearchResult]
"""Runs a search, calling its argument with each committed step, and returns the result."""


@dataclass(frozen=True)
class _Finished:
    result: SearchResult


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_Item = StepRecord | _Finished | _Failed


class SolveStream:
    """One search running in a worker thread, read as a stream of steps then the result.

    Iterating yields each :class:`~specs_core.types.StepRecord` as the policy commits it, then
    the :class:`~specs_core.types.SearchResult`. A stream is read once.

    Args:
        solve: runs the search; called once, in the worker thread, with the step callback.
        name: the worker thread's name (shown in thread dumps).
    """

    def __init__(self, solve: Solve, *, name: str = "specs-solve") -> None:
        self._solve = solve
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._waker: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._work,), name=name)
        self._thread.daemon = True
        self._started = False

    # -- worker side ------------------------------------------------------------------------

    def _put(self, item: _Item) -> None:
        self._queue.put(item)
        waker = self._waker
        if waker is not None:
            loop, event = waker
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                loop.call_soon_threadsafe(event.set)

    def _on_step(self, record: StepRecord) -> None:
        if self._cancel.is_set():
            raise SearchCancelled("the consumer of the stream stopped reading")
        self._put(record)

    def _work(self) -> None:
        try:
            with cancellable(self._cancel):
                result = self._solve(self._on_step)
        except SearchCancelled:
            return  # the consumer stopped reading: nobody waits for the result
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._put(_Failed(e))
        else:
            self._put(_Finished(result))

    # -- consumer side ----------------------------------------------------------------------

    def _start(self) -> None:
        if self._started:
            raise RuntimeError("a SolveStream is read once; start a new one")
        self._started = True
        self._thread.start()

    @staticmethod
    def _unwrap(item: _Item) -> StepRecord | SearchResult:
        if isinstance(item, _Failed):
            raise item.error
        if isinstance(item, _Finished):
            return item.result
        return item

    def __iter__(self) -> Iterator[StepRecord | SearchResult]:
        """Block for each step, then the result; an error of the search is raised here."""
        self._start()
        try:
            while True:
                value = self._unwrap(self._queue.get())
                yield value
                if isinstance(value, SearchResult):
                    return
        finally:
            self._cancel.set()
            self._thread.join()

    async def aiter(self) -> AsyncGenerator[StepRecord | SearchResult, None]:
        """Like iterating, but waits on the event loop instead of blocking it."""
        event = asyncio.Event()
        self._waker = (asyncio.get_running_loop(), event)
        self._start()
        try:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    event.clear()
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        await event.wait()
                        continue
                value = self._unwrap(item)
                yield value
                if isinstance(value, SearchResult):
                    return
        finally:
            self._cancel.set()
            if self._thread.is_alive():
                await asyncio.to_thread(self._thread.join)
