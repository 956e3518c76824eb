"""Prometheus metrics."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.api import errors
from service.api.deps import ServicesDep
from service.metrics import render
from service.problems import ApiError

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        **errors.responses(401, 403),
    },
)
def metrics(request: Request, services: ServicesDep) -> Response:
    """Counts, latency, queue depth and model version, the same from any API process."""
    settings = services.settings
    token = settings.metrics_token
    if token:
        scheme, _, sent = request.headers.get("authorization", "").partition(" ")
        given = sent.strip().encode("utf-8", "replace")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, token.encode()):
            raise errors.unauthorized("send the metrics token as `Authorization: Bearer <token>`")
    elif not _allowed(
        request.client.host if request.client else "", settings.metrics_allowed_networks
    ):
        raise ApiError(
            403,
            "forbidden",
            "metrics answer only the networks in COMMENTGUARD_METRICS_ALLOWED_NETWORKS, or "
            "with COMMENTGUARD_METRICS_TOKEN",
        )
    if services.metrics is None:
        raise ApiError(503, "unavailable", "metrics are not set up in this process")
    return Response(render(services.metrics), media_type=CONTENT_TYPE_LATEST)


def _allowed(host: str, networks: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # not an IP (a Unix socket's peer, a test client's name)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)
