"""Micro-batching: requests that arrive together are handled together, by one thread.

Under load, what a request costs is mostly fixed overhead: a hop to a worker thread, a database
transaction, a Redis round trip, a call into the model. A `Batcher` takes every item waiting when
its thread comes round, hands them to `handle` as one list, and answers each caller from the
list it returns. Nothing waits for a batch to fill: a lone request is a batch of one, and under
load the batches grow by themselves, with the time the previous batch took. (Inference servers
call this dynamic batching.) With `threads` > 1, that many threads take batches from the same
queue: while one waits on the database, another scores, so the round trips of one batch overlap
the work of the next. `handle` must then be safe to call from several threads at once.

The threads take turns: one thread at a time takes a batch and works on it, until `handle` calls
`pass_turn()` where its batch starts waiting on the network. Only then does the next thread take
what has queued meanwhile. Without turns, every thread that came round took whatever was waiting,
and batches stayed small (4 checks on average at 650 checks/s over 2 threads); what a batch costs
is mostly fixed (a call into the model costs 3.2 ms of CPU for one check, 13 ms for 16), so
small batches spent the CPU the larger ones would have saved.

`submit` is awaited from the event loop; `handle` runs in the batcher's thread, so it may block
on the database. It returns one result per item, in order: a value, or the exception that item
raised, which `submit` raises in its caller. If `handle` itself raises, every item of the batch
gets that exception. Each item is handled in the context (context variables: the request id)
of the request that submitted it, as far as `handle` runs per-item code through `Item.run`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

_turns = threading.local()  # the turn this thread holds, if any

T = TypeVar("T")
R = TypeVar("R")
V = TypeVar("V")


@dataclass(slots=True)
class Item(Generic[T]):
    """One submitted value, with the context of the request that submitted it."""

    value: T
    context: contextvars.Context = field(default_factory=contextvars.copy_context)

    def run(self, function: Callable[[], V]) -> V:
        """Call `function` in the submitting request's context (its request id, for logs)."""
        return self.context.copy().run(function)


Handler = Callable[[Sequence[Item[T]]], Sequence["R | BaseException"]]
_STOP = object()


class Batcher(Generic[T, R]):
    """Hands what callers submit to `handle`, in batches of at most `max_batch`, from `threads`
    threads."""

    def __init__(
        self, handle: Handler[T, R], name: str, max_batch: int = 64, threads: int = 1
    ) -> None:
        if threads < 1:
            raise ValueError("a batcher needs at least one thread")
        self.handle = handle
        self.name = name
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._turn = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    async def submit(self, value: T) -> R:
        """Queue `value`, wait for its batch, and return its result (or raise its exception)."""
        future: Future[R] = Future()
        self._queue.put((Item(value), future))
        return await asyncio.wrap_future(future)

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop the threads."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)

    def _next_batch(self) -> list[tuple[Item[T], Future[R]]] | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is _STOP:
                self._queue.put(_STOP)  # this thread stops after this batch, or another does
                break
            batch.append(entry)
        return batch  # type: ignore[return-value]

    def _run(self) -> None:
        while True:
            self._turn.acquire()
            _turns.held = self._turn
            try:
                batch = self._next_batch()
                if batch is None:
                    return
                self._handle(batch)
            finally:
                pass_turn()

    def _handle(self, batch: list[tuple[Item[T], Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results: Sequence[R | BaseException] = self.handle(items)
            if len(results) != len(items):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(items)}")
        except BaseException as exc:  # every caller hears of it; the thread goes on
            log.debug("%s: the batch of %d failed: %r", self.name, len(items), exc)
            results = [exc] * len(items)
        for (_, future), result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


def pass_turn() -> None:
    """Let the batcher's next thread take a batch: call from `handle` where the batch starts
    waiting on the network. Does nothing outside a batcher's thread, or once passed."""
    turn: threading.Lock | None = getattr(_turns, "held", None)
    if turn is not None:
        _turns.held = None
        turn.release()
