"""Per-site thresholds: set by an admin, used by every path that decides (the `/v1/check` API,
the webhook through a real worker, Akismet comment-check), within seconds in every process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from classifier import Thresholds
from service import db, tables, users
from service.embedded import Supervisor
from service.intake.sites import SiteCache, resolve_site
from service.scoring.thresholds import InvalidThresholds, SiteThresholds
from service.settings import Settings
from tests.service.conftest import (
    AKISMET_THRESHOLDS,
    Account,
    SettingsFor,
    create_account,
    create_admin,
    serve_app,
    wait_until,
)

pytestmark = pytest.mark.xdist_group("site_thresholds")

# About 0.39 with the tiny model: unsure at the module's thresholds (0.3 / 0.95 / 0.999), spam
# on a site whose spam threshold is 0.35.
TEXT = "I love this song, check my channel too"
LOW_SPAM = 0.35
CACHE_SECONDS = 0.5


@pytest.fixture(scope="module")
def settings(settings_for: SettingsFor) -> Settings:
    """The shared fixture's settings with known thresholds and a short site cache."""
    return settings_for(site_cache_seconds=CACHE_SECONDS, **AKISMET_THRESHOLDS)


@pytest.fixture(scope="module")
def http(settings: Settings) -> Iterator[httpx.Client]:
    with serve_app(settings) as url, httpx.Client(base_url=url, timeout=30.0) as client:
        yield client


@pytest.fixture(scope="module")
def admin(settings: Settings) -> Account:
    return create_admin(settings)


@pytest.fixture(scope="module")
def moderator(settings: Settings, sessions: db.SessionFactory) -> dict[str, str]:
    with sessions() as session:
        new = users.create_user(
            session, f"mod-{uuid.uuid4().hex[:8]}", tables.UserRole.MODERATOR, settings.secret_key
        )
        session.commit()
    return {"Authorization": f"Bearer {new.plaintext}"}


