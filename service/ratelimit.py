"""Rate limits per API key and per client IP, counted in Redis so that they hold across processes.

A fixed window: each request INCRements one counter per limit (`cg:rl:<scope>:<hmac>:<window>`)
and sets its expiry, all in one pipelined round trip. Keys and addresses are stored as keyed
hashes, so Redis holds neither. When Redis is not configured the limits are off; when it fails,
requests pass (logged, then not asked again for a few seconds): the limits protect the service,
and must not take it down with Redis.
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


class RateLimiter:
    """Counts requests per API key and per client IP in Redis (one round trip per request)."""

    def __init__(self, settings: Settings, pause_seconds: float = 5.0) -> None:
        self.per_key = settings.rate_limit_per_key
        self.per_ip = settings.rate_limit_per_ip
        self.window = settings.rate_limit_window_seconds
        self._secret = settings.secret_key.encode()
        self._pause_seconds = pause_seconds
        self._paused_until = 0.0
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

    async def check(self, key: str | None, ip: str | None) -> Limited | None:
        """Count this request; the limit it went over, or None if it may proceed."""
        if self._redis is None:
            return None
        now = time.time()
        if now < self._paused_until:
            return None
        window = int(now // self.window)
        checks: list[tuple[str, int]] = []
        pipe = self._redis.pipeline(transaction=False)
        for scope, value, limit in ((KEY_SCOPE, key, self.per_key), (IP_SCOPE, ip, self.per_ip)):
            if value and limit:
                name = self._name(scope, value, window)
                pipe.incr(name)
                pipe.expire(name, self.window + 1)
                checks.append((scope, limit))
        if not checks:
            return None
        try:
            results = await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._paused_until = now + self._pause_seconds
            log.warning("rate limits unchecked for %.0fs: Redis: %s", self._pause_seconds, exc)
            return None
        for (scope, limit), count in zip(checks, results[::2], strict=True):
            if int(count) > limit:
                retry_after = max(1, math.ceil((window + 1) * self.window - now))
                return Limited(scope, limit, self.window, retry_after)
        return None

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
