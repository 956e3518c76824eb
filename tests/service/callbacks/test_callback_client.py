"""service.callbacks' HTTP client against a real HTTP server on 127.0.0.1: it connects to the
checked address, names the host, keeps connections alive and follows no redirect."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from service.callbacks import CallbackClient, Claim, Target, post, verify_signature
from tests.service.conftest import make_settings

HOST = "callbacks.platform.invalid"  # never resolves: only the pinned address can be reached


@dataclass
class Server:
    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    connections: set[tuple[str, int]] = field(default_factory=set)
    status: int = 200
    location: str | None = None


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(0)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.connections.add(self.client_address)
            state.requests.append({"path": self.path, "headers": self.headers, "body": body})
            self.send_response(state.status)
            if state.location:
                self.send_header("Location", state.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def pinned(server: Server, path: str = "/hooks/verdict?site=7") -> Target:
    return Target(f"http://{HOST}:{server.port}{path}", HOST, server.port, "127.0.0.1")


def test_post_to_pinned_address_with_host_header(server: Server) -> None:
    client = CallbackClient(timeout=3.0)
    try:
        status = client.post(pinned(server), b'{"a":1}', {"Content-Type": "application/json"})
    finally:
        client.close()
    assert status == 200
    (request,) = server.requests
    assert request["path"] == "/hooks/verdict?site=7"
    assert request["headers"]["Host"] == f"{HOST}:{server.port}"
    assert request["headers"]["User-Agent"] == "commentguard-callbacks/1"
    assert request["body"] == b'{"a":1}'


def test_reuse_connection_for_callbacks_to_same_target(server: Server) -> None:
    client = CallbackClient(timeout=3.0)
    try:
        statuses = [client.post(pinned(server), b"{}", {}) for _ in range(5)]
    finally:
        client.close()
    assert statuses == [200] * 5
    assert len(server.requests) == 5
    assert len(server.connections) == 1


def test_post_signed_attempt_and_refuse_redirect(server: Server) -> None:
    settings = make_settings(callback_allowed_hosts=[f"127.0.0.1:{server.port}"])
    client = CallbackClient(timeout=3.0)
    claim = Claim(1, f"http://127.0.0.1:{server.port}/hook", "s3cret", b'{"id":"x"}')
    delivery = uuid.uuid4()
    try:
        delivered = post(delivery, settings, client, claim)
        server.status, server.location = 302, f"http://127.0.0.1:{server.port}/elsewhere"
        redirected = post(delivery, settings, client, claim)
    finally:
        client.close()
    assert (delivered.status_code, delivered.error) == (200, None)
    assert (redirected.status_code, redirected.error) == (302, "HTTP 302")
    assert [r["path"] for r in server.requests] == ["/hook", "/hook"]  # /elsewhere never asked
    headers = server.requests[0]["headers"]
    assert headers["X-Commentguard-Delivery"] == str(delivery)
    assert verify_signature("s3cret", headers["X-Commentguard-Signature"], b'{"id":"x"}')


def test_record_unreachable_callback_as_error(server: Server) -> None:
    settings = make_settings(callback_allowed_hosts=["127.0.0.1"])
    client = CallbackClient(timeout=1.0)
    gone = Claim(1, "http://127.0.0.1:9/hook", "s3cret", b"{}")  # discard port: nothing listens
    try:
        attempted = post(uuid.uuid4(), settings, client, gone)
    finally:
        client.close()
    assert attempted.status_code is None
    assert attempted.error is not None and "Connection" in attempted.error


def test_refuse_unsafe_url_before_connecting(server: Server) -> None:
    settings = make_settings(callback_allowed_hosts=[])
    client = CallbackClient(timeout=1.0)
    claim = Claim(1, f"http://127.0.0.1:{server.port}/hook", "s3cret", b"{}")
    try:
        attempted = post(uuid.uuid4(), settings, client, claim)
    finally:
        client.close()
    assert attempted.error is not None and attempted.error.startswith("refused:")
    assert server.requests == []
