"""Committed labels into the near-duplicate index: the label hook, and a rebuild from the
database."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import redis
from sqlalchemy import select

from service import tables
from service.db import SessionFactory
from service.moderation.labels import newest_label_ids
from service.neardup.store import NearDuplicateMemory

if TYPE_CHECKING:
    from service.moderation.labels import AppliedLabel

log = logging.getLogger(__name__)


def remember_label(
    memory: NearDuplicateMemory | None,
    comment_id: uuid.UUID,
    account_id: int,
    text: str,
    label: str,
    label_id: int | None = None,
) -> None:
    """Put a committed label into the memory; an error is logged, never raised.

    Call it after the label's transaction commits: the label stands whatever Redis does, and
    a label the memory missed only waits for the retrained model (or the next label).
    """
    if memory is None:
        return
    try:
        memory.remember(comment_id, account_id, text, label, label_id)
    except redis.RedisError as exc:
        log.warning("label of comment %s not put in the near-duplicate memory: %s", comment_id, exc)


def remember_applied(memory: NearDuplicateMemory | None, applied: Sequence[AppliedLabel]) -> None:
    """The label hook (see `service.moderation.labels.after_commit`): committed labels into the
    memory."""
    for label in applied:
        remember_label(
            memory, label.comment_id, label.account_id, label.content, label.label, label.label_id
        )


def rebuild(sessions: SessionFactory, memory: NearDuplicateMemory, batch: int = 500) -> int:
    """Put every labelled comment's current label (its newest) into the memory again.

    For a Redis that lost its data, or after a change of `near_duplicate_num_perm`. Safe to run
    while serving: each entry is ordered by its label's id, so a label applied meanwhile wins.
    Returns how many labels were remembered (texts too short to compare are not counted).
    """
    newest = newest_label_ids()
    query = (
        select(
            tables.Label.id,
            tables.Label.label,
            tables.Comment.id,
            tables.Comment.content,
            tables.Site.account_id,
        )
        .join(newest, newest.c.id == tables.Label.id)
        .join(tables.Comment, tables.Comment.id == tables.Label.comment_id)
        .join(tables.Site, tables.Site.id == tables.Comment.site_id)
        .order_by(tables.Label.id)
        .execution_options(yield_per=batch)
    )
    remembered = 0
    with sessions() as session:
        for label_id, label, comment_id, content, account_id in session.execute(query):
            if memory.remember(comment_id, account_id, content, label, label_id):
                remembered += 1
    return remembered
