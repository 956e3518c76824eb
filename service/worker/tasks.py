"""Celery tasks: thin wrappers that take ids, reload state from the database and call plain code.

Every task is safe to run twice, which is why they ack late: a message redelivered after a
worker died, or re-queued by the sweep, does no harm.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, ParamSpec, TypeVar

import redis
from celery import Task, shared_task
from celery.signals import worker_process_init
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service import logs, tables
from service.callbacks import (
    Attempted,
    CallbackClient,
    Claim,
    claim_new,
    deliver,
    make_client,
    post,
    record,
)
from service.db import SessionFactory, make_engine, make_session_factory
from service.learning.adapters import AdapterCache, adapter_params, fit_site
from service.learning.retraining import retrain_if_due, run_retrain
from service.moderation.labels import label_id_of, render_label_callback
from service.neardup.store import NearDuplicateMemory
from service.privacy import purge_expired
from service.schemas import CallbackBody
from service.scoring.models import ModelHolder
from service.scoring.store import score_stored_comments
from service.settings import Settings
from service.worker.queue import (
    ADAPT_PENDING_KEY,
    ADAPT_TASK,
    DELIVER_TASK,
    PURGE_TASK,
    RETRAIN_CHECK_TASK,
    RETRAIN_TASK,
    SCORE_BATCH_TASK,
    SCORE_TASK,
    SWEEP_TASK,
)
from service.worker.sweep import find_stale

log = logging.getLogger("service.tasks")  # the name log readers know

P = ParamSpec("P")
T = TypeVar("T")


class CountingPool:
    """A thread pool that says how many of its jobs wait for a thread: submitted, not started.

    The count is kept here, by the code that submits, rather than read from the executor's
    private queue."""

    def __init__(self, threads: int, thread_name_prefix: str) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=thread_name_prefix)
        self._lock = threading.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            self._waiting += 1
        try:
            return self._pool.submit(self._run, fn, *args, **kwargs)
        except BaseException:
            self._started()
            raise

    def _started(self) -> None:
        with self._lock:
            self._waiting -= 1

    def _run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        self._started()
        return fn(*args, **kwargs)


@dataclass
class WorkerContext:
    """What a worker process opens once: database, model and HTTP client."""

    settings: Settings
    engine: Engine
    sessions: SessionFactory
    models: ModelHolder
    client: CallbackClient
    senders: ThreadPoolExecutor  # each sends a batch's first attempts, then records them
    posters: CountingPool  # the HTTP POSTs themselves, in parallel
    memory: NearDuplicateMemory | None = None  # near-duplicates of labelled comments
    adapters: AdapterCache | None = None  # what each site's labels taught


_settings: Settings | None = None
_context: WorkerContext | None = None
_lock = threading.Lock()


def configure(settings: Settings) -> None:
    """Set the settings the worker's processes use (before the pool forks them)."""
    global _settings, _context
    _settings = settings
    _context = None
    logging.getLogger("urllib3").setLevel(logging.WARNING)  # a line per connection is too many
    logs.install_celery_propagation()


def context() -> WorkerContext:
    """This process's context, opened on first use (after the fork, never before it)."""
    global _context
    with _lock:
        if _context is None:
            if _settings is None:
                raise RuntimeError("service.worker.tasks.configure(settings) was not called")
            engine = make_engine(_settings)
            models = ModelHolder.from_settings(_settings)
            models.load()
            senders = ThreadPoolExecutor(4, thread_name_prefix="callbacks")
            posters = CountingPool(_settings.callback_worker_threads, thread_name_prefix="callback")
            _context = WorkerContext(
                _settings,
                engine,
                make_session_factory(engine),
                models,
                make_client(_settings),
                senders,
                posters,
                NearDuplicateMemory.from_settings(_settings),
                AdapterCache(_settings.site_cache_seconds),
            )
        return _context


@worker_process_init.connect
def _open_in_child(**_kwargs: Any) -> None:
    # A forked child must not reuse its parent's database connections; load the model now so
    # that the first task does not pay for it.
    global _context
    _context = None
    if _settings is not None:
        context()


def render_callback(comment: tables.Comment, site: tables.Site) -> dict[str, Any]:
    return CallbackBody.from_row(comment, site.url).model_dump(mode="json")


