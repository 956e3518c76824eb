"""SQLite: a write waits for another process's write in short steps, and gives up cleanly."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from service import db
from tests.service.conftest import make_settings


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "lock.db"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (x INTEGER)")
    return path


@pytest.fixture
def other_process(database: Path) -> Iterator[sqlite3.Connection]:
    """Another process's connection (another connection behaves alike), holding no lock yet."""
    holder = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    yield holder
    if holder.in_transaction:
        holder.execute("ROLLBACK")
    holder.close()


def busy_timeout(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA busy_timeout").fetchone()[0])


def test_a_write_waits_for_the_other_writer_and_then_begins(
    database: Path, other_process: sqlite3.Connection
) -> None:
    waiter = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    waiter.execute(f"PRAGMA busy_timeout={db.BUSY_TIMEOUT_MS}")
    tries: list[str] = []
    tried_twice = threading.Event()

    def on_statement(statement: str) -> None:
        if statement == "BEGIN IMMEDIATE":
            tries.append(statement)
            if len(tries) == 2:
                tried_twice.set()

    waiter.set_trace_callback(on_statement)
    other_process.execute("BEGIN IMMEDIATE")
    errors: list[BaseException] = []

    def begin() -> None:
        try:
            db.begin_immediate(waiter, timeout=30)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    thread = threading.Thread(target=begin)
    thread.start()
    assert tried_twice.wait(10), "the waiter tries again while the other writer holds the lock"
    assert not waiter.in_transaction
    other_process.execute("COMMIT")
    thread.join(10)
    assert not thread.is_alive() and errors == []
    assert waiter.in_transaction, "it began once the other writer committed"
    waiter.execute("INSERT INTO t VALUES (1)")
    waiter.execute("COMMIT")
    assert busy_timeout(waiter) == db.BUSY_TIMEOUT_MS, "other statements keep the busy timeout"
    waiter.close()


def test_a_write_gives_up_after_its_timeout_with_the_busy_timeout_restored(
    database: Path, other_process: sqlite3.Connection
) -> None:
    waiter = sqlite3.connect(database, isolation_level=None)
    waiter.execute(f"PRAGMA busy_timeout={db.BUSY_TIMEOUT_MS}")
    other_process.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        db.begin_immediate(waiter, timeout=0.05)
    assert not waiter.in_transaction
    assert busy_timeout(waiter) == db.BUSY_TIMEOUT_MS
    waiter.close()


def test_an_engine_whose_write_timed_out_answers_operational_error_and_writes_afterwards(
    database: Path, other_process: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "LOCK_TIMEOUT_SECONDS", 0.05)
    engine = db.make_engine(make_settings(database_url=f"sqlite:///{database}"))
    try:
        other_process.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError, match="locked"), engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
        other_process.execute("COMMIT")
        # The process's own lock was released: the next write goes through.
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (2)"))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT x FROM t")).scalars().all() == [2]
    finally:
        engine.dispose()
