"""Moderation against a real database and Redis: the queue, labels, audit, stats, scoping,
and the label callback delivered by a real worker to a signature-checking receiver."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service import db, tables, users
from service.api.app import create_app
from service.intake.sites import get_or_create_site
from service.settings import Settings
from tests.service.conftest import Account, CallbackReceiver, create_account, wait_until

pytestmark = pytest.mark.xdist_group("moderation")


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@dataclass
class User:
    id: int
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_user(
    sessions: db.SessionFactory,
    settings: Settings,
    role: tables.UserRole,
    site_ids: tuple[int, ...] = (),
) -> User:
    name = f"{role.value}-{uuid.uuid4().hex[:8]}"
    with sessions() as session:
        new = users.create_user(session, name, role, settings.secret_key)
        for site_id in site_ids:
            session.add(tables.UserSite(user_id=new.user_id, site_id=site_id))
        session.commit()
    return User(new.user_id, name, new.plaintext)


def make_site(sessions: db.SessionFactory, account: Account, url: str) -> int:
    with sessions() as session:
        site = get_or_create_site(session, account.id, url)
        session.commit()
        return site.id


def seed_comment(
    sessions: db.SessionFactory,
    site_id: int,
    score: float | None,
    decision: str = "unsure",
    received_at: datetime | None = None,
    content: str = "a comment",
) -> uuid.UUID:
    """A stored comment with the verdict given (seeded directly: the model is not under test)."""
    comment_id = uuid.uuid4()
    with sessions() as session:
        session.add(
            tables.Comment(
                id=comment_id,
                site_id=site_id,
                content=content,
                status=tables.CommentStatus.SCORED if score is not None else "pending",
                received_at=received_at or tables.utcnow(),
            )
        )
        session.flush()
        if score is not None:
            session.add(
                tables.Verdict(
                    comment_id=comment_id,
                    score=score,
                    decision=decision,
                    reasons=[],
                    model_version="seeded",
                    duration_ms=0.0,
                )
            )
        session.commit()
    return comment_id


@pytest.fixture
def admin(sessions: db.SessionFactory, settings: Settings) -> User:
    return make_user(sessions, settings, tables.UserRole.ADMIN)


def queue_ids(client: TestClient, user: User, **params: Any) -> list[str]:
    """Every page of the queue, followed by its cursors."""
    ids: list[str] = []
    cursor = None
    for _ in range(100):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/v1/moderation/queue", params=query, headers=user.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids
    pytest.fail("the queue's cursors never ended")


def label(client: TestClient, user: User, comment_id: uuid.UUID, value: str, **extra: Any) -> Any:
    return client.post(
        f"/v1/comments/{comment_id}/label", json={"label": value, **extra}, headers=user.headers
    )


# --- the queue ---------------------------------------------------------------------------


def test_list_queue_orders_unsure_by_uncertainty_across_pages(
    client: TestClient, sessions: db.SessionFactory, account: Account, admin: User
) -> None:
    site = make_site(sessions, account, "https://queue.example")
    scores = [0.25, 0.49, 0.625, 0.75, 0.375, 0.5]  # exact in binary, so ties are ties
    ids = {score: seed_comment(sessions, site, score) for score in scores}
    seed_comment(sessions, site, 0.1, "ham")
    seed_comment(sessions, site, None)  # pending: no verdict, not in the queue
    labelled = seed_comment(sessions, site, 0.5)
    assert label(client, admin, labelled, "ham").status_code == 201

    listed = queue_ids(client, admin, site=site, limit=2)

    # Equally uncertain (|score − 0.5| equal): by id.
    expected = [
        ids[0.5],
        ids[0.49],
        *sorted([ids[0.375], ids[0.625]]),
        *sorted([ids[0.25], ids[0.75]]),
    ]
    assert listed == [str(i) for i in expected]


def test_review_order_shows_one_of_each_run_of_near_copies_before_a_second(
    client: TestClient, sessions: db.SessionFactory, account: Account, admin: User
) -> None:
    """A spam run of near-copies, all less sure than the rest, takes one place at the top of
    the review order (its label reaches the rest through the memory), and the other comments
    come next, least sure first; the run's other copies follow, across pages."""
    site = make_site(sessions, account, "https://review.example")
    run = [
        seed_comment(sessions, site, 0.5 + i / 64, content=f"Cheap followers at example.com {i}")
        for i in range(4)
    ]
    others = {
        score: seed_comment(sessions, site, score, content=f"A question about step {score}")
        for score in (0.375, 0.75, 0.25)
    }
    with sessions() as session:
        for comment_id in run:
            verdict = session.execute(
                select(tables.Verdict).where(tables.Verdict.comment_id == comment_id)
            ).scalar_one()
            verdict.cluster = 12345
        session.commit()

    listed = queue_ids(client, admin, site=site, limit=2)
    by_uncertainty = queue_ids(client, admin, site=site, order="uncertainty", limit=2)

    expected = [run[0], others[0.375], *sorted([others[0.75], others[0.25]]), *run[1:]]
    assert listed == [str(i) for i in expected]
    assert by_uncertainty[:4] == [str(i) for i in run]


