"""Rate limits per API key and per client IP, counted in Redis so that they hold across processes.

A fixed window: each limit counts in one Redis counter per window (`cg:rl:<scope>:<hmac>:<window>`,
expiring after it). Keys and addresses are stored as keyed hashes, so Redis holds neither.

Asking Redis for every request costs a round trip of the API's event loop per request, most of
it for keys far from their limit. So a process leases requests ahead: it adds a share of what is
left in the window to the counter at once (INCRBY; at most an eighth of what is left, at most
64) and lets that many requests through before asking again. Near the limit the share is one
request, so the limit is exact there, in one process or many; the cost is that tokens leased
by one process and not used by it count for the window, so a key spread over several processes
may be refused at most an eighth of its remaining budget (at most 64 requests) per process
early. When Redis is not configured the limits are off; when it fails, requests pass (logged,
then not asked again for a few seconds): the limits protect the service, and must not take it
down with Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import redis.asyncio

from service.settings import Settings

log = logging.getLogger(__name__)

KEY_SCOPE = "key"
IP_SCOPE = "ip"


@dataclass(frozen=True, slots=True)
class Limited:
    """A refused request: which limit it hit, and how many seconds until the window resets."""

    scope: str
    limit: int
    window_seconds: int
    retry_after: int

    @property
    def message(self) -> str:
        who = "API key" if self.scope == KEY_SCOPE else "client IP address"
        return (
            f"rate limit of {self.limit} requests per {self.window_seconds}s for this {who} "
            f"reached; retry in {self.retry_after}s"
        )


# A lease is at most this share of what is left in the window, and at most MAX_LEASE requests.
LEASE_SHARE = 8
MAX_LEASE = 64
MAX_TRACKED = 100_000  # counters leased from in this process and this window


@dataclass(slots=True)
class _Lease:
    """What this process knows of one counter in the current window."""

    left: int = 0  # requests leased and not yet used
    seen: int = 0  # the count Redis answered last


class Counters:
    """Counts per name over a sliding span of two fixed windows: in Redis, shared by every API
    process, or without Redis in this process only. Names are stored as keyed hashes
    (`cg:rl:<scope>:<hmac>:<window number>`).

    A count is the current window's plus the previous one's, so what was counted stays counted
    for one to two windows and never drops to zero at a window's edge (where a fixed window
    would let a lockout be slipped). Exact (one INCRBY per count), for what is counted rarely,
    such as console logins. If Redis fails, every count reads 0 for a few seconds (logged), as
    the rate limits pass.
    """

    def __init__(
        self,
        redis_client: redis.asyncio.Redis | None,
        secret: bytes,
        pause_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis_client
        self._secret = secret
        self._pause_seconds = pause_seconds
        self._paused_until = 0.0
        self._clock = clock
        self._local: dict[str, tuple[int, float]] = {}  # without Redis: name -> count, until

    def _names(self, scope: str, value: str, window_seconds: int) -> tuple[str, str]:
        """The current window's name and the previous one's."""
        digest = hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()[:32]
        window = int(self._clock() // window_seconds)
        return f"cg:rl:{scope}:{digest}:{window}", f"cg:rl:{scope}:{digest}:{window - 1}"

    def seconds_counted(self, window_seconds: int) -> int:
        """How long what is counted now stays counted: to the end of the next window."""
        now = self._clock()
        end = (int(now // window_seconds) + 2) * window_seconds
        return max(1, math.ceil(end - now))

    def _usable(self) -> bool:
        return self._redis is not None and self._clock() >= self._paused_until

    def _failed(self, exc: Exception) -> None:
        self._paused_until = self._clock() + self._pause_seconds
        log.warning("counters unread for %.0fs: Redis: %s", self._pause_seconds, exc)

    def _local_count(self, name: str) -> int:
        count, until = self._local.get(name, (0, 0.0))
        return count if until > self._clock() else 0

    def _local_add(self, name: str, amount: int, window_seconds: int) -> int:
        now = self._clock()
        if len(self._local) >= MAX_TRACKED:
            self._local = {k: v for k, v in self._local.items() if v[1] > now}
            if len(self._local) >= MAX_TRACKED:
                self._local.clear()
        count = self._local_count(name) + amount
        # A window's entry is read during it and the next one.
        self._local[name] = (count, now + 2 * window_seconds)
        return count

    async def add(self, scope: str, value: str, window_seconds: int, amount: int = 1) -> int:
        """Count `amount` more for `value`; the count (this window's and the previous)."""
        current, previous = self._names(scope, value, window_seconds)
        if self._redis is None:
            return self._local_add(current, amount, window_seconds) + self._local_count(previous)
        if not self._usable():
            return 0
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.incrby(current, amount)
            pipe.expire(current, 2 * window_seconds + 1)
            pipe.get(previous)
            count, _, before = await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)
            return 0
        return int(count) + int(before or 0)

    async def get(self, keys: list[tuple[str, str]], window_seconds: int) -> list[int]:
        """The counts of (scope, value) pairs (this window's and the previous)."""
        names = [n for scope, value in keys for n in self._names(scope, value, window_seconds)]
        if self._redis is None:
            values: list[int] = [self._local_count(name) for name in names]
        elif not self._usable():
            return [0] * len(keys)
        else:
            try:
                raw = await self._redis.mget(names)
            except (redis.RedisError, OSError) as exc:
                self._failed(exc)
                return [0] * len(keys)
            values = [int(v) if v is not None else 0 for v in raw]
        return [values[i] + values[i + 1] for i in range(0, len(values), 2)]

    async def reset(self, scope: str, value: str, window_seconds: int) -> None:
        names = self._names(scope, value, window_seconds)
        if self._redis is None:
            for name in names:
                self._local.pop(name, None)
            return
        if self._usable():
            try:
                await self._redis.delete(*names)
            except (redis.RedisError, OSError) as exc:
                self._failed(exc)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


