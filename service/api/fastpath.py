"""The hot routes' common case, answered without the router: `POST /v1/check` and
`POST /v1/comments`.

Their own work is a few lines each (service/api/routes/comments.py: `run_check`, `run_submit`);
between the middleware and those lines FastAPI and Starlette add about a dozen layers per
request (the exception middleware, the exit stack, routing, the request object, dependency
solving for the key and the body, the response wrapper), which cost as much CPU as a check's
database insert. `FastPath` sits inside the middleware that every request passes (request id,
rate limits, body size), so those still apply, and answers such a request itself when nothing
about it is unusual: a JSON body that validates as the route's schema, and an API key that
this process has authenticated recently (the same cache the dependency reads). Anything else
(no key or an unknown one, a content type or body that would not validate, another path or
method) goes on to the app with the body replayed, which answers it exactly as before; nothing
has been done with it yet. An exception raised by the route's work is answered by the app's
exception handlers, as the exception middleware would.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.deps import api_key_of
from service.api.middleware import replay_body
from service.api.routes.comments import run_check, run_submit
from service.problems import ApiError
from service.runtime import Services
from service.schemas import CheckIn, WebhookCommentIn

Work = Callable[[Services, int, Any], Awaitable[Response]]
# Path (POST) -> the body's schema and the route's work once authenticated and valid.
ROUTES: dict[str, tuple[type[BaseModel], Work]] = {
    "/v1/check": (CheckIn, run_check),
    "/v1/comments": (WebhookCommentIn, run_submit),
}


class FastPath:
    """Answers the `ROUTES` when authenticated from the key cache and valid; hands everything
    else to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        schema, work = route
        services: Services | None = getattr(scope["app"].state, "services", None)
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        found = _understood(services, scope, body, schema) if services is not None else None
        if found is None:
            await self.app(scope, replay_body(body, receive), send)
            return
        account_id, valid = found
        assert services is not None
        try:
            response = await work(services, account_id, valid)
        except Exception as exc:
            handler = _handler_for(scope["app"], exc)
            if handler is None:
                raise  # as the exception middleware would: the server error middleware's
            response = handler(Request(scope, receive), exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)


def _understood(
    services: Services, scope: Scope, body: bytes, schema: type[BaseModel]
) -> tuple[int, BaseModel] | None:
    """The account and the body, when this request is plain and valid, by a cached key."""
    authorization = content_type = None
    for name, value in scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
    if content_type is None or content_type.split(";")[0].strip().lower() != "application/json":
        return None
    try:
        key = api_key_of(authorization or "")
    except ApiError:
        return None
    account_id = services.keys.get(key, services.settings.secret_key)
    if account_id is None:
        return None
    try:
        return account_id, schema.model_validate(json.loads(body))
    except (ValueError, ValidationError, RecursionError):
        # JSONDecodeError and UnicodeDecodeError are ValueErrors; RecursionError is a body
        # nested too deep for json.loads. The app answers each (400 or 422).
        return None


def _handler_for(app: Any, exc: Exception) -> Any:
    """The app's handler for `exc` by its classes, as Starlette's exception middleware finds
    it; None for one that only `Exception`'s handler takes (the server error middleware's)."""
    handlers = app.exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None
