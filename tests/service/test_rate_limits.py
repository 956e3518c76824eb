"""Rate limits per API key and per client IP, counted in a real Redis, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from service.ratelimit import RateLimiter
from service.settings import Settings
from tests.service.conftest import Account, create_account, run_async, serve_app

pytestmark = pytest.mark.xdist_group("rate_limits")

# Served apps count in windows of 10^9 seconds (about 32 years): no test spans a window's edge
# (where fixed-window counts restart), so none waits on the wall clock for a fresh window.
# Limiters built here take a clock instead.
WINDOW = 1_000_000_000
START = 1_800_000_000.0  # a moment well inside a window, for the limiters given a clock
CHECK = {"content": "I love this song, thank you for sharing it", "blog": "https://blog.example"}


@pytest.fixture(autouse=True)
def fresh_counts(redis_url: str) -> None:
    # Every test counts from zero (all of them come from 127.0.0.1, in this module's Redis).
    client = redis.Redis.from_url(redis_url)
    try:
        for name in client.scan_iter("cg:rl:*"):
            client.delete(name)
    finally:
        client.close()


def limited(settings: Settings, **limits: int) -> Settings:
    values = {"rate_limit_window_seconds": WINDOW, **limits}
    return settings.model_copy(update=values)


@pytest.fixture
def key_limited(settings: Settings) -> Iterator[str]:
    with serve_app(limited(settings, rate_limit_per_key=5, rate_limit_per_ip=0)) as url:
        yield url


def test_answer_429_with_retry_after_past_the_key_limit(
    key_limited: str, settings: Settings
) -> None:
    account = create_account(settings)
    other = create_account(settings)
    with httpx.Client(base_url=key_limited, timeout=10) as client:
        for _ in range(5):
            response = client.post("/v1/check", json=CHECK, headers=account.headers)
            assert response.status_code == 200, response.text
        refused = client.post("/v1/check", json=CHECK, headers=account.headers)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW
        error = refused.json()["error"]
        assert error["code"] == "rate_limited"
        assert error["details"] == {"scope": "key", "limit": 5, "window_seconds": WINDOW}
        assert refused.headers["X-Request-Id"]
        # Another key has its own count.
        assert client.post("/v1/check", json=CHECK, headers=other.headers).status_code == 200
        # Probes are never limited.
        assert client.get("/healthz").status_code == 200


def test_limit_per_ip_across_keys(settings: Settings) -> None:
    accounts = [create_account(settings) for _ in range(4)]
    with (
        serve_app(limited(settings, rate_limit_per_key=0, rate_limit_per_ip=3)) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        answers = [
            client.post("/v1/check", json=CHECK, headers=a.headers).status_code for a in accounts
        ]
        # Nothing is left of the window for any key from this address.
        late = client.get("/v1/sites", headers=accounts[0].headers)
    assert answers == [200, 200, 200, 429]
    assert late.status_code == 429
    assert late.json()["error"]["details"]["scope"] == "ip"


def test_limits_hold_across_api_processes(settings: Settings) -> None:
    # Two servers sharing one Redis (as two machines behind a load balancer would).
    account = create_account(settings)
    settings = limited(settings, rate_limit_per_key=6, rate_limit_per_ip=0)
    with serve_app(settings) as first, serve_app(settings) as second:
        statuses = []
        for i in range(8):
            url = first if i % 2 == 0 else second
            response = httpx.get(f"{url}/v1/sites", headers=account.headers, timeout=10)
            statuses.append(response.status_code)
    assert statuses == [200] * 6 + [429] * 2


def test_akismet_answers_200_invalid_with_alert_headers(settings: Settings) -> None:
    account = create_account(settings)
    form = {
        "api_key": account.key,
        "blog": "https://blog.example",
        "user_ip": "203.0.113.7",
        "comment_content": "I love this song",
    }
    with (
        serve_app(limited(settings, rate_limit_per_key=2, rate_limit_per_ip=0)) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        answers = [client.post("/1.1/comment-check", data=form) for _ in range(3)]
        spam = client.post("/1.1/submit-spam", data=form)
        usage = client.get("/1.2/usage-limit", params={"api_key": account.key})
    assert [a.text for a in answers[:2]] == ["false", "false"]
    for refused in (answers[2], spam, usage):
        assert refused.status_code == 200
        assert refused.text == "invalid"
        assert refused.headers["X-akismet-alert-code"] == "10501"
        assert "Rate limit" in refused.headers["X-akismet-alert-msg"]
        assert f"2 requests per {WINDOW}s" in refused.headers["X-akismet-debug-help"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert "X-akismet-guid" not in refused.headers


def test_limits_are_off_without_redis(settings: Settings, account: Account) -> None:
    no_redis = limited(settings, rate_limit_per_key=1, rate_limit_per_ip=1)
    no_redis = no_redis.model_copy(update={"redis_url": None})
    assert not RateLimiter(no_redis).enabled
    with serve_app(no_redis) as url, httpx.Client(base_url=url, timeout=10) as client:
        statuses = {client.get("/v1/sites", headers=account.headers).status_code for _ in range(5)}
    assert statuses == {200}


def test_pass_requests_when_redis_fails(settings: Settings) -> None:
    # A Redis that does not answer must not take the API down with it.
    broken = limited(settings, rate_limit_per_key=1).model_copy(
        update={"redis_url": "redis://127.0.0.1:1/0"}
    )

    async def run() -> list[object]:
        limiter = RateLimiter(broken, clock=lambda: START)
        try:
            assert limiter.enabled
            first = await limiter.check("some-key", "203.0.113.9")
            second = await limiter.check("some-key", "203.0.113.9")  # paused: not asked
            return [first, second]
        finally:
            await limiter.close()

    assert run_async(run()) == [None, None]


def test_lease_ahead_far_from_the_limit_and_stay_exact_near_it(
    settings: Settings, redis_url: str
) -> None:
    """Far from its limit a key asks Redis once per many requests; the limit stays exact."""
    limits = limited(settings, rate_limit_per_key=200, rate_limit_per_ip=0)
    client = redis.Redis.from_url(redis_url)

    async def run() -> tuple[list[bool], list[int]]:
        limiter = RateLimiter(limits, clock=lambda: START)
        passed, counter = [], []
        try:
            for _ in range(230):
                passed.append(await limiter.check("lease-key", None) is None)
                counter.append(sum(int(client.get(n) or 0) for n in client.scan_iter("cg:rl:*")))
        finally:
            await limiter.close()
        return passed, counter

    try:
        passed, counter = run_async(run())
    finally:
        client.close()
    assert passed == [True] * 200 + [False] * 30
    # The first request leased an eighth of the budget: Redis counted 25 at once...
    assert counter[0] == 200 // 8
    # ...so far fewer round trips than requests before the limit (each one moves the counter).
    assert len(set(counter[:200])) < 60
    # Past the limit every request is counted again, one by one.
    assert counter[-1] - counter[-2] == 1


def test_leases_of_two_processes_never_let_more_than_the_limit_through(settings: Settings) -> None:
    """Two limiters (as two API processes) sharing one key's budget, interleaved."""
    limits = limited(settings, rate_limit_per_key=100, rate_limit_per_ip=0)

    async def run() -> int:
        first = RateLimiter(limits, clock=lambda: START)
        second = RateLimiter(limits, clock=lambda: START)
        passed = 0
        try:
            for i in range(300):
                limiter = first if i % 3 else second
                passed += await limiter.check("shared-key", None) is None
        finally:
            await first.close()
            await second.close()
        return passed

    passed = run_async(run())
    # Never more than the limit; fewer only by what one process leased and did not use
    # (at most an eighth of what was left when it leased).
    assert 100 - 100 // 8 <= passed <= 100
