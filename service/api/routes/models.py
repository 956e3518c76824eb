"""The model registry: versions and their status, retraining, activation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from classifier.artifact import active_version
from classifier.registry import versions
from service.api import errors
from service.api.deps import AdminUser, CurrentUser, QueueDep, SettingsDep
from service.learning.retraining import activate_version, queue_retrain
from service.problems import ApiError
from service.schemas import ActivatedOut, ModelsOut, ModelVersionOut, RetrainQueuedOut
from training.runs import list_runs, read_run

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelsOut, responses=errors.responses(401))
def list_models(_user: CurrentUser, settings: SettingsDep) -> ModelsOut:
    """Every model version with its status, metrics and promotion-gate numbers."""
    return ModelsOut(
        active=active_version(settings.models_dir),
        versions=[ModelVersionOut(**row) for row in versions(settings.models_dir)],
    )


@router.post(
    "/retrain",
    status_code=202,
    response_model=RetrainQueuedOut,
    responses=errors.responses(401, 403, 503),
)
def request_retrain(_admin: AdminUser, settings: SettingsDep, queue: QueueDep) -> RetrainQueuedOut:
    """Queue a retrain; its outcome is at the returned url."""
    run_id = queue_retrain(settings, queue, "api")
    return RetrainQueuedOut(run_id=run_id, status="queued", url=f"/v1/models/runs/{run_id}")


@router.get("/runs", responses=errors.responses(401))
def list_retrain_runs(
    _user: CurrentUser,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    """The newest retrain runs first: queued, running, done (with the gate's decision and
    numbers), failed or skipped."""
    return list(reversed(list_runs(settings.models_dir)))[:limit]


@router.get("/runs/{run_id}", responses=errors.responses(401, 404))
def get_run(run_id: str, _user: CurrentUser, settings: SettingsDep) -> dict[str, Any]:
    """A retrain run: queued, running, done (with the gate's decision and numbers), failed or
    skipped."""
    record = read_run(settings.models_dir, run_id)
    if record is None:
        raise ApiError(404, "not_found", f"no retrain run {run_id}")
    return record


@router.post(
    "/{version}/activate",
    response_model=ActivatedOut,
    responses=errors.responses(401, 403, 404, 409),
)
def activate_model(version: str, _admin: AdminUser, settings: SettingsDep) -> ActivatedOut:
    """Verify a version and make it the one every process serves (within seconds)."""
    previous = activate_version(settings, version, reason="activated through the API")
    return ActivatedOut(active=version, previous=previous)
