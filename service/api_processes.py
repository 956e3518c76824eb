"""Several API processes on one port, each with a listening socket of its own (SO_REUSEPORT).

uvicorn's `--workers` shares one listening socket between its processes, and the kernel wakes
whichever is waiting: under load one process ends up with most keep-alive connections (seen
here at 88% and 9% of the CPU). With SO_REUSEPORT each process listens on its own socket and
the kernel spreads new connections evenly between them by their address hash.

`run` starts `count` processes, starts again one that dies (at most `RESTART_LIMIT` times a
minute), and stops them all, gracefully, when it is interrupted (Ctrl-C or SIGTERM raised as
an exception by the caller's handler).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import socket
import time
from multiprocessing.process import BaseProcess

log = logging.getLogger(__name__)

RESTART_LIMIT = 5  # restarts in the last minute before giving up


def supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket that other processes may bind to the same address too."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def serve_one(host: str, port: int, log_level: str) -> None:
    """One API process: the app built from the environment, on a socket of its own."""
    import uvicorn

    config = uvicorn.Config(
        "service.app:create_logged_app",
        factory=True,
        log_level=log_level,
        log_config=None,
        access_log=False,
    )
    uvicorn.Server(config).run(sockets=[listen(host, port)])


def run(host: str, port: int, count: int, log_level: str) -> None:
    """Run `count` API processes until interrupted; then stop them and wait for them."""
    spawn = multiprocessing.get_context("spawn")

    def start(number: int) -> BaseProcess:
        process = spawn.Process(
            target=serve_one, args=(host, port, log_level), name=f"api-{number}"
        )
        process.start()
        return process

    listen(host, port).close()  # fail here, once, if the port is taken
    processes = [start(i) for i in range(count)]
    restarts: list[float] = []
    try:
        while True:
            multiprocessing.connection.wait([p.sentinel for p in processes], timeout=1.0)
            for i, process in enumerate(processes):
                if process.is_alive():
                    continue
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < 60] + [now]
                if len(restarts) > RESTART_LIMIT:
                    raise SystemExit(f"{process.name} keeps exiting (code {process.exitcode})")
                log.warning("%s exited with code %s; starting it again", process.name,
                            process.exitcode)  # fmt: skip
                processes[i] = start(i)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes its requests, then exits
        deadline = time.monotonic() + 30
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
