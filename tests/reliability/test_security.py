"""Isolation between accounts, keys at rest, callbacks to private addresses, tampered models.

Against a live server on the private PostgreSQL database. The role checks for moderators and
admins (users, not site keys) are not here yet: those users do not exist in this version.
"""

from __future__ import annotations

import hmac
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from classifier import ArtifactError
from classifier.artifact import ACTIVE_FILE, MODEL_FILE, active_version
from service import callbacks, db, security, tables
from service.app import create_app
from service.engine import ModelHolder, score_stored_comment
from service.intake import SiteCache, new_comment, resolve_site
from service.schemas import WebhookCommentIn
from service.settings import Settings
from tests.service.conftest import (
    Account,
    CallbackReceiver,
    LiveServer,
    create_account,
    make_settings,
)

pytestmark = [pytest.mark.xdist_group("reliability_fuzz"), pytest.mark.slow]

BLOG = "https://shared-blog.example"


@pytest.fixture(scope="module")
def akismet_settings(settings: Settings) -> Settings:
    """`live_server` serves these: the private PostgreSQL database and Redis of this module."""
    return settings


@pytest.fixture(scope="module")
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def sessions(live_server: LiveServer) -> Iterator[db.SessionFactory]:
    engine = db.make_engine(live_server.settings)
    yield db.make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def two_accounts(live_server: LiveServer) -> tuple[Account, Account]:
    return (
        create_account(live_server.settings, "alice"),
        create_account(live_server.settings, "bob"),
    )


