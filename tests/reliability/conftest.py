"""Fixtures for the reliability suite: servers the tests may stop, and processes they may kill.

Everything here is private to the test process that uses it: a PostgreSQL cluster (initdb +
pg_ctl on a free port, in a temporary folder), a redis-server on its own port, the API as a
`commentguard serve` subprocess and the workers as `commentguard worker` subprocesses. The
shared servers on 6379 and 5432 are never touched, because these tests stop theirs.

The model, the callback receiver and `wait_until` come from tests/service/conftest.py.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text

from service import db
from service.embedded import (
    Supervisor,
    child_env,
    free_port,
    redis_server_binary,
    start_workers,
)
from service.settings import Settings
from tests.service.conftest import (
    Account,
    CallbackReceiver,
    create_account,
    live_server,
    make_settings,
    models_dir,
    receiver,
    scored_count,
    session_factory,
    verdicts_per_comment,
    wait_until,
)

# Fixtures shared with tests/service, re-exported here.
__all__ = ["live_server", "models_dir", "receiver"]

# --- a private PostgreSQL cluster --------------------------------------------------------


def postgres_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl, else fail clearly."""

    def version(pg_ctl: str) -> int:
        name = Path(pg_ctl).parent.parent.name
        return int(name) if name.isdigit() else 0

    for pg_ctl in sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=version, reverse=True):
        folder = Path(pg_ctl).parent
        if (folder / "initdb").exists():
            return folder
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    pytest.fail(
        "the reliability suite needs the PostgreSQL server binaries (initdb, pg_ctl) to run a "
        "private cluster it can stop; none found in /usr/lib/postgresql/*/bin or on PATH "
        "(install the postgresql package)",
        pytrace=False,
    )


