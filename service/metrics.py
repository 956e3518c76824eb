"""Prometheus metrics, read at scrape time from what every process shares: the database and Redis.

With several API processes and workers on several machines, in-process counters would each
see a part (and prometheus_client's multiprocess mode works on one machine only). So the
counts come from the rows the database already holds, the queue depth from Redis and the model
version from the models folder; any API process answers `/metrics` with the same figures. The
database figures are aggregate queries, cached for `metrics_cache_seconds`.

The scoring latency histogram is built from `verdicts.duration_ms` (the time the classifier
took, recorded with every verdict), so it too covers every process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from classifier.artifact import active_version
from service import tables
from service.db import SessionFactory
from service.moderation.labels import classify, newest_label_ids
from service.settings import Settings
from service.worker.queue import CALLBACKS_QUEUE, SCORING_QUEUE

log = logging.getLogger(__name__)

# Upper bounds of the scoring latency buckets, milliseconds.
LATENCY_BUCKETS_MS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
# Kombu's Redis transport keeps a queue's messages of priority p > 0 in a list of its own.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)

# What a scored comment's newest label can say of its verdict (service.moderation.labels.classify).
COUNTED_KINDS = (
    tables.LabelKind.MISSED_SPAM,
    tables.LabelKind.FALSE_POSITIVE,
    tables.LabelKind.RESOLUTION,
    tables.LabelKind.CONFIRMATION,
)

RetrainRuns = Callable[[], Iterable[str]]


def retrain_runs_by_outcome(outcomes: Iterable[str]) -> dict[str, int]:
    """Count retraining runs by outcome (e.g. "promoted", "rejected", "failed")."""
    return dict(Counter(outcomes))


@dataclass
class Snapshot:
    """The database's figures at one moment."""

    received: list[tuple[int, int]] = field(default_factory=list)  # account, n
    scored: list[tuple[int, str, int]] = field(default_factory=list)  # account, decision, n
    deliveries: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    latency_buckets: list[int] = field(default_factory=list)  # cumulative, per bound
    latency_count: int = 0
    latency_sum_ms: float = 0.0


def read_snapshot(sessions: SessionFactory) -> Snapshot:
    """Run the aggregate queries behind the database metrics."""
    comment, site, verdict = tables.Comment, tables.Site, tables.Verdict
    snapshot = Snapshot()
    with sessions() as session:
        # By account, not by site: an account's sites are whatever blogs its comments name
        # (up to max_sites_per_account each), too many series to scrape, and their URLs are
        # the account's business, not the scraper's. Per-site figures: /v1/moderation/stats.
        received = session.execute(
            select(site.account_id, func.count(comment.id))
            .join(comment, comment.site_id == site.id)
            .group_by(site.account_id)
        ).all()
        snapshot.received = [(a, int(n)) for a, n in received]
        scored = session.execute(
            select(site.account_id, verdict.decision, func.count(verdict.id))
            .join(comment, comment.site_id == site.id)
            .join(verdict, verdict.comment_id == comment.id)
            .group_by(site.account_id, verdict.decision)
        ).all()
        snapshot.scored = [(a, d, int(n)) for a, d, n in scored]
        deliveries = session.execute(
            select(tables.CallbackDelivery.status, func.count()).group_by(
                tables.CallbackDelivery.status
            )
        ).all()
        snapshot.deliveries = {status: int(n) for status, n in deliveries}
        newest = newest_label_ids()
        labels = session.execute(
            select(tables.Label.label, verdict.decision, func.count())
            .join(newest, newest.c.id == tables.Label.id)
            .join(verdict, verdict.comment_id == tables.Label.comment_id)
            # A label that brought its comment in judged no verdict of ours.
            .where(tables.Label.created_comment.is_(False))
            .group_by(tables.Label.label, verdict.decision)
        ).all()
        kinds: Counter[str] = Counter({kind.value: 0 for kind in COUNTED_KINDS})
        for label, decision, n in labels:
            kinds[classify(decision, tables.LabelValue(label)).value] += int(n)
        snapshot.labels = dict(kinds)
        duration = verdict.duration_ms
        row = session.execute(
            select(
                func.count(verdict.id),
                func.coalesce(func.sum(duration), 0.0),
                *(
                    func.coalesce(func.sum(case((duration <= bound, 1), else_=0)), 0)
                    for bound in LATENCY_BUCKETS_MS
                ),
            )
        ).one()
        snapshot.latency_count = int(row[0])
        snapshot.latency_sum_ms = float(row[1])
        snapshot.latency_buckets = [int(n) for n in row[2:]]
    return snapshot


