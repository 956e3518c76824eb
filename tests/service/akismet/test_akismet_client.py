"""The Akismet endpoints driven by the real `akismet` package from PyPI, against a live server.

The client always calls https://rest.akismet.com; its httpx client gets a transport that sends
each request to our uvicorn instead, which is what changing the base URL does for a platform.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import akismet
import httpx
import pytest
from sqlalchemy import select, update

from service import db, tables
from service.privacy import hash_ip
from service.security import KEY_PREFIX, LOOKUP_LENGTH
from tests.service.conftest import TEST_SECRET, Account, LiveServer, create_account

pytestmark = pytest.mark.xdist_group("akismet_client")

HAM_TEXT = "I love this song, it reminds me of my childhood."
UNSURE_TEXT = "I like this, check my new song"
DISCARD_TEXT = "Check out my channel http://bit.ly/x subscribe!!!"
BLOG = "https://blog.example"


class ToServer(httpx.BaseTransport):
    """Sends every request to `base` (keeping its path, query, body and Host header)."""

    def __init__(self, base: str) -> None:
        self.base = httpx.URL(base)
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(
            scheme=self.base.scheme, host=self.base.host, port=self.base.port
        )
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def account(live_server: LiveServer) -> Account:
    return create_account(live_server.settings, "akismet-client")


def make_client(server: LiveServer, key: str, blog: str = BLOG) -> akismet.SyncClient:
    # akismet 25.10.1's key_sites() sends no api_key of its own, so the key also rides along
    # as a default query parameter; the 1.1 calls read the body only and ignore it.
    http = httpx.Client(
        transport=ToServer(server.url),
        headers={"User-Agent": akismet.USER_AGENT},
        params={"api_key": key},
        timeout=10.0,
    )
    return akismet.SyncClient(config=akismet.Config(key=key, url=blog), http_client=http)


@pytest.fixture
def client(live_server: LiveServer, account: Account) -> Iterator[akismet.SyncClient]:
    with make_client(live_server, account.key) as validated:
        yield validated


class Stored:
    """Reads what the server stored, through a connection of the test's own."""

    def __init__(self, server: LiveServer) -> None:
        self.engine = db.make_engine(server.settings)
        self.sessions = db.make_session_factory(self.engine)

    def comments(self, account_id: int) -> list[tables.Comment]:
        with self.sessions() as session:
            return list(
                session.execute(
                    select(tables.Comment)
                    .join(tables.Site, tables.Site.id == tables.Comment.site_id)
                    .where(tables.Site.account_id == account_id)
                    .order_by(tables.Comment.received_at)
                ).scalars()
            )

    def last_comment(self, account_id: int) -> tables.Comment:
        return self.comments(account_id)[-1]

    def labels(self, comment_id: uuid.UUID) -> list[tables.Label]:
        with self.sessions() as session:
            return list(
                session.execute(
                    select(tables.Label)
                    .where(tables.Label.comment_id == comment_id)
                    .order_by(tables.Label.id)
                ).scalars()
            )

    def set_usage_limit(self, account_id: int, limit: int | None) -> None:
        with self.sessions() as session:
            session.execute(
                update(tables.Account)
                .where(tables.Account.id == account_id)
                .values(usage_limit=limit)
            )
            session.commit()

    def add_checks(self, account_id: int, count: int, received_at: datetime) -> None:
        """Comments as if checked at `received_at` (for months the test cannot wait for)."""
        with self.sessions() as session:
            site = session.execute(
                select(tables.Site).where(tables.Site.account_id == account_id)
            ).scalar_one()
            for _ in range(count):
                session.add(
                    tables.Comment(
                        site_id=site.id,
                        status=tables.CommentStatus.SCORED,
                        content="old",
                        received_at=received_at,
                    )
                )
            session.commit()

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture(scope="module")
def stored(live_server: LiveServer) -> Iterator[Stored]:
    reader = Stored(live_server)
    yield reader
    reader.close()


