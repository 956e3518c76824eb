"""Signed callbacks: check a callback URL is safe to call, sign a body, deliver and record it.

A callback URL is checked twice: at intake (so the platform hears about a bad URL at once)
and at every delivery, because DNS can change in between. At delivery the request goes to the
very address that was checked (the host name is kept for the Host header, SNI and the
certificate), so a name cannot resolve to a public address for the check and to an internal
one for the connection.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import certifi
import urllib3
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, joinedload

from service import logs, tables
from service.db import SessionFactory
from service.settings import Settings
from service.writes import insert_all, table_of

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Commentguard-Signature"
DELIVERY_HEADER = "X-Commentguard-Delivery"
USER_AGENT = "commentguard-callbacks/1"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
# A delivery's body, rendered when an attempt is made: (session, event, comment, site).
Render = Callable[[Session, str, tables.Comment, tables.Site], dict[str, Any]]


class UnsafeCallbackURL(ValueError):
    """A callback URL commentguard refuses to call."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect for a checked URL: `address` is None for an allowlisted host."""

    url: str
    host: str
    port: int
    address: str | None


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# IPv6 prefixes whose addresses carry an IPv4 address in their last 32 bits: NAT64's
# well-known and local-use prefixes (RFC 6052, RFC 8215). A NAT64 gateway connects to the
# IPv4 address, so the address is as private as that one.
NAT64_PREFIXES = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for, if any: IPv4-mapped (::ffff:a.b.c.d),
    IPv4-compatible (::a.b.c.d), 6to4 (2002:aabb:ccdd::), NAT64 (64:ff9b::a.b.c.d) or a
    Teredo client's (2001:0::)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in prefix for prefix in NAT64_PREFIXES):
        return low
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d, not :: or ::1
        return low
    return None


def is_public(address: IPAddress) -> bool:
    """Whether a callback may go to `address`: a global unicast address, and, for an IPv6
    address that carries an IPv4 one, that IPv4 address is too."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


def check_callback_url(
    url: str, allowed_hosts: Sequence[str], resolver: Resolver = resolve
) -> Target:
    """Where `url` may be called, or UnsafeCallbackURL saying why it may not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeCallbackURL(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeCallbackURL("only http and https callback URLs are allowed")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise UnsafeCallbackURL("the callback URL has no host")
    port = port or (443 if parts.scheme == "https" else 80)
    if _allowlisted(host, port, allowed_hosts):
        return Target(url, host, port, None)
    try:
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(host, port)]
    except (OSError, UnicodeError, ValueError) as exc:
        raise UnsafeCallbackURL(f"the callback host {host!r} does not resolve") from exc
    if not addresses:
        raise UnsafeCallbackURL(f"the callback host {host!r} does not resolve")
    for address in addresses:
        if not is_public(address):
            raise UnsafeCallbackURL(
                f"the callback host {host!r} resolves to {address}, a loopback, private, "
                "link-local or reserved address; allow it with COMMENTGUARD_CALLBACK_ALLOWED_HOSTS"
            )
    return Target(url, host, port, str(addresses[0]))


def needs_lookup(url: str, allowed_hosts: Sequence[str]) -> bool:
    """Whether checking `url` may ask DNS (slow: not on an event loop): False for an
    allowlisted host or an IP address literal, or a URL refused before any lookup."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    host = (parts.hostname or "").lower().rstrip(".")
    if not host or _allowlisted(host, port, allowed_hosts):
        return False
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return True
    return False


def _allowlisted(host: str, port: int, allowed_hosts: Sequence[str]) -> bool:
    bare = host.strip("[]")
    shown = f"[{bare}]" if ":" in bare else bare
    names = {bare, shown, f"{shown}:{port}"}
    return any(entry.lower() in names for entry in allowed_hosts)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Commentguard-Signature` value: HMAC-SHA256 of "<t>.<body>" with the site's secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(secret: str, header: str, body: bytes, tolerance: float = 300.0) -> bool:
    """Check a signature header as a receiving platform would (also used by the tests)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)


