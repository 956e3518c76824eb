"""The callback posters' pool counts the jobs waiting for a thread (the worker's test of
whether its threads are free), without reading the executor's private queue."""

from __future__ import annotations

import threading

from service.worker.tasks import CountingPool


def test_waiting_counts_jobs_submitted_and_not_started() -> None:
    pool = CountingPool(1, thread_name_prefix="test")
    started = threading.Event()
    release = threading.Event()

    def hold() -> str:
        started.set()
        release.wait(10)
        return "held"

    first = pool.submit(hold)
    assert started.wait(10)
    assert pool.waiting == 0  # the only thread runs it
    queued = [pool.submit(str.upper, word) for word in ("a", "b", "c")]
    assert pool.waiting == 3
    release.set()
    assert first.result(10) == "held"
    assert [future.result(10) for future in queued] == ["A", "B", "C"]
    assert pool.waiting == 0


def test_a_job_that_raises_is_no_longer_waiting() -> None:
    pool = CountingPool(2, thread_name_prefix="test")

    def fail() -> None:
        raise ValueError("boom")

    future = pool.submit(fail)
    assert isinstance(future.exception(10), ValueError)
    assert pool.waiting == 0
