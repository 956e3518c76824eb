"""A comment's row: built from a submission, stored once per (site, external_id), and a
resubmission told apart from another comment under the same external_id."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import tables
from service.intake.writes import transient
from service.schemas import CommentIn


def find_comment(session: Session, site_id: int, external_id: str) -> tables.Comment | None:
    return session.execute(
        select(tables.Comment).where(
            tables.Comment.site_id == site_id, tables.Comment.external_id == external_id
        )
    ).scalar_one_or_none()


def new_comment(
    site_id: int, body: CommentIn, external_id: str | None, callback_url: str | None = None
) -> tables.Comment:
    """A comment row for a submission (not yet in any session)."""
    return transient(
        tables.Comment,
        id=uuid.uuid4(),
        site_id=site_id,
        external_id=external_id,
        callback_url=callback_url,
        status=tables.CommentStatus.PENDING,
        is_test=body.is_test,
        content=body.content,
        author=body.author,
        author_email=body.author_email,
        author_url=body.author_url,
        user_ip=body.user_ip,
        user_agent=body.user_agent,
        referrer=body.referrer,
        permalink=body.permalink,
        comment_type=body.comment_type,
        created_at=body.created_at,
        blog=body.blog,
        blog_lang=body.blog_lang,
        user_role=body.user_role,
        honeypot=body.honeypot,
        extra=body.extra,
        received_at=tables.utcnow(),
        verdict=None,
    )


def store_comment(session: Session, comment: tables.Comment) -> tuple[tables.Comment, bool]:
    """Add a new comment (not committed); returns (comment, created), or the existing one.

    Two requests racing with the same (site, external_id) both get the one stored comment:
    the loser's insert fails on the unique constraint and it reads the winner's row.
    """
    if comment.external_id is None:
        session.add(comment)
        return comment, True
    existing = find_comment(session, comment.site_id, comment.external_id)
    if existing is not None:
        return existing, False
    try:
        with session.begin_nested():
            session.add(comment)
    except IntegrityError:
        existing = find_comment(session, comment.site_id, comment.external_id)
        if existing is None:
            raise
        return existing, False
    return comment, True


# A resubmission is the same comment when these agree: what the verdict was made from. A
# platform's retry sends them unchanged; a different comment under a reused id does not.
SAME_COMMENT_FIELDS = (
    "content",
    "author",
    "author_email",
    "author_url",
    "user_ip",
    "permalink",
    "comment_type",
)


class ExternalIdConflict(ValueError):
    """An external_id resent with another comment than the one it names (answered 409)."""

    def __init__(self, stored: tables.Comment, fields: list[str]) -> None:
        super().__init__(
            f"external_id {stored.external_id!r} names comment {stored.id}, which differs in "
            f"{', '.join(fields)}; send a new external_id for a new comment"
        )
        self.comment_id = stored.id
        self.fields = fields


def check_resubmission(stored: tables.Comment, fresh: tables.Comment) -> None:
    """Refuse (ExternalIdConflict) an external_id resent with another comment."""
    differ = [f for f in SAME_COMMENT_FIELDS if getattr(stored, f) != getattr(fresh, f)]
    if differ:
        raise ExternalIdConflict(stored, differ)