def queue_depths(client: redis.Redis) -> dict[str, int]:
    """Messages waiting in each Celery queue (every priority list of it), in one round trip."""
    pipe = client.pipeline(transaction=False)
    names = {"scoring": SCORING_QUEUE, "callbacks": CALLBACKS_QUEUE}
    for queue in names.values():
        for step in _PRIORITY_STEPS:
            pipe.llen(queue if step == 0 else f"{queue}{_PRIORITY_SEP}{step}")
    lengths = pipe.execute()
    n = len(_PRIORITY_STEPS)
    return {short: sum(lengths[i * n : (i + 1) * n]) for i, short in enumerate(names)}


class ServiceCollector(Collector):
    """The commentguard metrics, computed when Prometheus scrapes."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        retrain_runs: RetrainRuns | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.retrain_runs = retrain_runs
        self._redis = (
            redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)
            if settings.redis_url
            else None
        )
        self._lock = threading.Lock()
        self._cached: Snapshot | None = None
        self._cached_at = 0.0

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached_at >= self.settings.metrics_cache_seconds:
                self._cached = read_snapshot(self.sessions)
                self._cached_at = now
            return self._cached

    def collect(self) -> Iterator[Metric]:
        yield from self._database_metrics()
        yield from self._queue_metrics()
        version = active_version(self.settings.models_dir)
        info = InfoMetricFamily("commentguard_model", "The active model version (ACTIVE)")
        info.add_metric([], {"version": version or ""})
        yield info
        if self.retrain_runs is not None:
            runs = CounterMetricFamily(
                "commentguard_retrain_runs", "Retraining runs by outcome", labels=["outcome"]
            )
            for outcome, n in sorted(retrain_runs_by_outcome(self.retrain_runs()).items()):
                runs.add_metric([outcome], n)
            yield runs

    def _database_metrics(self) -> Iterator[Metric]:
        try:
            snap = self.snapshot()
        except Exception as exc:
            log.warning("metrics: the database did not answer: %s", exc)
            return
        received = CounterMetricFamily(
            "commentguard_comments_received", "Comments received, by account", labels=["account"]
        )
        for account, n in snap.received:
            received.add_metric([str(account)], n)
        scored = CounterMetricFamily(
            "commentguard_comments_scored",
            "Comments scored, by account and decision",
            labels=["account", "decision"],
        )
        for account, decision, n in snap.scored:
            scored.add_metric([str(account), decision], n)
        deliveries = GaugeMetricFamily(
            "commentguard_callback_deliveries",
            "Callback deliveries by outcome (pending, delivered, failed)",
            labels=["outcome"],
        )
        for status in tables.DeliveryStatus:
            deliveries.add_metric([status.value], snap.deliveries.get(status.value, 0))
        labels = CounterMetricFamily(
            "commentguard_labels",
            "Comments by what their newest label says of the verdict "
            "(missed_spam, false_positive, resolution, confirmation)",
            labels=["kind"],
        )
        for kind, n in sorted(snap.labels.items()):
            labels.add_metric([kind], n)
        latency = HistogramMetricFamily(
            "commentguard_scoring_latency_seconds",
            "Time the classifier took per comment (verdicts.duration_ms)",
        )
        buckets = [
            (_seconds(bound), float(n))
            for bound, n in zip(LATENCY_BUCKETS_MS, snap.latency_buckets, strict=True)
        ]
        latency.add_metric(
            [], [*buckets, ("+Inf", float(snap.latency_count))], snap.latency_sum_ms / 1000
        )
        yield from (received, scored, deliveries, labels, latency)

    def _queue_metrics(self) -> Iterator[Metric]:
        if self._redis is None:
            return
        try:
            depths = queue_depths(self._redis)
        except (redis.RedisError, OSError) as exc:
            log.warning("metrics: Redis did not answer: %s", exc)
            return
        gauge = GaugeMetricFamily(
            "commentguard_queue_depth", "Tasks waiting in each Celery queue", labels=["queue"]
        )
        for queue, n in depths.items():
            gauge.add_metric([queue], n)
        yield gauge

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()


def _seconds(bound_ms: float) -> str:
    return repr(bound_ms / 1000)


def render(collector: ServiceCollector) -> bytes:
    """The Prometheus text exposition of the service's metrics (no per-process defaults)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
