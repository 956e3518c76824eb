"""Privacy: keyed hashes of IP addresses, the retention purge, and forgetting a person.

What is stored, why and for how long is written up in docs/privacy.md.

A purge empties a comment's content and personal fields and stamps `purged_at`. What stays:
the comment row itself (its site, external id, times, status), its verdict (score, decision,
model version, the metadata signals among its reasons) and its labels, so that counts, the
Akismet reports and the metrics do not change. Word and character reasons quote the content,
so they go with it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import CursorResult, func, select, update

from service import tables
from service.db import SessionFactory
from service.intake.writes import table_of
from service.schemas import CommentIn
from service.settings import Settings

log = logging.getLogger(__name__)

IP_HASH_PREFIX = "hmac:"
# Reasons kept after a purge: metadata signals say nothing of what the comment said.
KEPT_REASON_PREFIX = "signal:"
PURGED_FIELDS: dict[str, Any] = {
    "content": "",
    "author": "",
    "author_email": "",
    "author_url": "",
    "user_ip": "",
    "user_agent": "",
    "referrer": "",
    "honeypot": "",
}

C = TypeVar("C", bound=CommentIn)


def hash_ip(address: str, secret: str) -> str:
    """A keyed hash of an IP address: equal addresses match, the address cannot be read back.

    The address is normalised first (`::ffff:1.2.3.4` and `1.2.3.4` are one address); a value
    that is no address is hashed as sent. An already hashed value is returned unchanged.
    """
    address = address.strip()
    if not address or address.startswith(IP_HASH_PREFIX):
        return address
    try:
        parsed = ipaddress.ip_address(address.split("%")[0])
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
            parsed = parsed.ipv4_mapped
        address = parsed.compressed
    except ValueError:
        pass
    digest = hmac.new(secret.encode(), b"user_ip:" + address.encode(), hashlib.sha256)
    return IP_HASH_PREFIX + digest.hexdigest()[:40]


def protect(comment: C, settings: Settings) -> C:
    """The comment as it may be stored: its IP hashed unless `store_raw_ip` is set.

    The classifier reads no IP address, so scoring the stored comment (as the worker does)
    gives the same verdict as scoring the submission.
    """
    if settings.store_raw_ip or not comment.user_ip:
        return comment
    return comment.model_copy(update={"user_ip": hash_ip(comment.user_ip, settings.secret_key)})


@dataclass(frozen=True, slots=True)
class PurgeResult:
    comments: int
    verdicts: int


def purge_comments(
    sessions: SessionFactory, comment_ids: Sequence[uuid.UUID], now: datetime | None = None
) -> PurgeResult:
    """Erase the content and personal fields of these comments (and the reasons quoting them)."""
    if not comment_ids:
        return PurgeResult(0, 0)
    now = now or tables.utcnow()
    comments = table_of(tables.Comment)
    verdicts = table_of(tables.Verdict)
    with sessions() as session:
        result = session.execute(
            update(comments)
            .where(comments.c.id.in_(comment_ids))
            .values(**PURGED_FIELDS, extra={}, purged_at=now)
        )
        purged = result.rowcount if isinstance(result, CursorResult) else len(comment_ids)
        trimmed = 0
        rows = session.execute(
            select(verdicts.c.id, verdicts.c.reasons).where(verdicts.c.comment_id.in_(comment_ids))
        ).all()
        for verdict_id, reasons in rows:
            kept = [
                r for r in reasons or [] if str(r.get("feature", "")).startswith(KEPT_REASON_PREFIX)
            ]
            if kept != reasons:
                session.execute(
                    update(verdicts).where(verdicts.c.id == verdict_id).values(reasons=kept)
                )
                trimmed += 1
        session.commit()
    return PurgeResult(int(purged or 0), trimmed)


def purge_expired(
    sessions: SessionFactory, settings: Settings, now: datetime | None = None
) -> PurgeResult:
    """Purge scored comments received more than `retention_days` ago, in batches.

    Pending comments are left alone (they still have to be scored, and the sweep retries them).
    Returns the totals; nothing is done when retention_days is 0.
    """
    if settings.retention_days <= 0:
        return PurgeResult(0, 0)
    now = now or tables.utcnow()
    cutoff = now - timedelta(days=settings.retention_days)
    comment = tables.Comment
    total = PurgeResult(0, 0)
    while True:
        with sessions() as session:
            ids = list(
                session.execute(
                    select(comment.id)
                    .where(
                        comment.status == tables.CommentStatus.SCORED,
                        comment.received_at < cutoff,
                        comment.purged_at.is_(None),
                    )
                    .limit(settings.sweep_batch_size)
                ).scalars()
            )
        if not ids:
            break
        done = purge_comments(sessions, ids, now)
        total = PurgeResult(total.comments + done.comments, total.verdicts + done.verdicts)
    if total.comments:
        log.info(
            "retention: purged %d comments received before %s",
            total.comments,
            cutoff.isoformat(),
            extra={"purged_comments": total.comments, "trimmed_verdicts": total.verdicts},
        )
    return total


def forget_email(sessions: SessionFactory, address: str) -> PurgeResult:
    """Erase the content and personal data of every comment sent with this e-mail address.

    The address is matched without regard to case or surrounding spaces.
    """
    wanted = address.strip().lower()
    if not wanted:
        raise ValueError("an e-mail address is required")
    comment = tables.Comment
    with sessions() as session:
        ids = list(
            session.execute(
                select(comment.id).where(func.lower(func.trim(comment.author_email)) == wanted)
            ).scalars()
        )
    result = purge_comments(sessions, ids)
    log.info(
        "privacy: forgot an e-mail address: %d comments purged",
        result.comments,
        extra={"purged_comments": result.comments},
    )
    return result
