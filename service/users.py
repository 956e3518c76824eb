"""Moderators and admins: their bearer tokens, passwords, and the sites they may see.

Users are people, apart from accounts (the platforms) and their API keys: a user token starts
with `cgu_`, which no API key does (keys are `cg` + hex), so neither is ever mistaken for the
other. Tokens are stored like API keys (an HMAC keyed with the server's secret, a lookup prefix,
a constant-time comparison); passwords, which people choose, are stored as argon2id hashes.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import CursorResult, Result, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import audit, security, tables
from service.intake.sites import get_or_create_site, normalise_site_url

TOKEN_PREFIX = "cgu_"
TOKEN_LOOKUP_LENGTH = 8
MAX_NAME_LENGTH = 100


class UserError(ValueError):
    """A user operation that cannot be done (unknown user, taken name, ambiguous site …)."""


@dataclass(frozen=True, slots=True)
class UserPrincipal:
    """Who a user request comes from; `site_ids` None means every site (an admin)."""

    id: int
    name: str
    role: tables.UserRole
    site_ids: frozenset[int] | None

    @property
    def is_admin(self) -> bool:
        return self.role == tables.UserRole.ADMIN

    def can_see(self, site_id: int) -> bool:
        return self.site_ids is None or site_id in self.site_ids


@dataclass(frozen=True, slots=True)
class NewToken:
    """A freshly created token: `plaintext` is shown once and never stored."""

    user_id: int
    token_id: int
    plaintext: str


# --- passwords ---------------------------------------------------------------------------


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (salted; the parameters are stored in the hash)."""
    if not password:
        raise UserError("the password must not be empty")
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash, a dummy one is checked so timing tells nothing."""
    try:
        return _hasher().verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_urlsafe(16))


def time_password_check() -> float:
    """Seconds one password check takes on this machine (against the dummy hash)."""
    _dummy_hash()
    started = time.perf_counter()
    verify_password(None, "")
    return time.perf_counter() - started


def authenticate_password(session: Session, name: str, password: str) -> UserPrincipal | None:
    """The user `name` if `password` is theirs and they are not disabled (for the console)."""
    user = session.execute(
        select(tables.User).where(tables.User.name == name.strip())
    ).scalar_one_or_none()
    ok = verify_password(user.password_hash if user is not None else None, password)
    if user is None or not ok or user.disabled:
        return None
    return principal(session, user)


def set_password(session: Session, name: str, password: str) -> None:
    """Set (or replace) a user's password; the caller commits."""
    user_by_name(session, name).password_hash = hash_password(password)


# --- tokens ------------------------------------------------------------------------------


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_hex(24)


def token_lookup_prefix(plaintext: str) -> str:
    return plaintext[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + TOKEN_LOOKUP_LENGTH]


def is_user_token(plaintext: str) -> bool:
    return plaintext.startswith(TOKEN_PREFIX)


def create_token(session: Session, user_id: int, secret_key: str) -> NewToken:
    """A new bearer token for a user; the caller commits."""
    plaintext = generate_token()
    token = tables.UserToken(
        user_id=user_id,
        prefix=token_lookup_prefix(plaintext),
        token_hash=security.hash_key(plaintext, secret_key),
    )
    session.add(token)
    session.flush()
    return NewToken(user_id=user_id, token_id=token.id, plaintext=plaintext)


def authenticate_token(session: Session, plaintext: str, secret_key: str) -> UserPrincipal | None:
    """The user a token belongs to, or None (unknown, revoked, or the user is disabled)."""
    if not is_user_token(plaintext) or len(plaintext) > 200:
        return None
    candidates = session.execute(
        select(tables.UserToken.user_id, tables.UserToken.token_hash).where(
            tables.UserToken.prefix == token_lookup_prefix(plaintext),
            tables.UserToken.revoked_at.is_(None),
        )
    ).all()
    digest = security.hash_key(plaintext, secret_key)
    found = None
    for user_id, token_hash in candidates:
        if hmac.compare_digest(token_hash, digest):
            found = user_id
    if found is None:
        return None
    user = session.get(tables.User, found)
    if user is None or user.disabled:
        return None
    return principal(session, user)


# --- users and their sites ---------------------------------------------------------------


def principal(session: Session, user: tables.User) -> UserPrincipal:
    """The user with the sites they may see, read now (a grant takes effect at once)."""
    role = tables.UserRole(user.role)
    if role == tables.UserRole.ADMIN:
        return UserPrincipal(user.id, user.name, role, None)
    site_ids = session.execute(
        select(tables.UserSite.site_id).where(tables.UserSite.user_id == user.id)
    ).scalars()
    return UserPrincipal(user.id, user.name, role, frozenset(site_ids))


def user_by_name(session: Session, name: str) -> tables.User:
    user = session.execute(
        select(tables.User).where(tables.User.name == name.strip())
    ).scalar_one_or_none()
    if user is None:
        raise UserError(f"no user named {name!r}")
    return user


