"""The commands: keys create, db upgrade, and `serve` running (and stopping) the whole stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import inspect
from typer.testing import CliRunner

from service import db, security
from service.cli import app
from service.embedded import free_port
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
