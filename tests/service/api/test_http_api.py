"""The HTTP API against a real database and Redis (no worker: comments stay pending here)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service import db, tables
from service.api.app import create_app
from service.intake.sites import SiteCache, resolve_site
from service.settings import Settings
from tests.service.conftest import Account, create_account, make_settings

pytestmark = pytest.mark.xdist_group("http_api")


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def comment(external_id: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"content": "Great post, thanks for writing it!", "author": "Ann"}
    if external_id is not None:
        body["external_id"] = external_id
    return {**body, **fields}


def count_comments(settings: Settings, account_id: int) -> int:
    engine = db.make_engine(settings)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    select(func.count())
                    .select_from(tables.Comment)
                    .join(tables.Site, tables.Site.id == tables.Comment.site_id)
                    .where(tables.Site.account_id == account_id)
                ).scalar_one()
            )
    finally:
        engine.dispose()


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.text
    return dict(body["error"])


def test_submit_comment_returns_pending_with_link(client: TestClient, account: Account) -> None:
    response = client.post("/v1/comments", json=comment("c-1"), headers=account.headers)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert body["verdict"] is None
    assert body["external_id"] == "c-1"
    assert body["links"]["self"] == f"/v1/comments/{body['id']}"
    again = client.get(body["links"]["self"], headers=account.headers)
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]


def test_submit_comment_twice_returns_the_existing_comment(
    client: TestClient, account: Account, settings: Settings
) -> None:
    first = client.post("/v1/comments", json=comment("dup"), headers=account.headers)
    second = client.post("/v1/comments", json=comment("dup"), headers=account.headers)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]
    assert count_comments(settings, account.id) == 1


@pytest.mark.parametrize("path", ["/v1/comments", "/v1/check"])
def test_reject_external_id_resent_with_another_comment_naming_the_stored_one(
    client: TestClient, account: Account, settings: Settings, path: str
) -> None:
    first = client.post(path, json=comment(f"{path}-reused"), headers=account.headers)
    assert first.status_code in (200, 202), first.text
    other = comment(f"{path}-reused", content="a different comment", author="Bob")
    second = client.post(path, json=other, headers=account.headers)
    error = assert_error(second, 409, "external_id_conflict")
    assert error["details"] == {"comment_id": first.json()["id"], "fields": ["content", "author"]}
    assert first.json()["id"] in error["message"]
    stored = client.get(f"/v1/comments/{first.json()['id']}", headers=account.headers)
    assert stored.json()["external_id"] == f"{path}-reused"
    assert count_comments(settings, account.id) == 1


def test_accept_akismet_field_names_as_ours(
    client: TestClient, account: Account, settings: Settings
) -> None:
    akismet = {
        "comment_content": "Lovely photos of the lake",
        "comment_author": "Ann",
        "comment_author_email": "ann@example.org",
        "comment_author_url": "https://ann.example.org",
        "comment_date_gmt": "2026-12-01T10:00:00Z",
        "user_ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0",
        "referrer": "https://blog.example/",
        "permalink": "https://blog.example/lake",
        "comment_type": "comment",
        "blog": "https://blog.example",
    }
    response = client.post("/v1/check", json=akismet, headers=account.headers)
    assert response.status_code == 200, response.text
    engine = db.make_engine(settings)
    try:
        with db.make_session_factory(engine)() as session:
            row = session.get(tables.Comment, uuid.UUID(response.json()["id"]))
            assert row is not None
            stored = (row.content, row.author, row.author_email, row.author_url, row.permalink)
            assert row.created_at is not None and row.created_at.day == 1
            assert row.extra == {}
    finally:
        engine.dispose()
    assert stored == (
        "Lovely photos of the lake",
        "Ann",
        "ann@example.org",
        "https://ann.example.org",
        "https://blog.example/lake",
    )


def test_reject_unknown_field_naming_it(client: TestClient, account: Account) -> None:
    body = comment("unknown", comment_author_emial="ann@example.org")
    response = client.post("/v1/comments", json=body, headers=account.headers)
    error = assert_error(response, 422, "validation_error")
    assert "'comment_author_emial'" in error["message"]
    assert error["details"] == [
        {
            "loc": ["body", "comment_author_emial"],
            "msg": "Extra inputs are not permitted",
            "type": "extra_forbidden",
        }
    ]


def test_keep_the_platform_data_sent_in_extra(
    client: TestClient, account: Account, settings: Settings
) -> None:
    response = client.post(
        "/v1/check", json=comment(extra={"post_id": 7}), headers=account.headers
    )
    assert response.status_code == 200, response.text
    engine = db.make_engine(settings)
    try:
        with db.make_session_factory(engine)() as session:
            row = session.get(tables.Comment, uuid.UUID(response.json()["id"]))
            assert row is not None and row.extra == {"post_id": 7}
    finally:
        engine.dispose()


def test_reject_akismet_and_own_names_that_disagree(client: TestClient, account: Account) -> None:
    body = comment(author_email="a@example.org", comment_author_email="b@example.org")
    response = client.post("/v1/check", json=body, headers=account.headers)
    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["type"] == "conflicting_names"
    assert "comment_author_email" in error["details"][0]["msg"]
    same = comment(author_email="a@example.org", comment_author_email="a@example.org")
    assert client.post("/v1/check", json=same, headers=account.headers).status_code == 200


def test_submit_comment_concurrently_stores_it_once(
    client: TestClient, account: Account, settings: Settings
) -> None:
    start = threading.Barrier(8)
    ids: list[str] = []

    def submit() -> None:
        start.wait()
        response = client.post("/v1/comments", json=comment("race"), headers=account.headers)
        assert response.status_code in (200, 202), response.text
        ids.append(response.json()["id"])

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1 and len(ids) == 8
    assert count_comments(settings, account.id) == 1


@pytest.mark.parametrize("path", ["/v1/comments", "/v1/check"])
def test_concurrent_batch_with_a_repeated_external_id_stores_each_comment_once(
    client: TestClient, account: Account, settings: Settings, path: str
) -> None:
    # Requests arriving together are handled as one batch (service/intake/batching.py); a repeated
    # external_id in it must not cost the other comments anything.
    start = threading.Barrier(12)
    answers: dict[str, list[str]] = {}
    lock = threading.Lock()

    def submit(external_id: str) -> None:
        start.wait()
        response = client.post(path, json=comment(external_id), headers=account.headers)
        assert response.status_code in (200, 202), response.text
        with lock:
            answers.setdefault(external_id, []).append(response.json()["id"])

    names = [f"{path}-dup"] * 4 + [f"{path}-{i}" for i in range(8)]
    threads = [threading.Thread(target=submit, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(len(ids) for ids in answers.values()) == 12
    assert all(len(set(ids)) == 1 for ids in answers.values())
    assert len(answers) == 9
    assert count_comments(settings, account.id) == 9


def test_submit_same_external_id_on_two_sites_stores_two(
    client: TestClient, account: Account
) -> None:
    a = client.post(
        "/v1/comments", json=comment("x", blog="https://a.example"), headers=account.headers
    )
    b = client.post(
        "/v1/comments", json=comment("x", blog="https://b.example"), headers=account.headers
    )
    assert (a.status_code, b.status_code) == (202, 202)
    assert a.json()["id"] != b.json()["id"]


def test_create_site_on_first_use_with_normalised_url(client: TestClient, account: Account) -> None:
    for blog in ("https://Blog.Example.com/", "https://blog.example.com", ""):
        response = client.post("/v1/check", json=comment(blog=blog), headers=account.headers)
        assert response.status_code == 200, response.text
    sites = client.get("/v1/sites", headers=account.headers).json()
    assert sorted(s["url"] for s in sites) == ["", "https://blog.example.com"]
    assert all(len(s["callback_secret"]) >= 32 for s in sites)


def test_check_comment_returns_and_stores_the_verdict(client: TestClient, account: Account) -> None:
    response = client.post(
        "/v1/check",
        json=comment(
            content="CHECK OUT my channel http://free-money.example subscribe!!!",
            user_agent="bot",
        ),
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    verdict = body["verdict"]
    assert body["status"] == "scored"
    assert 0.0 <= verdict["score"] <= 1.0
    assert verdict["decision"] in ("ham", "unsure", "spam", "discard")
    assert verdict["model_version"] and verdict["scored_at"]
    assert verdict["reasons"] and {"feature", "description", "weight"} <= set(verdict["reasons"][0])
    stored = client.get(f"/v1/comments/{body['id']}", headers=account.headers).json()
    assert stored["verdict"] == verdict


def test_check_comment_with_known_external_id_scores_it_once(
    client: TestClient, account: Account
) -> None:
    first = client.post("/v1/check", json=comment("chk"), headers=account.headers).json()
    second = client.post("/v1/check", json=comment("chk"), headers=account.headers).json()
    assert first["id"] == second["id"]
    assert first["verdict"] == second["verdict"]


def test_get_comment_of_another_account_is_not_found(
    client: TestClient, account: Account, settings: Settings
) -> None:
    mine = client.post("/v1/comments", json=comment("mine"), headers=account.headers).json()
    other = create_account(settings, "other")
    response = client.get(f"/v1/comments/{mine['id']}", headers=other.headers)
    assert_error(response, 404, "not_found")
    assert_error(
        client.get(f"/v1/comments/{uuid.uuid4()}", headers=account.headers), 404, "not_found"
    )


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer cg_not-a-real-key"}, {"Authorization": "Basic abc"}],
    ids=["missing", "unknown", "wrong-scheme"],
)
def test_reject_request_without_valid_key(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post("/v1/comments", json=comment("k"), headers=headers)
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_reject_content_over_64_kib(client: TestClient, account: Account) -> None:
    at_limit = client.post("/v1/check", json=comment(content="a" * 65536), headers=account.headers)
    assert at_limit.status_code == 200
    over = client.post(
        "/v1/comments", json=comment("big", content="a" * 65537), headers=account.headers
    )
    assert_error(over, 413, "content_too_large")
    # 21,846 three-byte characters: under 64 Ki characters but over 64 KiB of UTF-8.
    wide = client.post("/v1/check", json=comment(content="€" * 21846), headers=account.headers)
    assert_error(wide, 413, "content_too_large")


def test_reject_request_body_over_the_limit(client: TestClient, account: Account) -> None:
    payload = b'{"content": "' + b"a" * (600 * 1024) + b'", "external_id": "huge"}'
    response = client.post(
        "/v1/comments",
        content=payload,
        headers={**account.headers, "Content-Type": "application/json"},
    )
    assert_error(response, 413, "payload_too_large")


def test_reject_chunked_body_over_the_limit(client: TestClient, account: Account) -> None:
    chunks = [b'{"content": "'] + [b"a" * 65536] * 10 + [b'", "external_id": "chunked"}']
    response = client.post(
        "/v1/comments",
        content=iter(chunks),
        headers={**account.headers, "Content-Type": "application/json"},
    )
    assert_error(response, 413, "payload_too_large")
    small = client.post(
        "/v1/comments",
        content=iter([b'{"content": "hi", ', b'"external_id": "chunked-ok"}']),
        headers={**account.headers, "Content-Type": "application/json"},
    )
    assert small.status_code == 202, small.text


def test_reject_malformed_json(client: TestClient, account: Account) -> None:
    response = client.post(
        "/v1/comments",
        content=b'{"content": "unterminated',
        headers={**account.headers, "Content-Type": "application/json"},
    )
    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["type"] == "json_invalid"


def test_reject_invalid_fields_naming_each_one(client: TestClient, account: Account) -> None:
    response = client.post(
        "/v1/comments",
        json={"author": "x" * 600, "created_at": "not a date", "content": 5},
        headers=account.headers,
    )
    error = assert_error(response, 422, "validation_error")
    fields = {tuple(d["loc"]) for d in error["details"]}
    assert {
        ("body", "author"),
        ("body", "created_at"),
        ("body", "content"),
        ("body", "external_id"),
    } <= fields


def test_reject_nul_characters(client: TestClient, account: Account) -> None:
    response = client.post("/v1/check", json=comment(content="a\x00b"), headers=account.headers)
    assert_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:9/hook",
        "http://[::1]/hook",
        "ftp://example.com/hook",
        "not a url",
    ],
)
def test_reject_unsafe_callback_url(client: TestClient, account: Account, url: str) -> None:
    response = client.post(
        "/v1/comments", json=comment("cb", callback_url=url), headers=account.headers
    )
    error = assert_error(response, 422, "invalid_callback_url")
    assert error["details"][0]["loc"] == ["body", "callback_url"]


def test_answer_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"model": "ok", "database": "ok", "redis": "ok"}


def test_answer_500_as_json_without_traceback(settings: Settings) -> None:
    app = create_app(settings)

    def boom() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/boom")
    error = assert_error(response, 500, "internal_error")
    assert "secret internals" not in response.text and error["details"] is None


def test_document_error_shape_in_openapi(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    submit = schema["paths"]["/v1/comments"]["post"]["responses"]
    assert {"202", "200", "401", "413", "422", "503"} <= set(submit)
    assert submit["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    assert "ErrorOut" in schema["components"]["schemas"]


# --- degraded dependencies ----------------------------------------------------------------


def test_accept_comment_when_redis_is_down(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    user = create_account(settings)
    with TestClient(create_app(down), raise_server_exceptions=False) as test_client:
        response = test_client.post("/v1/comments", json=comment("r-down"), headers=user.headers)
        assert response.status_code == 202, response.text
        ready = test_client.get("/readyz")
    assert count_comments(settings, user.id) == 1  # committed: the sweep will queue it
    error = assert_error(ready, 503, "not_ready")
    assert error["details"]["redis"].startswith("unreachable")
    assert ready.headers["Retry-After"]


def test_answer_503_when_database_is_down(settings: Settings, models_dir: Any) -> None:
    down = make_settings(
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
        redis_url=settings.redis_url,
        models_dir=models_dir,
    )
    with TestClient(create_app(down), raise_server_exceptions=False) as test_client:
        response = test_client.post(
            "/v1/comments", json=comment("db-down"), headers={"Authorization": "Bearer cg_x"}
        )
        ready = test_client.get("/readyz")
    assert_error(response, 503, "unavailable")
    assert response.headers["Retry-After"]
    error = assert_error(ready, 503, "not_ready")
    assert error["details"]["database"].startswith("unreachable")


def test_answer_503_when_no_model_is_loaded(settings: Settings, tmp_path: Any) -> None:
    empty = settings.model_copy(update={"models_dir": tmp_path})
    user = create_account(settings)
    with TestClient(create_app(empty), raise_server_exceptions=False) as test_client:
        response = test_client.post("/v1/check", json=comment(), headers=user.headers)
        ready = test_client.get("/readyz")
    assert_error(response, 503, "unavailable")
    assert assert_error(ready, 503, "not_ready")["details"]["model"] != "ok"


def test_a_new_site_is_committed_before_later_requests_are_given_it(
    settings: Settings, account: Account
) -> None:
    # A batch whose transaction fails after creating a site must not leave later requests
    # with the id of a site that was rolled back (their comments would fail on the key).
    sessions = db.make_session_factory(db.make_engine(settings))
    cache = SiteCache()
    with sessions() as session:
        site = resolve_site(session, cache, account.id, "https://rolled-back.example")
        session.rollback()  # what a failing batch does
    with sessions() as session:
        assert session.get(tables.Site, site.id) is not None
    assert cache.get(account.id, "https://rolled-back.example") == site


def test_check_comment_whose_blog_is_no_url_names_a_site(
    client: TestClient, account: Account
) -> None:
    response = client.post("/v1/check", json=comment(blog="http://["), headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json()["site"] == "http://["
