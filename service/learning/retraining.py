"""Retraining in the service: labels from the database into `training.retrain.retrain`.

The labels are the newest label of each comment (moderator or platform feedback; a comment's
label is its newest row), test traffic excluded. Only one retrain runs at a time: a Redis lock
when there is a Redis (every process of a deployment shares it), a file lock in the models
folder otherwise. Every run leaves a record (training/runs.py, its only writer: queued,
running, then done, failed or skipped), which `GET /v1/models/runs/{id}` reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import redis
from sqlalchemy import func, select

from classifier.artifact import ArtifactError, list_versions
from classifier.registry import activate
from service import tables
from service.db import SessionFactory
from service.moderation.labels import newest_labels
from service.problems import ApiError, unavailable_error
from service.scoring.verdicts import to_record
from service.settings import Settings
from training import runs
from training.corpora import load_bundled
from training.gate import GateParams
from training.retrain import LabelRecord, RetrainParams, RetrainResult, retrain
from training.train import bundled_data_record

if TYPE_CHECKING:
    from service.moderation.labels import AppliedLabel
    from service.worker.queue import TaskQueue

log = logging.getLogger("service.retraining")  # the name log readers know

LOCK_NAME = "commentguard:retrain-lock"
Report = Callable[[str, float], None]


class RetrainBusy(RuntimeError):
    """Another retrain holds the lock."""


def load_labels(sessions: SessionFactory, until: datetime | None = None) -> list[LabelRecord]:
    """Every comment's newest label (test traffic excluded), as plain records; with `until`,
    only labels given before it."""
    query = newest_labels()
    if until is not None:
        query = query.where(tables.Label.created_at <= until)
    with sessions() as session:
        rows = session.execute(query).all()
        return [
            LabelRecord(
                comment=to_record(comment),
                label=1 if label.label == tables.LabelValue.SPAM else 0,
                created_at=label.created_at,
                comment_id=str(comment.id),
            )
            for label, comment in rows
        ]


def published_unlabelled(sessions: SessionFactory, until: datetime | None = None) -> dict[str, int]:
    """Per site key (its id), the comments published (decided `ham`) that nobody labelled,
    test traffic excluded: with the site's ham labels, its ham as far as anyone knows it (the
    denominator of its learned thresholds' false-positive rates)."""
    labelled = select(tables.Label.comment_id)
    if until is not None:
        labelled = labelled.where(tables.Label.created_at <= until)
    query = (
        select(tables.Comment.site_id, func.count(tables.Comment.id))
        .join(tables.Verdict, tables.Verdict.comment_id == tables.Comment.id)
        .where(
            tables.Comment.is_test.is_(False),
            tables.Verdict.decision == "ham",
            tables.Comment.id.not_in(labelled),
        )
        .group_by(tables.Comment.site_id)
    )
    if until is not None:
        query = query.where(tables.Verdict.scored_at <= until)
    with sessions() as session:
        return {str(site): int(count) for site, count in session.execute(query).all()}


def labels_since(sessions: SessionFactory, since: datetime | None) -> int:
    """Labels (rows, test traffic excluded) created after `since` (all of them if None)."""
    query = (
        select(func.count(tables.Label.id))
        .join(tables.Comment, tables.Comment.id == tables.Label.comment_id)
        .where(tables.Comment.is_test.is_(False))
    )
    if since is not None:
        query = query.where(tables.Label.created_at > since)
    with sessions() as session:
        return int(session.execute(query).scalar_one())


def params_from(settings: Settings) -> RetrainParams:
    return RetrainParams(
        seed=settings.retrain_seed,
        holdout_share=settings.retrain_holdout_share,
        label_weight=settings.retrain_label_weight,
        min_site_labels_per_class=settings.retrain_min_site_labels_per_class,
        min_site_threshold_labels=settings.retrain_min_site_threshold_labels,
        train_on_labels=settings.retrain_shared_labels,
        gate=GateParams(mcc_tolerance=settings.retrain_mcc_tolerance),
    )


