"""JSON log lines, and one request id from the API through the worker to the callback."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.embedded import Supervisor
from service.logs import (
    JsonFormatter,
    RequestIdFilter,
    TextFormatter,
    bound,
    configure_logging,
)
from service.settings import Settings
from tests.service.conftest import (
    CallbackReceiver,
    SettingsFor,
    create_account,
    make_settings,
    serve_app,
    wait_until,
)

pytestmark = [pytest.mark.xdist_group("logging"), pytest.mark.slow]


@pytest.fixture(scope="module")
def settings(settings_for: SettingsFor, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """This module's settings: JSON lines at INFO into one file that API and workers share."""
    folder = tmp_path_factory.mktemp("logs")
    return settings_for(
        log_format="json",
        log_level="INFO",
        log_file=folder / "commentguard.log",
    )


@pytest.fixture
def logging_configured(settings: Settings) -> Iterator[Path]:
    """This process logs as the API would (restored afterwards)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging(settings)
    try:
        assert settings.log_file is not None
        yield settings.log_file
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_follow_one_request_id_from_intake_to_worker_to_callback(
    settings: Settings,
    workers: Supervisor,
    receiver: CallbackReceiver,
    logging_configured: Path,
) -> None:
    account = create_account(settings, "logging")
    request_id = "req-intake-to-callback-1"
    with serve_app(settings) as url:
        response = httpx.post(
            f"{url}/v1/comments",
            json={
                "content": "Check out my channel http://bit.ly/x",
                "blog": "https://logs.example",
                "external_id": "log-1",
                "callback_url": receiver.url("/hook"),
            },
            headers={**account.headers, "X-Request-Id": request_id},
            timeout=10,
        )
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-Id"] == request_id
    comment_id = response.json()["id"]
    receiver.wait(
        lambda: any(r.comment_id == comment_id for r in receiver.received), 30, "the callback"
    )
    callback = next(r for r in receiver.received if r.comment_id == comment_id)
    assert callback.request_id == request_id
    assert callback.signature_ok

    def seen(logger: str) -> bool:
        return any(
            line["logger"] == logger and line["request_id"] == request_id
            for line in read_lines(logging_configured)
        )

    # The callback's log line is written after its response; wait for it, bounded.
    wait_until(lambda: seen("service.callbacks"), 15, "the worker's callback log line")
    lines = [line for line in read_lines(logging_configured) if line["request_id"] == request_id]
    access = next(line for line in lines if line["logger"] == "commentguard.access")
    assert access["path"] == "/v1/comments" and access["status"] == 202
    scored = next(line for line in lines if line["logger"] == "service.tasks")
    assert scored["comment_id"] == comment_id
    delivered = next(line for line in lines if line["logger"] == "service.callbacks")
    assert "delivered" in delivered["message"]
    # The API process wrote the first line, a worker process the others.
    assert scored["process"] != access["process"]


def test_every_log_line_is_one_json_object(settings: Settings, logging_configured: Path) -> None:
    account = create_account(settings, "json-lines")
    with serve_app(settings) as url:
        response = httpx.get(f"{url}/v1/sites", headers=account.headers, timeout=10)
    generated = response.headers["X-Request-Id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    lines = read_lines(logging_configured)  # raises if any line is not JSON
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message", "request_id"} <= set(line)
    assert any(
        line["request_id"] == generated and line["path"] == "/v1/sites"
        for line in lines
        if line["logger"] == "commentguard.access"
    )


def test_replace_an_unusable_request_id(settings: Settings, logging_configured: Path) -> None:
    with serve_app(settings) as url:
        response = httpx.get(
            f"{url}/healthz", headers={"X-Request-Id": "bad id\twith spaces" * 20}, timeout=10
        )
    assert response.status_code == 200
    assert len(response.headers["X-Request-Id"]) == 32


def test_format_exceptions_and_text_lines() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("commentguard.test-format")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with bound("abc-123"):
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("it failed", extra={"comment_id": "c-1"})
        logger.warning("unbound")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "abc-123"
    assert first["comment_id"] == "c-1"
    assert "ValueError: boom" in first["exception"]
    assert second["request_id"] is None
    text = TextFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "plain %s", ("line",), None)
    assert text.format(record).endswith("INFO x [-]: plain line")
    assert make_settings(environment="local").json_logs is False
    assert make_settings(environment="local", log_format="json").json_logs is True


def test_keep_a_request_path_with_line_breaks_on_its_line_in_text_logs(
    settings: Settings, tmp_path: Path
) -> None:
    text_settings = settings.model_copy(
        update={"log_format": "text", "log_file": tmp_path / "text.log"}
    )
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging(text_settings)
    forged = "2026-12-02 00:00:00,000 WARNING service.auth [-]: admin logged in"
    try:
        with serve_app(text_settings) as url:
            path = "/v1/nothing%0a" + forged.replace(" ", "%20") + "%0d%0a%1b[2J"
            response = httpx.get(url + path, timeout=10)
            assert response.status_code in (401, 404)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    lines = (tmp_path / "text.log").read_text().splitlines()
    access = [line for line in lines if "commentguard.access" in line and "/v1/nothing" in line]
    assert len(access) == 1, lines
    assert "\\n2026-12-02 00:00:00,000 WARNING service.auth" in access[0]
    assert "\\x1b[2J" in access[0]
    assert not any(line.startswith(forged) for line in lines), "no line of the request's own"
