"""Console logins: password check with lockout, server-side sessions behind a signed cookie, CSRF.

- The cookie holds a random session token signed with the server's secret key (itsdangerous);
  the database keeps only the token's SHA-256, so logout and expiry end a session everywhere,
  and a stolen database holds no usable cookie.
- The CSRF token is an HMAC of the session token: nothing to store, different per session, and
  checked on every state-changing request (form field `csrf_token` or header `X-CSRF-Token`).
- Logins are counted by the API's Redis limiter (`RateLimiter.counters`; in the process without
  Redis), by keyed hashes of the address and the name, so Redis holds neither:
  - each address has `console_login_attempts_per_ip` password checks a minute; past it, 429
    before any hashing, so a flood costs no argon2 hash past its first few;
  - failures are counted per name and per (name, address) over the last one to two windows
    of `console_login_lockout_seconds`. An address that failed `console_login_max_failures`
    times for a name is locked out of it; once the name has that many failures from anywhere,
    every address that failed for it at least once is too. An address that has not failed
    for the name is never locked: nobody can lock an admin out of their own password.
- An unknown name (or one with no password) costs the time a password check takes, by
  waiting, not by hashing: a flood of random names is not a flood of 64 MiB argon2 hashes.
  Every refusal takes that long, so each connection of a flood tries about once per check.
  Password checks of known names take turns, one at a time per API process.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, Signer
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service import tables, users
from service.db import SessionFactory
from service.privacy import hash_ip
from service.ratelimit import Counters
from service.settings import Settings
from service.users import UserPrincipal

COOKIE_NAME = "cg_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_SIGNER_SALT = "commentguard.console.session"
MAX_NAME_LENGTH = 100


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """The person behind a console request, and the token that proves the request is theirs."""

    principal: UserPrincipal
    session_id: str
    csrf_token: str
    since: datetime  # when the session began: undo reaches back no further

    @property
    def is_admin(self) -> bool:
        return self.principal.is_admin


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A login attempt: the cookie value on success, else why not (for the form)."""

    cookie: str | None
    locked_until: datetime | None = None
    too_many_from_address: bool = False


def _signer(settings: Settings) -> Signer:
    return Signer(settings.secret_key, salt=_SIGNER_SALT, digest_method=hashlib.sha256)


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token_for(token: str, settings: Settings) -> str:
    """The CSRF token of a session: a keyed hash of its (secret) session token."""
    digest = hmac.new(settings.secret_key.encode(), b"csrf:" + token.encode(), hashlib.sha256)
    return digest.hexdigest()


