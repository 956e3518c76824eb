"""Privacy: hashed IPs on every intake path, the retention purge run by beat, forgetting."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from service import db, tables
from service.embedded import Supervisor, child_env
from service.metrics import read_snapshot
from service.privacy import IP_HASH_PREFIX, hash_ip, purge_expired
from service.settings import Settings
from tests.service.conftest import Account, SettingsFor, create_account, serve_app, wait_until

pytestmark = [pytest.mark.xdist_group("privacy"), pytest.mark.slow]

RETENTION_DAYS = 30
SPAMMY = "Check out my channel http://bit.ly/x subscribe now"


@pytest.fixture(scope="module")
def settings(settings_for: SettingsFor) -> Settings:
    """This module's settings: beat runs the retention purge every second."""
    return settings_for(retention_days=RETENTION_DAYS, retention_interval_seconds=1.0)


@pytest.fixture(scope="module")
def api(settings: Settings, workers: Supervisor) -> Iterator[httpx.Client]:
    with serve_app(settings) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def stored(sessions: db.SessionFactory, comment_id: str) -> tables.Comment:
    with sessions() as session:
        row = session.execute(
            select(tables.Comment).where(tables.Comment.id == uuid.UUID(comment_id))
        ).scalar_one()
        session.expunge(row)
        return row


