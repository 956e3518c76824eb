"""Applying a label: the one path every label takes (moderators, bulk, Akismet feedback), and
the one way one is taken back (`remove_label`, the console's undo).

`apply_label` writes the `labels` row (the source of truth: the newest row wins) and its
`label_audit` row (before, after, who, what it says about the verdict), and, for a moderator's
decision on a comment that has a callback URL, the signed callback that tells the platform.
The caller commits, then calls `after_commit`, which queues those callbacks and runs the label
hooks (`Services.label_hooks`) with the applied labels.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Select,
    SQLColumnExpression,
    Subquery,
    and_,
    case,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from classifier import Decision
from classifier.scoring import SPAM_DECISIONS
from service import tables
from service.schemas import CommentOut, LabelCallbackBody, LabelEventOut
from service.worker.queue import TaskQueue

log = logging.getLogger(__name__)

LABEL_EVENT_PREFIX = "label:"


@dataclass(frozen=True, slots=True)
class AppliedLabel:
    """A label just applied, as hooks and callers see it."""

    label_id: int
    comment_id: uuid.UUID
    site_id: int
    account_id: int
    label: tables.LabelValue
    previous: tables.LabelValue | None
    kind: tables.LabelKind
    source: tables.LabelSource
    actor: str | None
    content: str
    # Set when the label brought the comment in (Akismet feedback about an unchecked comment).
    created_comment: bool = False
    delivery_id: uuid.UUID | None = None


LabelHook = Callable[[Sequence[AppliedLabel]], None]


def classify(decision: str | None, label: tables.LabelValue) -> tables.LabelKind:
    """What a label says about a verdict: the one definition (audit rows, statistics, metrics).

    A spam label on an `unsure` verdict is no missed spam: unsure comments are held for a
    moderator, and deciding them is the moderator's job (a resolution).
    """
    if decision is None:
        return tables.LabelKind.UNSCORED
    if decision == Decision.UNSURE.value:
        return tables.LabelKind.RESOLUTION
    said_spam = decision in SPAM_DECISIONS
    if label == tables.LabelValue.HAM and said_spam:
        return tables.LabelKind.FALSE_POSITIVE
    if label == tables.LabelValue.SPAM and not said_spam:
        return tables.LabelKind.MISSED_SPAM
    return tables.LabelKind.CONFIRMATION


def kind_in_sql(decision: SQLColumnExpression[str], label: SQLColumnExpression[str]) -> Any:
    """`classify` as a SQL expression, to count kinds in the database (a test holds the two
    to the same answers)."""
    said_spam = decision.in_(sorted(SPAM_DECISIONS))
    kind = tables.LabelKind
    return case(
        (decision.is_(None), kind.UNSCORED.value),
        (decision == Decision.UNSURE.value, kind.RESOLUTION.value),
        (and_(label == tables.LabelValue.HAM.value, said_spam), kind.FALSE_POSITIVE.value),
        (and_(label == tables.LabelValue.SPAM.value, ~said_spam), kind.MISSED_SPAM.value),
        else_=kind.CONFIRMATION.value,
    )


# --- the newest label: a comment's label is its labels row with the highest id -----------------


def newest_label_id(comment_id: uuid.UUID | SQLColumnExpression[uuid.UUID]) -> Any:
    """The id of a comment's newest label, as a scalar subquery (`comment_id` a value, or a
    column to correlate with)."""
    return (
        select(tables.Label.id)
        .where(tables.Label.comment_id == comment_id)
        .order_by(tables.Label.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def newest_label_ids(site_id: int | None = None) -> Subquery:
    """Each labelled comment's newest label id (columns `comment_id`, `id`), of one site or all."""
    query = select(tables.Label.comment_id, func.max(tables.Label.id).label("id"))
    if site_id is not None:
        query = query.join(tables.Comment, tables.Comment.id == tables.Label.comment_id).where(
            tables.Comment.site_id == site_id
        )
    return query.group_by(tables.Label.comment_id).subquery()


