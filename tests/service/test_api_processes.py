"""Several API processes on one port: the supervisor hands connections out in turn, so that
keep-alive connections are shared evenly, and every handed connection is served."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import uvicorn

from service import db
from service.api_processes import Dealer, HandedServer, listen
from service.embedded import child_env, free_port
from service.settings import Settings
from tests.service.conftest import make_settings, run_async, wait_until


def test_the_dealer_hands_connections_out_in_turn_and_skips_a_gone_process() -> None:
    listener = listen("127.0.0.1", 0)
    port = listener.getsockname()[1]
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(3)]
    ours = [pair[0] for pair in pairs]
    pairs[2][1].close()  # the third process is gone
    dealer = Dealer(listener, ours)
    dealer.start()
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
    try:
        handed: list[list[socket.socket]] = [[], []]
        for n, client in enumerate(clients):
            client.sendall(b"hello %d" % n)
        for index in (0, 1):
            for _ in range(3):
                _, fds, _, _ = socket.recv_fds(pairs[index][1], 1, 1)
                handed[index].append(socket.socket(fileno=fds[0]))
        received = sorted(c.recv(100) for both in handed for c in both)
        assert received == sorted(b"hello %d" % n for n in range(6))
        assert [len(h) for h in handed] == [3, 3]
    finally:
        dealer.stop()
        for client in clients:
            client.close()
        for pair in pairs:
            for end in pair:
                end.close()


def test_a_handed_connection_that_cannot_be_served_is_closed_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - unused
        raise AssertionError("no request reaches the app")

    channel, _other = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server = HandedServer(uvicorn.Config(app), channel)
    not_a_stream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # asyncio refuses it

    async def hand_over() -> None:
        server.serve_handed(not_a_stream)
        assert len(server._accepting) == 1
        await asyncio.wait(list(server._accepting))

    try:
        with caplog.at_level(logging.WARNING, logger="service.api_processes"):
            run_async(hand_over())
        assert server._accepting == set()
        assert not_a_stream.fileno() == -1, "the connection was closed"
        assert "could not be served" in caplog.text and "Stream Socket" in caplog.text
    finally:
        not_a_stream.close()
        channel.close()
        _other.close()


@pytest.fixture
def settings(models_dir: Path, tmp_path: Path) -> Settings:
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}", models_dir=models_dir, data_dir=tmp_path
    )
    db.upgrade(settings)
    return settings


def test_two_api_processes_serve_keep_alive_connections_four_each(settings: Settings) -> None:
    port = free_port()
    code = f"from service import api_processes; api_processes.run('127.0.0.1', {port}, 2, 'info')"
    runner = subprocess.Popen(
        [sys.executable, "-c", code], env=child_env(settings) | {"COMMENTGUARD_REDIS_URL": ""}
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if runner.poll() is not None:
            pytest.fail(f"the API processes exited with code {runner.returncode}")
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    clients = [httpx.Client(base_url=base, timeout=10) for _ in range(8)]
    try:
        wait_until(ready, 90, "the API processes")
        wait_until(lambda: len(_api_processes(runner.pid)) == 2, 30, "both API processes")
        for _ in range(3):
            assert [c.get("/healthz").status_code for c in clients] == [200] * 8
        mine = {
            c.laddr.port
            for p in [psutil.Process()]
            for c in p.net_connections("tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        }
        assert len(mine) == 8, "each client kept its one connection"
        served = [
            sum(1 for c in p.net_connections("tcp") if c.raddr and c.raddr.port in mine)
            for p in _api_processes(runner.pid)
        ]
        assert served == [4, 4]
    finally:
        for client in clients:
            client.close()
        children = psutil.Process(runner.pid).children(recursive=True)
        runner.send_signal(signal.SIGINT)  # as Ctrl-C: the processes stop, gracefully
        runner.wait(timeout=60)
        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive


def _api_processes(pid: int) -> list[psutil.Process]:
    """The runner's API processes (not multiprocessing's resource tracker)."""
    found = []
    for child in psutil.Process(pid).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found