def check(client: akismet.SyncClient, text: str, **fields: Any) -> akismet.CheckResponse:
    return client.comment_check(
        user_ip="203.0.113.7",
        user_agent="Mozilla/5.0",
        comment_type="comment",
        comment_author=fields.pop("comment_author", "Ann"),
        comment_content=text,
        **fields,
    )


# --- verify-key --------------------------------------------------------------------------


def test_verify_key_accepts_a_valid_key(live_server: LiveServer, account: Account) -> None:
    client = akismet.SyncClient.validated_client(
        config=akismet.Config(key=account.key, url=BLOG),
        http_client=httpx.Client(transport=ToServer(live_server.url)),
    )
    assert client.verify_key() is True
    assert client.verify_key(account.key, "https://other.example") is True


def test_verify_key_refuses_an_unknown_key(live_server: LiveServer) -> None:
    client = make_client(live_server, "cg_" + "x" * 43)
    assert client.verify_key() is False
    with pytest.raises(akismet.APIKeyError):
        akismet.SyncClient.validated_client(
            config=akismet.Config(key="cg_unknown", url=BLOG),
            http_client=httpx.Client(transport=ToServer(live_server.url)),
        )
    with pytest.raises(akismet.APIKeyError):
        check(client, HAM_TEXT)


# --- comment-check -----------------------------------------------------------------------


def test_comment_check_answers_ham(
    client: akismet.SyncClient, account: Account, stored: Stored
) -> None:
    assert check(client, HAM_TEXT) == akismet.CheckResponse.HAM
    comment = stored.last_comment(account.id)
    assert comment.content == HAM_TEXT
    assert comment.author == "Ann"
    # Stored as a keyed hash (COMMENTGUARD_STORE_RAW_IP is off): docs/privacy.md.
    assert comment.user_ip == hash_ip("203.0.113.7", TEST_SECRET)
    assert comment.status == tables.CommentStatus.SCORED
    assert comment.verdict is not None and comment.verdict.decision == "ham"
    assert comment.verdict.model_version


def test_comment_check_answers_ham_for_unsure(
    client: akismet.SyncClient, account: Account, stored: Stored
) -> None:
    assert check(client, UNSURE_TEXT) == akismet.CheckResponse.HAM
    verdict = stored.last_comment(account.id).verdict
    assert verdict is not None and verdict.decision == "unsure"  # held for a moderator


def test_comment_check_answers_spam_for_the_guaranteed_spam_author(
    client: akismet.SyncClient, account: Account, stored: Stored
) -> None:
    assert (
        check(client, HAM_TEXT, comment_author="akismet-guaranteed-spam")
        == akismet.CheckResponse.SPAM
    )
    verdict = stored.last_comment(account.id).verdict
    assert verdict is not None and verdict.decision == "spam"
    assert verdict.reasons[0]["feature"] == "rule:akismet-guaranteed-spam"
    assert verdict.model_version
    assert (
        check(client, HAM_TEXT, comment_author_email="akismet-guaranteed-spam@example.com")
        == akismet.CheckResponse.SPAM
    )


def test_comment_check_answers_discard(
    client: akismet.SyncClient, account: Account, stored: Stored
) -> None:
    assert check(client, DISCARD_TEXT) == akismet.CheckResponse.DISCARD
    verdict = stored.last_comment(account.id).verdict
    assert verdict is not None and verdict.decision == "discard"
    assert verdict.reasons and not verdict.reasons[0]["feature"].startswith("rule:")


def test_comment_check_answers_ham_for_an_administrator(
    client: akismet.SyncClient, account: Account, stored: Stored
) -> None:
    assert check(client, DISCARD_TEXT, user_role="administrator") == akismet.CheckResponse.HAM
    verdict = stored.last_comment(account.id).verdict
    assert verdict is not None and verdict.decision == "ham"
    assert verdict.reasons[0]["feature"] == "rule:administrator"