def newest_labels(site_id: int | None = None) -> Select[tables.Label, tables.Comment]:
    """The newest label row of each comment (of one site, or all), with its comment, test
    traffic excluded, oldest label first: the labels that count, wherever labels are learned
    from."""
    newest = newest_label_ids(site_id)
    return (
        select(tables.Label, tables.Comment)
        .join(newest, newest.c.id == tables.Label.id)
        .join(tables.Comment, tables.Comment.id == tables.Label.comment_id)
        .where(tables.Comment.is_test.is_(False))
        .order_by(tables.Label.created_at, tables.Label.id)
    )


def current_label(session: Session, comment_id: uuid.UUID) -> tables.LabelValue | None:
    """A comment's label: its newest labels row, or None."""
    value = session.execute(
        select(tables.Label.label).where(tables.Label.id == newest_label_id(comment_id))
    ).scalar_one_or_none()
    return tables.LabelValue(value) if value is not None else None


def event_name(label_id: int) -> str:
    return f"{LABEL_EVENT_PREFIX}{label_id}"


def label_id_of(event: str) -> int | None:
    """The label id a delivery's event names, or None for another event."""
    if not event.startswith(LABEL_EVENT_PREFIX):
        return None
    try:
        return int(event[len(LABEL_EVENT_PREFIX) :])
    except ValueError:
        return None


def apply_label(
    session: Session,
    comment_id: uuid.UUID,
    label: tables.LabelValue,
    source: tables.LabelSource,
    actor: str | None,
    *,
    user_id: int | None = None,
    note: str | None = None,
    created_comment: bool = False,
) -> AppliedLabel:
    """Label a stored comment, in the session's transaction (the caller commits).

    Writes the label, its audit row, and (moderator labels only: feedback comes from the
    platform, which knows already) a callback delivery when the comment has a callback URL.
    LookupError if there is no such comment.
    """
    # Locks the comment's row on PostgreSQL (SQLite's BEGIN IMMEDIATE already serialises
    # writers), so that two labels at once each see the other's as "before".
    row = session.execute(
        select(
            tables.Comment.site_id,
            tables.Comment.content,
            tables.Comment.callback_url,
            tables.Site.account_id,
        )
        .join(tables.Site, tables.Site.id == tables.Comment.site_id)
        .where(tables.Comment.id == comment_id)
        .with_for_update(of=tables.Comment)
    ).one_or_none()
    if row is None:
        raise LookupError(f"no comment {comment_id}")
    site_id, content, callback_url, account_id = row
    decision = session.execute(
        select(tables.Verdict.decision).where(tables.Verdict.comment_id == comment_id)
    ).scalar_one_or_none()
    previous = current_label(session, comment_id)
    kind = classify(decision, label)
    now = tables.utcnow()
    stored = tables.Label(
        comment_id=comment_id,
        label=label.value,
        source=source.value,
        actor=actor,
        note=note,
        created_comment=created_comment,
        created_at=now,
    )
    session.add(stored)
    session.flush()
    session.add(
        tables.LabelAudit(
            label_id=stored.id,
            comment_id=comment_id,
            user_id=user_id,
            actor=actor,
            source=source.value,
            before=previous.value if previous is not None else None,
            after=label.value,
            kind=kind.value,
            decision=decision,
            note=note,
            created_at=now,
        )
    )
    delivery_id = None
    if callback_url and source == tables.LabelSource.MODERATOR:
        delivery_id = uuid.uuid4()
        session.add(
            tables.CallbackDelivery(
                id=delivery_id,
                comment_id=comment_id,
                event=event_name(stored.id),
                url=callback_url,
            )
        )
    session.flush()
    return AppliedLabel(
        label_id=stored.id,
        comment_id=comment_id,
        site_id=site_id,
        account_id=account_id,
        label=label,
        previous=previous,
        kind=kind,
        source=source,
        actor=actor,
        content=content,
        created_comment=created_comment,
        delivery_id=delivery_id,
    )


