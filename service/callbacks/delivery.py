"""Delivering a callback: claim an attempt, post it signed to the checked address, record the
outcome and schedule the next attempt (the delivery's state lives in `callback_deliveries`)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import urllib3
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, joinedload

from service import logs, tables
from service.callbacks.client import CallbackClient, send
from service.callbacks.signing import SIGNATURE_HEADER, signature
from service.callbacks.urls import UnsafeCallbackURL, check_callback_url
from service.db import SessionFactory
from service.intake.writes import insert_all, table_of
from service.settings import Settings

log = logging.getLogger("service.callbacks")  # the name log readers know

DELIVERY_HEADER = "X-Commentguard-Delivery"

# A delivery's body, rendered when an attempt is made: (session, event, comment, site).
Render = Callable[[Session, str, tables.Comment, tables.Site], dict[str, Any]]


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
