"""Isolation between accounts, keys at rest, callbacks to private addresses, tampered models.

Against a live server on the private PostgreSQL database. Two kinds of bearer credentials
exist: a site's API key (an account's, for the site endpoints) and a user token (a moderator's
or admin's, for the moderation and model endpoints); each is refused where the other belongs.
The lists of endpoints come from the app's OpenAPI schema and routes, so that an endpoint added
later without authentication fails here.
"""

from __future__ import annotations

import ast
import inspect
import re
import shutil
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from classifier import ArtifactError
from classifier.artifact import ACTIVE_FILE, MODEL_FILE, active_version
from service import callbacks, db, security, tables, users
from service.api import deps
from service.api.app import create_app
from service.intake.comments import new_comment
from service.intake.sites import SiteCache, resolve_site
from service.schemas import WebhookCommentIn
from service.scoring.models import ModelHolder
from service.scoring.store import score_stored_comment
from service.settings import Settings
from tests.service.conftest import (
    Account,
    CallbackReceiver,
    LiveServer,
    create_account,
    create_admin,
    make_settings,
    session_factory,
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
    with session_factory(live_server.settings) as factory:
        yield factory


@pytest.fixture
def two_accounts(live_server: LiveServer) -> tuple[Account, Account]:
    return (
        create_account(live_server.settings, "alice"),
        create_account(live_server.settings, "bob"),
    )


def _altered(key: str) -> str:
    """`key` with its last character changed."""
    return key[:-1] + ("0" if key[-1] != "0" else "1")


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
    wrong = _altered(alice.key)
    paths = create_app(live_server.settings).openapi()["paths"]
    checked = []
    for path, operations in paths.items():
        if not path.startswith("/v1/"):
            continue
        url = _fill(path)
        for method in operations:
            for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {"Authorization": "Basic x"}):
                response = http.request(method, url, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
            checked.append(f"{method.upper()} {path}")
    assert len(checked) >= 4, checked


# --- site keys, moderators and admins each reach only their own endpoints ------------------

# Answer without credentials, by design: probes, the metrics scrape (its own optional token),
# the Akismet protocol (its key travels in the form), the API's own documentation (and its
# vendored assets), and the web console (a signed session cookie and CSRF tokens of its own:
# tests/console).
PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc", "/console"}
PUBLIC_PREFIXES = ("/1.1/", "/1.2/", "/docs/", "/console/", "/static/api-docs")
SITE_SCHEME, USER_SCHEME = "SiteApiKey", "UserToken"
ADMIN_ONLY = {
    "POST /v1/models/retrain",
    "POST /v1/models/{version}/activate",
    "GET /v1/users",
    "PUT /v1/sites/{site_id}/thresholds",
    "GET /v1/keys",
    "POST /v1/keys/{key_id}/revoke",
    "POST /v1/users/{user_id}/disable",
    "POST /v1/users/{user_id}/enable",
    "POST /v1/users/{user_id}/revoke-tokens",
    "DELETE /v1/users/{user_id}/sites/{site_id}",
    "GET /v1/audit",
}


def _fill(path: str) -> str:
    """A concrete URL for an OpenAPI path: each {parameter} becomes a fresh UUID."""
    return re.sub(r"\{[^}]+\}", lambda _m: str(uuid.uuid4()), path)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    scheme: str | None  # the bearer scheme its OpenAPI `security` names, if any
    admin_only: bool  # documents a 403

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


def _operations(settings: Settings) -> list[Operation]:
    found = []
    for path, operations in create_app(settings).openapi()["paths"].items():
        for method, operation in operations.items():
            schemes = {name for entry in operation.get("security", []) for name in entry}
            assert len(schemes) <= 1, (method, path, schemes)
            found.append(
                Operation(
                    method.upper(),
                    path,
                    next(iter(schemes), None),
                    "403" in operation.get("responses", {}),
                )
            )
    return found


@pytest.fixture(scope="module")
def operations(live_server: LiveServer) -> list[Operation]:
    return _operations(live_server.settings)


def test_every_route_but_the_public_ones_declares_a_bearer_scheme(
    live_server: LiveServer, operations: list[Operation], http: httpx.Client
) -> None:
    """Every route the app serves, in the schema or not, is public by name or needs a key."""
    app = create_app(live_server.settings)
    declared = {op.path for op in operations if op.scheme is not None}
    # Every route, those of included routers too (FastAPI keeps those behind a wrapper).
    routes = [r for r in iter_route_contexts(app.routes) if r.path is not None]
    served = {str(r.path) for r in routes}
    assert {op.path for op in operations} <= served, "the walk over the routes missed some"
    unguarded = sorted(
        path
        for path in served - declared
        if path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES)
    )
    assert unguarded == [], f"routes with no bearer scheme and not known public: {unguarded}"
    for op in operations:
        if op.path.startswith("/v1/"):
            assert op.scheme in (SITE_SCHEME, USER_SCHEME), op.label
    # The routes left out of the schema are held to the same rule, through the live server.
    hidden = sorted(
        (method, str(r.path))
        for r in routes
        if not getattr(r, "include_in_schema", True)
        for method in (r.methods or ())
        if r.path not in PUBLIC_PATHS and not str(r.path).startswith(PUBLIC_PREFIXES)
    )
    for method, path in hidden:
        response = http.request(method, _fill(path), json={})
        assert response.status_code == 401, (method, path, response.text)
    schemes = app.openapi()["components"]["securitySchemes"]
    for name in (SITE_SCHEME, USER_SCHEME):
        assert (schemes[name]["type"], schemes[name]["scheme"]) == ("http", "bearer")