class CallbackClient:
    """Keep-alive connections for callbacks, one pool per checked target.

    A pinned target's pool connects to the checked address and sends the host name as the Host
    header, in SNI and for the certificate; an allowlisted one's connects to its host. Nothing
    is retried here (the delivery's schedule does that) and redirects are not followed: a
    redirect could lead to an address that was never checked. urllib3 rather than httpx: the
    worker sends a callback for every comment, and httpx's layers per request cost several
    times urllib3's (docs/benchmarks.md).
    """

    def __init__(self, timeout: float, connections: int = 16) -> None:
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self.connections = connections
        self._pools: dict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def post(self, target: Target, body: bytes, headers: dict[str, str]) -> int:
        """POST `body` to a checked target; its status code (urllib3's errors raised)."""
        parts = urlsplit(target.url)
        default_port = 443 if parts.scheme == "https" else 80
        host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        response = self._pool(parts.scheme, target).urlopen(
            "POST",
            path,
            body=body,
            headers={**headers, "Host": host_header, "User-Agent": USER_AGENT},
            redirect=False,
            retries=False,
            assert_same_host=False,
            timeout=self.timeout,
        )
        return int(response.status)

    def _pool(self, scheme: str, target: Target) -> urllib3.HTTPConnectionPool:
        connect_to = target.address or target.host
        key = (scheme, connect_to, target.port, target.host)
        pool = self._pools.get(key)
        if pool is not None:
            return pool
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                if scheme == "https":
                    pool = urllib3.HTTPSConnectionPool(
                        connect_to,
                        target.port,
                        maxsize=self.connections,
                        cert_reqs="CERT_REQUIRED",
                        ca_certs=certifi.where(),  # the bundle httpx verified against
                        assert_hostname=target.host,
                        server_hostname=target.host,
                    )
                else:
                    pool = urllib3.HTTPConnectionPool(
                        connect_to, target.port, maxsize=self.connections
                    )
                self._pools[key] = pool
            return pool

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


def send(client: CallbackClient, target: Target, body: bytes, headers: dict[str, str]) -> int:
    """POST `body` to a checked target, connecting to the checked address: its status code."""
    return client.post(target, body, headers)


