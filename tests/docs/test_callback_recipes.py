"""docs/callbacks.md's receivers (Python, PHP, Node.js), each taken from the page and run.

Each gets callbacks signed and sent by the service's own code (`service.callbacks.post`) and
must accept them; a changed body, another secret, an old timestamp or no signature must be
refused. PHP and Node.js are Debian's (`make clients` installs them when missing).
"""

from __future__ import annotations

import json
import queue
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

from service import callbacks
from service.settings import Settings
from tests.docs.markdown import DOCS, blocks
from tests.service.conftest import make_settings, wait_until

RECIPES = {b.option("recipe"): b for b in blocks(DOCS / "callbacks.md") if b.option("recipe")}
LANGUAGES = {"python": "receiver.py", "php": "receiver.php", "js": "receiver.js"}


def command(language: str, path: Path, port: int) -> list[str]:
    if language == "python":
        return [sys.executable, str(path), str(port)]
    tool = {"php": "php", "js": "node"}[language]
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: run `make clients` (as root) or `make test`")
    if language == "php":
        return [tool, "-S", f"127.0.0.1:{port}", str(path)]
    return [tool, str(path), str(port)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def accepts_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Receiver:
    url: str
    secret: str
    lines: queue.Queue[str]

    def printed(self, text: str, timeout: float = 10) -> str:
        """The first line printed that contains `text` (printed lines are read as they come)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if text in line:
                return line
        pytest.fail(f"the receiver printed no line with {text!r} within {timeout:.0f}s")


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


@pytest.fixture(params=sorted(LANGUAGES))
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Receiver]:
    language = request.param
    recipe = RECIPES.get(LANGUAGES[language])
    assert recipe is not None, f"docs/callbacks.md has no `recipe={LANGUAGES[language]}` block"
    assert recipe.language == language, recipe.where
    path = tmp_path / LANGUAGES[language]
    path.write_text(recipe.text)
    port, secret = free_port(), secrets.token_hex(32)  # a secret as the service makes them
    process = subprocess.Popen(
        command(language, path, port),
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "COMMENTGUARD_CALLBACK_SECRET": secret},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    try:
        wait_until(
            lambda: process.poll() is None and accepts_connections(port), 20, f"{language} receiver"
        )
        yield Receiver(f"http://127.0.0.1:{port}/commentguard", secret, lines)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return make_settings(callback_timeout_seconds=10.0)


def body_of(external_id: str) -> bytes:
    """A verdict callback's body, as the service renders it."""
    comment_id = uuid.uuid4()
    return json.dumps(
        {
            "id": str(comment_id),
            "external_id": external_id,
            "site": "https://blog.example",
            "status": "scored",
            "is_test": False,
            "received_at": "2026-12-02T06:00:00Z",
            "verdict": {
                "score": 0.998,
                "decision": "discard",
                "reasons": [
                    {
                        "feature": "word:check out",
                        "description": "\u201ccheck out\u201d",
                        "weight": 1.2,
                    }
                ],
                "model_version": "20261202-060000-abcdef",
                "scored_at": "2026-12-02T06:00:01Z",
            },
            "links": {"self": f"/v1/comments/{comment_id}"},
            "event": "verdict",
        },
        separators=(",", ":"),
    ).encode()


def deliver(
    settings: Settings, receiver: Receiver, secret: str, body: bytes
) -> callbacks.Attempted:
    delivery_id = uuid.uuid4()
    claim = callbacks.Claim(1, receiver.url, secret, body)
    client = callbacks.make_client(settings)
    try:
        return callbacks.post(delivery_id, settings, client, claim)
    finally:
        client.close()


def test_recipe_accepts_a_callback_signed_by_the_service(
    receiver: Receiver, settings: Settings
) -> None:
    attempted = deliver(settings, receiver, receiver.secret, body_of("c-1"))
    assert (attempted.status_code, attempted.error) == (204, None)
    line = receiver.printed(str(attempted.delivery_id))
    assert line.split() == [str(attempted.delivery_id), "verdict", "c-1", "discard"]


def test_recipe_refuses_a_callback_signed_with_another_secret(
    receiver: Receiver, settings: Settings
) -> None:
    attempted = deliver(settings, receiver, secrets.token_hex(32), body_of("c-2"))
    assert attempted.status_code == 401


def _post(receiver: Receiver, body: bytes, signature: str | None) -> int:
    headers = {"Content-Type": "application/json", callbacks.DELIVERY_HEADER: str(uuid.uuid4())}
    if signature is not None:
        headers[callbacks.SIGNATURE_HEADER] = signature
    return httpx.post(receiver.url, content=body, headers=headers, timeout=10).status_code


def test_recipe_refuses_a_changed_body_an_old_timestamp_or_no_signature(
    receiver: Receiver,
) -> None:
    body, now = body_of("c-3"), int(time.time())
    changed = body.replace(b'"discard"', b'"ham"')
    assert _post(receiver, body, callbacks.signature(receiver.secret, now, body)) == 204
    assert _post(receiver, changed, callbacks.signature(receiver.secret, now, body)) == 401
    stale = now - 600
    assert _post(receiver, body, callbacks.signature(receiver.secret, stale, body)) == 401
    assert _post(receiver, body, None) == 401
    assert _post(receiver, body, "t=notanumber,v1=00") == 401