def _call(http: httpx.Client, op: Operation, headers: dict[str, str]) -> httpx.Response:
    return http.request(op.method, _fill(op.path), json={}, headers=headers)


def test_each_credential_is_refused_on_the_other_kinds_endpoints(
    http: httpx.Client,
    live_server: LiveServer,
    operations: list[Operation],
    two_accounts: tuple[Account, Account],
) -> None:
    alice, _ = two_accounts
    admin = create_admin(live_server.settings)
    site_ops = [op for op in operations if op.scheme == SITE_SCHEME]
    user_ops = [op for op in operations if op.scheme == USER_SCHEME]
    assert len(site_ops) >= 4 and len(user_ops) >= 10, (site_ops, user_ops)
    for ops, wrong_kind in ((site_ops, admin.headers), (user_ops, alice.headers)):
        for op in ops:
            for headers in ({}, wrong_kind):
                response = _call(http, op, headers)
                assert response.status_code == 401, (op.label, headers, response.text)
                assert response.json()["error"]["code"] == "unauthorized"
                assert response.headers["www-authenticate"] == "Bearer"
    # The right kind gets past authentication (whatever the made-up ids then answer).
    for ops, right_kind in ((site_ops, alice.headers), (user_ops, admin.headers)):
        for op in ops:
            if op.label == "POST /v1/models/retrain":
                continue  # would queue a real retrain into the shared models folder
            response = _call(http, op, right_kind)
            assert response.status_code not in (401, 403), (op.label, response.text)


def _moderator(settings: Settings, site_ids: tuple[int, ...]) -> Account:
    """A moderator granted these sites; its `key` is the user token."""
    engine = db.make_engine(settings)
    try:
        with db.make_session_factory(engine)() as session:
            new = users.create_user(
                session,
                f"moderator-{uuid.uuid4().hex[:8]}",
                tables.UserRole.MODERATOR,
                settings.secret_key,
            )
            for site_id in site_ids:
                session.add(tables.UserSite(user_id=new.user_id, site_id=site_id))
            session.commit()
    finally:
        engine.dispose()
    return Account(new.user_id, new.plaintext)


def test_moderators_get_403_on_exactly_the_admin_endpoints(
    http: httpx.Client, live_server: LiveServer, operations: list[Operation]
) -> None:
    moderator = _moderator(live_server.settings, ())
    # /metrics documents a 403 too: to a client outside its networks, not a moderator.
    admin_ops = {op.label for op in operations if op.admin_only and op.scheme == USER_SCHEME}
    assert admin_ops == ADMIN_ONLY, "a new admin endpoint: add it to ADMIN_ONLY, and check it"
    for op in operations:
        if op.scheme != USER_SCHEME:
            continue
        response = _call(http, op, moderator.headers)
        if op.admin_only:
            assert response.status_code == 403, (op.label, response.text)
            assert response.json()["error"]["code"] == "forbidden"
        else:
            assert response.status_code not in (401, 403), (op.label, response.text)


