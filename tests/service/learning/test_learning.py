"""Per-site learning in the running service: real database, Redis, Celery workers, and the API
on a real server. A site's labels reach its adapter within seconds, and only that site's
verdicts; no account's labels move another account's verdicts, through the shared retrain
either.

The module has its own models folder (a copy of the session's tiny model), since it retrains
and activates models.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from classifier.artifact import active_version
from service import db, tables
from service.learning.retraining import run_retrain
from service.settings import Settings
from tests.service.conftest import (
    Account,
    SettingsFor,
    create_account,
    create_admin,
    serve_app,
    wait_until,
)

pytestmark = pytest.mark.xdist_group("learning")

BLOG_A = "https://a.example"
BLOG_B = "https://b.example"
EVENTS = ["bake sale", "choir practice", "charity run", "book club", "potluck dinner"]
DAYS = ["on Saturday", "on Sunday", "on Friday night", "next week", "tomorrow evening"]
PLACES = ["at the old library", "in the church hall", "by the river", "at the school"]
TOPICS = ["the chorus", "the second verse", "this video", "the drums", "her voice"]


@pytest.fixture(scope="module")
def settings(settings_for: SettingsFor) -> Settings:
    return settings_for(
        own_models=True,
        retrain_corpora=["youtube"],
        site_cache_seconds=0.5,
        rate_limit_per_ip=0,
        rate_limit_per_key=0,
    )


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[str]:
    with serve_app(settings) as url:
        yield url


def _notice(i: int) -> str:
    return (
        f"Join our {EVENTS[i % 5]} {DAYS[(i * 3) % 5]} {PLACES[(i * 7) % 4]}, "
        f"everyone welcome, bring a friend! Number {i}"
    )


def _ordinary(i: int) -> str:
    return f"I really like {TOPICS[i % 5]} here, thanks for sharing it with us ({i})"


def _check(client: httpx.Client, account: Account, content: str, blog: str) -> dict[str, Any]:
    response = client.post(
        "/v1/check", json={"content": content, "blog": blog}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _adapter_of(
    sessions: db.SessionFactory, account: Account, blog: str
) -> tables.SiteAdapter | None:
    with sessions() as session:
        return session.execute(
            select(tables.SiteAdapter)
            .join(tables.Site, tables.Site.id == tables.SiteAdapter.site_id)
            .where(tables.Site.account_id == account.id, tables.Site.url == blog)
        ).scalar_one_or_none()


def test_labels_teach_their_site_within_seconds_and_no_other(
    settings: Settings, sessions: db.SessionFactory, workers: Any, api: str
) -> None:
    a = create_account(settings, "learns")
    b = create_account(settings, "bystander")
    admin = create_admin(settings)
    # A notice that is no near-copy of the labelled ones: the adapter, not the memory, decides.
    probe = (
        "The choir practice moves to the school hall next week; everyone welcome, bring a friend."
    )
    with httpx.Client(base_url=api, timeout=30) as client:
        spam_ids = [_check(client, a, _notice(i), BLOG_A)["id"] for i in range(30)]
        ham_ids = [_check(client, a, _ordinary(i), BLOG_A)["id"] for i in range(30)]
        a_before = _check(client, a, probe, BLOG_A)["verdict"]
        b_before = _check(client, b, probe, BLOG_B)["verdict"]
        items = [{"comment_id": i, "label": "spam"} for i in spam_ids]
        items += [{"comment_id": i, "label": "ham"} for i in ham_ids]
        response = client.post("/v1/labels", json={"items": items}, headers=admin.headers)
        assert response.status_code == 201, response.text

        wait_until(
            lambda: _adapter_of(sessions, a, BLOG_A) is not None,
            60,
            "the worker to fit site A's adapter",
        )
        wait_until(
            lambda: _check(client, a, probe, BLOG_A)["verdict"]["score"] > 0.3,
            10,
            "site A's verdicts to use its adapter",
        )
        a_after = _check(client, a, probe, BLOG_A)["verdict"]
        b_after = _check(client, b, probe, BLOG_B)["verdict"]
    assert a_before["score"] < 0.1, a_before
    features = [r["feature"] for r in a_after["reasons"]]
    assert any(f.startswith("site-") for f in features), features
    assert not any(f.startswith("near_duplicate") for f in features), features
    assert b_after["score"] == b_before["score"] and b_after["decision"] == b_before["decision"]
    stored = _adapter_of(sessions, a, BLOG_A)
    assert stored is not None and stored.n_spam == 30 and stored.n_ham == 30


def test_one_account_flooding_ham_labels_cannot_move_another_accounts_verdict(
    settings: Settings, sessions: db.SessionFactory, workers: Any, api: str
) -> None:
    """Account B reports account A's spam text as ham 55 times through Akismet, the shared
    model is retrained, and A's verdict for that text does not move."""
    a = create_account(settings, "victim")
    b = create_account(settings, "flooder")
    spam = "Check out my channel, subscribe and win a free iPhone!!! http://bit.ly/free-iphone-now"
    first = run_retrain(settings, sessions, trigger="test")  # the shared model, from corpora
    assert first is not None
    with httpx.Client(base_url=api, timeout=30) as client:
        wait_until(
            lambda: (
                _check(client, a, "hello", BLOG_A)["verdict"]["model_version"]
                == active_version(settings.models_dir)
            ),
            10,
            "the API to serve the retrained model",
        )
        before = _check(client, a, spam, BLOG_A)["verdict"]
        assert before["decision"] in ("spam", "discard"), before
        for _ in range(55):
            response = client.post(
                "/1.1/submit-ham",
                data={
                    "api_key": b.key,
                    "blog": BLOG_B,
                    "user_ip": "203.0.113.9",
                    "comment_content": spam,
                },
            )
            assert response.status_code == 200, response.text
        wait_until(
            lambda: _adapter_of(sessions, b, BLOG_B) is not None,
            60,
            "the worker to fit site B's adapter",
        )
        second = run_retrain(settings, sessions, trigger="test")
        assert second is not None and second.record["data"]["labels_train"] == 0
        wait_until(
            lambda: (
                _check(client, a, "hello", BLOG_A)["verdict"]["model_version"]
                == active_version(settings.models_dir)
            ),
            10,
            "the API to serve the retrained model",
        )
        after = _check(client, a, spam, BLOG_A)["verdict"]
        flooded = _check(client, b, spam, BLOG_B)["verdict"]
    assert after["score"] == pytest.approx(before["score"], abs=1e-9)
    assert after["decision"] == before["decision"]
    assert flooded["decision"] == "ham"  # B's own verdicts follow B's labels