def check(http: httpx.Client, account: Account, blog: str) -> dict[str, Any]:
    response = http.post(
        "/v1/check", json={"content": TEXT, "author": "Ann", "blog": blog}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    verdict: dict[str, Any] = response.json()["verdict"]
    return verdict


def site_id(http: httpx.Client, account: Account, blog: str) -> int:
    check(http, account, blog)  # creates the site
    sites = http.get("/v1/sites", headers=account.headers).json()
    return int(next(s["id"] for s in sites if s["url"] == blog))


def put_thresholds(
    http: httpx.Client, headers: dict[str, str], site: int, **values: Any
) -> httpx.Response:
    return http.put(f"/v1/sites/{site}/thresholds", json=values, headers=headers)


def test_decide_with_the_site_thresholds_on_check_webhook_and_akismet(
    http: httpx.Client, admin: Account, account: Account, workers: Supervisor
) -> None:
    low, other = "https://low.example", "https://other.example"
    low_id = site_id(http, account, low)
    site_id(http, account, other)
    response = put_thresholds(http, admin.headers, low_id, spam=LOW_SPAM)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["own"] == {"unsure": None, "spam": LOW_SPAM, "discard": None}
    assert body["effective"] == {
        "unsure": AKISMET_THRESHOLDS["threshold_unsure"],
        "spam": LOW_SPAM,
        "discard": AKISMET_THRESHOLDS["threshold_discard"],
    }

    # /v1/check: the same text, two sites, two decisions (the API process forgot its cache).
    on_low, on_other = check(http, account, low), check(http, account, other)
    assert on_low["score"] == pytest.approx(on_other["score"])
    assert LOW_SPAM <= on_low["score"] < AKISMET_THRESHOLDS["threshold_spam"]
    assert (on_low["decision"], on_other["decision"]) == ("spam", "unsure")

    # The webhook, scored by a real worker.
    ids = {}
    for blog in (low, other):
        submitted = http.post(
            "/v1/comments",
            json={"content": TEXT, "author": "Ann", "blog": blog, "external_id": f"w-{blog}"},
            headers=account.headers,
        )
        assert submitted.status_code == 202, submitted.text
        ids[blog] = submitted.json()["id"]
    decided: dict[str, str] = {}

    def scored() -> bool:
        for blog, comment_id in ids.items():
            got = http.get(f"/v1/comments/{comment_id}", headers=account.headers).json()
            if got["verdict"] is not None:
                decided[blog] = got["verdict"]["decision"]
        return len(decided) == 2

    wait_until(scored, 30, "the worker to score both comments")
    assert decided == {low: "spam", other: "unsure"}

    # Akismet comment-check: spam is `true`, unsure `false`.
    answers = {}
    for blog in (low, other):
        answer = http.post(
            "/1.1/comment-check",
            data={
                "api_key": account.key,
                "blog": blog,
                "user_ip": "203.0.113.7",
                "comment_author": "Ann",
                "comment_content": TEXT,
            },
        )
        assert answer.status_code == 200, answer.text
        answers[blog] = answer.text
    assert answers == {low: "true", other: "false"}


def test_apply_a_change_made_elsewhere_within_the_cache_time(
    account: Account, sessions: db.SessionFactory
) -> None:
    """A process reads a site's thresholds again once its cache entry is `ttl_seconds` old: a
    change made by another process takes effect within that long (a clock, not a wait)."""
    now = [0.0]
    cache = SiteCache(ttl_seconds=CACHE_SECONDS, clock=lambda: now[0])
    blog = "https://elsewhere.example"
    with sessions() as session:
        site = resolve_site(session, cache, account.id, blog)
        assert site.thresholds.spam is None
        # As another API process would: straight into the database, this cache untold.
        session.execute(
            update(tables.Site).where(tables.Site.id == site.id).values(threshold_spam=LOW_SPAM)
        )
        session.commit()
        now[0] = CACHE_SECONDS * 0.9
        assert resolve_site(session, cache, account.id, blog).thresholds.spam is None
        now[0] = CACHE_SECONDS
        assert resolve_site(session, cache, account.id, blog).thresholds.spam == LOW_SPAM


def test_reset_thresholds_to_the_model(
    http: httpx.Client, admin: Account, account: Account
) -> None:
    blog = "https://reset.example"
    site = site_id(http, account, blog)
    assert put_thresholds(http, admin.headers, site, spam=LOW_SPAM).status_code == 200
    assert check(http, account, blog)["decision"] == "spam"
    reset = put_thresholds(http, admin.headers, site, spam=None)
    assert reset.status_code == 200, reset.text
    assert reset.json()["own"] == {"unsure": None, "spam": None, "discard": None}
    assert check(http, account, blog)["decision"] == "unsure"


def test_show_effective_thresholds_in_the_stats(
    http: httpx.Client, admin: Account, account: Account
) -> None:
    blog = "https://stats.example"
    site = site_id(http, account, blog)
    assert put_thresholds(http, admin.headers, site, unsure=0.2, discard=0.99).status_code == 200
    stats = http.get("/v1/moderation/stats", params={"site": site}, headers=admin.headers)
    assert stats.status_code == 200, stats.text
    row = stats.json()["sites"][0]
    assert row["own_thresholds"] == {"unsure": 0.2, "spam": None, "discard": 0.99}
    assert row["thresholds"] == {
        "unsure": 0.2,
        "spam": AKISMET_THRESHOLDS["threshold_spam"],
        "discard": 0.99,
    }


def test_refuse_thresholds_to_a_moderator(
    http: httpx.Client, account: Account, moderator: dict[str, str]
) -> None:
    site = site_id(http, account, "https://mod.example")
    response = put_thresholds(http, moderator, site, spam=LOW_SPAM)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"
    key = put_thresholds(http, account.headers, site, spam=LOW_SPAM)  # a site key is no user
    assert key.status_code == 401


@pytest.mark.parametrize(
    ("values", "fields"),
    [
        ({"spam": 0.2}, {"spam"}),  # below the model's unsure (0.3)
        ({"unsure": 0.9, "spam": 0.5}, {"unsure", "spam"}),
        ({"discard": 0.5}, {"discard"}),  # below the model's spam (0.95)
        ({"spam": 1.5}, {"spam"}),
        ({"unsure": -0.1}, {"unsure"}),
        ({"spam": "high"}, {"spam"}),
        ({"spam": 0.5, "extra": 1}, {"extra"}),
    ],
)
def test_refuse_invalid_thresholds(
    http: httpx.Client,
    admin: Account,
    account: Account,
    values: dict[str, Any],
    fields: set[str],
) -> None:
    site = site_id(http, account, "https://invalid.example")
    response = put_thresholds(http, admin.headers, site, **values)
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert {d["loc"][-1] for d in details} == fields
    unchanged = check(http, account, "https://invalid.example")
    assert unchanged["decision"] == "unsure"


def test_answer_404_for_an_unknown_site(http: httpx.Client, admin: Account) -> None:
    response = put_thresholds(http, admin.headers, 10**9, spam=LOW_SPAM)
    assert response.status_code == 404, response.text


def test_fresh_account_sites_start_at_the_model(settings: Settings, http: httpx.Client) -> None:
    account = create_account(settings, "fresh")
    assert check(http, account, "https://fresh.example")["decision"] == "unsure"


# --- merging, without a database ----------------------------------------------------------

MODEL = Thresholds(0.3, 0.95, 0.999)


def test_merge_site_values_over_the_model() -> None:
    assert SiteThresholds().effective(MODEL) is MODEL
    assert SiteThresholds(spam=0.35).strict(MODEL) == Thresholds(0.3, 0.35, 0.999)
    assert SiteThresholds(0.1, None, 0.5).effective(MODEL) == Thresholds(0.1, 0.5, 0.5)


def test_clamp_the_model_around_site_values_a_new_model_disagrees_with() -> None:
    # Valid when set against an earlier model; the model now in use has unsure 0.3.
    site = SiteThresholds(spam=0.2)
    with pytest.raises(InvalidThresholds) as refused:
        site.strict(MODEL)
    assert [d["loc"] for d in refused.value.details] == [["body", "spam"]]
    assert site.effective(MODEL) == Thresholds(0.2, 0.2, 0.999)
    assert SiteThresholds(discard=0.5).effective(MODEL) == Thresholds(0.3, 0.5, 0.5)


def test_decide_with_thresholds_the_model_learned_for_the_site() -> None:
    learned = Thresholds(0.2, 0.6, 0.9)
    model = Thresholds(0.3, 0.95, 0.999, {"7": learned})
    assert SiteThresholds(key="7").effective(model) is learned
    assert SiteThresholds(key="8").effective(model) is model
    # An admin's own value still wins, the learned ones clamped around it.
    assert SiteThresholds(spam=0.7, key="7").effective(model) == Thresholds(0.2, 0.7, 0.9)
    assert SiteThresholds(discard=0.95, key="7").strict(model) == Thresholds(0.2, 0.6, 0.95)