def create_user(
    session: Session,
    name: str,
    role: tables.UserRole,
    secret_key: str,
    password: str | None = None,
) -> NewToken:
    """Create a user and their first token; the caller commits."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise UserError(f"a user name is 1 to {MAX_NAME_LENGTH} characters")
    user = tables.User(
        name=name,
        role=role.value,
        password_hash=hash_password(password) if password is not None else None,
    )
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError as exc:
        raise UserError(f"a user named {name!r} already exists") from exc
    return create_token(session, user.id, secret_key)


def find_sites(session: Session, url: str, account_id: int | None = None) -> list[tables.Site]:
    """The sites with this (normalised) URL, in one account or in all."""
    query = select(tables.Site).where(tables.Site.url == normalise_site_url(url))
    if account_id is not None:
        query = query.where(tables.Site.account_id == account_id)
    return list(session.execute(query.order_by(tables.Site.id)).scalars())


def grant_site(session: Session, name: str, url: str, account_id: int | None = None) -> tables.Site:
    """Let user `name` see the site `url` (of `account_id`, needed if several accounts have it).

    With `account_id`, a site that has received no comment yet is created. The caller commits.
    """
    user = user_by_name(session, name)
    if account_id is not None:
        if session.get(tables.Account, account_id) is None:
            raise UserError(f"no account {account_id}")
        site = get_or_create_site(session, account_id, normalise_site_url(url))
    else:
        sites = find_sites(session, url)
        if not sites:
            raise UserError(f"no site {normalise_site_url(url)!r}; name its account to create it")
        if len(sites) > 1:
            accounts = ", ".join(str(s.account_id) for s in sites)
            raise UserError(f"several accounts have this site ({accounts}): choose one")
        site = sites[0]
    exists = session.get(tables.UserSite, (user.id, site.id))
    if exists is None:
        session.add(tables.UserSite(user_id=user.id, site_id=site.id))
        session.flush()
    return site


def ungrant_site(
    session: Session, name: str, url: str, account_id: int | None, actor: audit.Actor
) -> tuple[tables.Site, bool]:
    """Take back user `name`'s grant of the site `url` (audited); returns the site and whether
    a grant was removed. Takes effect on the user's next request. The caller commits."""
    user = user_by_name(session, name)
    sites = find_sites(session, url, account_id)
    if not sites:
        raise UserError(f"no site {normalise_site_url(url)!r}")
    if len(sites) > 1:
        accounts = ", ".join(str(s.account_id) for s in sites)
        raise UserError(f"several accounts have this site ({accounts}): choose one")
    return sites[0], ungrant_site_id(session, user, sites[0].id, actor)


def ungrant_site_id(session: Session, user: tables.User, site_id: int, actor: audit.Actor) -> bool:
    """Remove `user`'s grant of site `site_id` if they have it (audited); the caller commits."""
    grant = session.get(tables.UserSite, (user.id, site_id))
    if grant is None:
        return False
    session.delete(grant)
    audit.record(
        session,
        actor,
        tables.AdminAction.SITE_UNGRANTED,
        f"user:{user.id}",
        before={"site_id": site_id},
        after=None,
    )
    session.flush()
    return True


def set_disabled(session: Session, user: tables.User, disabled: bool, actor: audit.Actor) -> bool:
    """Disable (or enable again) a user (audited); returns whether it changed.

    A disabled user's tokens and console sessions stop working on their next request (both
    are read from the database on every request); enabling restores them. The caller commits.
    """
    if user.disabled == disabled:
        return False
    user.disabled = disabled
    action = tables.AdminAction.USER_DISABLED if disabled else tables.AdminAction.USER_ENABLED
    audit.record(
        session,
        actor,
        action,
        f"user:{user.id}",
        before={"disabled": not disabled},
        after={"disabled": disabled},
    )
    session.flush()
    return True


def revoke_tokens(session: Session, user: tables.User, actor: audit.Actor) -> tuple[int, int]:
    """Revoke every live token of a user and end their console sessions (audited).

    Returns (tokens revoked, sessions ended). The caller commits.
    """
    now = tables.utcnow()
    tokens = _count(
        session.execute(
            update(tables.UserToken)
            .where(tables.UserToken.user_id == user.id, tables.UserToken.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
    )
    ended = _count(
        session.execute(
            delete(tables.ConsoleSession)
            .where(tables.ConsoleSession.user_id == user.id)
            .execution_options(synchronize_session=False)
        )
    )
    audit.record(
        session,
        actor,
        tables.AdminAction.TOKENS_REVOKED,
        f"user:{user.id}",
        before={"tokens": tokens, "console_sessions": ended},
        after={"tokens": 0, "console_sessions": 0},
    )
    session.flush()
    return tokens, ended


def _count(result: Result[Any]) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0


def user_by_id(session: Session, user_id: int) -> tables.User:
    user = session.get(tables.User, user_id) if 0 < user_id <= tables.MAX_ROW_ID else None
    if user is None:
        raise UserError(f"no user {user_id}")
    return user


@dataclass(frozen=True, slots=True)
class UserSummary:
    id: int
    name: str
    role: str
    disabled: bool
    has_password: bool
    tokens: int
    sites: list[str]


def list_users(session: Session) -> list[UserSummary]:
    """Every user, with their live token count and granted site URLs."""
    users = session.execute(select(tables.User).order_by(tables.User.name)).scalars().all()
    tokens: dict[int, int] = {}
    for user_id in session.execute(
        select(tables.UserToken.user_id).where(tables.UserToken.revoked_at.is_(None))
    ).scalars():
        tokens[user_id] = tokens.get(user_id, 0) + 1
    sites: dict[int, list[str]] = {}
    for user_id, url in session.execute(
        select(tables.UserSite.user_id, tables.Site.url)
        .join(tables.Site, tables.Site.id == tables.UserSite.site_id)
        .order_by(tables.Site.url)
    ):
        sites.setdefault(user_id, []).append(url)
    return [
        UserSummary(
            u.id,
            u.name,
            u.role,
            u.disabled,
            u.password_hash is not None,
            tokens.get(u.id, 0),
            sites.get(u.id, []),
        )
        for u in users
    ]
