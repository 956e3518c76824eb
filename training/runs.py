"""Retraining runs' records: the only module that writes them.

Every run leaves `models/runs/<run id>.json`, rewritten whole (atomically) at each step of its
life: `queued` (asked for, waiting for a worker), `running`, then `done` (a candidate trained
and gated, promoted or not), `failed` (with the error) or `skipped` (another retrain held the
lock). A run that trained a candidate is also kept in its version's folder (`run.json`).
Readers (the API, the console, the metrics, the label count) read them through this module too.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from classifier.artifact import ArtifactError, version_dir

RUNS_DIR = "runs"
RUN_FILE = "run.json"


class RunStatus(StrEnum):
    """Where a run is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


def new_run_id(now: datetime | None = None) -> str:
    """A sortable run id such as `run-20261128-030000-1a2b3c`."""
    now = now or datetime.now(UTC)
    return f"run-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- writing: one function per step of a run's life ------------------------------------------


def record_queued(models_dir: Path, trigger: str) -> str:
    """Record a new run as queued; returns its id (the caller queues its task)."""
    run_id = new_run_id()
    # To the microsecond: the run learns from the labels given before this moment.
    queued_at = datetime.now(UTC).isoformat()
    _write(models_dir, run_id, RunStatus.QUEUED, {"trigger": trigger, "queued_at": queued_at})
    return run_id


def record_not_queued(models_dir: Path, run_id: str, error: Exception) -> None:
    """The run's task could not be queued: failed, never started."""
    _write(models_dir, run_id, RunStatus.FAILED, {"error": f"not queued: {error}"})


def record_running(models_dir: Path, run_id: str, base: dict[str, Any], started: datetime) -> None:
    """The run holds the retrain lock and starts; `base` is what its record keeps throughout
    (its trigger, when it was queued)."""
    _write(models_dir, run_id, RunStatus.RUNNING, {**base, "started_at": started.isoformat()})


def record_failed(
    models_dir: Path, run_id: str, base: dict[str, Any], started: datetime, error: Exception
) -> None:
    """The run raised: failed, with the error."""
    _write(
        models_dir,
        run_id,
        RunStatus.FAILED,
        {
            **base,
            "started_at": started.isoformat(),
            "finished_at": _now(),
            "error": f"{type(error).__name__}: {error}",
        },
    )


def record_skipped(models_dir: Path, run_id: str, base: dict[str, Any], reason: str) -> None:
    """Another retrain held the lock: skipped, with the reason."""
    _write(models_dir, run_id, RunStatus.SKIPPED, {**base, "finished_at": _now(), "error": reason})


def record_done(
    models_dir: Path, run_id: str, version_path: Path, numbers: dict[str, Any]
) -> dict[str, Any]:
    """The run trained and gated a candidate (saved in `version_path`): done, with its numbers,
    in its version's folder and among the runs. Returns the record as the version keeps it."""
    record = {**numbers, "status": RunStatus.DONE.value, "error": None, "finished_at": _now()}
    _write_json(version_path / RUN_FILE, record)
    # Keep what was recorded of the run before (its trigger, when it was queued): a reader
    # polling the record must not see it "done" without them.
    before = read_run(models_dir, run_id) or {}
    _write_run(models_dir, run_id, {**before, **record})
    return record


def _write(models_dir: Path, run_id: str, status: RunStatus, fields: dict[str, Any]) -> None:
    _write_run(models_dir, run_id, {**fields, "status": status.value})


def _write_run(models_dir: Path, run_id: str, record: dict[str, Any]) -> None:
    path = _run_path(models_dir, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, {**record, "run_id": run_id})


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def _run_path(models_dir: Path, run_id: str) -> Path:
    # Run ids are checked like version ids: nothing outside the runs folder is ever read.
    version_dir(models_dir, run_id)
    return models_dir / RUNS_DIR / f"{run_id}.json"


# --- reading ---------------------------------------------------------------------------------


def read_run(models_dir: Path, run_id: str) -> dict[str, Any] | None:
    """A run's record, or None if there is no such run."""
    try:
        path = _run_path(models_dir, run_id)
    except ArtifactError:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def iter_runs(models_dir: Path, newest_first: bool = False) -> Iterator[dict[str, Any]]:
    """Each run's record, read as it is reached, oldest (or newest) first by run id."""
    folder = models_dir / RUNS_DIR
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("run-*.json"), reverse=newest_first):
        try:
            yield json.loads(path.read_text())
        except (OSError, ValueError):
            continue


def list_runs(models_dir: Path) -> list[dict[str, Any]]:
    """Every run's record, oldest first."""
    return list(iter_runs(models_dir))