class RateLimiter:
    """Counts requests per API key and per client IP in Redis, leasing a few ahead.

    `counters` counts other things (console logins) in the same Redis, or in this process
    without Redis."""

    def __init__(
        self,
        settings: Settings,
        pause_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self.per_key = settings.rate_limit_per_key
        self.per_ip = settings.rate_limit_per_ip
        self.window = settings.rate_limit_window_seconds
        self._secret = settings.secret_key.encode()
        self._pause_seconds = pause_seconds
        self._paused_until = 0.0
        self._leases: dict[tuple[str, str], _Lease] = {}  # by (scope, key or address)
        self._leases_window = -1
        self._redis: redis.asyncio.Redis | None = None
        if settings.redis_url and (self.per_key or self.per_ip):
            self._redis = redis.asyncio.Redis.from_url(
                settings.redis_url, socket_connect_timeout=0.5, socket_timeout=0.5
            )
        counted = None
        if settings.redis_url:
            counted = self._redis or redis.asyncio.Redis.from_url(
                settings.redis_url, socket_connect_timeout=0.5, socket_timeout=0.5
            )
        self.counters = Counters(counted, self._secret, pause_seconds, clock)

    @property
    def enabled(self) -> bool:
        return self._redis is not None

    def _name(self, scope: str, value: str, window: int) -> str:
        digest = hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()[:32]
        return f"cg:rl:{scope}:{digest}:{window}"

    def _lease(self, scope: str, value: str, window: int) -> _Lease:
        if window != self._leases_window or len(self._leases) >= MAX_TRACKED:
            self._leases.clear()
            self._leases_window = window
        lease = self._leases.get((scope, value))
        if lease is None:
            lease = self._leases[(scope, value)] = _Lease()
        return lease

    async def check(self, key: str | None, ip: str | None) -> Limited | None:
        """Count this request; the limit it went over, or None if it may proceed."""
        if self._redis is None:
            return None
        now = self._clock()
        if now < self._paused_until:
            return None
        window = int(now // self.window)
        counted: list[tuple[str, str, int, _Lease]] = []  # scope, key or address, limit, lease
        for scope, value, limit in ((KEY_SCOPE, key, self.per_key), (IP_SCOPE, ip, self.per_ip)):
            if value and limit:
                counted.append((scope, value, limit, self._lease(scope, value, window)))
        # Only a counter whose lease is spent is hashed and asked for more.
        asks = [(limit, self._name(scope, value, window), lease)
                for scope, value, limit, lease in counted if lease.left == 0]  # fmt: skip
        if asks:
            pipe = self._redis.pipeline(transaction=False)
            chunks = []
            for limit, name, lease in asks:
                chunk = max(1, min(MAX_LEASE, (limit - lease.seen) // LEASE_SHARE))
                chunks.append(chunk)
                pipe.incrby(name, chunk)
                pipe.expire(name, self.window + 1)
            try:
                results = await pipe.execute()
            except (redis.RedisError, OSError) as exc:
                self._paused_until = now + self._pause_seconds
                log.warning("rate limits unchecked for %.0fs: Redis: %s", self._pause_seconds, exc)
                return None
            for (limit, _, lease), chunk, count in zip(asks, chunks, results[::2], strict=True):
                count = int(count)
                lease.seen = max(lease.seen, count)
                # The counter went from count - chunk to count: ours are those within the limit.
                lease.left += max(0, min(count, limit) - (count - chunk))
        refused = None
        for scope, _, limit, lease in counted:
            if lease.left > 0:
                lease.left -= 1
            elif refused is None:
                retry_after = max(1, math.ceil((window + 1) * self.window - now))
                refused = Limited(scope, limit, self.window, retry_after)
        return refused

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
        else:
            await self.counters.close()


def describe(settings: Settings) -> str:
    """One line for the log at startup: what is limited, or why nothing is."""
    if not (settings.rate_limit_per_key or settings.rate_limit_per_ip):
        return "rate limits are off (both limits are 0)"
    if not settings.redis_url:
        return "rate limits are off: COMMENTGUARD_REDIS_URL is not set"
    return (
        f"rate limits: {settings.rate_limit_per_key or 'no limit'} per API key and "
        f"{settings.rate_limit_per_ip or 'no limit'} per client IP "
        f"every {settings.rate_limit_window_seconds}s"
    )
