"""Comments keep flowing while a worker, Redis, the API or PostgreSQL goes away and comes back.

One stack per module (a private PostgreSQL database, a private Redis, the API as a subprocess,
the workers and beat as subprocesses, a signature-checking receiver), shared by the tests in
order; each test posts for an account of its own and checks only its own comments.
"""

from __future__ import annotations

import signal
import uuid
from collections import Counter

import httpx
import pytest
from sqlalchemy import select

from service import db, tables
from tests.reliability.conftest import (
    ApiProcess,
    Poster,
    PrivateCluster,
    PrivateRedis,
    Workers,
    assert_scored_once_and_called_back,
)
from tests.service.conftest import Account, CallbackReceiver, wait_until

pytestmark = [pytest.mark.xdist_group("reliability_outages"), pytest.mark.slow]


def test_score_2000_comments_once_while_workers_are_killed_twice(
    api: ApiProcess,
    workers: Workers,
    account: Account,
    receiver: CallbackReceiver,
    sessions: db.SessionFactory,
) -> None:
    poster = Poster(api.url, account, "kill", 2000, receiver.url("/kill")).start()
    for round_ in range(2):
        # Killed while they work through the stream; the stream goes on while they are down.
        wait_until(lambda r=round_: poster.posted >= 400 + 800 * r, 120, "comments posted")
        workers.kill()
        wait_until(lambda r=round_: poster.posted >= 700 + 800 * r, 120, "comments posted")
        workers.start()
    poster.join(300)
    figures = assert_scored_once_and_called_back(
        list(poster.ids.values()), sessions, receiver, 180, workers.check_alive
    )
    assert workers.kills == 2
    assert figures["comments"] == 2000
    print(f"worker kills: {figures}")


def test_lose_nothing_when_redis_is_flushed_and_restarted(
    api: ApiProcess,
    workers: Workers,
    private_redis: PrivateRedis,
    account: Account,
    receiver: CallbackReceiver,
    sessions: db.SessionFactory,
) -> None:
    poster = Poster(api.url, account, "redis", 600, receiver.url("/redis")).start()
    wait_until(lambda: poster.posted >= 150, 120, "comments posted")
    private_redis.flush()  # every queued and reserved message is gone
    wait_until(lambda: poster.posted >= 300, 120, "comments posted")
    private_redis.kill()  # down while comments keep arriving, then back empty
    wait_until(lambda: poster.posted >= 400, 120, "comments posted")
    private_redis.start()
    poster.join(300)
    figures = assert_scored_once_and_called_back(
        list(poster.ids.values()), sessions, receiver, 180, workers.restart_exited
    )
    assert set(poster.statuses) <= {202}, "intake never waits on Redis"
    print(f"redis flush and restart: {figures}, workers that exited: {workers.crashes}")


def test_store_each_external_id_once_while_the_api_restarts(
    api: ApiProcess,
    workers: Workers,
    account: Account,
    receiver: CallbackReceiver,
    sessions: db.SessionFactory,
) -> None:
    poster = Poster(api.url, account, "api", 900, receiver.url("/api"), threads=6).start()
    wait_until(lambda: poster.posted >= 200, 120, "comments posted")
    api.restart(signal.SIGTERM)  # a rolling deploy
    wait_until(lambda: poster.posted >= 500, 120, "comments posted")
    api.restart(signal.SIGKILL)  # a crash, with requests in flight
    poster.join(300)
    assert poster.connection_errors > 0, "the clients saw the API go away"
    ids = list(poster.ids.values())
    with sessions() as session:
        rows = session.execute(
            select(tables.Comment.external_id, tables.Comment.id)
            .join(tables.Site, tables.Site.id == tables.Comment.site_id)
            .where(tables.Site.account_id == account.id)
        ).all()
    per_external_id = Counter(external for external, _ in rows)
    assert len(per_external_id) == 900 and set(per_external_id.values()) == {1}
    assert {str(external): str(id_) for external, id_ in rows} == poster.ids
    figures = assert_scored_once_and_called_back(ids, sessions, receiver, 180, workers.check_alive)
    print(f"api restarts: {figures}, connection errors {poster.connection_errors}")


def test_answer_503_while_postgres_is_stopped_and_recover_alone(
    api: ApiProcess,
    workers: Workers,
    postgres: PrivateCluster,
    account: Account,
    receiver: CallbackReceiver,
    sessions: db.SessionFactory,
) -> None:
    poster = Poster(api.url, account, "pg", 500, receiver.url("/pg")).start()
    wait_until(lambda: poster.posted >= 100, 120, "comments posted")
    postgres.stop("fast")
    try:
        with httpx.Client(base_url=api.url, headers=account.headers, timeout=10) as client:
            for path, body in (
                ("/v1/comments", {"content": "hello", "external_id": f"down-{uuid.uuid4()}"}),
                ("/v1/check", {"content": "hello"}),
            ):
                response = client.post(path, json=body)
                assert response.status_code == 503, (path, response.text)
                assert response.headers["retry-after"].isdigit()
                assert response.json()["error"]["code"] == "unavailable"
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["error"]["details"]["database"] != "ok"
        # The stream meets the outage too, and keeps retrying its comments.
        wait_until(lambda: poster.statuses[503] >= 20, 60, "the stream to meet 503s")
    finally:
        postgres.start()
    poster.join(300)
    figures = assert_scored_once_and_called_back(
        list(poster.ids.values()), sessions, receiver, 180, workers.check_alive
    )
    assert poster.retry_after, "every 503 carried Retry-After"
    wait_until(lambda: httpx.get(f"{api.url}/readyz").status_code == 200, 30, "/readyz")
    print(f"postgres stop: {figures}, 503s answered {poster.statuses[503]}")