def csrf_ok(user: ConsoleUser, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(user.csrf_token, sent or "")


NAME_SCOPE = "login-name"
PAIR_SCOPE = "login-pair"
ADDRESS_SCOPE = "login-ip"
ATTEMPT_WINDOW_SECONDS = 60


def is_locked(name_failures: int, pair_failures: int, max_failures: int) -> bool:
    """Whether an address may not try a name: it failed for it `max_failures` times, or the
    name failed that often from anywhere and this address failed for it at least once."""
    return pair_failures >= max_failures or (name_failures >= max_failures and pair_failures > 0)


class LoginGuard:
    """The checks around a console password check (see the module's docstring)."""

    def __init__(self, settings: Settings, counters: Counters) -> None:
        self.settings = settings
        self.counters = counters
        self._hashing: asyncio.Semaphore | None = None
        self._check_seconds: float | None = None  # how long a password check takes here

    def _pair(self, name: str, address: str) -> str:
        return f"{name}\x00{address}"

    async def login(
        self, sessions: SessionFactory, name: str, password: str, remote_addr: str
    ) -> LoginResult:
        """Check a user's password within the limits; on success start a session.

        Every refusal takes about as long as a password check, whatever its reason (unknown
        name, wrong password, locked, too many attempts): waiting costs no CPU, tells nothing,
        and a flood's connections each try about once per check, however they are refused.
        """
        started = time.perf_counter()
        result = await self._attempt(sessions, name, password, remote_addr)
        if result.cookie is None:
            # Give or take a fifth, as checks vary: and so that a flood's connections,
            # answered at the same moment, do not all come back at once.
            wait = await self._check_time() * random.uniform(0.8, 1.2)
            await asyncio.sleep(max(0.0, wait - (time.perf_counter() - started)))
        return result

    async def _attempt(
        self, sessions: SessionFactory, name: str, password: str, remote_addr: str
    ) -> LoginResult:
        settings = self.settings
        name = name.strip()[:MAX_NAME_LENGTH]
        window = settings.console_login_lockout_seconds
        attempts = await self.counters.add(ADDRESS_SCOPE, remote_addr, ATTEMPT_WINDOW_SECONDS)
        if attempts > settings.console_login_attempts_per_ip:
            return LoginResult(None, too_many_from_address=True)
        by_name, by_pair = await self.counters.get(
            [(NAME_SCOPE, name), (PAIR_SCOPE, self._pair(name, remote_addr))], window
        )
        if is_locked(by_name, by_pair, settings.console_login_max_failures):
            return LoginResult(None, locked_until=self._window_end(window))
        user = await run_in_threadpool(_password_user, sessions, name) if name else None
        principal = None
        if user is not None and user.password_hash is not None:
            principal = await self._verify(sessions, user, password)
        if principal is None:
            by_name = await self.counters.add(NAME_SCOPE, name, window)
            by_pair = await self.counters.add(PAIR_SCOPE, self._pair(name, remote_addr), window)
            locked = is_locked(by_name, by_pair, settings.console_login_max_failures)
            return LoginResult(None, locked_until=self._window_end(window) if locked else None)
        await self.counters.reset(PAIR_SCOPE, self._pair(name, remote_addr), window)
        cookie = await run_in_threadpool(start_session, sessions, principal, remote_addr, settings)
        return LoginResult(cookie)

    def _window_end(self, window: int) -> datetime:
        return tables.utcnow() + timedelta(seconds=self.counters.seconds_counted(window))

    async def _verify(
        self, sessions: SessionFactory, user: _PasswordUser, password: str
    ) -> UserPrincipal | None:
        if self._hashing is None:
            self._hashing = asyncio.Semaphore(1)
        async with self._hashing:
            started = time.perf_counter()
            ok = await run_in_threadpool(users.verify_password, user.password_hash, password)
            self._learn(time.perf_counter() - started)
        if not ok or user.disabled:
            return None
        return await run_in_threadpool(_principal, sessions, user.id)

    async def _check_time(self) -> float:
        """How long a password check takes in this process (measured once, then learned)."""
        if self._check_seconds is None:
            if self._hashing is None:
                self._hashing = asyncio.Semaphore(1)
            async with self._hashing:
                if self._check_seconds is None:
                    self._check_seconds = await run_in_threadpool(users.time_password_check)
        return self._check_seconds

    def _learn(self, seconds: float) -> None:
        if self._check_seconds is None:
            self._check_seconds = seconds
        else:
            self._check_seconds += (seconds - self._check_seconds) / 8


@dataclass(frozen=True, slots=True)
class _PasswordUser:
    id: int
    password_hash: str | None
    disabled: bool


def _password_user(sessions: SessionFactory, name: str) -> _PasswordUser | None:
    with sessions() as session:
        user = session.execute(
            select(tables.User).where(tables.User.name == name)
        ).scalar_one_or_none()
        if user is None:
            return None
        return _PasswordUser(user.id, user.password_hash, user.disabled)


def _principal(sessions: SessionFactory, user_id: int) -> UserPrincipal | None:
    with sessions() as session:
        user = session.get(tables.User, user_id)
        return users.principal(session, user) if user is not None else None


def start_session(
    sessions: SessionFactory, principal: UserPrincipal, remote_addr: str, settings: Settings
) -> str:
    """A new console session for `principal`; returns the cookie value (commits)."""
    token = secrets.token_urlsafe(32)
    now = tables.utcnow()
    with sessions() as session:
        session.add(
            tables.ConsoleSession(
                id=_session_id(token),
                user_id=principal.id,
                created_at=now,
                expires_at=now + timedelta(seconds=settings.console_session_seconds),
                remote_addr=hash_ip(remote_addr, settings.secret_key),
            )
        )
        # Expired sessions of anyone are cleared as people log in: the table stays small.
        session.execute(delete(tables.ConsoleSession).where(tables.ConsoleSession.expires_at < now))
        session.commit()
    return _signer(settings).sign(token).decode()


def _token(cookie: str | None, settings: Settings) -> str | None:
    if not cookie or len(cookie) > 200:
        return None
    try:
        return _signer(settings).unsign(cookie).decode()
    except (BadSignature, UnicodeDecodeError):
        return None


def current_user(session: Session, cookie: str | None, settings: Settings) -> ConsoleUser | None:
    """The user of a session cookie, or None (no cookie, bad signature, expired, logged out,
    or the user was disabled)."""
    token = _token(cookie, settings)
    if token is None:
        return None
    row = session.execute(
        select(tables.ConsoleSession, tables.User)
        .join(tables.User, tables.User.id == tables.ConsoleSession.user_id)
        .where(
            tables.ConsoleSession.id == _session_id(token),
            tables.ConsoleSession.expires_at > tables.utcnow(),
        )
    ).one_or_none()
    if row is None or row[1].disabled:
        return None
    principal = users.principal(session, row[1])
    return ConsoleUser(principal, row[0].id, csrf_token_for(token, settings), row[0].created_at)


def logout(session: Session, user: ConsoleUser) -> None:
    """End the session everywhere (commits)."""
    session.execute(
        delete(tables.ConsoleSession).where(tables.ConsoleSession.id == user.session_id)
    )
    session.commit()
