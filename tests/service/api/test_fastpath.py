"""`POST /v1/check` answered by service.api.fastpath, or handed to the router, against a real
database and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from service.api import fastpath
from service.api.app import create_app
from service.schemas import CommentOut
from service.settings import Settings
from tests.service.conftest import Account

pytestmark = pytest.mark.xdist_group("fastpath")

CHECK = {"content": "Great post, thanks for writing it!", "author": "Ann"}


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests the fast path answers itself (it still does the real work)."""
    calls: list[str] = []
    for path, (schema, work) in list(fastpath.ROUTES.items()):

        async def counted(*args: Any, path: str = path, work: Any = work) -> Any:
            calls.append(path)
            return await work(*args)

        monkeypatch.setitem(fastpath.ROUTES, path, (schema, counted))
    return calls


def test_answer_check_on_fast_path_as_the_router_does(
    client: TestClient, account: Account, fast_calls: list[str]
) -> None:
    # The first request authenticates the key through the router; the second finds it cached.
    routed = client.post("/v1/check", json=CHECK, headers=account.headers)
    assert fast_calls == []
    fast = client.post(
        "/v1/check", json=CHECK, headers={**account.headers, "X-Request-Id": "fast-1"}
    )
    assert fast_calls == ["/v1/check"]
    assert (routed.status_code, fast.status_code) == (200, 200)
    assert fast.headers["content-type"] == routed.headers["content-type"] == "application/json"
    assert fast.headers["x-request-id"] == "fast-1"
    one, two = (
        CommentOut.model_validate_json(routed.content),
        CommentOut.model_validate_json(fast.content),
    )
    assert one.id != two.id
    assert two.status == "scored" and two.verdict is not None and two.verdict.reasons
    assert one.verdict is not None and two.verdict.decision == one.verdict.decision
    stored = client.get(two.links.self, headers=account.headers)
    assert stored.status_code == 200 and stored.json()["verdict"] == fast.json()["verdict"]


@pytest.mark.parametrize(
    ("body", "headers", "loc"),
    [
        ({"author": "Ann"}, {}, ["body", "content"]),
        (b"{not json", {"Content-Type": "application/json"}, ["body", 1]),
        (b'{"content": "hi"}', {"Content-Type": "text/plain"}, ["body"]),
    ],
)
def test_hand_invalid_check_to_router(
    client: TestClient,
    account: Account,
    fast_calls: list[str],
    body: Any,
    headers: dict[str, str],
    loc: list[Any],
) -> None:
    assert client.post("/v1/check", json=CHECK, headers=account.headers).status_code == 200
    sent = {"json": body} if isinstance(body, dict) else {"content": body}
    response = client.post("/v1/check", headers={**account.headers, **headers}, **sent)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["loc"] == loc
    assert fast_calls == []


def test_hand_unknown_key_to_router(client: TestClient, fast_calls: list[str]) -> None:
    response = client.post("/v1/check", json=CHECK, headers={"Authorization": "Bearer cgnope"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert fast_calls == []


def test_answer_check_error_on_fast_path_with_app_handler(
    client: TestClient, account: Account, fast_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.post("/v1/check", json=CHECK, headers=account.headers).status_code == 200
    checks = client.app.state.services.checks  # type: ignore[attr-defined]

    async def database_down(_check: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("the database went away"))

    monkeypatch.setattr(checks, "submit", database_down)
    response = client.post("/v1/check", json=CHECK, headers=account.headers)
    assert fast_calls == ["/v1/check"]  # the first request authenticated the key through the router
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert response.headers["retry-after"] == "5"
    assert "x-request-id" in response.headers


def test_answer_submission_on_fast_path_as_the_router_does(
    client: TestClient, account: Account, fast_calls: list[str]
) -> None:
    hook = "http://127.0.0.1:9/hook"  # allowlisted in the test settings; never called here
    first = client.post(
        "/v1/comments", json={**CHECK, "external_id": "f-1", "callback_url": hook},
        headers=account.headers,
    )  # fmt: skip
    new = client.post(
        "/v1/comments", json={**CHECK, "external_id": "f-2", "callback_url": hook},
        headers=account.headers,
    )  # fmt: skip
    again = client.post(
        "/v1/comments", json={**CHECK, "external_id": "f-2"}, headers=account.headers
    )
    changed = client.post(
        "/v1/comments", json={**CHECK, "external_id": "f-2", "content": "changed"},
        headers=account.headers,
    )  # fmt: skip
    assert fast_calls == ["/v1/comments"] * 3  # the first authenticated the key
    assert (first.status_code, new.status_code, again.status_code) == (202, 202, 200)
    assert again.json()["id"] == new.json()["id"]
    assert changed.status_code == 409, changed.text
    assert changed.json()["error"]["details"]["comment_id"] == new.json()["id"]
    assert new.json()["status"] == "pending" and new.json()["external_id"] == "f-2"
    assert set(new.json()) == set(first.json())


def test_refuse_unsafe_callback_on_fast_path_with_app_handler(
    client: TestClient, account: Account, fast_calls: list[str]
) -> None:
    assert client.post("/v1/check", json=CHECK, headers=account.headers).status_code == 200
    response = client.post(
        "/v1/comments",
        json={**CHECK, "external_id": "u-1", "callback_url": "http://10.0.0.7/hook"},
        headers=account.headers,
    )
    assert fast_calls == ["/v1/comments"]
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_callback_url"
    assert error["details"][0]["loc"] == ["body", "callback_url"]