def render_delivery(
    session: Session, event: str, comment: tables.Comment, site: tables.Site
) -> dict[str, Any]:
    """A delivery's body by its event: the verdict, or a moderator's label (`label:<id>`)."""
    label_id = label_id_of(event)
    if label_id is not None:
        return render_label_callback(session, label_id, comment, site)
    return render_callback(comment, site)


def _send(task: Task, name: str, arg: uuid.UUID, countdown: float | None = None) -> None:
    try:
        task.app.send_task(name, args=[str(arg)], countdown=countdown)
    except Exception as exc:  # the row is committed; the sweep will queue it
        log.warning("could not queue %s(%s); the sweep will: %s", name, arg, exc)


@shared_task(bind=True, name=SCORE_TASK, acks_late=True, max_retries=5)
def score_comment(self: Task, comment_id: str) -> None:
    """Score a stored comment (once) and send its callback."""
    _score(self, [comment_id], [logs.request_id.get()])


@shared_task(bind=True, name=SCORE_BATCH_TASK, acks_late=True, max_retries=5)
def score_comments(self: Task, comment_ids: list[str], request_ids: list[str | None]) -> None:
    """Score comments accepted together (each once) and send their callbacks; each
    comment's log lines and callback carry the id of the request that submitted it."""
    _score(self, comment_ids, request_ids)


def _score(self: Task, comment_ids: list[str], request_ids: list[str | None]) -> None:
    ctx = context()
    ctx.models.reload_if_changed()
    # First attempts go out from threads of this process, without another trip through
    # Redis; scoring goes on meanwhile, so a slow platform holds a thread, not this worker.
    # When the threads are busy, the callback worker's queue takes the deliveries instead.
    # Either way a delivery is in the database: if this process dies, the sweep retries it.
    threads_free = ctx.posters.waiting < 4 * ctx.settings.callback_worker_threads
    try:
        outcomes = score_stored_comments(
            ctx.sessions,
            [uuid.UUID(comment_id) for comment_id in comment_ids],
            ctx.models.current,
            partial(_claim_first, ctx) if threads_free else None,
            ctx.memory,
            ctx.adapters,
        )
    except OperationalError as exc:  # database briefly unavailable
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc
    claimed: list[tuple[uuid.UUID, Claim, str | None]] = []
    for comment_id, rid, outcome in zip(comment_ids, request_ids, outcomes, strict=True):
        with logs.bound(rid):
            if outcome.scored_now:
                log.info("comment %s scored", comment_id, extra={"comment_id": comment_id})
            if outcome.delivery_id is None:
                continue
            if outcome.claim is not None:
                claimed.append((outcome.delivery_id, outcome.claim, rid))
            elif threads_free:  # scored before, its delivery still due: one attempt
                ctx.senders.submit(
                    contextvars.copy_context().run, _attempt, self.app, ctx, outcome.delivery_id
                )
            else:
                _send(self, DELIVER_TASK, outcome.delivery_id)
    if claimed:
        ctx.senders.submit(_attempt_claimed, self.app, ctx, claimed)


def _attempt_claimed(
    app: Any, ctx: WorkerContext, claimed: list[tuple[uuid.UUID, Claim, str | None]]
) -> None:
    """POST first attempts in parallel, each with its request id, then record them at once."""
    try:
        posts = [
            ctx.posters.submit(_post_bound, ctx, delivery_id, claim, rid)
            for delivery_id, claim, rid in claimed
        ]
        attempts = [future.result() for future in posts]
        outcomes = record(ctx.sessions, ctx.settings, attempts)
    except Exception:
        log.exception("callbacks: %d attempts failed to run; the sweep will retry", len(claimed))
        return
    for (delivery_id, _, rid), outcome in zip(claimed, outcomes, strict=True):
        if outcome.retry_in is not None:
            with logs.bound(rid):
                _schedule_retry(app, delivery_id, outcome.retry_in)


def _post_bound(
    ctx: WorkerContext, delivery_id: uuid.UUID, claim: Claim, rid: str | None
) -> Attempted:
    with logs.bound(rid):
        return post(delivery_id, ctx.settings, ctx.client, claim)


