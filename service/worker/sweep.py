"""The pending sweep: find work whose queue message may have been lost, so it can be re-queued."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from service import tables
from service.db import SessionFactory
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class Stale:
    """Comments pending, and deliveries due, for longer than the sweep age."""

    comment_ids: list[uuid.UUID]
    delivery_ids: list[uuid.UUID]


def find_stale(sessions: SessionFactory, settings: Settings) -> Stale:
    """What to re-queue: anything overdue by more than the sweep age.

    Re-queuing work that is merely slow is harmless, since every task is idempotent.
    """
    now = tables.utcnow()
    cutoff = now - timedelta(seconds=settings.pending_sweep_age_seconds)
    with sessions() as session:
        comments = session.execute(
            select(tables.Comment.id)
            .where(
                tables.Comment.status == tables.CommentStatus.PENDING,
                tables.Comment.received_at < cutoff,
            )
            .order_by(tables.Comment.received_at)
            .limit(settings.sweep_batch_size)
        ).scalars()
        deliveries = session.execute(
            select(tables.CallbackDelivery.id)
            .where(
                tables.CallbackDelivery.status == tables.DeliveryStatus.PENDING,
                tables.CallbackDelivery.next_attempt_at < cutoff,
            )
            .order_by(tables.CallbackDelivery.next_attempt_at)
            .limit(settings.sweep_batch_size)
        ).scalars()
        return Stale(list(comments), list(deliveries))
