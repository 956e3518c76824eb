"""Console logins: password check with lockout, server-side sessions behind a signed cookie, CSRF.

- The cookie holds a random session token signed with the server's secret key (itsdangerous);
  the database keeps only the token's SHA-256, so logout and expiry end a session everywhere,
  and a stolen database holds no usable cookie.
- The CSRF token is an HMAC of the session token: nothing to store, different per session, and
  checked on every state-changing request (form field `csrf_token` or header `X-CSRF-Token`).
- Failed logins are counted per user name in the database (one count for every API process):
  `console_login_max_failures` failures within `console_login_lockout_seconds` lock the name
  until the oldest of them leaves the window, correct password or not.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, Signer
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service import tables, users
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


def locked_until(session: Session, name: str, settings: Settings) -> datetime | None:
    """When the lockout of `name` ends, or None if it may try to log in now."""
    now = tables.utcnow()
    window = timedelta(seconds=settings.console_login_lockout_seconds)
    failures = (
        session.execute(
            select(tables.ConsoleLoginFailure.created_at)
            .where(
                tables.ConsoleLoginFailure.user_name == name,
                tables.ConsoleLoginFailure.created_at > now - window,
            )
            .order_by(tables.ConsoleLoginFailure.created_at.desc())
            .limit(settings.console_login_max_failures)
        )
        .scalars()
        .all()
    )
    if len(failures) < settings.console_login_max_failures:
        return None
    return failures[-1] + window


def login(
    session: Session, name: str, password: str, remote_addr: str, settings: Settings
) -> LoginResult:
    """Check a user's password, counting failures; on success start a session (commits)."""
    name = name.strip()[:MAX_NAME_LENGTH]
    until = locked_until(session, name, settings)
    if until is not None:
        session.commit()
        return LoginResult(None, locked_until=until)
    principal = users.authenticate_password(session, name, password) if name else None
    if principal is None:
        session.add(tables.ConsoleLoginFailure(user_name=name, remote_addr=remote_addr[:64]))
        session.commit()
        return LoginResult(None, locked_until=locked_until(session, name, settings))
    session.execute(
        delete(tables.ConsoleLoginFailure).where(tables.ConsoleLoginFailure.user_name == name)
    )
    token = secrets.token_urlsafe(32)
    now = tables.utcnow()
    session.add(
        tables.ConsoleSession(
            id=_session_id(token),
            user_id=principal.id,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.console_session_seconds),
            remote_addr=remote_addr[:64],
        )
    )
    # Expired sessions of anyone are cleared as people log in: the table stays small.
    session.execute(delete(tables.ConsoleSession).where(tables.ConsoleSession.expires_at < now))
    session.commit()
    return LoginResult(_signer(settings).sign(token).decode())


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