def test_near_copies_scored_by_the_service_share_their_review_group(
    client: TestClient, sessions: db.SessionFactory, account: Account
) -> None:
    text = "Get 5000 real followers today at cheap-followers.example, best prices guaranteed"
    ids = []
    for suffix in ("!", "!!", " now"):
        response = client.post(
            "/v1/check",
            json={"blog": "https://groups.example", "content": text + suffix},
            headers=account.headers,
        )
        assert response.status_code == 200, response.text
        ids.append(uuid.UUID(response.json()["id"]))
    other = client.post(
        "/v1/check",
        json={"blog": "https://groups.example", "content": "How do I reset the router's DNS?"},
        headers=account.headers,
    )
    with sessions() as session:
        clusters = {
            row.comment_id: row.cluster
            for row in session.execute(
                select(tables.Verdict).where(
                    tables.Verdict.comment_id.in_([*ids, uuid.UUID(other.json()["id"])])
                )
            ).scalars()
        }
    assert clusters[ids[0]] is not None
    assert clusters[ids[0]] == clusters[ids[1]] == clusters[ids[2]]
    assert clusters[uuid.UUID(other.json()["id"])] != clusters[ids[0]]


def test_list_queue_filters_by_decision_and_orders_newest_first(
    client: TestClient, sessions: db.SessionFactory, account: Account, admin: User
) -> None:
    site = make_site(sessions, account, "https://newest.example")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    spam = [
        seed_comment(sessions, site, 0.97, "spam", start + timedelta(minutes=i)) for i in range(5)
    ]
    seed_comment(sessions, site, 0.4, "unsure", start + timedelta(hours=1))
    same_time = seed_comment(sessions, site, 0.96, "spam", start + timedelta(minutes=4))

    listed = queue_ids(client, admin, site=site, decision="spam", order="newest", limit=2)

    newest_two = sorted([spam[4], same_time], reverse=True)
    assert listed == [str(i) for i in [*newest_two, spam[3], spam[2], spam[1], spam[0]]]
    everything = queue_ids(client, admin, site=site, decision="all")
    assert len(everything) == 7
    page = client.get(
        "/v1/moderation/queue", params={"site": site, "limit": 1}, headers=admin.headers
    ).json()
    item = page["items"][0]
    assert item["verdict"]["decision"] == "unsure" and item["content"] == "a comment"
    assert item["uncertainty"] == pytest.approx(0.1)


def test_refuse_bad_queue_parameters(client: TestClient, admin: User) -> None:
    for params in ({"cursor": "not-a-cursor"}, {"decision": "maybe"}, {"limit": 0}):
        response = client.get("/v1/moderation/queue", params=params, headers=admin.headers)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] in ("invalid_cursor", "validation_error")


