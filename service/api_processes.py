"""Several API processes on one port, each handed an equal share of the connections.

How connections reach the processes decides how evenly they share the load: a keep-alive
connection stays with the process that took it. Two ways the kernel offers were measured here
with 32 keep-alive connections (bench/service_load.py) and both were uneven:

- one listening socket shared by the processes (uvicorn's `--workers`): the process that wakes
  first accepts the whole burst (88% and 9% of the CPU);
- a socket of each process's own (SO_REUSEPORT): the kernel picks one by a hash of the client's
  address and port, so the split is a coin toss per connection (19 and 13, 22 and 10).

So the supervisor accepts, and hands each new connection to the next process in turn, over a
Unix socket (SCM_RIGHTS). Each process serves what it is handed with uvicorn, as it would
connections of its own; requests never pass through the supervisor.

`run` starts `count` processes, starts again one that dies (at most `RESTART_LIMIT` times a
minute), and stops them all, gracefully, when it is interrupted (Ctrl-C or SIGTERM raised as
an exception by the caller's handler).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import multiprocessing.connection
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

RESTART_LIMIT = 5  # restarts in the last minute before giving up


def supported() -> bool:
    return hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The supervisor's listening TCP socket."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(backlog)
    return sock


class Dealer:
    """Accepts connections and hands each to the next process's channel, in turn."""

    def __init__(self, listener: socket.socket, channels: list[socket.socket]) -> None:
        self.listener = listener
        self.channels = channels  # one per process; replaced when a process is started again
        self._next = 0
        self._thread = threading.Thread(target=self._run, name="api-dealer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting (the listening socket is shut, which wakes the blocked accept)."""
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self.listener.close()

    def deal(self, connection: socket.socket) -> bool:
        """Hand `connection` to the next process that takes it; False if none does."""
        for _ in range(len(self.channels)):
            channel = self.channels[self._next % len(self.channels)]
            self._next += 1
            try:
                socket.send_fds(channel, [b"c"], [connection.fileno()])
                return True
            except OSError:
                continue  # that process is gone (its replacement gets a new channel)
        return False

    def _run(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # stopped
            with connection:  # the process holds its own copy once handed over
                if connection.family in (socket.AF_INET, socket.AF_INET6):
                    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if not self.deal(connection):
                    log.warning("no API process took a connection; it is closed")


class HandedServer(uvicorn.Server):
    """uvicorn serving the connections handed over on `channel` instead of listening itself."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self.channel = channel
        self._accepting: set[asyncio.Task[Any]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's lifespan; no listener of its own
        loop = asyncio.get_running_loop()

        def receive() -> None:
            try:
                _, fds, _, _ = socket.recv_fds(self.channel, 1, 1)
            except BlockingIOError:
                return
            if not fds:  # the supervisor is gone
                loop.remove_reader(self.channel)
                self.should_exit = True
                return
            self.serve_handed(socket.socket(fileno=fds[0]))

        self.channel.setblocking(False)
        loop.add_reader(self.channel, receive)

    def serve_handed(self, connection: socket.socket) -> None:
        """Serve one handed-over connection, as uvicorn serves the connections it accepts."""
        connection.setblocking(False)
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(self._protocol, connection))
        self._accepting.add(task)
        task.add_done_callback(functools.partial(self._handed, connection))

    def _protocol(self) -> asyncio.Protocol:
        # As uvicorn.Server.startup builds its protocols.
        protocol: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )
        return protocol

    def _handed(self, connection: socket.socket, task: asyncio.Task[Any]) -> None:
        self._accepting.discard(task)
        error = None if task.cancelled() else task.exception()
        if task.cancelled() or error is not None:
            connection.close()  # the transport never took it over
        if error is not None:
            log.warning("a handed-over connection could not be served: %r", error)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().remove_reader(self.channel)
        self.channel.close()
        await super().shutdown(sockets)


def serve_one(channel: socket.socket, log_level: str) -> None:
    """One API process: the app built from the environment, serving handed-over connections."""
    config = uvicorn.Config(
        "service.api.app:create_logged_app",
        factory=True,
        log_level=log_level,
        log_config=None,
        access_log=False,
    )
    HandedServer(config, channel).run()


def run(host: str, port: int, count: int, log_level: str) -> None:
    """Run `count` API processes until interrupted; then stop them and wait for them."""
    spawn = multiprocessing.get_context("spawn")
    listener = listen(host, port)  # fails here, once, if the port is taken
    channels: list[socket.socket] = []

    def start(number: int) -> BaseProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process = spawn.Process(target=serve_one, args=(theirs, log_level), name=f"api-{number}")
        process.start()
        theirs.close()
        if number < len(channels):
            channels[number].close()
            channels[number] = ours
        else:
            channels.append(ours)
        return process

    processes = [start(i) for i in range(count)]
    dealer = Dealer(listener, channels)
    dealer.start()
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
        dealer.stop()
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes its requests, then exits
        deadline = time.monotonic() + 30
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for channel in channels:
            channel.close()