@contextlib.contextmanager
def retrain_lock(settings: Settings) -> Iterator[None]:
    """Hold the one-retrain-at-a-time lock, or raise RetrainBusy at once."""
    if settings.redis_url:
        client = redis.Redis.from_url(settings.redis_url)
        lock = client.lock(LOCK_NAME, timeout=settings.retrain_time_limit_seconds + 60)
        try:
            if not lock.acquire(blocking=False):
                raise RetrainBusy("another retrain is running")
            try:
                yield
            finally:
                with contextlib.suppress(redis.exceptions.LockError):
                    lock.release()
        finally:
            client.close()
        return
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    with (settings.models_dir / ".retrain.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RetrainBusy("another retrain is running") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def queue_retrain(settings: Settings, queue: TaskQueue | None, trigger: str) -> str:
    """Record a new run as queued and queue its task: the one way a retrain is queued (the API,
    the console, the label count). Returns the run's id; 503 when there is no task queue or it
    cannot be reached (the run is then recorded as failed: a retrain asked for is not silently
    dropped)."""
    if queue is None:
        raise unavailable_error(
            "the task queue is not configured (COMMENTGUARD_REDIS_URL); "
            "run `commentguard retrain` instead"
        )
    run_id = runs.record_queued(settings.models_dir, trigger)
    try:
        queue.retrain(run_id, trigger=trigger)
    except Exception as exc:
        log.warning("retrain %s not queued: %s", run_id, exc)
        runs.record_not_queued(settings.models_dir, run_id, exc)
        raise unavailable_error("the task queue is unavailable; retry later") from exc
    return run_id


def activate_version(settings: Settings, version: str, reason: str) -> str | None:
    """Verify a model version and make it the one every process serves (the API and the
    console); the version it replaces. 404 if there is no such version, 409 if it fails
    verification."""
    if version not in list_versions(settings.models_dir):
        raise ApiError(404, "not_found", f"no model version {version}")
    try:
        return activate(settings.models_dir, version, reason=reason)
    except ArtifactError as exc:
        raise ApiError(
            409,
            "invalid_artifact",
            f"model {version} failed verification and was not activated: {exc.reason}",
        ) from exc


def run_retrain(
    settings: Settings,
    sessions: SessionFactory,
    *,
    run_id: str | None = None,
    trigger: str = "manual",
    report: Report | None = None,
    record_skip: bool = True,
) -> RetrainResult | None:
    """Retrain now from the database's labels; None if another retrain is running (the run
    is recorded as skipped unless `record_skip` is false). A failure is recorded as failed
    and raised."""
    models_dir = settings.models_dir
    run_id = run_id or runs.new_run_id()
    before = runs.read_run(models_dir, run_id) or {}
    base = {"trigger": trigger, "queued_at": before.get("queued_at")}
    try:
        with retrain_lock(settings):
            now = datetime.now(UTC)
            runs.record_running(models_dir, run_id, base, now)
            # A queued run learns from the labels given before it was asked for (the ones
            # that triggered it), not from whatever else arrives while it waits or reads: the
            # same labels in the same order train the same model, whatever the machine's speed
            # (so a replay with the same seed gives the same figures).
            queued_at = base["queued_at"]
            cutoff = datetime.fromisoformat(str(queued_at)) if queued_at else now
            try:
                labels = load_labels(sessions, until=cutoff)
                published = published_unlabelled(sessions, until=cutoff)
                corpus = load_bundled(settings.retrain_corpora)
                result = retrain(
                    corpus,
                    labels,
                    settings.models_dir,
                    params=params_from(settings),
                    now=now,
                    run_id=run_id,
                    data=bundled_data_record(settings.retrain_corpora),
                    report=report,
                    published=published,
                )
            except Exception as exc:
                log.exception("retrain %s failed", run_id)
                runs.record_failed(models_dir, run_id, base, now, exc)
                raise
    except RetrainBusy as exc:
        log.info("retrain %s skipped: %s", run_id, exc)
        if not record_skip:
            return None
        runs.record_skipped(models_dir, run_id, base, str(exc))
        return None
    log.info(
        "retrain %s: candidate %s %s", run_id, result.version,
        "promoted" if result.promoted else "rejected",
    )  # fmt: skip
    return result


def retrain_if_due(settings: Settings, sessions: SessionFactory) -> RetrainResult | None:
    """Retrain if `retrain_label_count` labels arrived since the last run was queued or started
    (since ever, if there was none); None if not due (or another retrain is running)."""
    since = _last_run_start(settings)
    count = labels_since(sessions, since)
    if count < settings.retrain_label_count:
        log.debug("retrain not due: %d new labels of %d", count, settings.retrain_label_count)
        return None
    log.info("retrain due: %d new labels since %s", count, since)
    # A periodic check that finds a retrain running is not worth a record of its own.
    return run_retrain(settings, sessions, trigger=f"labels:{count}", record_skip=False)


def _last_run_start(settings: Settings) -> datetime | None:
    """When the newest run (other than a skipped one) was queued or started.

    Asked after every label commit: reads run records newest first (run ids sort by the time
    they were made) and stops at the first that counts, not every run ever recorded.
    """
    for run in runs.iter_runs(settings.models_dir, newest_first=True):
        when = run.get("queued_at") or run.get("started_at")
        if run.get("status") != runs.RunStatus.SKIPPED and when:
            return datetime.fromisoformat(str(when))
    return None


def trigger_if_due(
    settings: Settings, sessions: SessionFactory, queue: TaskQueue | None
) -> str | None:
    """Queue a retrain once `retrain_label_count` labels arrived since the last run was queued
    (or started); the new run's id, else None.

    Runs as a label hook, right after the labels commit, so that the count triggers a retrain
    as soon as it is reached; the periodic `retrain_if_due` check stays as the fallback.
    """
    if queue is None:
        return None
    count = labels_since(sessions, _last_run_start(settings))
    if count < settings.retrain_label_count:
        return None
    run_id = queue_retrain(settings, queue, f"labels:{count}")
    log.info("retrain %s queued: %d new labels", run_id, count)
    return run_id


def retrain_hook(
    settings: Settings, sessions: SessionFactory, queue: TaskQueue | None
) -> Callable[[Sequence[AppliedLabel]], None]:
    """The label hook that counts new labels towards a retrain."""

    def hook(_applied: Sequence[AppliedLabel]) -> None:
        trigger_if_due(settings, sessions, queue)

    return hook


def retrain_outcomes(settings: Settings) -> Iterator[str]:
    """Each recorded run's outcome, for the metrics: promoted, rejected, failed or skipped
    (runs still queued or running are not counted yet)."""
    for run in runs.iter_runs(settings.models_dir):
        status = run.get("status")
        if status == runs.RunStatus.DONE:
            yield "promoted" if run.get("promoted") else "rejected"
        elif status in (runs.RunStatus.FAILED, runs.RunStatus.SKIPPED):
            yield str(status)