class PrivateCluster:
    """A throw-away PostgreSQL cluster with trust authentication, which tests may stop.

    initdb refuses to run as root, so as root the cluster belongs to the `postgres` user.
    """

    def __init__(self, folder: Path) -> None:
        self.bin = postgres_bin_dir()
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root, and there is no `postgres` user to own a cluster")
            os.chown(folder, self._user.pw_uid, self._user.pw_gid)

    def _run(self, *argv: str) -> None:
        user = self._user

        def demote() -> None:  # pragma: no cover - runs in the child before exec
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        result = subprocess.run(
            list(argv), preexec_fn=demote, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            pytest.fail(f"{Path(argv[0]).name} failed: {result.stdout}{result.stderr}")

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip

    def start(self) -> None:
        """Start (or start again) on the same port and folder; returns once it accepts queries."""
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, migrated database; returns its URL."""
        name = f"cg_rel_{uuid.uuid4().hex[:12]}"
        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        url = self.url(name)
        db.upgrade(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
        return url


@pytest.fixture(scope="session")
def postgres() -> Iterator[PrivateCluster]:
    """One private cluster per test process (pytest's own tmp folders are closed to `postgres`)."""
    folder = Path(tempfile.mkdtemp(prefix="cg-rel-pg-"))
    cluster = PrivateCluster(folder)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(BaseException):
            cluster.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


# --- a private Redis -----------------------------------------------------------------------


class PrivateRedis:
    """A redis-server without persistence on its own port: restarting it loses every key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.supervisor = Supervisor()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port),
            "--dir", str(self.folder), "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        self.process = self.supervisor.start("redis", argv, dict(os.environ))
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            wait_until(lambda: bool(client.ping()), 15, "the private Redis")
        finally:
            client.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        self.supervisor.children.clear()

    def flush(self) -> None:
        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        self.supervisor.stop()


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


# --- settings and database -------------------------------------------------------------------


@pytest.fixture(scope="module")
def database_url(postgres: PrivateCluster) -> str:
    """A fresh, migrated database in the private cluster, for this module."""
    return postgres.create_database()


@pytest.fixture(scope="module")
def settings(
    database_url: str,
    private_redis: PrivateRedis,
    models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    return make_settings(
        database_url=database_url,
        redis_url=private_redis.url,
        models_dir=models_dir,
        data_dir=tmp_path_factory.mktemp("var"),
        # A claimed callback attempt whose worker died is retried after its lease,
        # 2 × timeout + 30 s: a short timeout keeps that wait short.
        callback_timeout_seconds=1.0,
        pending_sweep_age_seconds=5.0,
        pending_sweep_interval_seconds=2.0,
        callback_max_attempts=20,
        callback_backoff_max_seconds=2.0,
        # Clients retry as fast as the faults let them (an outage answers 503 at once): the
        # suite is about faults, not the limits, which tests/service/test_rate_limits.py covers.
        rate_limit_per_ip=0,
        rate_limit_per_key=0,
    )


@pytest.fixture(scope="module")
def sessions(settings: Settings) -> Iterator[db.SessionFactory]:
    with session_factory(settings) as factory:
        yield factory


@pytest.fixture
def account(settings: Settings) -> Account:
    return create_account(settings, f"reliability-{uuid.uuid4().hex[:6]}")


# --- processes: workers and the API ------------------------------------------------------------


def _kill_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # Each child leads its own session (Supervisor.start): the group holds a prefork worker's
    # pool processes too, so SIGKILL takes down the whole worker, as a crashed host would.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    process.wait(30)


class Workers:
    """The scoring and callback workers, which a test may SIGKILL and start again, and beat."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = child_env(settings)
        self.beat = Supervisor()
        self.workers = Supervisor()
        self.kills = 0
        self.crashes: list[str] = []

    def start(self) -> None:
        start_workers(self.workers, self.env, concurrency=2, callback_threads=8, with_beat=False)

    def start_beat(self) -> None:
        self.beat.start("beat", [sys.executable, "-m", "service.cli", "beat"], self.env)

    def kill(self) -> None:
        """SIGKILL both workers, pool processes included, with no chance to ack or clean up."""
        for _name, process in self.workers.children:
            _kill_group(process, signal.SIGKILL)
        self.workers.children.clear()
        self.kills += 1

    def restart_exited(self) -> None:
        """Start the workers again if one has exited, as a deployment's restart policy would.

        Needed when Redis goes away: kombu 5.7 can fail to close the lost connection
        (AttributeError in restore_unacked) and the worker exits with "Unrecoverable error".
        """
        exited = [name for name, process in self.workers.children if process.poll() is not None]
        if exited:
            self.crashes.extend(exited)
            self.kill()
            self.kills -= 1
            self.start()

    def check_alive(self) -> None:
        for name, process in [*self.workers.children, *self.beat.children]:
            if process.poll() is not None:
                pytest.fail(f"{name} exited with code {process.returncode}")

    def stop(self) -> None:
        self.workers.stop()
        self.beat.stop()


@pytest.fixture(scope="module")
def workers(settings: Settings) -> Iterator[Workers]:
    from service.worker.queue import make_celery

    stack = Workers(settings)
    app = make_celery(settings)
    try:
        stack.start()
        stack.start_beat()

        def ready() -> bool:
            stack.check_alive()
            return len(app.control.ping(timeout=0.5)) >= 2

        wait_until(ready, 60, "the Celery workers")
        yield stack
    finally:
        with contextlib.suppress(Exception):
            app.close()
        stack.stop()


class ApiProcess:
    """`commentguard serve` against the settings' Redis, which a test may kill and restart."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.supervisor = Supervisor()
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        argv = [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)]
        self.process = self.supervisor.start("api", argv, child_env(self.settings))

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"the API exited with code {self.process.returncode}")
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200

        wait_until(up, 60, "the API")

    def stop(self, sig: signal.Signals) -> None:
        assert self.process is not None
        _kill_group(self.process, sig)
        self.supervisor.children.clear()

    def restart(self, sig: signal.Signals) -> None:
        self.stop(sig)
        self.start()
        self.restarts += 1

    def close(self) -> None:
        self.supervisor.stop()


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[ApiProcess]:
    server = ApiProcess(settings)
    try:
        server.start()
        yield server
    finally:
        server.close()


# --- clients that post a stream of comments, retrying like a platform ---------------------------


@dataclass
class Poster:
    """Threads posting `total` comments, each retried with its same external_id until accepted.

    A platform retries on a connection error, a timeout or a 503 (after a short pause, as a
    client's backoff; no test waits on it). `ids` maps external_id to the comment id answered.
    """

    url: str
    account: Account
    prefix: str
    total: int
    callback_url: str | None
    threads: int = 4
    give_up_seconds: float = 120.0
    ids: dict[str, str] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    retry_after: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def posted(self) -> int:
        return len(self.ids)

    def start(self) -> Poster:
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"poster-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            pytest.fail(f"posting {self.total} comments took over {timeout:.0f}s")
        assert not self.errors, self.errors[:5]
        assert self.posted == self.total

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.total:
                return None
            self._next += 1
            return self._next - 1

    def body(self, n: int) -> dict[str, Any]:
        text_ = f"comment {n} of {self.prefix}: " + (
            "check out http://bit.ly/x free money" if n % 3 == 0 else "thanks, a lovely song"
        )
        body: dict[str, Any] = {
            "external_id": f"{self.prefix}-{n}",
            "content": text_,
            "author": f"author {n % 17}",
            "blog": "https://blog.example.org",
        }
        if self.callback_url:
            body["callback_url"] = self.callback_url
        return body

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.account.headers, timeout=10) as client:
            while (n := self._take()) is not None:
                try:
                    self.ids[f"{self.prefix}-{n}"] = self._post(client, n)
                except Exception as exc:
                    self.errors.append(f"{self.prefix}-{n}: {exc!r}")

    def _post(self, client: httpx.Client, n: int) -> str:
        body = self.body(n)
        pause = threading.Event()
        deadline = time.monotonic() + self.give_up_seconds
        while True:
            try:
                response = client.post("/v1/comments", json=body)
            except httpx.TransportError:
                with self._lock:
                    self.connection_errors += 1
            else:
                with self._lock:
                    self.statuses[response.status_code] += 1
                if response.status_code in (200, 202):
                    return str(response.json()["id"])
                if response.status_code != 503:
                    raise AssertionError(f"{response.status_code}: {response.text}")
                if "retry-after" in response.headers:
                    with self._lock:
                        self.retry_after.add(response.headers["retry-after"])
            if time.monotonic() > deadline:
                raise AssertionError(f"not accepted within {self.give_up_seconds:.0f}s")
            pause.wait(0.1)  # the client's backoff between retries


# --- what the database and the receiver hold ---------------------------------------------------


def assert_scored_once_and_called_back(
    ids: list[str],
    sessions: db.SessionFactory,
    receiver: CallbackReceiver,
    timeout: float,
    on_wait: Callable[[], None] = lambda: None,
) -> dict[str, int]:
    """Wait until every comment is scored and called back; check once-only; return figures.

    Scoring happens exactly once (one verdict row; every callback carries the same verdict).
    Callbacks arrive at least once, each with a valid signature, and every copy of a
    comment's callback carries the same delivery id, so that a platform can deduplicate.
    """
    wanted = set(ids)

    def all_scored() -> bool:
        on_wait()
        return scored_count(sessions, ids) == len(ids)

    wait_until(all_scored, timeout, f"all {len(ids)} comments scored")

    def all_called_back() -> bool:
        on_wait()
        return wanted <= {r.comment_id for r in receiver.received}

    wait_for_received = time.monotonic()
    while not all_called_back():
        if time.monotonic() - wait_for_received > timeout:
            missing = wanted - {r.comment_id for r in receiver.received}
            pytest.fail(f"{len(missing)} callbacks not delivered within {timeout:.0f}s")
        with receiver.changed:
            receiver.changed.wait(0.5)
    counts = verdicts_per_comment(sessions, ids)
    assert set(counts) == wanted and set(counts.values()) == {1}, "one verdict per comment"
    mine = [r for r in receiver.received if r.comment_id in wanted]
    assert all(r.signature_ok for r in mine), "every callback is signed with the site's secret"
    delivery_ids: dict[str, set[str]] = {}
    verdicts: dict[str, set[str]] = {}
    for r in mine:
        delivery_ids.setdefault(r.comment_id, set()).add(r.delivery_id)
        verdicts.setdefault(r.comment_id, set()).add(repr(r.body["verdict"]))
    assert all(len(v) == 1 for v in delivery_ids.values()), "one delivery id per comment"
    assert all(len(v) == 1 for v in verdicts.values()), "every copy carries the same verdict"
    return {
        "comments": len(ids),
        "callbacks": len(mine),
        "duplicate_callbacks": len(mine) - len(wanted),
    }