def test_refuse_a_bad_cursor_without_echoing_what_failed_inside(
    client: TestClient, admin: User
) -> None:
    import base64

    def encoded(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    cursors = [
        "not-a-cursor",  # not base64 of anything
        encoded(b"{not json"),
        encoded(b'[1e999999, "x"]'),  # a float, then no UUID
        encoded(b'["0001-01-01T00:00:00+14:00", "00000000-0000-0000-0000-000000000000"]'),
        encoded(b"[" * 100_000),
    ]
    messages = set()
    for order in ("review", "uncertainty", "newest"):
        for cursor in cursors:
            response = client.get(
                "/v1/moderation/queue",
                params={"cursor": cursor[:1000], "order": order},
                headers=admin.headers,
            )
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["code"] in ("invalid_cursor", "validation_error")
            messages.add(response.text.replace(cursor[:1000], ""))
    # One answer whatever went wrong: nothing of a decoder's or parser's own words.
    invalid = {m for m in messages if "invalid_cursor" in m}
    assert len(invalid) == 1, invalid
    for word in ("base64", "Expecting", "padding", "badly formed", "Invalid isoformat", "line 1"):
        assert word not in next(iter(invalid)), invalid


# --- labels and their audit --------------------------------------------------------------


def test_relabel_newest_wins_and_audit_keeps_before_and_after(
    client: TestClient, sessions: db.SessionFactory, account: Account, admin: User
) -> None:
    site = make_site(sessions, account, "https://relabel.example")
    comment = seed_comment(sessions, site, 0.1, "ham")

    first = label(client, admin, comment, "spam", note="casino link")
    second = label(client, admin, comment, "ham")

    assert first.status_code == 201, first.text
    assert first.json()["previous"] is None and first.json()["kind"] == "missed_spam"
    assert first.json()["callback"] is False  # no callback_url
    assert second.json()["previous"] == "spam" and second.json()["kind"] == "confirmation"
    history = client.get(f"/v1/moderation/comments/{comment}/history", headers=admin.headers)
    assert history.status_code == 200, history.text
    body = history.json()
    assert body["label"] == "ham"
    assert [(a["before"], a["after"], a["actor"], a["source"]) for a in body["audit"]] == [
        (None, "spam", admin.name, "moderator"),
        ("spam", "ham", admin.name, "moderator"),
    ]
    assert body["audit"][0]["note"] == "casino link"
    assert body["audit"][0]["user_id"] == admin.id
    assert body["comment"]["verdict"]["decision"] == "ham"


def test_label_concurrently_keeps_the_audit_chain_whole(
    client: TestClient, sessions: db.SessionFactory, account: Account, admin: User
) -> None:
    comment = seed_comment(sessions, make_site(sessions, account, "https://race.example"), 0.4)
    start = threading.Barrier(8)
    statuses: list[int] = []

    def apply(value: str) -> None:
        start.wait()
        statuses.append(label(client, admin, comment, value).status_code)

    threads = [threading.Thread(target=apply, args=("spam" if i % 2 else "ham",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [201] * 8
    audit = client.get(f"/v1/moderation/comments/{comment}/history", headers=admin.headers).json()[
        "audit"
    ]
    assert len(audit) == 8
    # Each label saw the one committed before it: no two share a "before".
    assert [a["before"] for a in audit] == [None] + [a["after"] for a in audit[:-1]]


def test_refuse_invalid_label(
    client: TestClient, sessions: db.SessionFactory, account: Account, admin: User
) -> None:
    comment = seed_comment(sessions, make_site(sessions, account, "https://bad.example"), 0.4)
    assert label(client, admin, comment, "maybe").status_code == 422
    assert label(client, admin, comment, "spam", note="x" * 2001).status_code == 422
    assert label(client, admin, uuid.uuid4(), "spam").status_code == 404


def test_bulk_label_is_all_or_nothing(
    client: TestClient, sessions: db.SessionFactory, account: Account, admin: User
) -> None:
    site = make_site(sessions, account, "https://bulk.example")
    comments = [seed_comment(sessions, site, 0.4) for _ in range(3)]
    unknown = uuid.uuid4()
    items = [{"comment_id": str(c), "label": "spam"} for c in comments]

    refused = client.post(
        "/v1/labels",
        json={"items": [*items, {"comment_id": str(unknown), "label": "ham"}]},
        headers=admin.headers,
    )
    assert refused.status_code == 404
    assert refused.json()["error"]["details"] == [{"comment_id": str(unknown)}]
    assert len(queue_ids(client, admin, site=site)) == 3  # nothing was labelled

    applied = client.post("/v1/labels", json={"items": items}, headers=admin.headers)
    assert applied.status_code == 201, applied.text
    assert [a["kind"] for a in applied.json()["applied"]] == ["resolution"] * 3
    assert queue_ids(client, admin, site=site) == []
    assert client.post("/v1/labels", json={"items": []}, headers=admin.headers).status_code == 422


# --- statistics --------------------------------------------------------------------------


def test_stats_count_false_positives_and_missed_spam(
    client: TestClient, sessions: db.SessionFactory, account: Account, admin: User
) -> None:
    site = make_site(sessions, account, "https://stats.example")
    ham = [seed_comment(sessions, site, 0.1, "ham") for _ in range(3)]
    unsure = [seed_comment(sessions, site, 0.4, "unsure") for _ in range(2)]
    spam = seed_comment(sessions, site, 0.97, "spam")
    discard = seed_comment(sessions, site, 0.999, "discard")
    seed_comment(sessions, site, None)
    label(client, admin, ham[0], "spam")  # missed spam
    label(client, admin, ham[1], "spam")
    label(client, admin, ham[1], "ham")  # …corrected: the newest label wins
    label(client, admin, discard, "ham")  # false positive
    label(client, admin, spam, "spam")  # confirmation
    label(client, admin, unsure[0], "spam")  # resolution

    response = client.get("/v1/moderation/stats", params={"site": site}, headers=admin.headers)

    assert response.status_code == 200, response.text
    [row] = response.json()["sites"]
    # The site has none of its own, so it uses the model's
    # (tests/service/scoring/test_site_thresholds.py).
    assert row.pop("own_thresholds") == {"unsure": None, "spam": None, "discard": None}
    effective = row.pop("thresholds")
    assert effective["unsure"] <= effective["spam"] <= effective["discard"]
    assert row == {
        "site_id": site,
        "site": "https://stats.example",
        "account_id": account.id,
        "checked": 7,
        "ham": 3,
        "unsure": 2,
        "spam": 1,
        "discard": 1,
        "pending": 1,
        "labelled_spam": 3,
        "labelled_ham": 2,
        "missed_spam": 1,
        "false_positives": 1,
        "unlabelled_unsure": 1,
    }
    later = client.get(
        "/v1/moderation/stats",
        params={"site": site, "since": "2999-01-01T00:00:00Z"},
        headers=admin.headers,
    )
    assert later.json()["sites"][0]["checked"] == 0


# --- who may do what ---------------------------------------------------------------------


def test_moderator_sees_only_granted_sites(
    client: TestClient,
    sessions: db.SessionFactory,
    settings: Settings,
    account: Account,
) -> None:
    mine = make_site(sessions, account, "https://mine.example")
    other = make_site(sessions, create_account(settings, "other"), "https://theirs.example")
    own_comment = seed_comment(sessions, mine, 0.4)
    their_comment = seed_comment(sessions, other, 0.45)
    moderator = make_user(sessions, settings, tables.UserRole.MODERATOR, (mine,))
    h = moderator.headers

    assert queue_ids(client, moderator) == [str(own_comment)]
    assert client.get("/v1/moderation/queue", params={"site": other}, headers=h).status_code == 404
    assert label(client, moderator, their_comment, "spam").status_code == 404
    history = client.get(f"/v1/moderation/comments/{their_comment}/history", headers=h)
    assert history.status_code == 404
    bulk = client.post(
        "/v1/labels",
        json={
            "items": [{"comment_id": str(c), "label": "ham"} for c in (own_comment, their_comment)]
        },
        headers=h,
    )
    assert bulk.status_code == 404
    stats = client.get("/v1/moderation/stats", headers=h).json()["sites"]
    assert [s["site_id"] for s in stats] == [mine]
    assert client.get("/v1/moderation/stats", params={"site": other}, headers=h).status_code == 404
    forbidden = client.get("/v1/users", headers=h)
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
    me = client.get("/v1/moderation/me", headers=h).json()
    assert me == {
        "id": moderator.id,
        "name": moderator.name,
        "role": "moderator",
        "site_ids": [mine],
    }
    assert label(client, moderator, own_comment, "spam").status_code == 201


def test_admin_lists_users_and_sees_every_site(
    client: TestClient, sessions: db.SessionFactory, settings: Settings, admin: User
) -> None:
    other = make_site(sessions, create_account(settings, "anyone"), "https://any.example")
    comment = seed_comment(sessions, other, 0.42)
    moderator = make_user(sessions, settings, tables.UserRole.MODERATOR, (other,))

    listed = client.get("/v1/users", headers=admin.headers)

    assert listed.status_code == 200, listed.text
    by_name = {u["name"]: u for u in listed.json()}
    assert by_name[moderator.name]["sites"] == ["https://any.example"]
    assert by_name[admin.name]["role"] == "admin" and by_name[admin.name]["tokens"] == 1
    assert str(comment) in queue_ids(client, admin, site=other)
    assert client.get("/v1/moderation/me", headers=admin.headers).json()["site_ids"] is None


def test_site_key_and_user_token_each_refused_on_the_others_endpoints(
    client: TestClient, sessions: db.SessionFactory, account: Account, admin: User
) -> None:
    comment = seed_comment(sessions, make_site(sessions, account, "https://keys.example"), 0.4)
    user_endpoints = [
        ("GET", "/v1/moderation/queue", None),
        ("GET", "/v1/moderation/stats", None),
        ("GET", "/v1/moderation/me", None),
        ("GET", "/v1/users", None),
        ("GET", f"/v1/moderation/comments/{comment}/history", None),
        ("POST", f"/v1/comments/{comment}/label", {"label": "spam"}),
        ("POST", "/v1/labels", {"items": [{"comment_id": str(comment), "label": "spam"}]}),
    ]
    for method, path, body in user_endpoints:
        for headers in (account.headers, {}, {"Authorization": "Bearer cgu_" + "0" * 48}):
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (path, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
    site_endpoints = [
        ("GET", f"/v1/comments/{comment}", None),
        ("GET", "/v1/sites", None),
        ("POST", "/v1/check", {"content": "hello"}),
    ]
    for method, path, body in site_endpoints:
        response = client.request(method, path, json=body, headers=admin.headers)
        assert response.status_code == 401, (path, response.text)
    akismet = client.post(
        "/1.1/verify-key", data={"key": admin.token, "blog": "https://keys.example"}
    )
    assert akismet.text == "invalid"


def test_refuse_revoked_token_and_disabled_user(
    client: TestClient, sessions: db.SessionFactory, settings: Settings
) -> None:
    revoked = make_user(sessions, settings, tables.UserRole.ADMIN)
    disabled = make_user(sessions, settings, tables.UserRole.ADMIN)
    with sessions() as session:
        token = session.execute(
            select(tables.UserToken).where(tables.UserToken.user_id == revoked.id)
        ).scalar_one()
        token.revoked_at = tables.utcnow()
        user = session.get(tables.User, disabled.id)
        assert user is not None
        user.disabled = True
        session.commit()
    for who in (revoked, disabled):
        assert client.get("/v1/moderation/me", headers=who.headers).status_code == 401


def test_store_user_tokens_and_passwords_hashed(
    sessions: db.SessionFactory, settings: Settings
) -> None:
    with sessions() as session:
        new = users.create_user(
            session,
            f"pw-{uuid.uuid4().hex[:6]}",
            tables.UserRole.MODERATOR,
            settings.secret_key,
            password="correct horse",
        )
        session.commit()
        user = session.get(tables.User, new.user_id)
        assert user is not None and user.password_hash is not None
        assert user.password_hash.startswith("$argon2id$")
        assert "correct horse" not in user.password_hash
        stored = session.execute(
            select(tables.UserToken.token_hash, tables.UserToken.prefix).where(
                tables.UserToken.user_id == new.user_id
            )
        ).one()
        assert new.plaintext not in "".join(stored)
        assert users.authenticate_password(session, user.name, "correct horse") is not None
        assert users.authenticate_password(session, user.name, "wrong") is None
        assert users.authenticate_password(session, "nobody-at-all", "correct horse") is None
        with pytest.raises(users.UserError):
            users.create_user(session, user.name, tables.UserRole.ADMIN, settings.secret_key)


# --- Akismet feedback goes through the same path -----------------------------------------


def test_akismet_submit_spam_is_recorded_in_the_audit(
    client: TestClient, sessions: db.SessionFactory, account: Account, admin: User
) -> None:
    fields = {
        "api_key": account.key,
        "blog": "https://akismet-audit.example",
        "user_ip": "203.0.113.9",
        "comment_author": "Bob",
        "comment_content": "Great post, thanks for writing it!",
    }
    checked = client.post("/1.1/comment-check", data=fields)
    guid = checked.headers["x-akismet-guid"]

    submitted = client.post("/1.1/submit-spam", data={**fields, "guid": guid})

    assert submitted.text == "Thanks for making the web a better place."
    history = client.get(f"/v1/moderation/comments/{guid}/history", headers=admin.headers)
    [entry] = history.json()["audit"]
    assert entry["source"] == "feedback" and entry["after"] == "spam"
    assert entry["before"] is None and entry["actor"].startswith("akismet:cg")
    assert entry["user_id"] is None
    assert history.json()["deliveries"] == []  # the platform told us: nothing to call back


def test_label_hooks_run_after_commit_on_every_path(
    settings: Settings, sessions: db.SessionFactory, account: Account
) -> None:
    from service.moderation.labels import AppliedLabel

    seen: list[tuple[str, str, bool]] = []
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as local:

        def hook(applied: Any) -> None:
            for item in applied:
                assert isinstance(item, AppliedLabel)
                with sessions() as session:  # committed: another session sees it
                    committed = session.get(tables.Label, item.label_id) is not None
                seen.append((item.label.value, item.source.value, committed))

        def broken(_applied: Any) -> None:
            raise RuntimeError("a hook failing must not fail the request")

        app.state.services.label_hooks.extend([broken, hook])
        admin = make_user(sessions, settings, tables.UserRole.ADMIN)
        site = make_site(sessions, account, "https://hooks.example")
        one, two = seed_comment(sessions, site, 0.4), seed_comment(sessions, site, 0.4)
        assert label(local, admin, one, "spam").status_code == 201
        bulk = local.post(
            "/v1/labels",
            json={"items": [{"comment_id": str(two), "label": "ham"}]},
            headers=admin.headers,
        )
        assert bulk.status_code == 201
        feedback = local.post(
            "/1.1/submit-ham",
            data={
                "api_key": account.key,
                "blog": "https://hooks.example",
                "user_ip": "1.2.3.4",
                "comment_content": "never checked before",
            },
        )
        assert feedback.status_code == 200
    assert seen == [
        ("spam", "moderator", True),
        ("ham", "moderator", True),
        ("ham", "feedback", True),
    ]


# --- the label callback ------------------------------------------------------------------


def test_deliver_label_callback_signed(
    client: TestClient,
    account: Account,
    admin: User,
    receiver: CallbackReceiver,
    workers: Any,
) -> None:
    submitted = client.post(
        "/v1/comments",
        json={
            "content": "I love this song, it reminds me of my childhood.",
            "blog": "https://callback.example",
            "external_id": "label-cb-1",
            "callback_url": receiver.url("/hook"),
        },
        headers=account.headers,
    )
    assert submitted.status_code == 202, submitted.text
    comment_id = submitted.json()["id"]
    receiver.wait(
        lambda: any(r.comment_id == comment_id for r in receiver.received), 60, "the verdict"
    )

    labelled = label(client, admin, uuid.UUID(comment_id), "spam", note="spammer")
    assert labelled.status_code == 201 and labelled.json()["callback"] is True

    def label_events() -> list[Any]:
        return [
            r
            for r in receiver.received
            if r.comment_id == comment_id and r.body["event"] == "label"
        ]

    receiver.wait(lambda: bool(label_events()), 60, "the label callback")
    [event] = label_events()
    assert event.signature_ok
    assert event.body["label"]["label"] == "spam"
    assert event.body["label"]["previous"] is None
    assert event.body["label"]["actor"] == admin.name
    assert event.body["label"]["note"] == "spammer"
    assert event.body["label"]["id"] == labelled.json()["label_id"]
    assert event.body["verdict"]["decision"] in ("ham", "unsure", "spam", "discard")
    assert event.body["label"]["kind"] == labelled.json()["kind"]

    def delivered() -> bool:
        history = client.get(
            f"/v1/moderation/comments/{comment_id}/history", headers=admin.headers
        ).json()
        events = {d["event"]: d["status"] for d in history["deliveries"]}
        return events == {"verdict": "delivered", f"label:{event.body['label']['id']}": "delivered"}

    wait_until(delivered, 30, "both deliveries recorded as delivered")
