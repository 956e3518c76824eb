"""Storing verdicts: a scored comment's verdict row and, when it names a callback URL, the
delivery of its verdict callback; a stored comment scored (the worker's path), safe to run twice."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from classifier import LoadedModel, Thresholds
from service import tables
from service.callbacks import Claim
from service.db import SessionFactory
from service.intake.writes import insert_all, insert_row, table_of
from service.neardup.store import NearDuplicateMemory
from service.scoring.thresholds import SiteThresholds
from service.scoring.verdicts import compute_verdict, compute_verdicts

if TYPE_CHECKING:
    from classifier.adapter import SiteAdapter
    from service.learning.adapters import AdapterCache

log = logging.getLogger(__name__)


def attach(session: Session, comment: tables.Comment, verdict: tables.Verdict) -> None:
    """Add a verdict to the session and mark its comment scored (the caller commits)."""
    session.add(verdict)
    comment.status = tables.CommentStatus.SCORED
    comment.verdict = verdict


def score_into(
    session: Session,
    comment: tables.Comment,
    model: LoadedModel,
    memory: NearDuplicateMemory | None = None,
    account_id: int | None = None,
    thresholds: Thresholds | None = None,
    adapter: SiteAdapter | None = None,
) -> tables.Verdict:
    """Score a comment and add its verdict to the session (the caller commits)."""
    verdict = compute_verdict(comment, model, memory, account_id, thresholds, adapter)
    attach(session, comment, verdict)
    return verdict


@dataclass(frozen=True, slots=True)
class ScoreOutcome:
    """What scoring a stored comment did, and which callback delivery (if any) is due.

    `claim` is the delivery's first attempt when it was claimed in the scoring transaction.
    """

    found: bool
    scored_now: bool
    delivery_id: uuid.UUID | None
    claim: Claim | None = None


ClaimFirst = Callable[[tables.Comment, tables.Site, tables.CallbackDelivery], Claim]


def score_stored_comment(
    sessions: SessionFactory,
    comment_id: uuid.UUID,
    model: LoadedModel,
    claim_first: ClaimFirst | None = None,
    memory: NearDuplicateMemory | None = None,
    adapters: AdapterCache | None = None,
) -> ScoreOutcome:
    """Score a stored comment once, and make sure its callback delivery exists.

    Safe to run any number of times, concurrently too: the verdict is unique per comment, so a
    second run finds it (or loses the insert race) and only ensures the delivery is scheduled.
    The verdict and the delivery are committed together, so neither exists without the other.
    With `claim_first`, a new delivery is stored with its first attempt already claimed, which
    spares the attempt a transaction of its own. With `memory`, near-duplicates of labelled
    comments take their label (see `compute_verdict`).
    """
    with sessions() as session:
        comment = session.execute(
            select(tables.Comment)
            .options(joinedload(tables.Comment.verdict), joinedload(tables.Comment.site))
            .where(tables.Comment.id == comment_id)
        ).scalar_one_or_none()
        if comment is None:
            log.warning("comment %s not found; nothing to score", comment_id)
            return ScoreOutcome(found=False, scored_now=False, delivery_id=None)
        if comment.verdict is None:
            site = comment.site
            learned = adapters.get(session, site.id) if adapters is not None else None
            thresholds = SiteThresholds.of(site, learned.thresholds if learned else None).effective(
                model.thresholds
            )
            verdict = compute_verdict(
                comment,
                model,
                memory,
                site.account_id,
                thresholds,
                learned.adapter if learned else None,
            )
            delivery = _new_delivery(comment)
            claim = None
            if delivery is not None and claim_first is not None:
                # The callback shows the comment as it is once this transaction commits.
                set_committed_value(comment, "status", tables.CommentStatus.SCORED)
                set_committed_value(comment, "verdict", verdict)
                claim = claim_first(comment, comment.site, delivery)
            try:
                _store_verdict(session, verdict, delivery)
            except IntegrityError:
                session.rollback()  # another run scored it first: fall through to the delivery
            else:
                delivery_id = delivery.id if delivery is not None else None
                return ScoreOutcome(True, True, delivery_id, claim)
        return ScoreOutcome(True, False, _ensure_delivery(session, comment_id))


def score_stored_comments(
    sessions: SessionFactory,
    comment_ids: Sequence[uuid.UUID],
    model: LoadedModel,
    claim_first: ClaimFirst | None = None,
    memory: NearDuplicateMemory | None = None,
    adapters: AdapterCache | None = None,
) -> list[ScoreOutcome]:
    """`score_stored_comment` for comments queued together: one read, one call into the
    model and the memory, one transaction for all the verdicts and deliveries.

    If any of them was scored meanwhile (a second run of the same message, or the sweep), the
    batch's transaction fails on the unique verdict and each comment is scored on its own.
    """

    def one_by_one() -> list[ScoreOutcome]:
        return [
            score_stored_comment(sessions, i, model, claim_first, memory, adapters)
            for i in comment_ids
        ]

    if len(comment_ids) == 1:
        return one_by_one()
    with sessions() as session:
        rows = (
            session.execute(
                select(tables.Comment)
                .options(joinedload(tables.Comment.verdict), joinedload(tables.Comment.site))
                .where(tables.Comment.id.in_(comment_ids))
            )
            .scalars()
            .all()
        )
        found = {row.id: row for row in rows}
        todo = [
            found[i] for i in dict.fromkeys(comment_ids) if i in found and found[i].verdict is None
        ]
        if len(todo) < len(comment_ids):  # missing, repeated or scored already: one by one
            session.rollback()
            return one_by_one()
        learned = [
            adapters.get(session, row.site_id) if adapters is not None else None for row in todo
        ]
        limits = [
            SiteThresholds.of(row.site, own.thresholds if own else None).effective(model.thresholds)
            for row, own in zip(todo, learned, strict=True)
        ]
        verdicts = compute_verdicts(
            todo,
            model,
            memory,
            [row.site.account_id for row in todo],
            limits,
            adapters=[own.adapter if own else None for own in learned],
        )
        deliveries = [_new_delivery(row) for row in todo]
        claims: list[Claim | None] = []
        for row, verdict, delivery in zip(todo, verdicts, deliveries, strict=True):
            claim = None
            if delivery is not None and claim_first is not None:
                set_committed_value(row, "status", tables.CommentStatus.SCORED)
                set_committed_value(row, "verdict", verdict)
                claim = claim_first(row, row.site, delivery)
            claims.append(claim)
        comments = table_of(tables.Comment)
        try:
            insert_all(session, verdicts)
            session.execute(
                update(comments)
                .where(comments.c.id.in_([row.id for row in todo]))
                .values(status=tables.CommentStatus.SCORED)
            )
            insert_all(session, [delivery for delivery in deliveries if delivery is not None])
            session.commit()
        except IntegrityError:
            session.rollback()
            return one_by_one()
    return [
        ScoreOutcome(True, True, delivery.id if delivery is not None else None, claim)
        for delivery, claim in zip(deliveries, claims, strict=True)
    ]


def _store_verdict(
    session: Session, verdict: tables.Verdict, delivery: tables.CallbackDelivery | None
) -> None:
    # Core statements, not the unit of work: this runs once per webhook comment.
    insert_row(session, verdict)
    comments = table_of(tables.Comment)
    session.execute(
        update(comments)
        .where(comments.c.id == verdict.comment_id)
        .values(status=tables.CommentStatus.SCORED)
    )
    if delivery is not None:
        insert_row(session, delivery)
    session.commit()


def _new_delivery(comment: tables.Comment) -> tables.CallbackDelivery | None:
    if not comment.callback_url:
        return None
    return tables.CallbackDelivery(
        id=uuid.uuid4(), comment_id=comment.id, event="verdict", url=comment.callback_url
    )


def _ensure_delivery(session: Session, comment_id: uuid.UUID) -> uuid.UUID | None:
    """The pending delivery of a scored comment, created if it is missing."""
    delivery = session.execute(
        select(tables.CallbackDelivery).where(
            tables.CallbackDelivery.comment_id == comment_id,
            tables.CallbackDelivery.event == "verdict",
        )
    ).scalar_one_or_none()
    if delivery is None:
        comment = session.get(tables.Comment, comment_id)
        new = _new_delivery(comment) if comment is not None else None
        if new is None:
            session.commit()
            return None
        session.add(new)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return _ensure_delivery(session, comment_id)
        return new.id
    session.commit()
    return delivery.id if delivery.status == tables.DeliveryStatus.PENDING else None
