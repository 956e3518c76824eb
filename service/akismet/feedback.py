"""submit-spam and submit-ham: the platform's word on a comment, applied as a label."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from classifier import LoadedModel
from service import tables
from service.akismet.comment_check import AkismetSubmission, verdict_of
from service.intake.comments import new_comment, store_comment
from service.intake.sites import SiteCache, resolve_site
from service.moderation.labels import AppliedLabel, apply_label
from service.neardup.store import NearDuplicateMemory
from service.schemas import CommentIn
from service.scoring.store import attach

# --- submit-spam / submit-ham ------------------------------------------------------------

SUBMISSION_THANKS = "Thanks for making the web a better place."


def _by_guid(session: Session, account_id: int, guid: str) -> tables.Comment | None:
    try:
        comment_id = uuid.UUID(guid.strip())
    except ValueError:
        return None
    return session.execute(
        select(tables.Comment)
        .join(tables.Site, tables.Site.id == tables.Comment.site_id)
        .where(tables.Comment.id == comment_id, tables.Site.account_id == account_id)
    ).scalar_one_or_none()


def _by_content(session: Session, site_id: int, comment: CommentIn) -> tables.Comment | None:
    return (
        session.execute(
            select(tables.Comment)
            .where(
                tables.Comment.site_id == site_id,
                tables.Comment.author == comment.author,
                tables.Comment.content == comment.content,
            )
            .order_by(tables.Comment.received_at.desc())
            .limit(1)
        )
        .scalars()
        .first()
    )


def record_feedback(
    session: Session,
    sites: SiteCache,
    account_id: int,
    submission: AkismetSubmission,
    label: tables.LabelValue,
    guid: str,
    who: str,
    model: LoadedModel,
    memory: NearDuplicateMemory | None = None,
) -> AppliedLabel:
    """Label the comment the platform reports (by guid, else same site, author and content).

    A comment never checked is stored, and scored so that it has a verdict like every other
    one; its label says it came in this way, so it counts neither as a call nor as a miss.
    The label goes through `labels.apply_label` (so it is audited); the caller runs
    `labels.after_commit` with the result.
    """
    site = resolve_site(session, sites, account_id, submission.comment.blog)
    comment = _by_guid(session, account_id, guid) if guid.strip() else None
    if comment is None:
        comment = _by_content(session, site.id, submission.comment)
    created = comment is None
    if comment is None:
        fresh = new_comment(site.id, submission.comment, None)
        verdict = verdict_of(fresh, submission, model, memory, account_id, site)
        comment, _ = store_comment(session, fresh)
        attach(session, comment, verdict)
    applied = apply_label(
        session,
        comment.id,
        label,
        tables.LabelSource.FEEDBACK,
        who,
        created_comment=created,
    )
    session.commit()
    return applied