def make_client(settings: Settings) -> CallbackClient:
    return CallbackClient(settings.callback_timeout_seconds, settings.callback_worker_threads)


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one delivery run did; `retry_in` seconds when another attempt is scheduled."""

    attempted: bool
    delivered: bool = False
    retry_in: float | None = None


def backoff_seconds(settings: Settings, attempt: int) -> float:
    """Delay before the attempt after `attempt` (1-based): base × 2^(attempt−1), capped."""
    delay = settings.callback_backoff_seconds * (2 ** (attempt - 1))
    return float(min(delay, settings.callback_backoff_max_seconds))


def deliver(
    sessions: SessionFactory,
    delivery_id: uuid.UUID,
    settings: Settings,
    client: CallbackClient,
    render: Render,
) -> DeliveryOutcome:
    """Make one attempt at a due delivery and record it; safe to call twice for the same id.

    An attempt is claimed by bumping `attempts` with a conditional UPDATE, so two runs cannot
    make the same attempt; the claim pushes `next_attempt_at` past the request's timeout so that
    the sweep leaves an attempt in flight alone, and re-queues it if the worker died.
    """
    claimed = _claim(sessions, delivery_id, settings, render)
    if claimed is None:
        return DeliveryOutcome(attempted=False)
    return attempt(sessions, delivery_id, settings, client, claimed)


@dataclass(frozen=True, slots=True)
class Claim:
    """A claimed attempt: its number, where it goes, the signing secret and the body."""

    number: int
    url: str
    secret: str
    body: bytes


def lease(settings: Settings) -> timedelta:
    """How long a claimed attempt is left alone by the sweep (past the request's timeout)."""
    return timedelta(seconds=settings.callback_timeout_seconds * 2 + 30)


def claim_new(
    delivery: tables.CallbackDelivery, settings: Settings, secret: str, body: dict[str, Any]
) -> Claim:
    """Claim the first attempt of a delivery not yet stored (its creator commits the claim)."""
    delivery.attempts = 1
    delivery.next_attempt_at = tables.utcnow() + lease(settings)
    rendered = json.dumps(body, separators=(",", ":")).encode()
    return Claim(1, delivery.url, secret, rendered)


def attempt(
    sessions: SessionFactory,
    delivery_id: uuid.UUID,
    settings: Settings,
    client: CallbackClient,
    claimed: Claim,
) -> DeliveryOutcome:
    """Make a claimed attempt and record it."""
    return record(sessions, settings, [post(delivery_id, settings, client, claimed)])[0]


@dataclass(frozen=True, slots=True)
class Attempted:
    """What one HTTP attempt at a delivery gave (`error` None when it was delivered)."""

    delivery_id: uuid.UUID
    number: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    request_id: str | None = None  # of the request that led to it, for the log


def post(
    delivery_id: uuid.UUID, settings: Settings, client: CallbackClient, claimed: Claim
) -> Attempted:
    """POST a claimed attempt, signed, carrying the bound request id; nothing recorded yet."""
    number, url, secret, body = claimed.number, claimed.url, claimed.secret, claimed.body
    started_at = tables.utcnow()
    started = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        DELIVERY_HEADER: str(delivery_id),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
    rid = logs.request_id.get()
    if rid is not None:
        headers[logs.REQUEST_ID_HEADER] = rid
    try:
        target = check_callback_url(url, settings.callback_allowed_hosts)
        status_code = send(client, target, body, headers)
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except UnsafeCallbackURL as exc:
        error = f"refused: {exc}"
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    return Attempted(delivery_id, number, started_at, duration_ms, status_code, error, rid)


def _claim(
    sessions: SessionFactory,
    delivery_id: uuid.UUID,
    settings: Settings,
    render: Render,
) -> Claim | None:
    now = tables.utcnow()
    delivery = tables.CallbackDelivery
    with sessions() as session:
        # One statement claims the attempt: a second run (or a second process) finds the row
        # no longer due, and a delivery that is not due yet is left to its scheduled retry.
        claimed = session.execute(
            update(delivery)
            .where(
                delivery.id == delivery_id,
                delivery.status == tables.DeliveryStatus.PENDING,
                delivery.next_attempt_at <= now,
            )
            .values(attempts=delivery.attempts + 1, next_attempt_at=now + lease(settings))
            .returning(delivery.attempts, delivery.url, delivery.comment_id, delivery.event)
            .execution_options(synchronize_session=False)
        ).one_or_none()
        if claimed is None:
            session.rollback()
            return None
        number, url, comment_id, event = claimed
        row = session.execute(
            select(tables.Comment, tables.Site)
            .join(tables.Site, tables.Site.id == tables.Comment.site_id)
            .options(joinedload(tables.Comment.verdict))
            .where(tables.Comment.id == comment_id)
        ).one_or_none()
        if row is None:
            session.rollback()
            return None
        comment, site = row
        body = json.dumps(render(session, event, comment, site), separators=(",", ":")).encode()
        session.commit()
    return Claim(number, url, site.callback_secret, body)


def record(
    sessions: SessionFactory, settings: Settings, attempts: Sequence[Attempted]
) -> list[DeliveryOutcome]:
    """Record attempts (one transaction for all): each attempt's row, and its delivery as
    delivered, failed for good, or due again after its backoff."""
    now = tables.utcnow()
    outcomes = []
    updates = []
    for attempted in attempts:
        with logs.bound(attempted.request_id):
            outcome = _outcome(settings, attempted)
        outcomes.append(outcome)
        if outcome.delivered:
            status, due = tables.DeliveryStatus.DELIVERED, now
        elif outcome.retry_in is None:
            status, due = tables.DeliveryStatus.FAILED, now
        else:
            status, due = tables.DeliveryStatus.PENDING, now + timedelta(seconds=outcome.retry_in)
        updates.append(
            {
                "b_id": attempted.delivery_id,
                "b_status": status,
                "b_delivered_at": now if outcome.delivered else None,
                "b_next_attempt_at": due,
                "b_last_status_code": attempted.status_code,
                "b_last_error": attempted.error,
            }
        )
    deliveries = table_of(tables.CallbackDelivery)
    with sessions() as session:
        insert_all(
            session,
            [
                tables.CallbackAttempt(
                    delivery_id=a.delivery_id,
                    number=a.number,
                    started_at=a.started_at,
                    duration_ms=a.duration_ms,
                    status_code=a.status_code,
                    error=a.error,
                )
                for a in attempts
            ],
        )
        session.execute(
            update(deliveries)
            .where(deliveries.c.id == bindparam("b_id"))
            .values(
                status=bindparam("b_status"),
                delivered_at=bindparam("b_delivered_at"),
                next_attempt_at=bindparam("b_next_attempt_at"),
                last_status_code=bindparam("b_last_status_code"),
                last_error=bindparam("b_last_error"),
            ),
            updates,
        )
        session.commit()
    return outcomes


def _outcome(settings: Settings, attempted: Attempted) -> DeliveryOutcome:
    delivery_id, number, error = attempted.delivery_id, attempted.number, attempted.error
    if error is None:
        log.info(
            "callback %s delivered (attempt %d, HTTP %s)",
            delivery_id,
            number,
            attempted.status_code,
            extra={"delivery_id": str(delivery_id), "attempt": number},
        )
        return DeliveryOutcome(attempted=True, delivered=True)
    if number >= settings.callback_max_attempts:
        log.warning("callback %s failed for good after %d attempts: %s", delivery_id, number, error)
        return DeliveryOutcome(attempted=True)
    retry_in = backoff_seconds(settings, number)
    log.info(
        "callback %s attempt %d failed (%s); retry in %.0fs", delivery_id, number, error, retry_in
    )
    return DeliveryOutcome(attempted=True, retry_in=retry_in)