def _schedule_retry(app: Any, delivery_id: uuid.UUID, retry_in: float) -> None:
    try:
        app.send_task(DELIVER_TASK, args=[str(delivery_id)], countdown=retry_in)
    except Exception as exc:
        log.warning("could not queue the retry of %s; the sweep will: %s", delivery_id, exc)


def _claim_first(
    ctx: WorkerContext,
    comment: tables.Comment,
    site: tables.Site,
    delivery: tables.CallbackDelivery,
) -> Claim:
    return claim_new(delivery, ctx.settings, site.callback_secret, render_callback(comment, site))


def _attempt(app: Any, ctx: WorkerContext, delivery_id: uuid.UUID) -> None:
    """Claim and make one attempt at a due delivery; schedule the next if it failed."""
    try:
        outcome = deliver(ctx.sessions, delivery_id, ctx.settings, ctx.client, render_delivery)
    except Exception:
        log.exception("callback %s: attempt failed to run; the sweep will retry", delivery_id)
        return
    if outcome.retry_in is not None:
        _schedule_retry(app, delivery_id, outcome.retry_in)


@shared_task(bind=True, name=DELIVER_TASK, acks_late=True, max_retries=5)
def deliver_callback(self: Task, delivery_id: str) -> None:
    """Make one attempt at a callback; schedule the next one with backoff if it failed."""
    ctx = context()
    try:
        outcome = deliver(
            ctx.sessions, uuid.UUID(delivery_id), ctx.settings, ctx.client, render_delivery
        )
    except OperationalError as exc:
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc
    if outcome.retry_in is not None:
        _send(self, DELIVER_TASK, uuid.UUID(delivery_id), countdown=outcome.retry_in)


@shared_task(bind=True, name=SWEEP_TASK, acks_late=True)
def sweep_pending(self: Task) -> None:
    """Re-queue comments left pending and deliveries whose retry is due."""
    ctx = context()
    stale = find_stale(ctx.sessions, ctx.settings)
    for comment_id in stale.comment_ids:
        _send(self, SCORE_TASK, comment_id)
    for delivery_id in stale.delivery_ids:
        _send(self, DELIVER_TASK, delivery_id)
    if stale.comment_ids or stale.delivery_ids:
        log.info(
            "sweep re-queued %d comments and %d deliveries",
            len(stale.comment_ids),
            len(stale.delivery_ids),
        )


# --- retraining (its own queue and worker) -------------------------------------------------
# Not acked late: a retrain that died with its worker is not worth repeating blindly (the next
# schedule or label count triggers another), and running one twice would make two versions.


@shared_task(bind=True, name=RETRAIN_TASK, acks_late=False)
def retrain_model(self: Task, run_id: str | None = None, trigger: str = "manual") -> None:
    """Retrain from the database's labels; the gate decides whether the candidate goes live."""
    ctx = context()
    run_retrain(ctx.settings, ctx.sessions, run_id=run_id, trigger=trigger)
    ctx.models.reload_if_changed()


@shared_task(bind=True, name=RETRAIN_CHECK_TASK, acks_late=False)
def retrain_check(self: Task) -> None:
    """Retrain if enough labels arrived since the last run."""
    ctx = context()
    retrain_if_due(ctx.settings, ctx.sessions)


@shared_task(bind=True, name=ADAPT_TASK, acks_late=True, max_retries=5)
def adapt_site(self: Task, site_id: int) -> None:
    """Refit a site's adapter on its labels (service/learning/adapters.py); a no-op if nothing
    changed."""
    ctx = context()
    if ctx.settings.redis_url:
        # Labels given from now on queue another refit: this one may not read them.
        with contextlib.suppress(redis.RedisError):
            client = redis.Redis.from_url(ctx.settings.redis_url, socket_timeout=2)
            client.delete(ADAPT_PENDING_KEY.format(site_id))
            client.close()
    ctx.models.reload_if_changed()
    try:
        with ctx.sessions() as session:
            fit_site(
                session,
                ctx.models.current,
                int(site_id),
                adapter_params(ctx.settings),
                ctx.settings.adapt_min_site_threshold_labels,
            )
    except OperationalError as exc:
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc


@shared_task(bind=True, name=PURGE_TASK, acks_late=True)
def purge_expired_comments(self: Task) -> None:
    """Erase the content and personal fields of comments past the retention period."""
    ctx = context()
    purge_expired(ctx.sessions, ctx.settings)