def check(client: httpx.Client, account: Account, **fields: Any) -> dict[str, Any]:
    body = {"content": SPAMMY, "blog": "https://privacy.example", **fields}
    response = client.post("/v1/check", json=body, headers=account.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_store_ip_as_keyed_hash_on_every_intake_path(
    api: httpx.Client, settings: Settings, sessions: db.SessionFactory
) -> None:
    account = create_account(settings, "hashed-ip")
    ip = "203.0.113.50"
    expected = hash_ip(ip, settings.secret_key)
    assert expected.startswith(IP_HASH_PREFIX) and ip not in expected
    checked = check(api, account, user_ip=ip)
    webhook = api.post(
        "/v1/comments",
        json={"content": SPAMMY, "blog": "https://privacy.example", "user_ip": f"::ffff:{ip}",
              "external_id": "hashed-1"},
        headers=account.headers,
    )  # fmt: skip
    assert webhook.status_code == 202, webhook.text
    akismet = api.post(
        "/1.1/comment-check",
        data={"api_key": account.key, "blog": "https://privacy.example", "user_ip": ip,
              "comment_content": SPAMMY},
    )  # fmt: skip
    assert akismet.text in ("true", "false")
    ids = [checked["id"], webhook.json()["id"], akismet.headers["X-akismet-guid"]]
    for comment_id in ids:
        assert stored(sessions, comment_id).user_ip == expected
    # The worker scores the stored (hashed) comment; the verdict is the one /v1/check gave.
    wait_until(lambda: stored(sessions, ids[1]).verdict is not None, 30, "the worker's verdict")
    worker_verdict = stored(sessions, ids[1]).verdict
    assert worker_verdict is not None
    assert worker_verdict.score == pytest.approx(checked["verdict"]["score"])


def test_store_raw_ip_when_configured(settings: Settings, sessions: db.SessionFactory) -> None:
    account = create_account(settings, "raw-ip")
    raw = settings.model_copy(update={"store_raw_ip": True})
    with serve_app(raw) as url, httpx.Client(base_url=url, timeout=10) as client:
        comment = check(client, account, user_ip="198.51.100.4")
    assert stored(sessions, comment["id"]).user_ip == "198.51.100.4"


def test_purge_expired_comments_keeping_verdicts_and_labels(
    api: httpx.Client, settings: Settings, sessions: db.SessionFactory
) -> None:
    account = create_account(settings, "retention")
    personal = {
        "author": "Jane Doe",
        "author_email": "jane.retention@example.org",
        "author_url": "https://jane.example",
        "user_ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0",
        "referrer": "https://search.example/?q=jane",
        "extra": {"HTTP_X_FORWARDED_FOR": "203.0.113.9"},
    }
    old = [check(api, account, external_id=f"old-{i}", **personal) for i in range(2)]
    recent = check(api, account, external_id="recent", **personal)
    with sessions() as session:
        session.add(
            tables.Label(
                comment_id=uuid.UUID(old[0]["id"]),
                label="ham",
                source=tables.LabelSource.MODERATOR.value,
            )
        )
        session.commit()
    counts_before = read_snapshot(sessions)
    with sessions() as session:
        session.execute(
            update(tables.Comment)
            .where(tables.Comment.id.in_([uuid.UUID(c["id"]) for c in old]))
            .values(received_at=tables.utcnow() - timedelta(days=RETENTION_DAYS + 1))
        )
        session.commit()

    # Beat queues the purge every second; a worker runs it.
    wait_until(
        lambda: all(stored(sessions, c["id"]).purged_at is not None for c in old),
        30,
        "the retention purge",
    )
    for before in old:
        row = stored(sessions, before["id"])
        assert (row.content, row.author, row.author_email, row.author_url) == ("", "", "", "")
        assert (row.user_ip, row.user_agent, row.referrer, row.extra) == ("", "", "", {})
        assert row.external_id == before["external_id"]  # the platform's id still resolves
        verdict = row.verdict
        assert verdict is not None
        assert verdict.decision == before["verdict"]["decision"]
        assert verdict.score == pytest.approx(before["verdict"]["score"])
        assert verdict.model_version == before["verdict"]["model_version"]
        assert all(r["feature"].startswith("signal:") for r in verdict.reasons)
    with sessions() as session:
        labels = session.execute(
            select(tables.Label.label).where(tables.Label.comment_id == uuid.UUID(old[0]["id"]))
        ).all()
    assert [label for (label,) in labels] == ["ham"]
    kept = stored(sessions, recent["id"])
    assert kept.purged_at is None and kept.author_email == "jane.retention@example.org"
    # Counts (the metrics, the Akismet reports) are the same as before the purge.
    counts_after = read_snapshot(sessions)
    assert (counts_after.received, counts_after.scored, counts_after.labels) == (
        counts_before.received,
        counts_before.scored,
        counts_before.labels,
    )
    # The API still answers for a purged comment, verdict included.
    answer = api.get(f"/v1/comments/{old[1]['id']}", headers=account.headers)
    assert answer.status_code == 200
    assert answer.json()["verdict"]["decision"] == old[1]["verdict"]["decision"]


def test_keep_everything_when_retention_is_zero(
    api: httpx.Client, settings: Settings, sessions: db.SessionFactory
) -> None:
    account = create_account(settings, "keep-forever")
    comment = check(api, account, author="Kept")
    forever = settings.model_copy(update={"retention_days": 0})
    far_future = tables.utcnow() + timedelta(days=10_000)
    assert purge_expired(sessions, forever, now=far_future).comments == 0
    assert stored(sessions, comment["id"]).author == "Kept"


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_forget_a_person_by_email(
    api: httpx.Client, settings: Settings, sessions: db.SessionFactory
) -> None:
    account = create_account(settings, "forget")
    theirs = [
        check(api, account, author="Sam", author_email="Sam.Forget@Example.org", user_ip="1.2.3.4"),
        check(api, account, author="Sam", author_email=" sam.forget@example.org "),
    ]
    other = check(api, account, author="Alex", author_email="alex@example.org")

    result = run_cli(settings, "privacy", "forget", "--email", "SAM.forget@example.ORG")
    assert result.returncode == 0, result.stderr
    assert "comments=2" in result.stdout
    assert "2 comments purged" in result.stderr
    for comment in theirs:
        row = stored(sessions, comment["id"])
        assert row.purged_at is not None
        assert (row.content, row.author, row.author_email, row.user_ip) == ("", "", "", "")
        assert row.verdict is not None and row.verdict.decision == comment["verdict"]["decision"]
    assert stored(sessions, other["id"]).author_email == "alex@example.org"
    # Nothing is left to find the second time.
    again = run_cli(settings, "privacy", "forget", "--email", "sam.forget@example.org")
    assert again.returncode == 0 and "comments=0" in again.stdout


def test_refuse_forget_without_an_address(settings: Settings) -> None:
    result = run_cli(settings, "privacy", "forget", "--email", "  ")
    assert result.returncode == 2
    assert "--email" in result.stderr
