"""API keys: shown once, stored as an HMAC, found by a short prefix, compared in constant time.

Two shapes of key: `cg` + 48 hex digits, for every API; and the Akismet-shaped key, 12 lower-case
hex digits like Akismet's own, which works only on the Akismet endpoints (the WordPress plugin
refuses any key of another length before it sends a request; see docs/akismet.md).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import audit, tables

# Keys are lower-case letters and digits, at most 63 characters, so that one can also serve
# as a DNS label in Akismet's older `<key>.host` form.
KEY_PREFIX = "cg"
LOOKUP_LENGTH = 8
AKISMET_KEY_LENGTH = 12
# The `prefix` column of an Akismet-shaped key: it names the kind and reveals none of the key's
# 48 bits (a lookup prefix would give away a third of them). Such keys are found by their HMAC.
AKISMET_KEY_MARK = "akismet"
_AKISMET_KEY = re.compile(r"^[0-9a-f]{12}$")


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly created key: `plaintext` is shown once and never stored."""

    account_id: int
    key_id: int
    plaintext: str


def hash_key(plaintext: str, secret_key: str) -> str:
    # Keys are 256-bit random tokens, so a fast keyed hash is enough (no password stretching):
    # a stolen table is useless without the server's secret key.
    return hmac.new(secret_key.encode(), plaintext.encode(), hashlib.sha256).hexdigest()


def lookup_prefix(plaintext: str) -> str:
    return plaintext[len(KEY_PREFIX) : len(KEY_PREFIX) + LOOKUP_LENGTH]


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_hex(24)


def is_akismet_key(plaintext: str) -> bool:
    """Whether a key has the Akismet shape (no `cg` key has it: `g` is no hex digit)."""
    return _AKISMET_KEY.match(plaintext) is not None


def generate_akismet_key() -> str:
    return secrets.token_hex(AKISMET_KEY_LENGTH // 2)


def create_account_with_key(
    session: Session, name: str, secret_key: str, akismet: bool = False
) -> NewKey:
    """Create an account and its first key (Akismet-shaped if `akismet`); the caller commits."""
    account = tables.Account(name=name)
    session.add(account)
    session.flush()
    if akismet:
        plaintext = generate_akismet_key()
        # 48 bits: a key already taken is drawn again rather than refused by the unique hash.
        while _find_by_hash(session, hash_key(plaintext, secret_key)) is not None:
            plaintext = generate_akismet_key()
        prefix = AKISMET_KEY_MARK
    else:
        plaintext = generate_key()
        prefix = lookup_prefix(plaintext)
    key = tables.ApiKey(
        account_id=account.id,
        name=name,
        prefix=prefix,
        key_hash=hash_key(plaintext, secret_key),
    )
    session.add(key)
    session.flush()
    return NewKey(account_id=account.id, key_id=key.id, plaintext=plaintext)


def authenticate(session: Session, plaintext: str, secret_key: str) -> int | None:
    """The account id a key belongs to, or None for an unknown or revoked key."""
    if not plaintext.startswith(KEY_PREFIX) or len(plaintext) > 200:
        return None
    candidates = session.execute(
        select(tables.ApiKey.account_id, tables.ApiKey.key_hash).where(
            tables.ApiKey.prefix == lookup_prefix(plaintext),
            tables.ApiKey.revoked_at.is_(None),
        )
    ).all()
    digest = hash_key(plaintext, secret_key)
    found = None
    for account_id, key_hash in candidates:
        if hmac.compare_digest(key_hash, digest):
            found = account_id
    return found


class UnknownKey(ValueError):
    """No API key with this id."""


@dataclass(frozen=True, slots=True)
class KeySummary:
    id: int
    account_id: int
    account: str
    name: str
    prefix: str  # the lookup prefix: enough to tell keys apart, useless to authenticate
    created_at: datetime
    revoked_at: datetime | None


def list_keys(session: Session, account_id: int | None = None) -> list[KeySummary]:
    """Every key (of one account, if given), revoked ones included, oldest first."""
    query = (
        select(tables.ApiKey, tables.Account.name)
        .join(tables.Account, tables.Account.id == tables.ApiKey.account_id)
        .order_by(tables.ApiKey.id)
    )
    if account_id is not None:
        query = query.where(tables.ApiKey.account_id == account_id)
    return [_summary(key, account) for key, account in session.execute(query).all()]


def _summary(key: tables.ApiKey, account: str) -> KeySummary:
    return KeySummary(
        key.id, key.account_id, account, key.name,
        key.prefix if key.prefix == AKISMET_KEY_MARK else KEY_PREFIX + key.prefix,
        key.created_at, key.revoked_at,
    )  # fmt: skip


def revoke_key(session: Session, key_id: int, actor: audit.Actor) -> tuple[KeySummary, bool]:
    """Revoke a key (audited); returns it and whether it was live until now. The caller
    commits; every API process refuses it within `site_cache_seconds` (its KeyCache TTL)."""
    key = session.get(tables.ApiKey, key_id) if 0 < key_id <= tables.MAX_ROW_ID else None
    if key is None:
        raise UnknownKey(f"no API key {key_id}")
    account = session.get(tables.Account, key.account_id)
    changed = key.revoked_at is None
    if changed:
        key.revoked_at = tables.utcnow()
        audit.record(
            session,
            actor,
            tables.AdminAction.KEY_REVOKED,
            f"api_key:{key.id}",
            before={"revoked_at": None},
            after={"revoked_at": key.revoked_at.isoformat(), "account_id": key.account_id},
        )
        session.flush()
    return _summary(key, account.name if account is not None else ""), changed


def _find_by_hash(session: Session, digest: str) -> tables.ApiKey | None:
    return session.execute(
        select(tables.ApiKey).where(tables.ApiKey.key_hash == digest)
    ).scalar_one_or_none()


def authenticate_akismet(session: Session, plaintext: str, secret_key: str) -> int | None:
    """The account id of a key on the Akismet endpoints: a `cg` key, or an Akismet-shaped key
    (compared in lower case: the plugin's form keeps the case the owner typed)."""
    if not is_akismet_key(plaintext.lower()):
        return authenticate(session, plaintext, secret_key)
    # Looked up by its HMAC: the lookup's timing depends on the digest, never on the key.
    key = _find_by_hash(session, hash_key(plaintext.lower(), secret_key))
    if key is None or key.revoked_at is not None or key.prefix != AKISMET_KEY_MARK:
        return None
    return key.account_id


def key_label(plaintext: str, secret_key: str) -> str:
    """How logs, labels and reports name a key without giving it away: `cg` and its lookup
    prefix, or for an Akismet-shaped key the start of its stored HMAC (`akismet-<8 hex>`)."""
    if is_akismet_key(plaintext.lower()):
        return f"{AKISMET_KEY_MARK}-{hash_key(plaintext.lower(), secret_key)[:LOOKUP_LENGTH]}"
    return f"{KEY_PREFIX}{lookup_prefix(plaintext)}"


class KeyCache:
    """Recently authenticated keys, by HMAC, so that a busy client costs no query per request.

    An entry lives `ttl` seconds: that bounds how long a key revoked in the database keeps
    working in a running process (the API sets it to `site_cache_seconds`; `clear` makes a
    revocation immediate in the process that made it).
    """

    def __init__(
        self,
        ttl: float = 60.0,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._entries: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def get(self, plaintext: str, secret_key: str) -> int | None:
        entry = self._entries.get(hash_key(plaintext, secret_key))
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def put(self, plaintext: str, secret_key: str, account_id: int) -> None:
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[hash_key(plaintext, secret_key)] = (
                account_id,
                self._clock() + self.ttl,
            )
