"""The checks around a console password check: the lock policy, the counters (in Redis and in
the process), the limit per address, and unknown names that cost time but no hash."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import redis.asyncio

from service import db, tables, users
from service.console.auth import LoginGuard, is_locked
from service.ratelimit import Counters
from service.settings import Settings
from tests.console.conftest import PASSWORD
from tests.service.conftest import (  # noqa: F401  (fixtures, used by name)
    TEST_SECRET,
    database_url,
    make_settings,
    redis_server_url,
    redis_url,
    run_async,
)

pytestmark = pytest.mark.xdist_group("login_guard")


def test_lock_an_address_only_once_it_has_failed() -> None:
    assert not is_locked(name_failures=0, pair_failures=0, max_failures=3)
    assert not is_locked(name_failures=2, pair_failures=2, max_failures=3)
    assert is_locked(name_failures=3, pair_failures=3, max_failures=3)
    # The name is under attack: an address that failed once is locked out of it ...
    assert is_locked(name_failures=500, pair_failures=1, max_failures=3)
    # ... and one that has not failed is not, whatever the name's count.
    assert not is_locked(name_failures=500, pair_failures=0, max_failures=3)


def _counters_round_trip(make: Callable[[], Counters], now: list[float]) -> None:
    async def run() -> None:
        counters = make()  # in the loop that uses it (an asyncio Redis client is tied to one)
        try:
            await round_trip(counters)
        finally:
            await counters.close()

    async def round_trip(counters: Counters) -> None:
        assert await counters.add("s", "alice", 60) == 1
        assert await counters.add("s", "alice", 60, 2) == 3
        assert await counters.get([("s", "alice"), ("s", "bob"), ("t", "alice")], 60) == [3, 0, 0]
        await counters.reset("s", "alice", 60)
        assert await counters.get([("s", "alice")], 60) == [0]
        assert await counters.add("s", "alice", 60) == 1
        now[0] += 60  # the next window still counts the previous one's ...
        assert await counters.get([("s", "alice")], 60) == [1]
        assert await counters.add("s", "alice", 60) == 2
        assert counters.seconds_counted(60) == 120
        now[0] += 60  # ... and the one after, only its own
        assert await counters.get([("s", "alice")], 60) == [1]
        now[0] += 60
        assert await counters.get([("s", "alice")], 60) == [0]

    run_async(run())


def test_count_per_window_in_this_process() -> None:
    now = [6000.0]
    _counters_round_trip(lambda: Counters(None, b"secret", clock=lambda: now[0]), now)


def test_count_per_window_in_redis_by_keyed_hashes(redis_url: str) -> None:  # noqa: F811
    now = [6000.0]

    async def run() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        counters = Counters(client, b"secret", clock=lambda: now[0])
        try:
            assert await counters.add("login-name", "alice", 60) == 1
            stored = [k.decode() async for k in client.scan_iter("cg:rl:login-name:*")]
            assert stored and not any("alice" in k for k in stored)
            assert 0 < await client.ttl(stored[0]) <= 121
            await counters.reset("login-name", "alice", 60)
        finally:
            await client.aclose()

    run_async(run())
    _counters_round_trip(
        lambda: Counters(redis.asyncio.Redis.from_url(redis_url), b"secret", clock=lambda: now[0]),
        now,
    )


@pytest.fixture(scope="module")
def guard_settings(
    database_url: str,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    return make_settings(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("var"),
        console_login_max_failures=3,
        console_login_attempts_per_ip=6,
    )


@pytest.fixture(scope="module")
def sessions(guard_settings: Settings) -> Iterator[db.SessionFactory]:
    engine = db.make_engine(guard_settings)
    factory = db.make_session_factory(engine)
    with factory() as session:
        users.create_user(
            session, "known", tables.UserRole.MODERATOR, guard_settings.secret_key, PASSWORD
        )
        session.commit()
    yield factory
    engine.dispose()


class CountingHashes:
    """Counts the password checks (the real argon2 ones) made while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = users.verify_password

        def counted(password_hash: str | None, password: str) -> bool:
            self.calls += 1
            return real(password_hash, password)

        monkeypatch.setattr(users, "verify_password", counted)


def test_unknown_names_cost_the_time_of_a_check_but_no_hash(
    guard_settings: Settings, sessions: db.SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashes = CountingHashes(monkeypatch)
    guard = LoginGuard(guard_settings, Counters(None, TEST_SECRET.encode()))

    async def run() -> tuple[list[float], float]:
        known = time.perf_counter()
        result = await guard.login(sessions, "known", "wrong", "198.51.100.1")
        known_seconds = time.perf_counter() - known
        assert result.cookie is None
        spent = []
        for n in range(5):
            started = time.perf_counter()
            unknown = await guard.login(sessions, f"nobody-{n}", "guess", f"198.51.100.{n + 2}")
            spent.append(time.perf_counter() - started)
            assert unknown.cookie is None and unknown.locked_until is None
        return spent, known_seconds

    spent, known_seconds = run_async(run())
    assert hashes.calls == 1, "only the known name's password was hashed"
    check = guard._check_seconds
    assert check is not None and check > 0
    # Each unknown name waited as long as a check takes (the one measured here).
    assert min(spent) >= 0.8 * check, (spent, check, known_seconds)


def test_refuse_past_the_attempts_per_address_before_any_hash(
    guard_settings: Settings, sessions: db.SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = LoginGuard(guard_settings, Counters(None, TEST_SECRET.encode()))
    address = "203.0.113.50"

    async def run() -> list[bool]:
        answers = []
        for n in range(guard_settings.console_login_attempts_per_ip):
            result = await guard.login(sessions, f"known-{n % 2}", "wrong", address)
            answers.append(result.too_many_from_address)
        hashes = CountingHashes(monkeypatch)
        over = await guard.login(sessions, "known", PASSWORD, address)
        assert over.cookie is None and over.too_many_from_address
        assert hashes.calls == 0
        elsewhere = await guard.login(sessions, "known", PASSWORD, "203.0.113.51")
        assert elsewhere.cookie is not None  # another address has its own budget
        return answers

    assert not any(run_async(run()))
