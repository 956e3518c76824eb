"""The API's ASGI middleware: request ids and the access log, rate limits, the body-size cap.

Each wraps a plain service module (service/logs.py, service/ratelimit.py) that knows nothing of
HTTP frameworks.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import logs
from service.api import errors
from service.ratelimit import RateLimiter

log = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Binds a request id for each HTTP request, answers it as `X-Request-Id`, logs the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                sent = value.decode("latin-1")
                break
        rid = logs.clean_request_id(sent)
        header = (b"x-request-id", rid.encode())
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        token = logs.request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # Probes and scrapes come every few seconds: their lines are DEBUG.
            level = logging.DEBUG if scope["path"] in logs.QUIET_PATHS else logging.INFO
            if logs.access_log.isEnabledFor(level):
                logs.access_log.log(
                    level,
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    },
                )
            logs.request_id.reset(token)


class RateLimitMiddleware:
    """Applies the limits to `/v1` and console requests before anything reads their body; 429
    if over."""

    def __init__(self, app: ASGIApp, prefix: tuple[str, ...] = ("/v1/", "/console")) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        limiter: RateLimiter | None = getattr(
            getattr(scope["app"].state, "services", None), "limiter", None
        )
        if limiter is None or not limiter.enabled:
            await self.app(scope, receive, send)
            return
        key = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    key = token.strip()
                break
        client = scope.get("client")
        limited = await limiter.check(key, client[0] if client else None)
        if limited is None:
            await self.app(scope, receive, send)
            return
        response = errors.error_response(
            429,
            "rate_limited",
            limited.message,
            details={"scope": limited.scope, "limit": limited.limit,
                     "window_seconds": limited.window_seconds},
            headers={"Retry-After": str(limited.retry_after)},
        )  # fmt: skip
        await response(scope, receive, send)


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with a JSON 413, before anything parses them.

    A declared Content-Length is checked up front; a chunked body is read (up to the limit)
    before the app sees it, then replayed.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, replay_body(b"".join(chunks), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = errors.error_response(
            413, "payload_too_large", f"the request body exceeds {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the app the body already read, then whatever the client sends."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
