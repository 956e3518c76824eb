"""Sites per account are bounded: one key cannot grow the sites table (and what is read per
site) without end, on the JSON API or the Akismet protocol."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from service import db, tables
from service.settings import Settings
from tests.service.conftest import Account, create_account, make_settings, serve_app

pytestmark = pytest.mark.xdist_group("site_limit")

LIMIT = 3


@pytest.fixture(scope="module")
def limited(
    database_url: str, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Settings]]:
    settings = make_settings(
        database_url=database_url,
        models_dir=models_dir,
        data_dir=tmp_path_factory.mktemp("var"),
        max_sites_per_account=LIMIT,
    )
    with serve_app(settings) as url:
        yield url, settings


def _sites(settings: Settings, account: Account) -> int:
    engine = db.make_engine(settings)
    try:
        with db.make_session_factory(engine)() as session:
            return int(
                session.execute(
                    select(func.count()).where(tables.Site.account_id == account.id)
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_refuse_a_site_past_the_accounts_limit(limited: tuple[str, Settings]) -> None:
    url, settings = limited
    account = create_account(settings, "many blogs")
    other = create_account(settings, "its neighbour")
    with httpx.Client(base_url=url, headers=account.headers, timeout=30) as client:
        for n in range(LIMIT):
            body = {"content": "a lovely song", "blog": f"https://blog-{n}.example"}
            assert client.post("/v1/check", json=body).status_code == 200
        past = {"content": "a lovely song", "blog": "https://one-too-many.example"}
        refused = client.post("/v1/check", json=past)
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["code"] == "site_limit_reached" and error["details"] == {"limit": LIMIT}
        webhook = client.post("/v1/comments", json={**past, "external_id": "w1"})
        assert webhook.status_code == 422
        assert webhook.json()["error"]["code"] == "site_limit_reached"
        # The account's existing sites still take comments, on both paths.
        known = {"content": "another song", "blog": "https://BLOG-0.example/"}
        assert client.post("/v1/check", json=known).status_code == 200
        assert client.post("/v1/comments", json={**known, "external_id": "w2"}).status_code == 202
    form = {
        "api_key": account.key,
        "blog": "https://akismet-too-many.example",
        "user_ip": "203.0.113.9",
        "comment_content": "a lovely song",
    }
    answer = httpx.post(f"{url}/1.1/comment-check", data=form, timeout=30)
    assert answer.status_code == 200 and answer.text == "invalid"
    assert "limit of 3 sites" in answer.headers["x-akismet-debug-help"]
    assert _sites(settings, account) == LIMIT
    # Another account's count is its own.
    body = {"content": "a lovely song", "blog": "https://one-too-many.example"}
    assert httpx.post(f"{url}/v1/check", json=body, headers=other.headers).status_code == 200
