"""Database engine, sessions and migrations, for SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings

SessionFactory = sessionmaker[Session]
LOCK_TIMEOUT_SECONDS = 30.0
BUSY_TIMEOUT_MS = 30_000
WRITE_RETRY_SECONDS = (0.0002, 0.002)  # the first step and the longest, between BEGINs
_HOLDS_LOCK = "commentguard_holds_write_lock"


def make_engine(settings: Settings) -> Engine:
    """An engine for `settings.database_url`; a SQLite file's folder is created if missing."""
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(
            url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_pool_size,
            pool_pre_ping=True,
            pool_timeout=5,
            connect_args={"connect_timeout": 3},
        )
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
    )
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    # The API's threads and the worker's processes write to the same file. WAL lets readers
    # run beside the writer, and BEGIN IMMEDIATE takes the write lock at the start of each
    # transaction: a deferred transaction that reads and then writes can fail at once with
    # SQLITE_BUSY instead of waiting for the busy timeout.
    #
    # Threads of one process also queue on a lock of their own before BEGIN: SQLite's busy
    # handler waits by sleeping (1, 2, 5 ... 100 ms), which under load turns a 1 ms wait
    # into a 100 ms one; a lock hands over at once. Between processes, `begin_immediate`
    # waits in short steps instead of through the busy handler.
    writer = threading.Lock()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if not writer.acquire(timeout=LOCK_TIMEOUT_SECONDS):
            raise OperationalError("BEGIN", {}, TimeoutError("database write lock timed out"))
        connection.info[_HOLDS_LOCK] = True
        try:
            begin_immediate(connection.connection.driver_connection, LOCK_TIMEOUT_SECONDS)
        except sqlite3.Error as error:
            _release(connection.info)
            raise OperationalError("BEGIN IMMEDIATE", {}, error) from error
        except BaseException:
            _release(connection.info)
            raise

    def _release(info: dict[str, Any]) -> None:
        if info.pop(_HOLDS_LOCK, False):
            writer.release()

    @event.listens_for(engine, "commit")
    def _on_commit(connection: Any) -> None:
        _release(connection.info)

    @event.listens_for(engine, "rollback")
    def _on_rollback(connection: Any) -> None:
        _release(connection.info)

    @event.listens_for(engine.pool, "reset")
    def _on_reset(_dbapi_connection: Any, record: Any, _reset_state: Any) -> None:
        _release(record.info)  # a connection returned mid-transaction (after an error)

    @event.listens_for(engine.pool, "invalidate")
    def _on_invalidate(_dbapi_connection: Any, record: Any, _exception: Any) -> None:
        _release(record.info)


def begin_immediate(dbapi_connection: Any, timeout: float = LOCK_TIMEOUT_SECONDS) -> None:
    """BEGIN IMMEDIATE on a sqlite3 connection, waiting for another process's write.

    Another process (a second API process, a worker) holds the write lock for a millisecond
    or two. SQLite's busy handler would sleep 1, 2, 5, 10 ... 100 ms between its tries, so
    such a wait became tens of milliseconds under load. Here BEGIN is tried again after
    0.2 ms, then after steps growing by half up to 2 ms (a long wait, behind a large write,
    costs at most 500 tries a second), for up to `timeout`. Every other statement keeps the
    busy timeout.
    """
    dbapi_connection.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + timeout
        step = WRITE_RETRY_SECONDS[0]
        while True:
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if not _is_busy(error) or time.monotonic() >= deadline:
                    raise
            time.sleep(step)
            step = min(step * 1.5, WRITE_RETRY_SECONDS[1])
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def _is_busy(error: sqlite3.OperationalError) -> bool:
    return str(getattr(error, "sqlite_errorname", "")).startswith("SQLITE_BUSY")


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)


def ping(engine: Engine) -> None:
    """Raise unless the database answers."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def alembic_config(database_url: str) -> Any:
    """The Alembic configuration shipped inside the package, so it works from any folder."""
    from alembic.config import Config

    # Next to this file, not via importlib.resources: an editable install exposes the package
    # as a namespace there, which Alembic's script directory cannot use.
    folder = Path(__file__).resolve().parent / "migrations"
    config = Config()
    config.set_main_option("script_location", str(folder))
    # ConfigParser interpolation would choke on a password containing "%".
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Run the migrations up to `revision` (the latest by default)."""
    from alembic import command

    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings.database_url), revision)
