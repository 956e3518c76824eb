"""The Celery app, configured from Settings, and the producer the API uses to queue tasks."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta

import redis
from celery import Celery
from celery.schedules import crontab
from kombu.entity import Queue

from service import logs
from service.settings import Settings

log = logging.getLogger("service.queue")  # the name log readers know

SCORING_QUEUE = "commentguard.scoring"
CALLBACKS_QUEUE = "commentguard.callbacks"
SCORE_TASK = "commentguard.score_comment"
# Comments accepted together travel together: one message, scored in one batch.
SCORE_BATCH_TASK = "commentguard.score_comments"
MAX_MESSAGE_COMMENTS = 64  # comments in one score_comments message at most
DELIVER_TASK = "commentguard.deliver_callback"
SWEEP_TASK = "commentguard.sweep_pending"
# Retraining has a queue (and a worker) of its own, so that a retrain never holds a scoring
# process.
RETRAIN_QUEUE = "commentguard.retraining"
RETRAIN_TASK = "commentguard.retrain_model"
RETRAIN_CHECK_TASK = "commentguard.retrain_if_due"
PURGE_TASK = "commentguard.purge_expired"
ADAPT_TASK = "commentguard.adapt_site"
# Set while a site's refit is queued and not yet started: a burst of labels queues one.
ADAPT_PENDING_KEY = "commentguard:adapt-pending:{}"


class BrokerNotConfigured(RuntimeError):
    """No Redis URL: set COMMENTGUARD_REDIS_URL, or run `commentguard serve` to embed one."""


def _queue(name: str) -> Queue:
    # Direct queues: Celery publishes to them through the nameless exchange, which routes by
    # queue name alone rather than through bindings kept in Redis, so messages still arrive
    # after Redis loses its keys (flushed, or restarted without persistence).
    return Queue(name, routing_key=name)  # type: ignore[no-untyped-call]


def make_celery(settings: Settings) -> Celery:
    """A Celery app for `settings` (JSON only, time limits, late acks, no result backend)."""
    if not settings.redis_url:
        raise BrokerNotConfigured(
            "COMMENTGUARD_REDIS_URL is not set (only `commentguard serve` embeds a Redis)"
        )
    app = Celery("commentguard", set_as_current=False)
    app.conf.update(
        broker_url=settings.redis_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "socket_connect_timeout": 2,
            "socket_timeout": 10,
            # Longer than the longest callback backoff, or a scheduled retry would run twice.
            "visibility_timeout": int(settings.callback_backoff_max_seconds) + 1800,
        },
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_time_limit=settings.task_time_limit_seconds,
        task_soft_time_limit=settings.task_soft_time_limit_seconds,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A few messages reserved ahead spare the scoring worker a round trip to Redis between
        # short tasks; with late acks a reserved message is redelivered if the worker dies.
        worker_prefetch_multiplier=4,
        worker_hijack_root_logger=False,
        task_queues=[_queue(SCORING_QUEUE), _queue(CALLBACKS_QUEUE), _queue(RETRAIN_QUEUE)],
        task_default_queue=SCORING_QUEUE,
        task_routes={
            SCORE_TASK: {"queue": SCORING_QUEUE},
            SCORE_BATCH_TASK: {"queue": SCORING_QUEUE},
            SWEEP_TASK: {"queue": SCORING_QUEUE},
            PURGE_TASK: {"queue": SCORING_QUEUE},
            ADAPT_TASK: {"queue": SCORING_QUEUE},
            DELIVER_TASK: {"queue": CALLBACKS_QUEUE},
            RETRAIN_TASK: {"queue": RETRAIN_QUEUE},
            RETRAIN_CHECK_TASK: {"queue": RETRAIN_QUEUE},
        },
        # Training takes minutes, not the seconds a scoring task is allowed.
        task_annotations={
            name: {
                "time_limit": settings.retrain_time_limit_seconds,
                "soft_time_limit": settings.retrain_soft_time_limit_seconds,
            }
            for name in (RETRAIN_TASK, RETRAIN_CHECK_TASK)
        },
        # A publish that fails is not retried for long: the comment is already committed
        # and the sweep will queue it, so the API answers instead of waiting on Redis.
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        },
        beat_schedule={
            "sweep-pending": {
                "task": SWEEP_TASK,
                "schedule": timedelta(seconds=settings.pending_sweep_interval_seconds),
                "options": {"expires": settings.pending_sweep_interval_seconds},
            },
            "retrain-scheduled": {
                "task": RETRAIN_TASK,
                "schedule": crontab(*settings.retrain_cron.split()),
                "kwargs": {"trigger": "schedule"},
            },
            "retrain-if-due": {
                "task": RETRAIN_CHECK_TASK,
                "schedule": timedelta(seconds=settings.retrain_check_interval_seconds),
                # A check that waited a minute is still worth running (it is cheap); one that
                # expired too soon would never run on a busy worker.
                "options": {"expires": max(settings.retrain_check_interval_seconds, 60.0)},
            },
        },
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
        timezone="UTC",
    )
    if settings.retention_days > 0:
        app.conf.beat_schedule["retention-purge"] = {
            "task": PURGE_TASK,
            "schedule": timedelta(seconds=settings.retention_interval_seconds),
            "options": {"expires": settings.retention_interval_seconds},
        }
    return app


class TaskQueue:
    """Queues tasks by name, for processes that do not run them (the API, the sweep)."""

    def __init__(self, settings: Settings, pause_seconds: float = 5.0) -> None:
        self.celery = make_celery(settings)
        self._redis = redis.Redis.from_url(
            settings.redis_url or "", socket_connect_timeout=1, socket_timeout=1
        )
        self._pause_seconds = pause_seconds
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self._linger = settings.queue_linger_seconds
        self._to_score: queue.SimpleQueue[list[tuple[uuid.UUID, str | None]] | None] = (
            queue.SimpleQueue()
        )
        self._publisher: threading.Thread | None = None

    def score(self, comment_id: uuid.UUID) -> bool:
        """Queue `score_comment`; False (logged) if Redis is unreachable."""
        return self._send(SCORE_TASK, str(comment_id))

    def score_many(
        self, comment_ids: Sequence[uuid.UUID], request_ids: Sequence[str | None]
    ) -> bool:
        """Queue `score_comments` for comments accepted together (each with the id of the
        request that sent it); False (logged) if Redis is unreachable."""
        if len(comment_ids) == 1:
            with logs.bound(request_ids[0]):
                return self.score(comment_ids[0])
        return self._send(
            SCORE_BATCH_TASK, [str(comment_id) for comment_id in comment_ids], list(request_ids)
        )

    def score_soon(
        self, comment_ids: Sequence[uuid.UUID], request_ids: Sequence[str | None]
    ) -> None:
        """Queue committed comments for scoring within `queue_linger_seconds`, together with
        whatever else is committed meanwhile: one message for all of them (a worker scores a
        message's comments in one batch). Returns at once; if this process dies first, the
        comments are pending in the database and the sweep queues them."""
        if self._publisher is None:
            with self._lock:
                if self._publisher is None:
                    self._publisher = threading.Thread(
                        target=self._publish, name="publisher", daemon=True
                    )
                    self._publisher.start()
        self._to_score.put(list(zip(comment_ids, request_ids, strict=True)))

    def _publish(self) -> None:
        while (first := self._to_score.get()) is not None:
            batch = list(first)
            deadline = time.monotonic() + self._linger
            stop = False
            while len(batch) < MAX_MESSAGE_COMMENTS:
                try:
                    more = self._to_score.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.extend(more)
            try:
                self.score_many([c for c, _ in batch], [r for _, r in batch])
            except Exception:  # never the thread's end: the sweep queues what this missed
                log.exception("could not queue %d comments; the sweep will", len(batch))
            if stop:
                return

    def deliver(self, delivery_id: uuid.UUID, countdown: float | None = None) -> bool:
        """Queue `deliver_callback`; False (logged) if Redis is unreachable."""
        return self._send(DELIVER_TASK, str(delivery_id), countdown=countdown)

    def adapt(self, site_id: int) -> bool:
        """Queue `adapt_site` unless one is queued and not yet started for that site (it
        will read the labels given meanwhile); False (logged) if Redis is unreachable."""
        try:
            if not self._redis.set(ADAPT_PENDING_KEY.format(site_id), 1, nx=True, ex=300):
                return True
        except redis.RedisError as exc:
            log.warning("could not queue the refit of site %s: %s", site_id, exc)
            return False
        if self._send(ADAPT_TASK, site_id):
            return True
        with contextlib.suppress(redis.RedisError):  # the next label tries again
            self._redis.delete(ADAPT_PENDING_KEY.format(site_id))
        return False

    def retrain(self, run_id: str, trigger: str = "api") -> None:
        """Queue `retrain_model` for a run already recorded as queued; raises if Redis is
        unreachable (a retrain asked for is not silently dropped)."""
        self.celery.send_task(RETRAIN_TASK, kwargs={"run_id": run_id, "trigger": trigger})

    def ping(self) -> None:
        """Raise unless Redis answers."""
        self._redis.ping()

    def close(self) -> None:
        if self._publisher is not None:
            self._to_score.put(None)  # after what is waiting
            self._publisher.join(10)
        self._redis.close()
        self.celery.close()

    def _send(self, task: str, *args: object, countdown: float | None = None) -> bool:
        # After a failure, stop trying for a few seconds, so that a Redis outage costs each
        # request nothing: everything committed meanwhile is picked up by the pending sweep.
        if time.monotonic() < self._paused_until:
            return False
        try:
            self.celery.send_task(task, args=list(args), countdown=countdown)
        except Exception as exc:
            with self._lock:
                self._paused_until = time.monotonic() + self._pause_seconds
            log.warning("could not queue %s, the sweep will: %s", task, exc)
            return False
        return True
