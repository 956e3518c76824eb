"""The console over plain HTTP: login, cookies, CSRF, lockout, admin-only actions, headers."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from sqlalchemy import select

from service import tables
from tests.console.conftest import (
    PASSWORD,
    Console,
    check,
    csrf_of,
    login_client,
    site_id_of,
)
from tests.service.conftest import Account

pytestmark = pytest.mark.xdist_group("console")


def labels_of(console: Console, comment_id: str) -> list[str]:
    with console.sessions() as session:
        return list(
            session.execute(
                select(tables.Label.label)
                .where(tables.Label.comment_id == uuid.UUID(comment_id))
                .order_by(tables.Label.id)
            ).scalars()
        )


def test_redirect_to_login_without_a_session(console: Console) -> None:
    response = httpx.get(f"{console.url}/console/queue?site=1", timeout=10)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=%2Fconsole%2Fqueue%3Fsite%3D1"
    htmx = httpx.post(f"{console.url}/console/undo", headers={"HX-Request": "true"}, timeout=10)
    assert htmx.status_code == 401 and htmx.headers["hx-redirect"] == "/console/login"


def test_login_sets_a_signed_httponly_lax_cookie(console: Console) -> None:
    with httpx.Client(base_url=console.url, timeout=30) as client:
        form = client.get("/console/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token
        response = client.post(
            "/console/login",
            data={
                "username": "ada",
                "password": PASSWORD,
                "csrf_token": token.group(1),
                "next": "/console/sites",
            },
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/console/sites"
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith("cg_console=")
        )
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
        value = cookie.split(";")[0].split("=", 1)[1]
        assert "." in value  # token.signature
        assert client.get("/console/sites").status_code == 200
        # A tampered signature is no session.
        client.cookies.set("cg_console", value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
        assert client.get("/console/sites").status_code == 303


def test_refuse_login_without_the_form_token(console: Console) -> None:
    response = httpx.post(
        f"{console.url}/console/login",
        data={"username": "ada", "password": PASSWORD},
        timeout=30,
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"


def test_refuse_a_redirect_off_the_console_after_login(console: Console) -> None:
    with httpx.Client(base_url=console.url, timeout=30) as client:
        form = client.get("/console/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token
        response = client.post(
            "/console/login",
            data={
                "username": "ada",
                "password": PASSWORD,
                "csrf_token": token.group(1),
                "next": "//evil.example/console/",
            },
        )
        assert response.headers["location"] == "/console/queue"


def _attempt(client: httpx.Client, name: str, password: str) -> httpx.Response:
    form = client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    return client.post(
        "/console/login",
        data={"username": name, "password": password, "csrf_token": token.group(1)},
    )


def _client_from(console: Console, address: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x.y.z is this machine)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=console.url, timeout=30, transport=transport)


def test_lock_out_an_address_after_repeated_failures_but_never_a_fresh_one(
    console: Console,
) -> None:
    from service import users

    with console.sessions() as session:
        users.create_user(
            session, "lockme", tables.UserRole.MODERATOR, console.settings.secret_key, PASSWORD
        )
        session.commit()
    with _client_from(console, "127.0.0.3") as attacker:
        # console_login_max_failures is 3 for these tests.
        assert _attempt(attacker, "lockme", "wrong-1").status_code == 401
        assert _attempt(attacker, "lockme", "wrong-2").status_code == 401
        third = _attempt(attacker, "lockme", "wrong-3")
        assert third.status_code == 429
        locked = _attempt(attacker, "lockme", PASSWORD)  # the right password, but locked
        assert locked.status_code == 429
        assert "Too many failed logins" in locked.text
        assert "cg_console=" not in "".join(locked.headers.get_list("set-cookie"))
    with _client_from(console, "127.0.0.4") as second:
        # The name has failed 3 times: an address that fails for it once is locked out too.
        assert _attempt(second, "lockme", "wrong-4").status_code == 429
        assert _attempt(second, "lockme", PASSWORD).status_code == 429
    with _client_from(console, "127.0.0.5") as owner:
        # An address that has not failed: the right password works, whatever the name's count.
        assert _attempt(owner, "lockme", PASSWORD).status_code == 303
    with _client_from(console, "127.0.0.7") as typist:
        # While the name is under attack, one failure is enough to lock an address out of it
        # (so that many addresses get one guess each, not three).
        assert _attempt(typist, "lockme", "typo").status_code == 429
        assert _attempt(typist, "mo", "typo").status_code == 401  # other names: not locked


def test_store_no_address_or_attempted_name_in_clear(console: Console) -> None:
    from sqlalchemy import text

    with _client_from(console, "127.0.0.6") as client:
        assert _attempt(client, "no-such-person-xyz", "guess").status_code == 401
        assert _attempt(client, console.moderator, PASSWORD).status_code == 303
    with console.sessions() as session:
        tables_now = {
            row[0]
            for row in session.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'table'")
                if console.settings.is_sqlite
                else text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
        }
        addresses = session.execute(select(tables.ConsoleSession.remote_addr)).scalars().all()
    assert "console_login_failures" not in tables_now
    assert addresses and all(a.startswith("hmac:") for a in addresses if a)
    assert not any("127.0.0" in a for a in addresses)


def test_refuse_a_post_without_the_csrf_token(console: Console, site: tuple[Account, str]) -> None:
    account, blog = site
    comment_id = check(console, account, blog, "Nice post, thanks for sharing it.")
    with login_client(console, "ada") as client:
        token = csrf_of(client)
        refused = client.post(f"/console/comments/{comment_id}/label", data={"label": "spam"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "csrf_failed"
        wrong = client.post(
            f"/console/comments/{comment_id}/label",
            data={"label": "spam", "csrf_token": "0" * 64},
        )
        assert wrong.status_code == 403
        assert labels_of(console, comment_id) == []
        assert client.post("/console/logout").status_code == 403
        # With the token (as htmx sends it, in a header) the same request is accepted.
        accepted = client.post(
            f"/console/comments/{comment_id}/label",
            data={"label": "spam"},
            headers={"X-CSRF-Token": token},
        )
        assert accepted.status_code == 200, accepted.text
        assert labels_of(console, comment_id) == ["spam"]


def test_logout_ends_the_session_everywhere(console: Console) -> None:
    with login_client(console, "ada") as client:
        token = csrf_of(client)
        cookie = client.cookies.get("cg_console")
        assert client.post("/console/logout", data={"csrf_token": token}).status_code == 303
    # The same cookie, replayed after logout, is no session any more.
    replay = httpx.get(
        f"{console.url}/console/queue", cookies={"cg_console": cookie or ""}, timeout=10
    )
    assert replay.status_code == 303


def test_refuse_model_activation_to_a_moderator(console: Console) -> None:
    from classifier.artifact import active_version

    version = active_version(console.settings.models_dir)
    assert version is not None
    with login_client(console, "mo") as client:
        token = csrf_of(client, "/console/models")
        page = client.get("/console/models")
        assert "/activate" not in page.text and "Retrain now" not in page.text
        for path in (f"/console/models/{version}/activate", "/console/models/rollback",
                     "/console/models/retrain"):  # fmt: skip
            refused = client.post(path, data={"csrf_token": token})
            assert refused.status_code == 403, path
            assert refused.json()["error"]["code"] == "forbidden"
    with login_client(console, "ada") as client:
        assert f"/console/models/{version}/activate" not in client.get("/console/models").text
        token = csrf_of(client, "/console/models")
        response = client.post(f"/console/models/{version}/activate", data={"csrf_token": token})
        assert response.status_code == 303  # an admin may (re)activate the active version
    assert active_version(console.settings.models_dir) == version


def test_moderator_sees_only_granted_sites(console: Console, site: tuple[Account, str]) -> None:
    account, blog = site
    comment_id = check(console, account, blog, "Lovely photos, where was this taken?")
    with login_client(console, "mo") as client:
        assert client.get(f"/console/comments/{comment_id}").status_code == 404
        console.grant(blog, account.id)
        page = client.get(f"/console/comments/{comment_id}")
        assert page.status_code == 200
        assert "Lovely photos" in page.text


def test_send_the_security_headers(console: Console) -> None:
    with login_client(console, "ada") as client:
        for path in ("/console/queue", "/console/login", "/console/static/console.js"):
            response = client.get(path)
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert "frame-ancestors 'none'" in csp
            assert response.headers["x-content-type-options"] == "nosniff"
        assert client.get("/console/queue").headers["cache-control"] == "no-store"
    # The API itself is unchanged.
    assert "content-security-policy" not in httpx.get(f"{console.url}/healthz").headers


def test_escape_comment_markup_in_every_page(console: Console, site: tuple[Account, str]) -> None:
    account, blog = site
    comment_id = check(
        console,
        account,
        blog,
        '<script>alert("x")</script> <img src=x onerror=alert(1)> buy now',
        author='<b onmouseover="alert(1)">Eve</b>',
        author_url="javascript:alert(1)",
    )
    site_id = site_id_of(console, account)
    with login_client(console, "ada") as client:
        for path in (
            f"/console/queue?site={site_id}&decision=all",
            f"/console/comments/{comment_id}",
        ):
            text = client.get(path).text
            assert "<script>alert" not in text and "<img src=x" not in text
            assert re.search(
                r"&lt;script&gt;alert\((&#34;|&quot;)x(&#34;|&quot;)\)&lt;/script&gt;", text
            )
            assert "&lt;b onmouseover=&#34;alert(1)&#34;&gt;Eve&lt;/b&gt;" in text
            assert 'href="javascript:' not in text


def test_label_many_at_once(console: Console, site: tuple[Account, str]) -> None:
    account, blog = site
    ids = [check(console, account, blog, f"Comment number {i} about the post") for i in range(3)]
    with login_client(console, "ada") as client:
        token = csrf_of(client)
        response = client.post(
            "/console/labels",
            data={"csrf_token": token, "label": "ham", "ids": ids[:2], "back": "site=1&x=2"},
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/console/queue?site=1"
    assert [labels_of(console, i) for i in ids] == [["ham"], ["ham"], []]


def test_filter_the_queue_by_search_and_date(console: Console, site: tuple[Account, str]) -> None:
    account, blog = site
    check(console, account, blog, "Loved the Recipe, thanks", author="Chef Ann")
    check(console, account, blog, "100% agree with_this", author="Bob")
    check(console, account, blog, "Nothing to see here", author_email="zed@mail.example")
    site_id = site_id_of(console, account)

    def shown(query: str) -> int:
        page = client.get(f"/console/queue?site={site_id}&{query}")
        assert page.status_code == 200
        return page.text.count('class="item"')

    with login_client(console, "ada") as client:
        assert shown("") == 3
        assert shown("q=RECIPE") == 1  # any case
        assert shown("q=chef") == 1  # the author
        assert shown("q=ZED%40mail") == 1  # the e-mail
        assert shown("q=%25") == 1  # "%" is a character, not a wildcard
        assert shown("q=e_e") == 0  # nor "_" (as a wildcard it would match "here")
        assert shown("q=with_this") == 1
        today = tables.utcnow().date()
        assert shown(f"since={today.isoformat()}&until={today.isoformat()}") == 3
        assert shown("until=2000-01-01") == 0
        assert shown("since=not-a-date") == 3  # a malformed date is no filter


def test_link_a_near_duplicate_to_the_matched_comment(
    console: Console, site: tuple[Account, str]
) -> None:
    from sqlalchemy import update

    account, blog = site
    original = check(console, account, blog, "Win a free phone, click here now")
    copy = check(console, account, blog, "Win a free phone, click here now!")
    reason = {
        "feature": "near_duplicate:spam",
        "description": f"a near-duplicate (93% similar) of comment {original}, labelled spam",
        "weight": 1.0,
        "kind": "near_duplicate",
        "comment_id": original,
        "label": "spam",
        "similarity": 0.93,
    }
    with console.sessions() as session:
        session.execute(
            update(tables.Verdict)
            .where(tables.Verdict.comment_id == uuid.UUID(copy))
            .values(reasons=[reason])
        )
        session.commit()
    with login_client(console, "ada") as client:
        page = client.get(f"/console/comments/{copy}").text
        assert f'<a href="/console/comments/{original}">the matched comment</a>' in page


def test_undo_of_a_first_label_keeps_both_events_in_the_audit(
    console: Console, site: tuple[Account, str]
) -> None:
    account, blog = site
    comment_id = check(console, account, blog, "An ordinary comment, labelled and then undone.")
    with login_client(console, "ada") as client:
        token = csrf_of(client)
        headers = {"X-CSRF-Token": token}
        labelled = client.post(
            f"/console/comments/{comment_id}/label", data={"label": "spam"}, headers=headers
        )
        assert labelled.status_code == 200, labelled.text
        undone = client.post("/console/undo", headers=headers)
        assert undone.status_code == 200, undone.text
    assert labels_of(console, comment_id) == [], "the comment is unlabelled again"
    with console.sessions() as session:
        audit = (
            session.execute(
                select(tables.LabelAudit)
                .where(tables.LabelAudit.comment_id == uuid.UUID(comment_id))
                .order_by(tables.LabelAudit.id)
            )
            .scalars()
            .all()
        )
    assert [(a.label_id, a.before, a.after, a.actor, a.note) for a in audit] == [
        (None, None, "spam", "ada", None),
        (None, "spam", None, "ada", "undo"),
    ]
    assert audit[0].kind != "removed" and audit[1].kind == "removed"


def test_say_what_a_decision_does_on_the_platform() -> None:
    from service.console.views import on_platform

    assert "signed callback" in on_platform("unsure", callback=True)
    assert "signed callback" in on_platform("spam", callback=True)
    for decision in ("ham", "unsure"):
        note = on_platform(decision, callback=False)
        assert "stays in commentguard" in note and "not spam (false)" in note
        assert "WordPress published it" in note and "Spam button" in note
    for decision in ("spam", "discard"):
        note = on_platform(decision, callback=False)
        assert "spam (true)" in note and "Not Spam" in note
