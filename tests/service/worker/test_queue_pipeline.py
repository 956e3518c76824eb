"""Webhook to verdict to signed callback, through real Redis, real Celery workers and beat."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service import db, tables
from service.api.app import create_app
from service.embedded import Supervisor
from service.settings import Settings
from service.worker.queue import TaskQueue
from tests.service.conftest import (
    Account,
    CallbackReceiver,
    scored_count,
    verdicts_per_comment,
    wait_until,
)

pytestmark = [pytest.mark.xdist_group("queue_pipeline"), pytest.mark.slow]


@pytest.fixture(scope="module")
def client(settings: Settings, workers: Supervisor) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def submit(client: TestClient, account: Account, external_id: str, callback_url: str | None) -> str:
    body: dict[str, Any] = {
        "external_id": external_id,
        "content": f"comment {external_id}: check out http://spam{external_id}.example now",
        "author": "someone",
        "blog": "https://blog.example.org",
    }
    if callback_url:
        body["callback_url"] = callback_url
    response = client.post("/v1/comments", json=body, headers=account.headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


def test_score_500_comments_once_each_and_deliver_signed_callbacks(
    client: TestClient,
    account: Account,
    receiver: CallbackReceiver,
    sessions: db.SessionFactory,
) -> None:
    ids = [submit(client, account, f"bulk-{n}", receiver.url("/bulk")) for n in range(500)]
    wanted = set(ids)

    def all_delivered() -> bool:
        return wanted <= {r.comment_id for r in receiver.received}

    receiver.wait(all_delivered, 120, "500 callbacks")
    mine = [r for r in receiver.received if r.comment_id in wanted]
    assert all(r.signature_ok for r in mine)
    assert len(mine) == 500, "each comment's callback arrives exactly once"
    assert all(r.body["status"] == "scored" and r.body["verdict"] for r in mine)
    counts = verdicts_per_comment(sessions, ids)
    assert set(counts) == wanted and set(counts.values()) == {1}

    def deliveries() -> list[tables.CallbackDelivery]:
        with sessions() as session:
            query = select(tables.CallbackDelivery).where(
                tables.CallbackDelivery.comment_id.in_([_uuid(i) for i in ids])
            )
            return list(session.execute(query).scalars())

    # The worker records an attempt just after the receiver has answered it.
    wait_until(lambda: {d.status for d in deliveries()} == {"delivered"}, 30, "deliveries")
    assert len(deliveries()) == 500
    assert {d.attempts for d in deliveries()} == {1}


def test_score_comment_task_run_many_times_scores_once(
    client: TestClient,
    account: Account,
    receiver: CallbackReceiver,
    sessions: db.SessionFactory,
    settings: Settings,
) -> None:
    comment_id = submit(client, account, "again", receiver.url("/again"))
    queue = TaskQueue(settings)
    try:
        for _ in range(10):
            assert queue.score(_uuid(comment_id))
    finally:
        queue.close()
    receiver.wait(
        lambda: any(r.comment_id == comment_id for r in receiver.received), 30, "the callback"
    )
    wait_until(lambda: scored_count(sessions, [comment_id]) == 1, 30, "scoring")
    # Give the duplicate tasks time to finish, by waiting until the queue is drained.
    broker = redis.Redis.from_url(settings.redis_url or "")
    wait_until(lambda: broker.llen("commentguard.scoring") == 0, 30, "an empty scoring queue")
    broker.close()
    assert verdicts_per_comment(sessions, [comment_id]) == Counter({comment_id: 1})
    assert sum(1 for r in receiver.received if r.comment_id == comment_id) == 1


def test_submit_same_external_id_twice_scores_and_calls_back_once(
    client: TestClient, account: Account, receiver: CallbackReceiver, sessions: db.SessionFactory
) -> None:
    first = submit(client, account, "twice", receiver.url("/twice"))
    response = client.post(
        "/v1/comments",
        json={
            "external_id": "twice",
            "content": "comment twice: check out http://spamtwice.example now",
            "author": "someone",
            "blog": "https://blog.example.org",
        },
        headers=account.headers,
    )
    assert response.status_code == 200 and response.json()["id"] == first
    receiver.wait(lambda: any(r.comment_id == first for r in receiver.received), 30, "callback")
    assert verdicts_per_comment(sessions, [first]) == Counter({first: 1})


def test_score_every_comment_after_redis_is_flushed(
    client: TestClient,
    account: Account,
    receiver: CallbackReceiver,
    sessions: db.SessionFactory,
    settings: Settings,
) -> None:
    broker = redis.Redis.from_url(settings.redis_url or "")
    ids = [submit(client, account, f"flush-a-{n}", receiver.url("/flush")) for n in range(60)]
    broker.flushdb()  # queued and unacknowledged messages are gone
    ids += [submit(client, account, f"flush-b-{n}", receiver.url("/flush")) for n in range(60)]
    broker.flushdb()
    ids += [submit(client, account, f"flush-c-{n}", None) for n in range(20)]
    broker.close()
    # Whatever the flushes lost, the sweep (every second, for comments pending over 2 s)
    # queues again; the callbacks of every comment with a callback_url arrive too.
    wait_until(lambda: scored_count(sessions, ids) == len(ids), 90, "every comment scored")
    with_callback = set(ids[:120])
    receiver.wait(
        lambda: with_callback <= {r.comment_id for r in receiver.received}, 90, "every callback"
    )
    assert set(verdicts_per_comment(sessions, ids).values()) == {1}


def test_retry_failed_callback_with_backoff_until_delivered(
    client: TestClient, account: Account, receiver: CallbackReceiver, sessions: db.SessionFactory
) -> None:
    comment_id = submit(client, account, "flaky", receiver.url("/fail/2/hook"))
    receiver.wait(
        lambda: any(r.comment_id == comment_id for r in receiver.received), 60, "the callback"
    )
    with sessions() as session:
        delivery = session.execute(
            select(tables.CallbackDelivery).where(
                tables.CallbackDelivery.comment_id == _uuid(comment_id)
            )
        ).scalar_one()
    wait_until(lambda: _delivery_status(sessions, delivery.id) == "delivered", 10, "delivered")
    with sessions() as session:
        attempts = (
            session.execute(
                select(tables.CallbackAttempt)
                .where(tables.CallbackAttempt.delivery_id == delivery.id)
                .order_by(tables.CallbackAttempt.number)
            )
            .scalars()
            .all()
        )
    assert [a.status_code for a in attempts] == [500, 500, 200]
    assert [a.number for a in attempts] == [1, 2, 3]
    # Backoff 0.2 s then 0.4 s: the third attempt starts at least 0.6 s after the first.
    gap = (attempts[2].started_at - attempts[0].started_at).total_seconds()
    assert gap >= 0.55


def test_give_up_callback_after_max_attempts(
    client: TestClient,
    account: Account,
    receiver: CallbackReceiver,
    sessions: db.SessionFactory,
    settings: Settings,
) -> None:
    comment_id = submit(client, account, "broken", receiver.url("/fail/99/hook"))

    def failed() -> bool:
        with sessions() as session:
            delivery = session.execute(
                select(tables.CallbackDelivery).where(
                    tables.CallbackDelivery.comment_id == _uuid(comment_id)
                )
            ).scalar_one_or_none()
            return delivery is not None and delivery.status == "failed"

    wait_until(failed, 60, "the delivery to be given up")
    with sessions() as session:
        delivery = session.execute(
            select(tables.CallbackDelivery).where(
                tables.CallbackDelivery.comment_id == _uuid(comment_id)
            )
        ).scalar_one()
        count = session.execute(
            select(func.count())
            .select_from(tables.CallbackAttempt)
            .where(tables.CallbackAttempt.delivery_id == delivery.id)
        ).scalar_one()
    assert delivery.attempts == settings.callback_max_attempts == count
    assert delivery.last_status_code == 500


def _delivery_status(sessions: db.SessionFactory, delivery_id: Any) -> str:
    with sessions() as session:
        delivery = session.get(tables.CallbackDelivery, delivery_id)
        return delivery.status if delivery is not None else ""
