"""The micro-batcher: each caller gets its own answer, whatever else was in its batch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from service.intake.batching import Batcher, Item
from service.logs import bound, request_id
from tests.service.conftest import run_async


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
    assert len(batcher._pending) == len(values), "they wait for the busy thread"
    doubler.release.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_requests_waiting_together_form_one_batch_and_each_gets_its_answer() -> None:
    doubler = Doubler()
    batcher: Batcher[int, int] = Batcher(doubler, name="test", max_batch=64)
    try:
        results = run_async(_submit_while_held(batcher, doubler, list(range(20))))
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
        results = run_async(_submit_while_held(batcher, doubler, list(range(20))))
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
        run_async(twice())
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
        assert run_async(three()) == ["a:rid-a", "b:rid-b", "c:rid-c"]
    finally:
        batcher.close()


def test_with_two_threads_a_second_batch_is_handled_while_the_first_waits() -> None:
    """With threads=2 a batch blocked on I/O does not hold up the next one: both handlers
    are inside `handle` at the same time (the barrier would break with one thread)."""
    both_inside = threading.Barrier(2, timeout=10)

    def handle(items: Sequence[Item[int]]) -> list[int | BaseException]:
        both_inside.wait()
        return [item.value + 1 for item in items]

    batcher: Batcher[int, int] = Batcher(handle, name="test", max_batch=1, threads=2)

    async def two() -> list[int]:
        return await asyncio.gather(batcher.submit(1), batcher.submit(2))

    try:
        assert run_async(two()) == [2, 3]
    finally:
        batcher.close()
    assert not any(thread.is_alive() for thread in batcher._threads), "close stops every thread"


def test_prepare_runs_on_the_event_loop_and_hands_its_work_to_handle() -> None:
    where: list[str] = []

    def prepare(items: Sequence[Item[int]]) -> None:
        where.append(threading.current_thread().name)
        if any(item.value < 0 for item in items):
            raise ValueError("cannot prepare a negative")
        for item in items:
            item.prepared = item.value * 10

    def handle(items: Sequence[Item[int]]) -> list[int | BaseException]:
        where.append(threading.current_thread().name)
        # Unprepared (prepare failed): handle does the work itself.
        return [item.prepared if item.prepared is not None else -1 for item in items]

    batcher: Batcher[int, int] = Batcher(handle, name="test", prepare=prepare)

    async def scenario() -> tuple[str, list[int], int]:
        loop_thread = threading.current_thread().name
        prepared = await asyncio.gather(*(batcher.submit(v) for v in (1, 2, 3)))
        return loop_thread, list(prepared), await batcher.submit(-5)

    try:
        loop_thread, prepared, unprepared = run_async(scenario())
    finally:
        batcher.close()
    assert prepared == [10, 20, 30]  # one batch: submitted in the same turn of the loop
    assert unprepared == -1
    assert where == [loop_thread, "test-0", loop_thread, "test-0"]


def test_a_batcher_needs_a_thread() -> None:
    with pytest.raises(ValueError, match="at least one thread"):
        Batcher(lambda items: [], name="test", threads=0)
