"""A retraining run's record through its life, as training/runs.py (its only writer) keeps it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from training.runs import (
    RunStatus,
    iter_runs,
    read_run,
    record_done,
    record_failed,
    record_not_queued,
    record_queued,
    record_running,
    record_skipped,
)


def test_keep_a_queued_runs_trigger_through_to_done(tmp_path: Path) -> None:
    run_id = record_queued(tmp_path, "labels:50")
    queued = read_run(tmp_path, run_id)
    assert queued is not None and queued["status"] == RunStatus.QUEUED
    base = {"trigger": "labels:50", "queued_at": queued["queued_at"]}
    record_running(tmp_path, run_id, base, datetime.now(UTC))
    assert (read_run(tmp_path, run_id) or {})["status"] == RunStatus.RUNNING
    version = tmp_path / "v1"
    version.mkdir()
    kept = record_done(tmp_path, run_id, version, {"run_id": run_id, "promoted": True})
    done = read_run(tmp_path, run_id)
    assert done is not None and done["status"] == RunStatus.DONE and done["error"] is None
    assert done["trigger"] == "labels:50" and done["queued_at"] == queued["queued_at"]
    assert kept["promoted"] is True and (version / "run.json").is_file()


def test_record_failed_skipped_and_unqueued_runs_with_their_reason(tmp_path: Path) -> None:
    started = datetime.now(UTC)
    failed, skipped, unqueued = (record_queued(tmp_path, "api") for _ in range(3))
    record_failed(tmp_path, failed, {"trigger": "api"}, started, ValueError("no labels"))
    record_skipped(tmp_path, skipped, {"trigger": "api"}, "another retrain is running")
    record_not_queued(tmp_path, unqueued, ConnectionError("redis down"))
    records = {run["run_id"]: run for run in iter_runs(tmp_path)}
    assert records[failed]["status"] == RunStatus.FAILED
    assert records[failed]["error"] == "ValueError: no labels"
    assert records[skipped]["status"] == RunStatus.SKIPPED
    assert records[unqueued] == {
        "run_id": unqueued,
        "status": RunStatus.FAILED,
        "error": "not queued: redis down",
    }


def test_read_no_run_for_an_id_outside_the_runs_folder(tmp_path: Path) -> None:
    assert read_run(tmp_path, "../ACTIVE") is None
    assert read_run(tmp_path, "run-20260101-000000-000000") is None
