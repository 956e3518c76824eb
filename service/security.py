"""API keys: shown once, stored as an HMAC, found by a short prefix, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import tables

# Keys are lower-case letters and digits, at most 63 characters, so that one can also serve
# as a DNS label in Akismet's older `<key>.host` form.
KEY_PREFIX = "cg"
LOOKUP_LENGTH = 8


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


def create_account_with_key(session: Session, name: str, secret_key: str) -> NewKey:
    """Create an account and its first key; the caller commits."""
    account = tables.Account(name=name)
    session.add(account)
    session.flush()
    plaintext = generate_key()
    key = tables.ApiKey(
        account_id=account.id,
        name=name,
        prefix=lookup_prefix(plaintext),
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


class KeyCache:
    """Recently authenticated keys, by HMAC, so that a busy client costs no query per request.

    An entry lives `ttl` seconds: that bounds how long a key revoked in the database (by a
    later feature) keeps working in a running process.
    """

    def __init__(self, ttl: float = 60.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def get(self, plaintext: str, secret_key: str) -> int | None:
        entry = self._entries.get(hash_key(plaintext, secret_key))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, plaintext: str, secret_key: str, account_id: int) -> None:
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[hash_key(plaintext, secret_key)] = (
                account_id,
                time.monotonic() + self.ttl,
            )
