"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api import errors
from service.api.deps import ServicesDep
from service.db import ping
from service.problems import RETRY_AFTER_SECONDS
from service.schemas import HealthOut, ReadyOut

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> HealthOut:
    """The process is alive."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=ReadyOut, responses=errors.responses(503))
def readyz(services: ServicesDep) -> ReadyOut | JSONResponse:
    """The model is loaded and the database and Redis answer."""
    services.models.reload_if_changed()
    checks = {"model": "ok" if services.models.loaded else "no model loaded"}
    try:
        ping(services.engine)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    if services.queue is None:
        checks["redis"] = "not configured (COMMENTGUARD_REDIS_URL)"
    else:
        try:
            services.queue.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unreachable: {type(exc).__name__}"
    failed = {name: state for name, state in checks.items() if state != "ok"}
    if failed:
        log.warning("not ready: %s", failed)
        return errors.error_response(
            503,
            "not_ready",
            "; ".join(f"{name}: {state}" for name, state in failed.items()),
            details=checks,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    version = services.models.current.version
    return ReadyOut(status="ready", checks=checks, model_version=version)