def _comment(http: httpx.Client, account: Account, external_id: str) -> dict[str, Any]:
    body = {"content": "a lovely song", "blog": BLOG, "external_id": external_id}
    response = http.post("/v1/check", json=body, headers=account.headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


# --- one account's key reaches only that account's data ------------------------------------


def test_one_key_cannot_read_another_accounts_comments_or_sites(
    http: httpx.Client, two_accounts: tuple[Account, Account]
) -> None:
    alice, bob = two_accounts
    hers = _comment(http, alice, "shared-1")
    assert http.get(hers["links"]["self"], headers=alice.headers).status_code == 200
    stranger = http.get(hers["links"]["self"], headers=bob.headers)
    unknown = http.get(f"/v1/comments/{uuid.uuid4()}", headers=bob.headers)
    # Not 403: a foreign comment looks exactly like one that does not exist.
    assert stranger.status_code == unknown.status_code == 404
    assert stranger.json()["error"]["code"] == unknown.json()["error"]["code"]
    # The same blog and external_id under another account is another comment entirely.
    his = _comment(http, bob, "shared-1")
    assert his["id"] != hers["id"]
    alice_sites = http.get("/v1/sites", headers=alice.headers).json()
    bob_sites = http.get("/v1/sites", headers=bob.headers).json()
    assert [s["url"] for s in alice_sites] == [s["url"] for s in bob_sites] == [BLOG]
    assert alice_sites[0]["id"] != bob_sites[0]["id"]
    assert alice_sites[0]["callback_secret"] != bob_sites[0]["callback_secret"]


def test_one_key_cannot_label_another_accounts_comments(
    http: httpx.Client, two_accounts: tuple[Account, Account], sessions: db.SessionFactory
) -> None:
    alice, bob = two_accounts
    hers = _comment(http, alice, "label-me")
    form = {
        "api_key": bob.key, "blog": BLOG, "user_ip": "203.0.113.9",
        "comment_content": "a lovely song", "guid": hers["id"],
    }  # fmt: skip
    for path in ("/1.1/submit-spam", "/1.1/submit-ham"):
        assert http.post(path, data=form).status_code == 200
    with sessions() as session:
        labels = session.execute(
            select(tables.Label).where(tables.Label.comment_id == uuid.UUID(hers["id"]))
        ).all()
    assert labels == [], "bob's feedback never labels alice's comment"


def test_every_v1_operation_refuses_a_missing_or_wrong_key(
    http: httpx.Client, live_server: LiveServer, two_accounts: tuple[Account, Account]
) -> None:
    alice, _ = two_accounts
    wrong = alice.key[:-1] + ("0" if alice.key[-1] != "0" else "1")
    paths = create_app(live_server.settings).openapi()["paths"]
    checked = []
    for path, operations in paths.items():
        if not path.startswith("/v1/"):
            continue
        url = path.replace("{comment_id}", str(uuid.uuid4()))
        for method in operations:
            for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {"Authorization": "Basic x"}):
                response = http.request(method, url, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
            checked.append(f"{method.upper()} {path}")
    assert len(checked) >= 4, checked


# --- keys at rest ------------------------------------------------------------------------------


def test_keys_are_stored_as_keyed_hashes_only(
    live_server: LiveServer, two_accounts: tuple[Account, Account], sessions: db.SessionFactory
) -> None:
    alice, _ = two_accounts
    with sessions() as session:
        row = session.execute(
            select(tables.ApiKey).where(tables.ApiKey.account_id == alice.id)
        ).scalar_one()
        everything = " ".join(
            str(value)
            for key in session.execute(select(tables.ApiKey)).scalars()
            for value in vars(key).values()
        )
    assert alice.key not in everything
    assert alice.key[len(security.KEY_PREFIX) + security.LOOKUP_LENGTH :] not in everything
    assert row.key_hash == security.hash_key(alice.key, live_server.settings.secret_key)
    assert row.key_hash != security.hash_key(alice.key, "another server's secret")


def test_keys_are_compared_in_constant_time(
    live_server: LiveServer,
    two_accounts: tuple[Account, Account],
    sessions: db.SessionFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice, _ = two_accounts
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    secret = live_server.settings.secret_key
    wrong = alice.key[:-1] + ("0" if alice.key[-1] != "0" else "1")
    with sessions() as session:
        assert security.authenticate(session, alice.key, secret) == alice.id
        assert security.authenticate(session, wrong, secret) is None
    # Both lookups compared the stored hash with compare_digest, never with ==.
    stored = security.hash_key(alice.key, secret)
    assert (stored, security.hash_key(alice.key, secret)) in compared
    assert (stored, security.hash_key(wrong, secret)) in compared


# --- callbacks to private addresses ------------------------------------------------------------

PRIVATE_CALLBACKS = [
    "http://10.0.0.1/hook",
    "http://192.168.1.10/hook",
    "http://172.16.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/hook",
    "http://127.0.0.2/hook",
    "http://localhost/hook",
    "http://0.0.0.0/hook",
    "http://[::1]/hook",
    "http://[::ffff:10.0.0.1]/hook",
    "http://[fd00::1]/hook",
    "file:///etc/passwd",
]


@pytest.mark.parametrize("url", PRIVATE_CALLBACKS)
def test_refuse_callback_to_a_private_address_at_intake(
    http: httpx.Client, live_server: LiveServer, sessions: db.SessionFactory, url: str
) -> None:
    account = create_account(live_server.settings, "callbacks")
    external_id = f"private-{uuid.uuid4()}"
    body = {"content": "hi", "blog": BLOG, "external_id": external_id, "callback_url": url}
    response = http.post("/v1/comments", json=body, headers=account.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_callback_url"
    with sessions() as session:
        stored = session.execute(
            select(tables.Comment).where(tables.Comment.external_id == external_id)
        ).all()
    assert stored == []


def test_refuse_callback_to_a_private_address_at_delivery(
    live_server: LiveServer, sessions: db.SessionFactory, receiver: CallbackReceiver
) -> None:
    """A callback host that was public at intake and resolves privately later is not called."""
    account = create_account(live_server.settings, "rebinding")
    # localhost is the receiver's own address, but only "127.0.0.1" is allowlisted here.
    url = f"http://localhost:{receiver.port}/rebound"
    with sessions() as session:
        site = resolve_site(session, SiteCache(), account.id, BLOG)
        body = WebhookCommentIn(content="hi", blog=BLOG, external_id="rebound", callback_url=url)
        comment = new_comment(site.id, body, body.external_id, url)
        session.add(comment)
        session.commit()
        comment_id = comment.id
    model = ModelHolder.from_settings(live_server.settings).load()
    outcome = score_stored_comment(sessions, comment_id, model)
    assert outcome.delivery_id is not None
    with httpx.Client(timeout=5) as client:
        result = callbacks.deliver(
            sessions,
            outcome.delivery_id,
            live_server.settings,
            client,
            lambda c, s: {"id": str(c.id)},
        )
    assert result.attempted and not result.delivered
    with sessions() as session:
        delivery = session.get(tables.CallbackDelivery, outcome.delivery_id)
        assert delivery is not None and (delivery.last_error or "").startswith("refused:")
    assert not any(r.comment_id == str(comment_id) for r in receiver.received)


# --- a tampered model artifact -----------------------------------------------------------------


@pytest.fixture
def tampered_models(models_dir: Path, tmp_path: Path) -> Path:
    """A copy of the models folder whose active artifact has one byte flipped."""
    folder = tmp_path / "models"
    shutil.copytree(models_dir, folder)
    version = active_version(folder)
    assert version is not None
    artifact = folder / version / MODEL_FILE
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    return folder


def test_refuse_a_tampered_model_artifact(tampered_models: Path, live_server: LiveServer) -> None:
    holder = ModelHolder(tampered_models)
    with pytest.raises(ArtifactError):
        holder.load()
    settings = make_settings(
        database_url=live_server.settings.database_url,
        models_dir=tampered_models,
        data_dir=tampered_models.parent / "var",
    )
    account = create_account(settings, "tampered")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["details"]["model"] != "ok"
        check = client.post("/v1/check", json={"content": "hi"}, headers=account.headers)
        assert check.status_code == 503 and "retry-after" in check.headers


def test_keep_the_good_model_when_a_tampered_version_is_activated(
    models_dir: Path, tmp_path: Path
) -> None:
    from classifier.artifact import set_active

    folder = tmp_path / "models"
    shutil.copytree(models_dir, folder)
    good = active_version(folder)
    assert good is not None
    holder = ModelHolder(folder, check_seconds=0)
    holder.load()
    bad = f"{good}-tampered"
    shutil.copytree(folder / good, folder / bad)
    artifact = folder / bad / MODEL_FILE
    artifact.write_bytes(artifact.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ArtifactError):
        set_active(folder, bad)  # activation verifies the artifact first
    (folder / ACTIVE_FILE).write_text(bad)  # activated behind its back: loading still refuses
    assert holder.reload_if_changed() is False
    assert holder.current.version == good
