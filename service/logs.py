"""Logging: one JSON object per line, and a request id that follows a comment everywhere.

The id comes from the request's `X-Request-Id` header (or is made up), is bound to the request
in a context variable, travels with every Celery task queued while it is bound (a message
header), is bound again in the worker while the task runs, and is sent on the callback POST as
`X-Request-Id`. Every log line written meanwhile carries it as `request_id`.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from service.settings import Settings

REQUEST_ID_HEADER = "X-Request-Id"
# The Celery message header that carries the id from the producer to the worker.
TASK_HEADER = "commentguard_request_id"

request_id: ContextVar[str | None] = ContextVar("commentguard_request_id", default=None)

_VALID_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
access_log = logging.getLogger("commentguard.access")
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

# LogRecord attributes that are not "extra" fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
}


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str:
    """The caller's id if it is a sane token (printable, at most 128 characters), else a new one."""
    if value and _VALID_ID.fullmatch(value):
        return value
    return new_request_id()


@contextmanager
def bound(value: str | None) -> Iterator[None]:
    """Bind `value` as the current request id for the block."""
    token = request_id.set(value)
    try:
        yield
    finally:
        request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Puts the bound request id on every record (as `request_id`, None when unbound)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id.get(),
            "process": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(entry, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


# Line breaks and other control characters, which a request could use to forge log lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`text` on one line: each control character written as its escape (\\n, \\x1b …)."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


class TextFormatter(logging.Formatter):
    """Plain lines with the request id in brackets ("-" when none is bound).

    A message is kept on its line (control characters escaped), so that what a request sent
    (a path with `%0a` in it) cannot start a line of its own; a traceback still follows on
    lines of its own."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = "-"
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


def configure_logging(settings: Settings) -> None:
    """Send the root logger's lines to stderr (and `log_file`), as JSON or text per settings."""
    formatter: logging.Formatter = JsonFormatter() if settings.json_logs else TextFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(settings.log_file, encoding="utf-8"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    logging.captureWarnings(True)  # Python warnings become log lines too
    for chatty in ("httpx", "alembic.runtime.plugins"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # uvicorn's own loggers go through the root handlers, in the same format.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


# --- Celery: the id travels as a message header -------------------------------------------


def install_celery_propagation() -> None:
    """Connect the signals that carry the bound id into queued tasks and bind it while they run."""
    from celery.signals import before_task_publish, task_postrun, task_prerun

    before_task_publish.connect(_add_header, weak=False, dispatch_uid="cg-request-id-publish")
    task_prerun.connect(_bind_in_task, weak=False, dispatch_uid="cg-request-id-prerun")
    task_postrun.connect(_unbind_in_task, weak=False, dispatch_uid="cg-request-id-postrun")


def _add_header(headers: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    rid = request_id.get()
    if rid is not None and headers is not None:
        headers[TASK_HEADER] = rid


def _bind_in_task(task: Any = None, **_kwargs: Any) -> None:
    rid = getattr(task.request, TASK_HEADER, None) if task is not None else None
    if rid is None and task is not None:
        rid = (getattr(task.request, "headers", None) or {}).get(TASK_HEADER)
    request_id.set(rid if isinstance(rid, str) else None)


def _unbind_in_task(**_kwargs: Any) -> None:
    request_id.set(None)
