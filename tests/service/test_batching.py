"""The micro-batcher: each caller gets its own answer, whatever else was in its batch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from service.batching import Batcher, Item, pass_turn
from service.logs import bound, request_id

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` in a thread of its own: a browser test earlier in this process may have
    left its event loop running in the main thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class Doubler:
    """Doubles numbers; refuses 13; holds its first batch until `release` is set."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: Sequence[Item[int]]) -> list[int | BaseException]:
        if not self.started.is_set():
            self.started.set()
            self.release.wait(10)
        self.sizes.append(len(items))
        return [ValueError("13") if item.value == 13 else item.value * 2 for item in items]


async def _submit_while_held(
    batcher: Batcher[int, int], doubler: Doubler, values: list[int]
) -> list[int | BaseException]:
    """Submit -1, and `values` while the batch of -1 is being handled."""
    first = asyncio.ensure_future(batcher.submit(-1))
    assert await asyncio.to_thread(doubler.started.wait, 10)
    rest = [asyncio.ensure_future(batcher.submit(v)) for v in values]
    await asyncio.sleep(0)  # each task runs up to its await: all are queued
    assert batcher._queue.qsize() == len(values)
    doubler.release.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_requests_waiting_together_form_one_batch_and_each_gets_its_answer() -> None:
    doubler = Doubler()
    batcher: Batcher[int, int] = Batcher(doubler, name="test", max_batch=64)
    try:
        results = run(_submit_while_held(batcher, doubler, list(range(20))))
    finally:
        batcher.close()
    assert results[0] == -2
    assert results[1:14] == [2 * v for v in range(13)]
    assert isinstance(results[14], ValueError)  # 13: its caller alone hears of it
    assert results[15:] == [2 * v for v in range(14, 20)]
    assert doubler.sizes == [1, 20]


def test_batches_never_exceed_their_maximum() -> None:
    doubler = Doubler()
    batcher: Batcher[int, int] = Batcher(doubler, name="test", max_batch=8)
    try:
        results = run(_submit_while_held(batcher, doubler, list(range(20))))
    finally:
        batcher.close()
    assert [r for r in results if not isinstance(r, BaseException)] == [
        2 * v for v in [-1, *range(13), *range(14, 20)]
    ]
    assert doubler.sizes == [1, 8, 8, 4]


def test_a_failing_batch_fails_each_of_its_callers_and_the_batcher_goes_on() -> None:
    calls = []

    def handle(items: Sequence[Item[int]]) -> list[int | BaseException]:
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("database down")
        return [item.value for item in items]

    batcher: Batcher[int, int] = Batcher(handle, name="test")

    async def twice() -> None:
        with pytest.raises(RuntimeError, match="database down"):
            await batcher.submit(1)
        assert await batcher.submit(2) == 2

    try:
        run(twice())
    finally:
        batcher.close()


def test_each_item_runs_in_the_context_of_the_request_that_submitted_it() -> None:
    def handle(items: Sequence[Item[str]]) -> list[str | BaseException]:
        return [item.run(lambda i=item: f"{i.value}:{request_id.get()}") for item in items]

    batcher: Batcher[str, str] = Batcher(handle, name="test")

    async def one(name: str) -> str:
        with bound(f"rid-{name}"):
            return await batcher.submit(name)

    async def three() -> list[str]:
        return await asyncio.gather(*(one(name) for name in "abc"))

    try:
        assert run(three()) == ["a:rid-a", "b:rid-b", "c:rid-c"]
    finally:
        batcher.close()


def test_with_two_threads_a_second_batch_is_handled_while_the_first_waits() -> None:
    """With threads=2 a batch that passed its turn (waiting on I/O) does not hold up the next
    one: both handlers are inside `handle` at the same time (the barrier would break with one
    thread)."""
    both_inside = threading.Barrier(2, timeout=10)

    def handle(items: Sequence[Item[int]]) -> list[int | BaseException]:
        pass_turn()
        both_inside.wait()
        return [item.value + 1 for item in items]

    batcher: Batcher[int, int] = Batcher(handle, name="test", max_batch=1, threads=2)

    async def two() -> list[int]:
        return await asyncio.gather(batcher.submit(1), batcher.submit(2))

    try:
        assert run(two()) == [2, 3]
    finally:
        batcher.close()
    assert not any(thread.is_alive() for thread in batcher._threads), "close stops every thread"


def test_until_a_batch_passes_its_turn_the_next_waits_and_grows() -> None:
    """Threads take turns: while one batch works without passing its turn, the other thread
    takes nothing, so what arrives meanwhile makes one batch, not several."""
    first_inside = threading.Event()
    queued = threading.Event()
    second_inside = threading.Event()
    overlapped: list[bool] = []
    sizes: list[int] = []

    def handle(items: Sequence[Item[int]]) -> list[int | BaseException]:
        sizes.append(len(items))
        if len(sizes) == 1:  # "scoring", the turn held
            first_inside.set()
            queued.wait(10)
            # Without turns the other thread would take the queued five and come in here; a
            # bounded wait for something that must not happen.
            overlapped.append(second_inside.wait(0.5))
        else:
            second_inside.set()
        return [item.value for item in items]

    batcher: Batcher[int, int] = Batcher(handle, name="test", max_batch=64, threads=2)

    async def scenario() -> list[int]:
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.get_running_loop().run_in_executor(None, first_inside.wait, 10)
        rest = [asyncio.ensure_future(batcher.submit(n)) for n in range(1, 6)]
        await asyncio.sleep(0)  # a yield: each submit runs up to its queue.put
        queued.set()
        return list(await asyncio.gather(first, *rest))

    try:
        assert run(scenario()) == [0, 1, 2, 3, 4, 5]
    finally:
        batcher.close()
    assert overlapped == [False], "the second thread waited for the turn"
    assert sizes == [1, 5]


def test_a_batcher_needs_a_thread() -> None:
    with pytest.raises(ValueError, match="at least one thread"):
        Batcher(lambda items: [], name="test", threads=0)