def _site_id(sessions: db.SessionFactory, comment_id: str) -> int:
    with sessions() as session:
        comment = session.get(tables.Comment, uuid.UUID(comment_id))
        assert comment is not None
        return comment.site_id


def _labels_of(sessions: db.SessionFactory, comment_ids: list[str]) -> list[Any]:
    wanted = [uuid.UUID(c) for c in comment_ids]
    with sessions() as session:
        return list(
            session.execute(
                select(tables.Label.comment_id).where(tables.Label.comment_id.in_(wanted))
            ).scalars()
        )


def test_a_moderator_reaches_only_the_granted_site_and_an_admin_every_site(
    http: httpx.Client,
    live_server: LiveServer,
    sessions: db.SessionFactory,
    two_accounts: tuple[Account, Account],
) -> None:
    alice, bob = two_accounts

    def post(account: Account, blog: str) -> str:
        body = {"content": "a lovely song", "blog": blog, "external_id": str(uuid.uuid4())}
        response = http.post("/v1/check", json=body, headers=account.headers)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    granted = post(alice, "https://a.example")
    same_account = post(alice, "https://a-other.example")  # site B of the same account
    other_account = post(bob, "https://b.example")  # site B of another account
    site_a = _site_id(sessions, granted)
    moderator = _moderator(live_server.settings, (site_a,))
    admin = create_admin(live_server.settings)
    h = moderator.headers

    for hidden in (same_account, other_account):
        site_b = _site_id(sessions, hidden)
        refused = [
            http.get(f"/v1/moderation/comments/{hidden}/history", headers=h),
            http.post(f"/v1/comments/{hidden}/label", json={"label": "spam"}, headers=h),
            http.post(
                "/v1/labels",
                json={"items": [{"comment_id": c, "label": "spam"} for c in (granted, hidden)]},
                headers=h,
            ),
            http.get("/v1/moderation/queue", params={"site": site_b}, headers=h),
            http.get("/v1/moderation/stats", params={"site": site_b}, headers=h),
        ]
        for response in refused:
            assert response.status_code == 404, (response.request.url, response.text)
            assert response.json()["error"]["code"] == "not_found"
        # A foreign comment answers exactly as one that does not exist.
        unknown = http.get(f"/v1/moderation/comments/{uuid.uuid4()}/history", headers=h)
        assert unknown.json()["error"]["code"] == refused[0].json()["error"]["code"]
    assert _labels_of(sessions, [granted, same_account, other_account]) == [], "nothing labelled"

    queue = http.get("/v1/moderation/queue", params={"decision": "all", "limit": 200}, headers=h)
    assert queue.status_code == 200, queue.text
    assert {item["site_id"] for item in queue.json()["items"]} == {site_a}
    stats = http.get("/v1/moderation/stats", headers=h).json()["sites"]
    assert [s["site_id"] for s in stats] == [site_a]
    assert http.get(f"/v1/moderation/comments/{granted}/history", headers=h).status_code == 200

    # An admin reads, lists and labels on every site, of every account.
    for comment_id in (granted, same_account, other_account):
        site = _site_id(sessions, comment_id)
        history = http.get(f"/v1/moderation/comments/{comment_id}/history", headers=admin.headers)
        assert history.status_code == 200, history.text
        listed = http.get(
            "/v1/moderation/queue",
            params={"site": site, "decision": "all", "limit": 200},
            headers=admin.headers,
        )
        assert comment_id in [item["id"] for item in listed.json()["items"]]
        stats = http.get("/v1/moderation/stats", params={"site": site}, headers=admin.headers)
        assert [s["site_id"] for s in stats.json()["sites"]] == [site]
        labelled = http.post(
            f"/v1/comments/{comment_id}/label", json={"label": "ham"}, headers=admin.headers
        )
        assert labelled.status_code == 201, labelled.text
    assert len(_labels_of(sessions, [granted, same_account, other_account])) == 3


# --- passwords and user tokens at rest ------------------------------------------------------