def test_comment_check_stores_a_test_as_a_test(
    client: akismet.SyncClient, account: Account, stored: Stored
) -> None:
    assert check(client, DISCARD_TEXT, is_test=True) == akismet.CheckResponse.DISCARD
    comment = stored.last_comment(account.id)
    assert comment.is_test is True
    assert client.usage_limit()["usage"] == 0


# --- submit-spam / submit-ham ------------------------------------------------------------


def test_submit_spam_labels_the_checked_comment(
    client: akismet.SyncClient, account: Account, stored: Stored
) -> None:
    assert check(client, HAM_TEXT) == akismet.CheckResponse.HAM
    checked = stored.last_comment(account.id)
    assert (
        client.submit_spam(user_ip="203.0.113.7", comment_author="Ann", comment_content=HAM_TEXT)
        is True
    )
    assert len(stored.comments(account.id)) == 1
    [label] = stored.labels(checked.id)
    assert (label.label, label.source, label.created_comment) == ("spam", "feedback", False)
    assert label.actor == f"akismet:{account.key[: len(KEY_PREFIX) + LOOKUP_LENGTH]}"
    [site] = client.key_sites()[datetime.now(UTC).strftime("%Y-%m")]
    assert (site["missed_spam"], site["false_positives"]) == ("1", "0")


def test_submit_ham_labels_the_checked_comment(
    client: akismet.SyncClient, account: Account, stored: Stored
) -> None:
    assert check(client, DISCARD_TEXT) == akismet.CheckResponse.DISCARD
    checked = stored.last_comment(account.id)
    assert (
        client.submit_ham(user_ip="203.0.113.7", comment_author="Ann", comment_content=DISCARD_TEXT)
        is True
    )
    [label] = stored.labels(checked.id)
    assert (label.label, label.source) == ("ham", "feedback")
    [site] = client.key_sites()[datetime.now(UTC).strftime("%Y-%m")]
    assert (site["missed_spam"], site["false_positives"]) == ("0", "1")


def test_submit_spam_then_ham_keeps_both_labels_and_the_newest_counts(
    client: akismet.SyncClient, account: Account, stored: Stored
) -> None:
    check(client, HAM_TEXT)
    client.submit_spam(user_ip="203.0.113.7", comment_author="Ann", comment_content=HAM_TEXT)
    client.submit_ham(user_ip="203.0.113.7", comment_author="Ann", comment_content=HAM_TEXT)
    labels = stored.labels(stored.last_comment(account.id).id)
    assert [label.label for label in labels] == ["spam", "ham"]
    [site] = client.key_sites()[datetime.now(UTC).strftime("%Y-%m")]
    assert (site["missed_spam"], site["false_positives"]) == ("0", "0")


def test_submit_spam_stores_a_comment_never_checked(
    client: akismet.SyncClient, account: Account, stored: Stored
) -> None:
    assert client.submit_spam(user_ip="198.51.100.1", comment_content="Never checked") is True
    [comment] = stored.comments(account.id)
    assert comment.content == "Never checked"
    assert comment.verdict is not None  # scored like any other, so the sweep leaves it alone
    [label] = stored.labels(comment.id)
    assert (label.label, label.created_comment) == ("spam", True)
    # It was no API call, and no verdict of ours was wrong about it.
    assert client.usage_limit()["usage"] == 0
    assert client.key_sites()["total"] == 0


# --- usage-limit -------------------------------------------------------------------------


def test_usage_limit_counts_this_month_checks(client: akismet.SyncClient, account: Account) -> None:
    assert client.usage_limit() == {
        "limit": "none",
        "usage": 0,
        "percentage": "0.00",
        "throttled": False,
    }
    for text in (HAM_TEXT, UNSURE_TEXT, DISCARD_TEXT):
        check(client, text)
    assert client.usage_limit() == {
        "limit": "none",
        "usage": 3,
        "percentage": "0.00",
        "throttled": False,
    }


