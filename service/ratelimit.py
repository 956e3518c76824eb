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
from dataclasses import dataclass

import redis
import redis.asyncio
from starlette.types import ASGIApp, Receive, Scope, Send

from service import errors
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


class RateLimiter:
    """Counts requests per API key and per client IP in Redis, leasing a few ahead."""

    def __init__(self, settings: Settings, pause_seconds: float = 5.0) -> None:
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
        now = time.time()
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


class RateLimitMiddleware:
    """Applies the limits to `/v1` requests before anything reads their body; 429 if over."""

    def __init__(self, app: ASGIApp, prefix: str = "/v1/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        limiter: RateLimiter | None = getattr(
            getattr(scope["app"].state, "services", None), "limiter", None
        )
        if limiter is None or not limiter.enabled:
            await self.app(scope, receive, send)
            return
        key = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    key = token.strip()
                break
        client = scope.get("client")
        limited = await limiter.check(key, client[0] if client else None)
        if limited is None:
            await self.app(scope, receive, send)
            return
        response = errors.error_response(
            429,
            "rate_limited",
            limited.message,
            details={"scope": limited.scope, "limit": limited.limit,
                     "window_seconds": limited.window_seconds},
            headers={"Retry-After": str(limited.retry_after)},
        )  # fmt: skip
        await response(scope, receive, send)


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