def test_passwords_are_stored_only_as_argon2id_hashes(
    live_server: LiveServer, sessions: db.SessionFactory
) -> None:
    password = f"correct horse {uuid.uuid4().hex}"
    name = f"pw-{uuid.uuid4().hex[:8]}"
    with sessions() as session:
        new = users.create_user(
            session, name, tables.UserRole.MODERATOR, live_server.settings.secret_key, password
        )
        session.commit()
    with sessions() as session:
        row = session.execute(text("SELECT * FROM users WHERE id = :id"), {"id": new.user_id}).one()
    stored = row._mapping["password_hash"]
    assert stored.startswith("$argon2id$"), stored
    assert all(password not in str(value) for value in row), "the plaintext is nowhere in the row"
    # argon2's own verify accepts it; the service verifies through argon2 too: a hash made by
    # argon2 elsewhere (other parameters) verifies, and a wrong password does not.
    assert PasswordHasher().verify(stored, password)
    assert users.verify_password(stored, password)
    assert not users.verify_password(stored, password + "x")
    foreign = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(password)
    assert users.verify_password(foreign, password)
    with sessions() as session:
        assert users.authenticate_password(session, name, password) is not None
        assert users.authenticate_password(session, name, password.upper()) is None


def test_user_tokens_are_stored_as_keyed_hashes_only(
    live_server: LiveServer, sessions: db.SessionFactory
) -> None:
    admin = create_admin(live_server.settings)
    secret = live_server.settings.secret_key
    with sessions() as session:
        rows = session.execute(text("SELECT * FROM user_tokens")).all()
        mine = session.execute(
            select(tables.UserToken.token_hash).where(tables.UserToken.user_id == admin.id)
        ).scalar_one()
    everything = " ".join(str(value) for row in rows for value in row)
    secret_part = admin.key[len(users.TOKEN_PREFIX) + users.TOKEN_LOOKUP_LENGTH :]
    assert admin.key not in everything and secret_part not in everything
    assert mine == security.hash_key(admin.key, secret)
    assert mine != security.hash_key(admin.key, "another server's secret")


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


def _digest_comparisons(function: Callable[..., Any]) -> tuple[list[str], list[str]]:
    """In `function`'s source: the calls of hmac.compare_digest, and the comparisons (==, !=,
    in …) that involve a stored hash or the computed digest."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    secret_names = {"digest", "key_hash", "token_hash"}
    calls: list[str] = []
    comparisons: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "hmac.compare_digest":
            calls.append(ast.unparse(node))
        if isinstance(node, ast.Compare):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            attributes = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
            if (names | attributes) & secret_names:
                comparisons.append(ast.unparse(node))
    return calls, comparisons


def test_keys_and_tokens_are_compared_in_constant_time(
    live_server: LiveServer, two_accounts: tuple[Account, Account], sessions: db.SessionFactory
) -> None:
    """Both lookups go through the functions that the dependencies call, and those compare
    the stored HMAC with hmac.compare_digest only (checked in their code: timing itself is
    too noisy to measure here)."""
    alice, _ = two_accounts
    secret = live_server.settings.secret_key
    admin = create_admin(live_server.settings)
    # The request path authenticates through these two functions (service/api/deps.py) ...
    assert "security.authenticate(" in inspect.getsource(deps._authenticate)
    assert "users.authenticate_token(" in inspect.getsource(deps._authenticate_user)
    # ... which find the right principal and refuse a one-character change ...
    with sessions() as session:
        assert security.authenticate(session, alice.key, secret) == alice.id
        assert security.authenticate(session, _altered(alice.key), secret) is None
        found = users.authenticate_token(session, admin.key, secret)
        assert found is not None and found.id == admin.id
        assert users.authenticate_token(session, _altered(admin.key), secret) is None
    # ... and compare digests only with hmac.compare_digest, never with == or in.
    for function in (security.authenticate, users.authenticate_token):
        calls, comparisons = _digest_comparisons(function)
        assert len(calls) == 1 and "digest" in calls[0], (function.__name__, calls)
        assert comparisons == [], (function.__name__, comparisons)


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
    "http://[64:ff9b::7f00:1]/hook",
    "http://[2002:7f00:1::]/hook",
    "http://[::127.0.0.1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
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
            lambda _session, _event, comment, _site: {"id": str(comment.id)},
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