def after_commit(
    applied: Sequence[AppliedLabel], queue: TaskQueue | None, hooks: Sequence[LabelHook]
) -> None:
    """Queue the labels' callbacks and run the hooks; call it once the labels are committed.

    A callback that cannot be queued is picked up by the pending sweep. A failing hook is
    logged and does not undo the labels (they are committed) nor stop the other hooks.
    """
    if not applied:
        return
    if queue is not None:
        for item in applied:
            if item.delivery_id is not None:
                queue.deliver(item.delivery_id)
    for hook in hooks:
        try:
            hook(applied)
        except Exception:
            log.exception("label hook %r failed on %d labels", hook, len(applied))


class AlreadyCalledBack(Exception):
    """The label's callback has been attempted: the platform knows it, so it cannot be removed."""


def remove_label(
    session: Session, audit: tables.LabelAudit, user_id: int | None, actor: str | None, note: str
) -> int:
    """Take back a comment's first label, in the session's transaction (the caller commits): the
    comment is back in the queue. `audit` is the label's audit row; it stays (without its label)
    and a `removed` event is added, so the log keeps both. Its callback, if still pending and
    never attempted, goes with it; AlreadyCalledBack (rolled back) once it has been attempted.
    Returns the comment's account id (the caller takes it out of the near-duplicate memory).
    """
    assert audit.label_id is not None, "a removed label has no label to remove"
    removed = audit.label_id
    delivery = session.execute(
        select(tables.CallbackDelivery).where(
            tables.CallbackDelivery.comment_id == audit.comment_id,
            tables.CallbackDelivery.event == event_name(removed),
        )
    ).scalar_one_or_none()
    if delivery is not None:
        gone = session.execute(
            delete(tables.CallbackDelivery).where(
                tables.CallbackDelivery.id == delivery.id,
                tables.CallbackDelivery.attempts == 0,
                tables.CallbackDelivery.status == tables.DeliveryStatus.PENDING.value,
            )
        )
        if getattr(gone, "rowcount", 0) != 1:
            session.rollback()
            raise AlreadyCalledBack(f"label {removed} has been called back")
    account_id: int = session.execute(
        select(tables.Site.account_id)
        .join(tables.Comment, tables.Comment.site_id == tables.Site.id)
        .where(tables.Comment.id == audit.comment_id)
    ).scalar_one()
    session.execute(
        update(tables.LabelAudit).where(tables.LabelAudit.label_id == removed).values(label_id=None)
    )
    session.execute(delete(tables.Label).where(tables.Label.id == removed))
    session.add(
        tables.LabelAudit(
            comment_id=audit.comment_id,
            user_id=user_id,
            actor=actor,
            source=tables.LabelSource.MODERATOR.value,
            before=audit.after,
            after=None,
            kind=tables.LabelKind.REMOVED.value,
            decision=audit.decision,
            note=note,
        )
    )
    return account_id


def render_label_callback(
    session: Session, label_id: int, comment: tables.Comment, site: tables.Site
) -> dict[str, Any]:
    """The body of a label callback: the comment and its verdict, with the label event."""
    found = session.execute(
        select(tables.Label, tables.LabelAudit)
        .join(tables.LabelAudit, tables.LabelAudit.label_id == tables.Label.id)
        .where(tables.Label.id == label_id)
    ).one_or_none()
    if found is None:
        raise LookupError(f"no label {label_id}")
    label, audit = found
    event = LabelEventOut(
        id=label.id,
        label=tables.LabelValue(label.label),
        previous=tables.LabelValue(audit.before) if audit.before else None,
        kind=tables.LabelKind(audit.kind),
        source=tables.LabelSource(label.source),
        actor=label.actor,
        note=label.note,
        created_at=label.created_at,
    )
    comment_out = CommentOut.from_row(comment, site.url)
    body = LabelCallbackBody(**dict(comment_out), label=event)
    return body.model_dump(mode="json")
