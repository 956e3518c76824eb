"""The Akismet protocol in raw HTTP: keys, charsets, missing and unknown fields, exact answers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import func, select, update

from service import akismet, db, tables
from service.privacy import hash_ip
from tests.service.conftest import (
    Account,
    LiveServer,
    create_account,
    session_factory,
    stored_text,
)

pytestmark = pytest.mark.xdist_group("akismet_protocol")

HAM_TEXT = "I love this song, it reminds me of my childhood."
DISCARD_TEXT = "Check out my channel http://bit.ly/x subscribe!!!"
FORM = "application/x-www-form-urlencoded"
THANKS = b"Thanks for making the web a better place."


@pytest.fixture(scope="module")
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=10.0) as client:
        yield client


@pytest.fixture
def account(live_server: LiveServer) -> Account:
    return create_account(live_server.settings, "akismet-protocol")


@pytest.fixture(scope="module")
def sessions(live_server: LiveServer) -> Iterator[db.SessionFactory]:
    with session_factory(live_server.settings) as factory:
        yield factory


def fields(account: Account, **extra: Any) -> dict[str, Any]:
    return {
        "api_key": account.key,
        "blog": "https://blog.example",
        "user_ip": "203.0.113.7",
        "comment_author": "Ann",
        "comment_content": HAM_TEXT,
        **extra,
    }


def comment_of(sessions: db.SessionFactory, response: httpx.Response) -> tables.Comment:
    with sessions() as session:
        comment = session.get(tables.Comment, uuid.UUID(response.headers["x-akismet-guid"]))
        assert comment is not None
        return comment


def akismet_headers(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("x-akismet")}


def assert_plain(response: httpx.Response, body: bytes) -> None:
    assert response.status_code == 200
    assert response.content == body  # byte-exact: no trailing newline
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


# --- exact answers -----------------------------------------------------------------------


def test_comment_check_answers_false_with_only_a_guid(
    http: httpx.Client, account: Account, sessions: db.SessionFactory
) -> None:
    response = http.post("/1.1/comment-check", data=fields(account))
    assert_plain(response, b"false")
    assert set(akismet_headers(response)) == {"x-akismet-guid"}
    assert comment_of(sessions, response).content == HAM_TEXT


def test_comment_check_without_content_answers_as_for_an_empty_comment(
    http: httpx.Client, account: Account, sessions: db.SessionFactory
) -> None:
    form = fields(account)
    del form["comment_content"]
    for path in ("/1.1/comment-check", "/1.1/submit-spam", "/1.1/submit-ham"):
        response = http.post(path, data=form)
        assert response.status_code == 200, (path, response.text)
    response = http.post("/1.1/comment-check", data=form)
    assert comment_of(sessions, response).content == ""


def test_comment_check_answers_true_with_a_discard_tip(
    http: httpx.Client, account: Account
) -> None:
    response = http.post("/1.1/comment-check", data=fields(account, comment_content=DISCARD_TEXT))
    assert_plain(response, b"true")
    headers = akismet_headers(response)
    assert set(headers) == {"x-akismet-guid", "x-akismet-pro-tip"}
    assert headers["x-akismet-pro-tip"] == "discard"


def test_comment_check_answers_true_without_a_tip_for_spam(
    http: httpx.Client, account: Account
) -> None:
    response = http.post(
        "/1.1/comment-check", data=fields(account, comment_author="akismet-guaranteed-spam")
    )
    assert_plain(response, b"true")
    assert set(akismet_headers(response)) == {"x-akismet-guid"}


def test_verify_key_and_submit_answer_exact_bodies(http: httpx.Client, account: Account) -> None:
    response = http.post("/1.1/verify-key", data={"key": account.key, "blog": "https://b.example"})
    assert_plain(response, b"valid")
    assert akismet_headers(response) == {}
    for endpoint in ("/1.1/submit-spam", "/1.1/submit-ham"):
        response = http.post(endpoint, data=fields(account))
        assert_plain(response, THANKS)
        assert akismet_headers(response) == {}


def test_usage_limit_answers_exact_json_from_the_query_string(
    http: httpx.Client, account: Account
) -> None:
    response = http.get("/1.2/usage-limit", params={"api_key": account.key})
    assert response.status_code == 200
    assert (
        response.content
        == b'{"limit": "none", "usage": 0, "percentage": "0.00", "throttled": false}'
    )
    assert response.headers["content-type"] == "application/json"
    posted = http.post("/1.2/usage-limit", data={"api_key": account.key})
    assert posted.content == response.content


# --- keys --------------------------------------------------------------------------------


def test_comment_check_refuses_an_unknown_key_with_debug_help(http: httpx.Client) -> None:
    response = http.post(
        "/1.1/comment-check", data={"api_key": "cg_nope", "blog": "x", "user_ip": "1"}
    )
    assert_plain(response, b"invalid")
    assert set(akismet_headers(response)) == {"x-akismet-debug-help"}
    assert "key" in response.headers["x-akismet-debug-help"].lower()


def test_every_call_refuses_a_missing_key(http: httpx.Client) -> None:
    for method, path in [
        ("POST", "/1.1/verify-key"),
        ("POST", "/1.1/comment-check"),
        ("POST", "/1.1/submit-spam"),
        ("POST", "/1.1/submit-ham"),
        ("GET", "/1.2/usage-limit"),
        ("GET", "/1.2/key-sites"),
    ]:
        response = http.request(method, path, data={"blog": "https://b.example", "user_ip": "1"})
        assert_plain(response, b"invalid")
        assert "api_key" in response.headers["x-akismet-debug-help"], path


def test_comment_check_reads_the_key_from_the_host_subdomain(
    http: httpx.Client, account: Account
) -> None:
    body = fields(account)
    del body["api_key"]
    response = http.post(
        "/1.1/comment-check", data=body, headers={"Host": f"{account.key}.rest.akismet.com"}
    )
    assert_plain(response, b"false")
    response = http.post(
        "/1.1/verify-key", data={"blog": "https://b.example"}, headers={"Host": f"{account.key}.x"}
    )
    assert_plain(response, b"valid")
    # Host names are case-insensitive: a proxy that upper-cases one must not break the key.
    response = http.post(
        "/1.1/verify-key",
        data={"blog": "https://b.example"},
        headers={"Host": f"{account.key.upper()}.REST.AKISMET.COM"},
    )
    assert_plain(response, b"valid")


def test_comment_check_prefers_api_key_and_verify_key_prefers_key(
    http: httpx.Client, account: Account
) -> None:
    wrong = "cg_" + "w" * 43
    check = http.post("/1.1/comment-check", data=fields(account, api_key=wrong, key=account.key))
    assert_plain(check, b"invalid")
    check = http.post("/1.1/comment-check", data=fields(account, key=wrong))
    assert_plain(check, b"false")
    verify = http.post(
        "/1.1/verify-key", data={"key": account.key, "api_key": wrong, "blog": "https://b.example"}
    )
    assert_plain(verify, b"valid")


def test_revoked_key_is_invalid(
    http: httpx.Client, live_server: LiveServer, sessions: db.SessionFactory
) -> None:
    # A key never used before, so that no process has it cached.
    revoked = create_account(live_server.settings, "revoked")
    with sessions() as session:
        key = session.execute(
            select(tables.ApiKey).where(tables.ApiKey.account_id == revoked.id)
        ).scalar_one()
        key.revoked_at = tables.utcnow()
        session.commit()
    response = http.post("/1.1/verify-key", data={"key": revoked.key, "blog": "https://b.example"})
    assert_plain(response, b"invalid")


# --- missing fields ----------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["blog", "user_ip"])
@pytest.mark.parametrize("endpoint", ["comment-check", "submit-spam", "submit-ham"])
def test_missing_required_field_is_invalid_with_debug_help(
    http: httpx.Client, account: Account, endpoint: str, missing: str
) -> None:
    body = fields(account)
    del body[missing]
    response = http.post(f"/1.1/{endpoint}", data=body)
    assert_plain(response, b"invalid")
    assert set(akismet_headers(response)) == {"x-akismet-debug-help"}
    assert missing in response.headers["x-akismet-debug-help"]


def test_verify_key_without_blog_is_invalid(http: httpx.Client, account: Account) -> None:
    response = http.post("/1.1/verify-key", data={"key": account.key})
    assert_plain(response, b"invalid")
    assert "blog" in response.headers["x-akismet-debug-help"]


def test_key_sites_refuses_a_malformed_month(http: httpx.Client, account: Account) -> None:
    response = http.get("/1.2/key-sites", params={"api_key": account.key, "month": "2024-13"})
    assert_plain(response, b"invalid")
    assert "YYYY-MM" in response.headers["x-akismet-debug-help"]
    response = http.get("/1.2/key-sites", params={"api_key": account.key, "format": "xml"})
    assert_plain(response, b"invalid")


# --- charsets ----------------------------------------------------------------------------


def post_raw(http: httpx.Client, body: bytes, content_type: str | None) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return http.post("/1.1/comment-check", content=body, headers=headers)


def raw_body(account: Account, content: bytes, **extra: str) -> bytes:
    head = urlencode({**fields(account), **extra}).encode()
    return head.replace(
        urlencode({"comment_content": HAM_TEXT}).encode(), b"comment_content=" + content
    )


@pytest.mark.parametrize(
    ("content_type", "content", "expected"),
    [
        (FORM, b"Caf%C3%A9 cr%C3%A8me", "Café crème"),
        (f"{FORM}; charset=UTF-8", b"Caf%C3%A9", "Café"),
        (f"{FORM}; charset=utf-8", "Café".encode(), "Café"),  # raw, not percent-encoded
        (f"{FORM}; charset=ISO-8859-1", b"Caf%E9 cr%E8me", "Café crème"),
        (f'{FORM}; charset="iso-8859-1"', "Café".encode("latin-1"), "Café"),
        (f"{FORM}; charset=windows-1251", b"%CF%F0%E8%E2%E5%F2", "Привет"),
        (f"{FORM}; charset=no-such-charset", b"Caf%C3%A9", "Café"),
        (None, b"Caf%C3%A9", "Café"),
        ("text/plain", b"Caf%C3%A9", "Café"),
    ],
)
def test_comment_check_decodes_the_declared_charset(
    http: httpx.Client,
    account: Account,
    sessions: db.SessionFactory,
    content_type: str | None,
    content: bytes,
    expected: str,
) -> None:
    response = post_raw(http, raw_body(account, content), content_type)
    assert response.status_code == 200
    assert response.content in (b"true", b"false")
    assert comment_of(sessions, response).content == expected


@pytest.mark.parametrize("charset", ["idna", "punycode", "undefined", "base64", "rot13"])
@pytest.mark.parametrize("where", ["content-type", "blog_charset"])
def test_comment_check_refuses_a_charset_that_is_no_text_encoding(
    http: httpx.Client, account: Account, sessions: db.SessionFactory, charset: str, where: str
) -> None:
    if where == "content-type":
        body, content_type = raw_body(account, b"Caf%C3%A9 %FF"), f"{FORM}; charset={charset}"
    else:
        body, content_type = raw_body(account, b"Caf%C3%A9 %FF", blog_charset=charset), FORM
    with sessions() as session:
        before = session.execute(select(func.count()).select_from(tables.Comment)).scalar_one()
    response = post_raw(http, body, content_type)
    assert_plain(response, b"invalid")
    assert set(akismet_headers(response)) == {"x-akismet-debug-help"}
    assert f'Unsupported charset "{charset}"' in response.headers["x-akismet-debug-help"]
    with sessions() as session:
        after = session.execute(select(func.count()).select_from(tables.Comment)).scalar_one()
    assert after == before
    # Before any key check too: the 1.2 calls read their query string with the same charset.
    report = http.post(
        "/1.2/usage-limit", content=b"api_key=x", headers={"Content-Type": content_type}
    )
    if where == "content-type":
        assert_plain(report, b"invalid")
        assert "Unsupported charset" in report.headers["x-akismet-debug-help"]


def test_comment_check_falls_back_to_blog_charset(
    http: httpx.Client, account: Account, sessions: db.SessionFactory
) -> None:
    body = raw_body(account, b"Caf%E9", blog_charset="ISO-8859-1")
    response = post_raw(http, body, FORM)
    assert comment_of(sessions, response).content == "Café"
    assert comment_of(sessions, response).extra["blog_charset"] == "ISO-8859-1"


def test_comment_check_replaces_invalid_bytes_and_drops_nul(
    http: httpx.Client, account: Account, sessions: db.SessionFactory
) -> None:
    response = post_raw(http, raw_body(account, b"bad%FF%FEbytes%00here\xc3"), FORM)
    assert response.status_code == 200
    assert response.content in (b"true", b"false")
    assert comment_of(sessions, response).content == "bad\ufffd\ufffdbyteshere\ufffd"


def test_comment_check_truncates_content_over_the_limit(
    http: httpx.Client, account: Account, sessions: db.SessionFactory, live_server: LiveServer
) -> None:
    limit = live_server.settings.max_content_bytes
    response = http.post("/1.1/comment-check", data=fields(account, comment_content="é" * limit))
    assert response.content in (b"true", b"false")
    stored = comment_of(sessions, response).content
    assert stored == "é" * (limit // 2)


# --- fields ------------------------------------------------------------------------------


def test_comment_check_keeps_unknown_fields(
    http: httpx.Client, account: Account, sessions: db.SessionFactory
) -> None:
    body = urlencode(
        [
            *fields(
                account,
                comment_author_email="ann@example.org",
                comment_author_url="https://ann.example",
                user_agent="Mozilla/5.0",
                referrer="https://blog.example/post",
                permalink="https://blog.example/post",
                comment_type="reply",
                blog_lang="en, fr_ca",
                comment_date_gmt="2024-05-06T07:08:09Z",
                comment_post_modified_gmt="2024-05-01 00:00:00",
                recheck_reason="edit",
                POST_website2="",
                HTTP_ACCEPT="text/html",
            ).items(),
            ("comment_context[]", "cooking"),
            ("comment_context[]", "recipes"),
        ]
    )
    response = http.post("/1.1/comment-check", content=body, headers={"Content-Type": FORM})
    comment = comment_of(sessions, response)
    assert (comment.author_email, comment.author_url) == ("ann@example.org", "https://ann.example")
    assert (comment.comment_type, comment.blog_lang, comment.user_agent) == (
        "reply",
        "en, fr_ca",
        "Mozilla/5.0",
    )
    assert comment.created_at is not None and comment.created_at.isoformat() == (
        "2024-05-06T07:08:09+00:00"
    )
    assert comment.extra == {
        "comment_post_modified_gmt": "2024-05-01 00:00:00",
        "recheck_reason": "edit",
        "POST_website2": "",
        "HTTP_ACCEPT": "text/html",
        "comment_context[]": ["cooking", "recipes"],
    }
    assert account.key not in json.dumps(comment.extra)


def test_comment_check_answers_spam_for_a_filled_honeypot(
    http: httpx.Client, account: Account, sessions: db.SessionFactory
) -> None:
    response = http.post(
        "/1.1/comment-check",
        data=fields(account, honeypot_field_name="hidden_url", hidden_url="http://x.example"),
    )
    assert_plain(response, b"true")
    comment = comment_of(sessions, response)
    assert comment.honeypot == "http://x.example"
    assert comment.extra == {"honeypot_field_name": "hidden_url"}
    assert comment.verdict is not None and comment.verdict.decision == "spam"
    assert comment.verdict.reasons[0]["feature"] == "rule:honeypot"
    assert "hidden_url" in comment.verdict.reasons[0]["description"]
    empty = http.post(
        "/1.1/comment-check", data=fields(account, honeypot_field_name="hidden_url", hidden_url="")
    )
    assert_plain(empty, b"false")


@pytest.mark.parametrize("value", ["1", "true", "TRUE"])
def test_comment_check_stores_is_test(
    http: httpx.Client, account: Account, sessions: db.SessionFactory, value: str
) -> None:
    response = http.post("/1.1/comment-check", data=fields(account, is_test=value))
    assert_plain(response, b"false")
    assert comment_of(sessions, response).is_test is True


def test_submit_matches_the_comment_by_guid(
    http: httpx.Client, account: Account, sessions: db.SessionFactory
) -> None:
    checked = http.post("/1.1/comment-check", data=fields(account))
    guid = checked.headers["x-akismet-guid"]
    response = http.post(
        "/1.1/submit-spam", data=fields(account, guid=guid, comment_content="edited since")
    )
    assert_plain(response, THANKS)
    with sessions() as session:
        labels = session.execute(select(tables.Label)).scalars().all()
        mine = [label for label in labels if str(label.comment_id) == guid]
        assert [(label.label, label.created_comment) for label in mine] == [("spam", False)]


def test_submit_ignores_a_guid_of_another_account(
    http: httpx.Client, account: Account, live_server: LiveServer, sessions: db.SessionFactory
) -> None:
    other = create_account(live_server.settings, "other")
    guid = http.post("/1.1/comment-check", data=fields(other)).headers["x-akismet-guid"]
    http.post("/1.1/submit-spam", data=fields(account, guid=guid, comment_content="mine"))
    with sessions() as session:
        labelled = session.execute(
            select(tables.Label.comment_id, tables.Label.created_comment)
            .join(tables.Comment, tables.Comment.id == tables.Label.comment_id)
            .join(tables.Site, tables.Site.id == tables.Comment.site_id)
            .where(tables.Site.account_id.in_([account.id, other.id]))
        ).all()
    assert len(labelled) == 1
    assert str(labelled[0][0]) != guid and labelled[0][1] is True


def test_one_point_one_calls_ignore_the_query_string(http: httpx.Client, account: Account) -> None:
    response = http.post(
        "/1.1/comment-check",
        params={"api_key": account.key},
        data={"blog": "https://b.example", "user_ip": "1"},
    )
    assert_plain(response, b"invalid")


# --- Akismet-shaped keys -------------------------------------------------------------------


@pytest.fixture
def akismet_account(live_server: LiveServer) -> Account:
    return create_account(live_server.settings, "wordpress blog", akismet=True)


def test_akismet_key_works_on_every_akismet_call(
    http: httpx.Client, akismet_account: Account, sessions: db.SessionFactory
) -> None:
    key = akismet_account.key
    assert len(key) == 12 and int(key, 16) >= 0
    verify = http.post("/1.1/verify-key", data={"key": key, "blog": "https://b.example"})
    assert_plain(verify, b"valid")
    # The WordPress form keeps the case the owner typed; the key is hex, so either case works.
    upper = http.post("/1.1/verify-key", data={"key": key.upper(), "blog": "https://b.example"})
    assert_plain(upper, b"valid")
    check = http.post("/1.1/comment-check", data=fields(akismet_account))
    assert_plain(check, b"false")
    spam = http.post("/1.1/submit-spam", data=fields(akismet_account))
    assert_plain(spam, THANKS)
    with sessions() as session:
        actor = session.execute(
            select(tables.Label.actor).where(
                tables.Label.comment_id == uuid.UUID(check.headers["x-akismet-guid"])
            )
        ).scalar_one()
    assert actor is not None and actor.startswith("akismet:akismet-")
    assert key not in actor and key[:8] not in actor
    usage = http.get("/1.2/usage-limit", params={"api_key": key})
    assert usage.json()["usage"] == 1


def test_akismet_key_is_refused_on_v1(http: httpx.Client, akismet_account: Account) -> None:
    # Used once on the Akismet endpoints first, so that it sits in the key cache /v1 reads.
    assert_plain(
        http.post("/1.1/verify-key", data={"key": akismet_account.key, "blog": "https://b"}),
        b"valid",
    )
    response = http.post("/v1/check", json={"content": HAM_TEXT}, headers=akismet_account.headers)
    assert response.status_code == 401
    assert "Akismet" in response.json()["error"]["message"]


def test_unknown_akismet_shaped_key_is_invalid(http: httpx.Client) -> None:
    response = http.post("/1.1/verify-key", data={"key": "0123456789ab", "blog": "https://b"})
    assert_plain(response, b"invalid")


# --- what the WordPress plugin's settings page calls ----------------------------------------


def test_test_answers_connected_without_a_key(http: httpx.Client) -> None:
    assert_plain(http.get("/1.1/test"), b"connected")
    assert_plain(http.post("/1.1/test"), b"connected")


def test_get_subscription_answers_active_for_the_key_being_checked(
    http: httpx.Client, akismet_account: Account, account: Account
) -> None:
    # The plugin sends the key it checks as `key`, and the key it had saved before as `api_key`.
    response = http.post(
        "/1.1/get-subscription",
        data={"key": akismet_account.key, "api_key": account.key, "blog": "https://b.example"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "account_id": akismet_account.id,
        "account_name": "commentguard (wordpress blog)",
        "account_type": "commentguard",
        "status": "active",
        "next_billing_date": None,
        "limit_reached": False,
    }
    refused = http.post("/1.1/get-subscription", data={"key": "0123456789ab", "blog": "b"})
    assert_plain(refused, b"invalid")


def test_get_subscription_reports_a_limit_reached(
    http: httpx.Client, akismet_account: Account, sessions: db.SessionFactory
) -> None:
    with sessions() as session:
        session.execute(
            update(tables.Account)
            .where(tables.Account.id == akismet_account.id)
            .values(usage_limit=1)
        )
        session.commit()
    for _ in range(2):
        http.post("/1.1/comment-check", data=fields(akismet_account))
    response = http.post(
        "/1.1/get-subscription", data={"key": akismet_account.key, "blog": "https://b"}
    )
    assert response.json()["limit_reached"] == "yellow"


def test_get_stats_counts_the_site_checks_and_corrections(
    http: httpx.Client, akismet_account: Account
) -> None:
    blog = "https://stats.example"
    ham = http.post("/1.1/comment-check", data=fields(akismet_account, blog=blog))
    spam = http.post(
        "/1.1/comment-check",
        data=fields(akismet_account, blog=blog, comment_author="akismet-guaranteed-spam"),
    )
    assert (ham.text, spam.text) == ("false", "true")
    http.post("/1.1/comment-check", data=fields(akismet_account, blog="https://other.example"))
    http.post("/1.1/comment-check", data=fields(akismet_account, blog=blog, is_test="1"))
    # The spam was not spam after all: a false positive.
    http.post(
        "/1.1/submit-ham",
        data=fields(akismet_account, blog=blog, guid=spam.headers["x-akismet-guid"]),
    )
    month = tables.utcnow().strftime("%Y-%m")
    expected_counts = {"spam": 1, "ham": 1, "missed_spam": 0, "false_positives": 1}
    for period in ("all", "6-months"):
        response = http.post(
            "/1.1/get-stats", data={"key": akismet_account.key, "blog": blog, "from": period}
        )
        assert response.headers["content-type"] == "application/json"
        stats = response.json()
        assert {k: stats[k] for k in expected_counts} == expected_counts
        assert stats["accuracy"] == 50.0
        assert stats["breakdown"][month] == {"date": month, **expected_counts}
        assert len(stats["breakdown"]) == (1 if period == "all" else 6)
    days = http.post(
        "/1.1/get-stats", data={"key": akismet_account.key, "blog": blog, "from": "60-days"}
    ).json()
    assert len(days["breakdown"]) == 60
    assert days["breakdown"][tables.utcnow().strftime("%Y-%m-%d")]["spam"] == 1


def test_get_stats_answers_zeros_for_a_site_never_seen(
    http: httpx.Client, akismet_account: Account
) -> None:
    stats = http.post(
        "/1.1/get-stats", data={"key": akismet_account.key, "blog": "https://new.example"}
    ).json()
    assert stats == {
        "spam": 0, "ham": 0, "missed_spam": 0, "false_positives": 0, "accuracy": 100.0,
        "breakdown": {},
    }  # fmt: skip


def test_get_stats_refuses_an_unknown_period(http: httpx.Client, akismet_account: Account) -> None:
    response = http.post(
        "/1.1/get-stats", data={"key": akismet_account.key, "blog": "https://b", "from": "1-year"}
    )
    assert_plain(response, b"invalid")
    assert "60-days" in response.headers["x-akismet-debug-help"]


def test_deactivate_answers_deactivated_and_keeps_the_key(
    http: httpx.Client, akismet_account: Account
) -> None:
    data = {"key": akismet_account.key, "blog": "https://b.example"}
    assert_plain(http.post("/1.1/deactivate", data=data), b"deactivated")
    assert_plain(http.post("/1.1/verify-key", data=data), b"valid")
    assert_plain(http.post("/1.1/deactivate", data={"key": "0123456789ab"}), b"invalid")


# --- privacy: addresses and cookies among the other fields -----------------------------------

COMMENTER_ADDRESSES = ("198.51.100.23", "198.51.100.24", "2001:db8::23", "198.51.100.25")


def test_comment_check_stores_no_commenter_address_or_cookie(
    http: httpx.Client,
    akismet_account: Account,
    sessions: db.SessionFactory,
    live_server: LiveServer,
) -> None:
    v4, proxy, v6, custom = COMMENTER_ADDRESSES
    body = fields(
        akismet_account,
        user_ip=v4,
        comment_author_IP=v4,
        REMOTE_ADDR=f"::ffff:{v4}",
        HTTP_X_FORWARDED_FOR=f"{v4}, {proxy}",
        HTTP_X_REAL_IP=v4,
        HTTP_CLIENT_IP=v6,
        HTTP_FORWARDED=f'for="[{v6}]:4711";proto=https, for={proxy}:8080',
        HTTP_CF_CONNECTING_IP=v4,
        HTTP_X_VISITOR=custom,  # no address-bearing name, but the whole value is one
        HTTP_COOKIE="wordpress_logged_in_abc=ann%7C1700000000%7Ccookie-value-7f3a",
        HTTP_AUTHORIZATION="Basic YW5uOnNlY3JldA==",
        HTTP_USER_AGENT="Mozilla/5.0 Chrome/120.0.0.0",
        REQUEST_URI="/wp-comments-post.php",
    )
    response = http.post("/1.1/comment-check", data=body)
    assert response.text in ("true", "false")
    spam = http.post("/1.1/submit-spam", data={**body, "guid": response.headers["x-akismet-guid"]})
    assert_plain(spam, THANKS)
    dump = stored_text(sessions)
    for address in (*COMMENTER_ADDRESSES, "cookie-value-7f3a", "YW5uOnNlY3JldA"):
        assert address not in dump, address
    comment = comment_of(sessions, response)
    secret = live_server.settings.secret_key
    hashed = hash_ip(v4, secret)
    assert comment.user_ip == hashed
    extra = comment.extra
    assert extra["comment_author_IP"] == extra["REMOTE_ADDR"] == extra["HTTP_X_REAL_IP"] == hashed
    assert extra["HTTP_X_FORWARDED_FOR"] == f"{hashed}, {hash_ip(proxy, secret)}"
    assert extra["HTTP_CLIENT_IP"] == hash_ip(v6, secret)
    assert extra["HTTP_FORWARDED"] == (
        f'for="[{hash_ip(v6, secret)}]:4711";proto=https, for={hash_ip(proxy, secret)}:8080'
    )
    assert extra["HTTP_X_VISITOR"] == hash_ip(custom, secret)
    assert "HTTP_COOKIE" not in extra and "HTTP_AUTHORIZATION" not in extra
    # A field that is not an address keeps what looks like one inside it.
    assert extra["HTTP_USER_AGENT"] == "Mozilla/5.0 Chrome/120.0.0.0"
    assert extra["REQUEST_URI"] == "/wp-comments-post.php"


def test_keep_addresses_as_sent_when_raw_ips_are_stored_but_never_cookies() -> None:
    extra = {
        "REMOTE_ADDR": "198.51.100.23",
        "HTTP_X_FORWARDED_FOR": "198.51.100.23, 198.51.100.24",
        "HTTP_COOKIE": "wordpress_logged_in_abc=session",
        "comment_context[]": ["198.51.100.25", "music"],
    }
    assert akismet.private_extra(extra, "secret", keep_addresses=True) == {
        "REMOTE_ADDR": "198.51.100.23",
        "HTTP_X_FORWARDED_FOR": "198.51.100.23, 198.51.100.24",
        "comment_context[]": ["198.51.100.25", "music"],
    }
    hashed = akismet.private_extra(extra, "secret", keep_addresses=False)
    assert hashed["comment_context[]"] == [hash_ip("198.51.100.25", "secret"), "music"]
