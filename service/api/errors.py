"""One error shape for every failure, `{"error": {"code", "message", "details"}}`; no tracebacks."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.intake.comments import ExternalIdConflict
from service.intake.sites import SiteLimitReached
from service.problems import RETRY_AFTER_SECONDS, ApiError
from service.schemas import ErrorOut
from service.scoring.models import ModelNotLoaded

log = logging.getLogger(__name__)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": jsonable_encoder(details)}}
    return JSONResponse(body, status_code=status, headers=headers)


def unavailable(what: str) -> JSONResponse:
    return error_response(
        503,
        "unavailable",
        f"{what} is unavailable; retry later",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


# For the OpenAPI schema: routes list the errors they can answer with, all of this shape.
def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {
        401: "Missing or unknown API key",
        404: "Not found (or not this account's)",
        409: "Conflict with the current state (an external_id already naming another comment, "
        "a model artifact that fails verification): details name what it conflicts with",
        413: "Content or request body too large",
        422: "Malformed JSON or invalid fields (details lists each field error)",
        429: "Rate limit reached for the API key or client IP (see Retry-After)",
        503: "Database, queue or model unavailable (see Retry-After)",
    }
    return {s: {"model": ErrorOut, "description": text.get(s, "Error")} for s in statuses}


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the one error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        unknown = [
            str(e["loc"][-1])
            for e in exc.errors()
            if e.get("type") == "extra_forbidden" and e["loc"]
        ]
        message = "the request is not valid"
        if unknown:
            message += f": unknown field {', '.join(map(repr, unknown))}"
        return error_response(422, "validation_error", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database(_request: Request, exc: Exception) -> JSONResponse:
        log.error("database unavailable: %s", getattr(exc, "orig", None) or exc)
        return unavailable("the database")

    @app.exception_handler(DataError)
    async def _data(_request: Request, exc: DataError) -> JSONResponse:
        log.info("database refused a value: %s", exc.orig)
        return error_response(422, "invalid_data", "a value cannot be stored (out of range?)")

    @app.exception_handler(SiteLimitReached)
    async def _site_limit(request: Request, exc: SiteLimitReached) -> Response:
        # Raised where a site is created, shared by every path: the Akismet calls answer in
        # their own protocol, `invalid` with the reason in Akismet's debug header.
        if request.url.path.startswith(("/1.1/", "/1.2/")):
            return PlainTextResponse("invalid", headers={"X-akismet-debug-help": str(exc)})
        details = {"limit": exc.limit}
        return error_response(422, "site_limit_reached", str(exc), details)

    @app.exception_handler(ExternalIdConflict)
    async def _conflict(_request: Request, exc: ExternalIdConflict) -> JSONResponse:
        details = {"comment_id": str(exc.comment_id), "fields": exc.fields}
        return error_response(409, "external_id_conflict", str(exc), details)

    @app.exception_handler(PoolTimeout)
    async def _pool(_request: Request, exc: PoolTimeout) -> JSONResponse:
        log.error("database pool exhausted: %s", exc)
        return unavailable("the database")

    @app.exception_handler(ModelNotLoaded)
    async def _model(_request: Request, exc: ModelNotLoaded) -> JSONResponse:
        log.error("%s", exc)
        return unavailable("the model")

    @app.exception_handler(Exception)
    async def _anything(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; it has been logged")
