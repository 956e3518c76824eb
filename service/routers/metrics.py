"""Prometheus metrics."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service import errors
from service.deps import ServicesDep
from service.errors import ApiError
from service.metrics import render

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        **errors.responses(401),
    },
)
def metrics(request: Request, services: ServicesDep) -> Response:
    """Counts, latency, queue depth and model version, the same from any API process."""
    token = services.settings.metrics_token
    if token:
        scheme, _, sent = request.headers.get("authorization", "").partition(" ")
        given = sent.strip().encode("utf-8", "replace")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, token.encode()):
            raise errors.unauthorized("send the metrics token as `Authorization: Bearer <token>`")
    if services.metrics is None:
        raise ApiError(503, "unavailable", "metrics are not set up in this process")
    return Response(render(services.metrics), media_type=CONTENT_TYPE_LATEST)
