"""The Akismet protocol's requests: parsing and decoding a form body, the key, and which
fields are the platform's private business (addresses and cookies)."""

from __future__ import annotations

import codecs
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from sqlalchemy.orm import Session

from service import security
from service.privacy import hash_ip

# --- requests ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AkismetRequest:
    """The fields of one Akismet call (each name with every value sent), and its Host."""

    fields: dict[str, list[str]]
    host: str = ""

    def value(self, name: str) -> str:
        """The first value sent for `name`, or ""."""
        values = self.fields.get(name)
        return values[0] if values else ""

    def api_key(self, prefer_key: bool = False) -> tuple[str, str]:
        """(key, where it came from): `api_key`, then `key` (the other way round for
        verify-key), then the first label of the Host header (the older sub-domain form,
        `<key>.rest.akismet.com`). ("", "") when there is none."""
        names = ("key", "api_key") if prefer_key else ("api_key", "key")
        for name in names:
            if key := self.value(name).strip():
                return key, name
        host = self.host.strip().lower()
        if host.startswith("["):
            return "", ""  # an IPv6 literal
        host = host.rsplit(":", 1)[0]  # host names are case-insensitive; keys are lower-case
        label, dot, rest = host.partition(".")
        if not dot or not rest or _is_ip(host):
            return "", ""
        return label, "Host"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _charset(content_type: str | None) -> str | None:
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"'):
            return value.strip().strip('"')
    return None


# Codecs Python calls text encodings that do not decode bytes of text: a body declaring one is
# refused rather than decoded into something no one sent.
_NOT_TEXT = frozenset({"idna", "punycode", "undefined"})


class UnsupportedCharset(ValueError):
    """A body whose declared charset names a codec that is no text encoding."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f'Unsupported charset "{name}": it is no text encoding; send UTF-8 (or declare '
            "the charset the body is in)"
        )


def _codec(*names: str | None) -> str:
    """The first name that is a known codec; UTF-8 if none is (an unknown name may be a real
    charset Python lacks, and UTF-8 is the best guess). UnsupportedCharset if that codec is
    no text encoding (base64, idna, ...)."""
    for name in names:
        if not name:
            continue
        try:
            info = codecs.lookup(name)
        except LookupError:
            continue
        if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_TEXT:
            raise UnsupportedCharset(name)
        return info.name
    return "utf-8"


def _decode(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(charset, "replace").replace("\x00", "")
    except UnicodeError as exc:  # a codec that cannot replace what it cannot decode
        raise UnsupportedCharset(charset) from exc


def _pairs(raw: bytes) -> Iterable[tuple[bytes, bytes]]:
    for part in raw.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        yield (
            unquote_to_bytes(name.replace(b"+", b" ")),
            unquote_to_bytes(value.replace(b"+", b" ")),
        )


def parse_request(
    body: bytes, content_type: str | None, query: bytes = b"", host: str = ""
) -> AkismetRequest:
    """Decode a form-urlencoded body (and, for the 1.2 calls, the query string).

    The charset is the Content-Type's, else the `blog_charset` field's, else UTF-8; bytes
    that are not valid in it become U+FFFD rather than an error. NULs are dropped, since
    PostgreSQL cannot store them. UnsupportedCharset when the charset is no text encoding.
    """
    pairs = [*_pairs(query), *_pairs(body)]
    declared = next((v for n, v in pairs if n == b"blog_charset"), b"").decode("ascii", "replace")
    charset = _codec(_charset(content_type), declared)
    fields: dict[str, list[str]] = {}
    for raw_name, raw_value in pairs:
        fields.setdefault(_decode(raw_name, charset), []).append(_decode(raw_value, charset))
    return AkismetRequest(fields, host)


def missing_field(request: AkismetRequest, *names: str) -> str | None:
    """The first of `names` the request lacks (or sends empty)."""
    return next((name for name in names if not request.value(name).strip()), None)


def authenticate(session: Session, keys: security.KeyCache, secret: str, key: str) -> int | None:
    """The account of an API key, `cg` or Akismet-shaped (cached like the bearer keys of /v1,
    which refuse Akismet-shaped keys before their cache), or None."""
    if not key:
        return None
    if security.is_akismet_key(key.lower()):
        key = key.lower()
    account_id = keys.get(key, secret)
    if account_id is None:
        account_id = security.authenticate_akismet(session, key, secret)
        if account_id is not None:
            keys.put(key, secret, account_id)
    return account_id


def public_name(key: str, secret: str) -> str:
    """A key as reports show it: never the key itself."""
    return f"{security.key_label(key, secret)}…"


def actor(key: str, secret: str) -> str:
    """How labels name the key that sent them."""
    return f"akismet:{security.key_label(key, secret)}"


# --- privacy: addresses and cookies among the other fields ---------------------------------

# Fields whose value carries the commenter's address (REMOTE_ADDR, comment_author_IP,
# HTTP_X_FORWARDED_FOR, HTTP_X_REAL_IP, HTTP_CLIENT_IP, HTTP_CF_CONNECTING_IP, HTTP_FORWARDED…):
# every address in them is hashed, wherever it stands in the value.
_ADDRESS_FIELD = re.compile(r"(^|_)(IP|ADDR|ADDRESS|FORWARDED|CLIENT)(_|$)", re.IGNORECASE)
# Fields never stored: the commenter's cookies and credentials (a logged-in WordPress user's
# cookies are a session).
_SECRET_FIELD = re.compile(r"COOKIE|AUTHORIZATION|^PHP_AUTH_", re.IGNORECASE)
# An address as it appears in those headers: bare, with a port, or in brackets (IPv6).
_ADDRESS_TOKEN = re.compile(r"[0-9A-Za-z:.%]+")


def _address(token: str) -> str | None:
    """The IP address a token spells (`1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`), else None."""
    for candidate in (token, token.rsplit(":", 1)[0] if token.count(":") == 1 else ""):
        try:
            ipaddress.ip_address(candidate.split("%")[0])
        except ValueError:
            continue
        return candidate
    return None


def _hash_addresses(value: str, secret: str, whole_only: bool) -> str:
    if whole_only:
        address = _address(value.strip())
        return value.replace(address, hash_ip(address, secret), 1) if address else value

    def replace(match: re.Match[str]) -> str:
        address = _address(match[0])
        if address is None:
            return match[0]
        return match[0].replace(address, hash_ip(address, secret), 1)  # a port stays

    return _ADDRESS_TOKEN.sub(replace, value)


def private_extra(extra: dict[str, Any], secret: str, keep_addresses: bool) -> dict[str, Any]:
    """The fields an Akismet call adds to `extra` as they may be stored: no cookie or
    credential header; the commenter's addresses hashed like `user_ip` (unless
    `keep_addresses`, COMMENTGUARD_STORE_RAW_IP): every address in an address-bearing field,
    and any other field whose whole value is an address."""
    kept: dict[str, Any] = {}
    for name, value in extra.items():
        if _SECRET_FIELD.search(name):
            continue
        if not keep_addresses:
            whole_only = _ADDRESS_FIELD.search(name) is None
            if isinstance(value, list):
                value = [_hash_addresses(v, secret, whole_only) for v in value]
            else:
                value = _hash_addresses(value, secret, whole_only)
        kept[name] = value
    return kept
