"""GET /metrics: figures from the database and Redis, the same from every API process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from classifier.artifact import active_version
from service import db, tables
from service.metrics import (
    COUNTED_KINDS,
    LATENCY_BUCKETS_MS,
    ServiceCollector,
    render,
    retrain_runs_by_outcome,
)
from service.moderation.labels import classify
from service.settings import Settings
from service.worker.queue import TaskQueue
from tests.service.conftest import create_account, serve_app

pytestmark = pytest.mark.xdist_group("metrics")

HAM = "I love this song, thank you for sharing it"
SPAM = "Check out my channel http://bit.ly/x subscribe now for free money"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def metrics_settings(settings: Settings) -> Settings:
    # No caching, so that each scrape shows the test's latest rows.
    return settings.model_copy(update={"metrics_cache_seconds": 0.0})


@pytest.fixture(scope="module")
def servers(metrics_settings: Settings) -> Iterator[tuple[str, str]]:
    with serve_app(metrics_settings) as first, serve_app(metrics_settings) as second:
        yield first, second


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_count_comments_labels_and_latency_the_same_from_every_process(
    servers: tuple[str, str], settings: Settings, sessions: db.SessionFactory
) -> None:
    first, second = servers
    account = create_account(settings, "metrics")
    site = "https://metrics.example"
    before = scrape(first)
    decisions: dict[str, str] = {}
    with httpx.Client(base_url=first, timeout=10) as client:
        for text in (HAM, HAM + " again", SPAM, SPAM + " today"):
            response = client.post(
                "/v1/check", json={"content": text, "blog": site}, headers=account.headers
            )
            assert response.status_code == 200, response.text
            decisions[response.json()["id"]] = response.json()["verdict"]["decision"]
    ids = list(decisions)
    # Labels: the newest one per comment counts; a label that brought a comment in does not.
    labels = [
        (ids[0], "spam"),  # ham verdict, spam label: missed spam
        (ids[2], "spam"),
        (ids[2], "ham"),  # newest: ham on a spam verdict, a false positive
        (ids[1], "ham"),  # confirms
    ]
    with sessions() as session:
        for comment_id, label in labels:
            session.add(
                tables.Label(
                    comment_id=uuid.UUID(comment_id),
                    label=label,
                    source=tables.LabelSource.MODERATOR.value,
                    created_comment=False,
                )
            )
        session.add(
            tables.Label(
                comment_id=uuid.UUID(ids[3]),
                label="ham",
                source=tables.LabelSource.FEEDBACK.value,
                created_comment=True,
            )
        )
        session.commit()
    expected_kinds = {kind.value: 0 for kind in COUNTED_KINDS}
    for comment_id, label in ((ids[0], "spam"), (ids[2], "ham"), (ids[1], "ham")):
        expected_kinds[classify(decisions[comment_id], tables.LabelValue(label)).value] += 1

    after_first, after_second = scrape(first), scrape(second)
    assert after_first == after_second  # any process answers with the same figures
    account_label = str(account.id)
    assert value(after_first, "commentguard_comments_received_total", account=account_label) == 4
    for decision in set(decisions.values()):
        expected = sum(1 for d in decisions.values() if d == decision)
        assert (
            value(
                after_first,
                "commentguard_comments_scored_total",
                account=account_label,
                decision=decision,
            )
            == expected
        )
    for kind, n in expected_kinds.items():
        grew = value(after_first, "commentguard_labels_total", kind=kind) - value(
            before, "commentguard_labels_total", kind=kind
        )
        assert grew == n, kind
    count = value(after_first, "commentguard_scoring_latency_seconds_count")
    assert count - value(before, "commentguard_scoring_latency_seconds_count") == 4
    assert value(after_first, "commentguard_scoring_latency_seconds_bucket", le="+Inf") == count
    buckets = [
        value(after_first, "commentguard_scoring_latency_seconds_bucket", le=str(b / 1000))
        for b in LATENCY_BUCKETS_MS
    ]
    assert buckets == sorted(buckets) and buckets[-1] == count
    assert value(after_first, "commentguard_scoring_latency_seconds_sum") > 0
    version = active_version(settings.models_dir)
    assert value(after_first, "commentguard_model_info", version=version or "") == 1


def test_count_callback_deliveries_by_outcome(
    servers: tuple[str, str], settings: Settings, sessions: db.SessionFactory
) -> None:
    first, _ = servers
    account = create_account(settings, "deliveries")
    before = scrape(first)
    with httpx.Client(base_url=first, timeout=10) as client:
        ids = [
            client.post(
                "/v1/check",
                json={"content": f"{HAM} {i}", "blog": "https://hooks.example"},
                headers=account.headers,
            ).json()["id"]
            for i in range(3)
        ]
    outcomes = ["delivered", "failed", "pending"]
    with sessions() as session:
        for comment_id in ids:
            session.add(
                tables.CallbackDelivery(
                    comment_id=uuid.UUID(comment_id), url="https://hooks.example/cb"
                )
            )
        session.commit()
        for comment_id, outcome in zip(ids, outcomes, strict=True):
            session.execute(
                update(tables.CallbackDelivery)
                .where(tables.CallbackDelivery.comment_id == uuid.UUID(comment_id))
                .values(status=outcome)
            )
        session.commit()
    after = scrape(first)
    for outcome in outcomes:
        grew = value(after, "commentguard_callback_deliveries", outcome=outcome) - value(
            before, "commentguard_callback_deliveries", outcome=outcome
        )
        assert grew == 1, outcome


def test_report_queue_depth_from_redis(servers: tuple[str, str], settings: Settings) -> None:
    # No worker runs in this module, so what is queued stays in Redis.
    first, _ = servers
    before = value(scrape(first), "commentguard_queue_depth", queue="scoring")
    queue = TaskQueue(settings)
    try:
        for _ in range(3):
            assert queue.score(uuid.uuid4())
        assert queue.deliver(uuid.uuid4())
    finally:
        queue.close()
    after = scrape(first)
    assert value(after, "commentguard_queue_depth", queue="scoring") == before + 3
    assert value(after, "commentguard_queue_depth", queue="callbacks") >= 1


def test_require_the_metrics_token_when_set(metrics_settings: Settings) -> None:
    guarded = metrics_settings.model_copy(update={"metrics_token": "s3cret-metrics"})
    with serve_app(guarded) as url:
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
        wrong = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "unauthorized"
        assert scrape(url, {"Authorization": "Bearer s3cret-metrics"})


def test_keep_the_series_count_whatever_sites_a_key_names(
    servers: tuple[str, str], settings: Settings
) -> None:
    """Each new blog a key names is a site, but no new series: the metrics carry no site."""
    first, _ = servers
    account = create_account(settings, "many-sites")
    with httpx.Client(base_url=first, timeout=10) as client:

        def check(blog: str) -> None:
            body = {"content": HAM, "blog": blog}
            assert client.post("/v1/check", json=body, headers=account.headers).status_code == 200

        check("https://first-of-many.example")
        before = scrape(first)
        text_before = client.get("/metrics").text
        for n in range(30):
            check(f"https://site-{n}.many.example")
        after = scrape(first)
        text_after = client.get("/metrics").text
    assert set(after) == set(before), "the same series, only their values grew"
    assert len(text_after) <= len(text_before) + 100
    assert "many.example" not in text_after
    received = value(after, "commentguard_comments_received_total", account=str(account.id))
    assert received == 31


def test_refuse_metrics_outside_the_allowed_networks(metrics_settings: Settings) -> None:
    elsewhere = metrics_settings.model_copy(update={"metrics_allowed_networks": ["10.0.0.0/8"]})
    with serve_app(elsewhere) as url:
        refused = httpx.get(f"{url}/metrics", timeout=10)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
    token = elsewhere.model_copy(update={"metrics_token": "s3cret-metrics"})
    with serve_app(token) as url:  # a token is asked of every client, from anywhere
        assert scrape(url, {"Authorization": "Bearer s3cret-metrics"})
    with serve_app(metrics_settings) as url:  # the default: the machine itself
        assert scrape(url)


def test_count_retraining_runs_from_the_hook(
    metrics_settings: Settings, sessions: db.SessionFactory
) -> None:
    runs = ["promoted", "rejected", "promoted", "failed"]
    assert retrain_runs_by_outcome(runs) == {"promoted": 2, "rejected": 1, "failed": 1}
    collector = ServiceCollector(metrics_settings, sessions, retrain_runs=lambda: runs)
    try:
        text = render(collector).decode()
    finally:
        collector.close()
    assert 'commentguard_retrain_runs_total{outcome="promoted"} 2.0' in text
    assert 'commentguard_retrain_runs_total{outcome="failed"} 1.0' in text
