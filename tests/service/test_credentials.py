"""Credentials can be revoked: API keys, user tokens, disabled users and site grants, from the
command line and over the API, each change audited; a revoked key stops working in every API
process within the site cache interval."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from service import db, security, tables, users
from service.cli import app
from service.settings import Settings
from tests.service.conftest import (
    TEST_SECRET,
    Account,
    create_account,
    create_admin,
    make_settings,
    serve_app,
    session_factory,
    wait_until,
)

pytestmark = pytest.mark.xdist_group("credentials")

CACHE_SECONDS = 1.0


@pytest.fixture(scope="module")
def cached_settings(database_url: str, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
                    ) -> Settings:  # fmt: skip
    return make_settings(
        database_url=database_url,
        models_dir=models_dir,
        data_dir=tmp_path_factory.mktemp("var"),
        site_cache_seconds=CACHE_SECONDS,
    )


@pytest.fixture(scope="module")
def two_servers(cached_settings: Settings) -> Iterator[tuple[str, str]]:
    """Two API instances on one database, each with its own key and site caches, as two API
    processes have."""
    with serve_app(cached_settings) as first, serve_app(cached_settings) as second:
        yield first, second


@pytest.fixture
def cli(cached_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COMMENTGUARD_DATABASE_URL", cached_settings.database_url)
    monkeypatch.setenv("COMMENTGUARD_SECRET_KEY", TEST_SECRET)
    return CliRunner()


@pytest.fixture(scope="module")
def sessions(cached_settings: Settings) -> Iterator[db.SessionFactory]:
    with session_factory(cached_settings) as factory:
        yield factory


def _check(url: str, account: Account) -> int:
    body = {"content": "a lovely song", "blog": "https://creds.example"}
    return httpx.post(f"{url}/v1/check", json=body, headers=account.headers, timeout=30).status_code


def _key_id(sessions: db.SessionFactory, account: Account) -> int:
    with sessions() as session:
        return session.execute(
            select(tables.ApiKey.id).where(tables.ApiKey.account_id == account.id)
        ).scalar_one()


def _audit(sessions: db.SessionFactory, target: str) -> list[tables.AdminAudit]:
    with sessions() as session:
        return list(
            session.execute(
                select(tables.AdminAudit)
                .where(tables.AdminAudit.target == target)
                .order_by(tables.AdminAudit.id)
            ).scalars()
        )


def _refused_everywhere_within(urls: tuple[str, ...], account: Account, since: float) -> float:
    """Seconds from `since` until every server refuses the key (polled)."""
    wait_until(
        lambda: all(_check(url, account) == 401 for url in urls),
        CACHE_SECONDS + 10,
        "the revoked key refused by every server",
    )
    return time.monotonic() - since


def test_key_cache_forgets_a_key_after_its_ttl() -> None:
    now = [100.0]
    cache = security.KeyCache(ttl=5.0, clock=lambda: now[0])
    cache.put("cgkey", TEST_SECRET, 7)
    now[0] += 4.9
    assert cache.get("cgkey", TEST_SECRET) == 7
    now[0] += 0.1  # the entry's whole life: read from the database again
    assert cache.get("cgkey", TEST_SECRET) is None
    cache.put("cgkey", TEST_SECRET, 7)
    cache.clear()
    assert cache.get("cgkey", TEST_SECRET) is None


def test_revoke_a_key_from_the_cli_stops_it_in_every_process(
    cached_settings: Settings,
    two_servers: tuple[str, str],
    cli: CliRunner,
    sessions: db.SessionFactory,
) -> None:
    account = create_account(cached_settings, "cli-revoked")
    other = create_account(cached_settings, "cli-kept")
    assert [_check(url, account) for url in two_servers] == [200, 200]  # cached by both
    key_id = _key_id(sessions, account)
    listed = cli.invoke(app, ["keys", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    row = next(k for k in json.loads(listed.stdout) if k["id"] == key_id)
    assert row["account_id"] == account.id and row["revoked_at"] is None
    assert account.key not in listed.stdout and row["prefix"] == account.key[:10]

    revoked = cli.invoke(app, ["keys", "revoke", str(key_id)])
    started = time.monotonic()
    assert revoked.exit_code == 0, revoked.output
    took = _refused_everywhere_within(two_servers, account, started)
    assert took <= CACHE_SECONDS + 1.0, took
    assert [_check(url, other) for url in two_servers] == [200, 200], "other keys still work"
    again = cli.invoke(app, ["keys", "revoke", str(key_id)])
    assert again.exit_code == 0 and "already revoked" in again.output
    assert cli.invoke(app, ["keys", "revoke", "999999"]).exit_code == 2
    (entry,) = _audit(sessions, f"api_key:{key_id}")  # revoking twice is one change
    assert entry.action == "key_revoked" and entry.source == "cli"
    assert entry.actor.startswith("cli:") and entry.before == {"revoked_at": None}


def test_revoke_a_key_over_the_api_stops_it_at_once_there_and_soon_everywhere(
    cached_settings: Settings, two_servers: tuple[str, str], sessions: db.SessionFactory
) -> None:
    first, second = two_servers
    account = create_account(cached_settings, "api-revoked")
    admin = create_admin(cached_settings)
    assert [_check(url, account) for url in two_servers] == [200, 200]
    key_id = _key_id(sessions, account)
    keys = httpx.get(f"{first}/v1/keys", params={"account": account.id}, headers=admin.headers)
    assert keys.status_code == 200 and [k["id"] for k in keys.json()] == [key_id]
    answer = httpx.post(f"{first}/v1/keys/{key_id}/revoke", headers=admin.headers)
    started = time.monotonic()
    assert answer.status_code == 200, answer.text
    assert answer.json()["revoked_at"] is not None
    assert _check(first, account) == 401  # the process that revoked it: at once
    took = _refused_everywhere_within((second,), account, started)
    assert took <= CACHE_SECONDS + 1.0, took
    unknown = httpx.post(f"{first}/v1/keys/{tables.MAX_ROW_ID}/revoke", headers=admin.headers)
    assert unknown.status_code == 404
    audit = httpx.get(f"{first}/v1/audit", headers=admin.headers).json()
    mine = [e for e in audit if e["target"] == f"api_key:{key_id}"]
    assert [(e["action"], e["source"], e["user_id"]) for e in mine] == [
        ("key_revoked", "api", admin.id)
    ]


def _moderator(settings: Settings, sessions: db.SessionFactory, name: str) -> Account:
    with sessions() as session:
        new = users.create_user(session, name, tables.UserRole.MODERATOR, settings.secret_key)
        session.commit()
    return Account(new.user_id, new.plaintext)


def _me(url: str, user: Account) -> int:
    return httpx.get(f"{url}/v1/moderation/me", headers=user.headers, timeout=30).status_code


def test_disable_enable_and_revoke_tokens_from_the_cli(
    cached_settings: Settings,
    two_servers: tuple[str, str],
    cli: CliRunner,
    sessions: db.SessionFactory,
) -> None:
    first, second = two_servers
    mod = _moderator(cached_settings, sessions, "cli-leaver")
    assert _me(first, mod) == _me(second, mod) == 200
    assert cli.invoke(app, ["users", "disable", "cli-leaver"]).exit_code == 0
    assert _me(first, mod) == _me(second, mod) == 401  # tokens are never cached
    assert cli.invoke(app, ["users", "enable", "cli-leaver"]).exit_code == 0
    assert _me(first, mod) == _me(second, mod) == 200
    with sessions() as session:
        user = users.user_by_name(session, "cli-leaver")
        session.add(
            tables.ConsoleSession(
                id="x" * 64, user_id=user.id, expires_at=tables.utcnow().replace(year=2100)
            )
        )
        session.commit()
    revoked = cli.invoke(app, ["users", "revoke-tokens", "cli-leaver"])
    assert revoked.exit_code == 0, revoked.output
    assert "1 tokens revoked and 1 console sessions ended" in revoked.output
    assert _me(first, mod) == _me(second, mod) == 401
    with sessions() as session:
        left = session.execute(
            select(func.count())
            .select_from(tables.ConsoleSession)
            .where(tables.ConsoleSession.user_id == mod.id)
        ).scalar_one()
    assert left == 0
    assert cli.invoke(app, ["users", "disable", "nobody-here"]).exit_code == 2
    actions = [e.action for e in _audit(sessions, f"user:{mod.id}")]
    assert actions == ["user_disabled", "user_enabled", "tokens_revoked"]


def test_disable_enable_and_revoke_tokens_over_the_api(
    cached_settings: Settings, two_servers: tuple[str, str], sessions: db.SessionFactory
) -> None:
    first, second = two_servers
    admin = create_admin(cached_settings)
    mod = _moderator(cached_settings, sessions, "api-leaver")
    base = f"{first}/v1/users/{mod.id}"
    disabled = httpx.post(f"{base}/disable", headers=admin.headers)
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert _me(first, mod) == _me(second, mod) == 401
    enabled = httpx.post(f"{base}/enable", headers=admin.headers)
    assert enabled.status_code == 200 and enabled.json()["disabled"] is False
    assert _me(second, mod) == 200
    revoked = httpx.post(f"{base}/revoke-tokens", headers=admin.headers)
    assert revoked.status_code == 200 and revoked.json()["tokens"] == 1
    assert _me(first, mod) == _me(second, mod) == 401
    own = httpx.post(f"{first}/v1/users/{admin.id}/disable", headers=admin.headers)
    assert own.status_code == 409, "an admin cannot lock themselves out"
    for path in ("disable", "enable", "revoke-tokens"):
        unknown = httpx.post(f"{first}/v1/users/{tables.MAX_ROW_ID}/{path}", headers=admin.headers)
        assert unknown.status_code == 404, unknown.text
        too_big = httpx.post(
            f"{first}/v1/users/{tables.MAX_ROW_ID + 1}/{path}", headers=admin.headers
        )
        assert too_big.status_code == 422, too_big.text
    entries = _audit(sessions, f"user:{mod.id}")
    assert [(e.action, e.actor, e.source) for e in entries] == [
        ("user_disabled", entries[0].actor, "api"),
        ("user_enabled", entries[0].actor, "api"),
        ("tokens_revoked", entries[0].actor, "api"),
    ]
    assert entries[0].user_id == admin.id


def test_ungrant_a_site_from_the_cli_and_over_the_api(
    cached_settings: Settings,
    two_servers: tuple[str, str],
    cli: CliRunner,
    sessions: db.SessionFactory,
) -> None:
    first, _ = two_servers
    account = create_account(cached_settings, "granted")
    admin = create_admin(cached_settings)
    mod = _moderator(cached_settings, sessions, "ungranted")
    sites = []
    for blog in ("https://one.example", "https://two.example"):
        with sessions() as session:
            sites.append(users.grant_site(session, "ungranted", blog, account.id).id)
            session.commit()

    def sees(site_id: int) -> bool:
        answer = httpx.get(
            f"{first}/v1/moderation/queue", params={"site": site_id}, headers=mod.headers
        )
        assert answer.status_code in (200, 404), answer.text
        return answer.status_code == 200

    assert sees(sites[0]) and sees(sites[1])
    done = cli.invoke(app, ["users", "ungrant", "ungranted", "https://ONE.example/"])
    assert done.exit_code == 0, done.output
    assert not sees(sites[0]) and sees(sites[1])
    assert cli.invoke(app, ["users", "ungrant", "ungranted", "https://one.example"]).exit_code == 1
    gone = httpx.delete(f"{first}/v1/users/{mod.id}/sites/{sites[1]}", headers=admin.headers)
    assert gone.status_code == 204, gone.text
    assert not sees(sites[1])
    again = httpx.delete(f"{first}/v1/users/{mod.id}/sites/{sites[1]}", headers=admin.headers)
    assert again.status_code == 404
    entries = _audit(sessions, f"user:{mod.id}")
    assert [(e.action, e.source, e.before) for e in entries] == [
        ("site_ungranted", "cli", {"site_id": sites[0]}),
        ("site_ungranted", "api", {"site_id": sites[1]}),
    ]


def test_audit_an_admins_threshold_change(
    cached_settings: Settings, two_servers: tuple[str, str], sessions: db.SessionFactory
) -> None:
    first, _ = two_servers
    account = create_account(cached_settings, "thresholds")
    admin = create_admin(cached_settings)
    assert _check(first, account) == 200
    with sessions() as session:
        site_id = session.execute(
            select(tables.Site.id).where(tables.Site.account_id == account.id)
        ).scalar_one()
    body = {"unsure": 0.2, "spam": None, "discard": None}
    answer = httpx.put(f"{first}/v1/sites/{site_id}/thresholds", json=body, headers=admin.headers)
    assert answer.status_code == 200, answer.text
    (entry,) = _audit(sessions, f"site:{site_id}")
    assert entry.action == "thresholds_set" and entry.user_id == admin.id
    assert entry.before == {"unsure": None, "spam": None, "discard": None}
    assert entry.after == body
    refused = httpx.put(
        f"{first}/v1/sites/{site_id}/thresholds",
        json={"unsure": 0.9, "spam": 0.1},
        headers=admin.headers,
    )
    assert refused.status_code == 422
    assert len(_audit(sessions, f"site:{site_id}")) == 1, "a refused change is not audited"