def test_usage_limit_reports_the_account_limit(
    client: akismet.SyncClient, account: Account, stored: Stored
) -> None:
    for text in (HAM_TEXT, UNSURE_TEXT, DISCARD_TEXT):
        check(client, text)
    stored.set_usage_limit(account.id, 8)
    assert client.usage_limit() == {
        "limit": 8,
        "usage": 3,
        "percentage": "37.50",
        "throttled": False,
    }
    stored.set_usage_limit(account.id, 2)
    # Over the limit this month only: not throttled (Akismet throttles after three months).
    assert client.usage_limit() == {
        "limit": 2,
        "usage": 3,
        "percentage": "150.00",
        "throttled": False,
    }


def test_usage_limit_throttles_after_three_months_over_the_limit(
    client: akismet.SyncClient, account: Account, stored: Stored
) -> None:
    for text in (HAM_TEXT, UNSURE_TEXT, DISCARD_TEXT):
        check(client, text)
    this_month = datetime.now(UTC).replace(day=1, hour=12, minute=0, second=0, microsecond=0)
    last_month = (this_month - timedelta(days=1)).replace(day=15)
    month_before = (last_month.replace(day=1) - timedelta(days=1)).replace(day=15)
    stored.add_checks(account.id, 3, last_month)
    stored.set_usage_limit(account.id, 2)
    assert client.usage_limit()["throttled"] is False
    stored.add_checks(account.id, 3, month_before)
    assert client.usage_limit()["throttled"] is True


# --- key-sites ---------------------------------------------------------------------------


def test_key_sites_reports_each_site_in_json(live_server: LiveServer, account: Account) -> None:
    with make_client(live_server, account.key, "https://big.example") as big:
        for text in (HAM_TEXT, UNSURE_TEXT, DISCARD_TEXT):
            check(big, text)
    with make_client(live_server, account.key, "https://small.example/") as small:
        check(small, DISCARD_TEXT)
        month = datetime.now(UTC).strftime("%Y-%m")
        assert small.key_sites() == {
            month: [
                {
                    "site": "https://big.example",
                    "api_calls": "3",
                    "spam": "1",
                    "ham": "2",
                    "missed_spam": "0",
                    "false_positives": "0",
                    "is_revoked": False,
                },
                {
                    "site": "https://small.example",
                    "api_calls": "1",
                    "spam": "1",
                    "ham": "0",
                    "missed_spam": "0",
                    "false_positives": "0",
                    "is_revoked": False,
                },
            ],
            "limit": 500,
            "offset": 0,
            "total": 2,
        }
        paged = small.key_sites(month=month, url_filter="SMALL", order="spam", limit=1)
        assert isinstance(paged, dict)
        assert [s["site"] for s in paged[month]] == ["https://small.example"]
        assert (paged["limit"], paged["total"]) == (1, 1)
        assert small.key_sites(month="2001-01") == {
            "2001-01": [],
            "limit": 500,
            "offset": 0,
            "total": 0,
        }


def test_key_sites_reports_each_site_in_csv(client: akismet.SyncClient, account: Account) -> None:
    check(client, HAM_TEXT)
    check(client, DISCARD_TEXT)
    client.submit_ham(user_ip="203.0.113.7", comment_author="Ann", comment_content=DISCARD_TEXT)
    month = datetime.now(UTC).strftime("%Y-%m")
    report = client.key_sites(result_format="csv")
    shown = account.key[: len(KEY_PREFIX) + LOOKUP_LENGTH]
    assert report == (
        f"Active sites for {shown}… during {month} (limit:500, offset: 0, total: 1)\n"
        "Site,Total API Calls,Spam,Ham,Missed Spam,False Positives,Is Revoked\n"
        "https://blog.example,2,1,1,0,1,false"
    )
