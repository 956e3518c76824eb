"""What a moderator does: label comments (one, or many at once), undo their last decision, set
a site's thresholds. Shared by the API (service/api/routes/moderation.py) and the console; each
commits, then runs what follows a commit (callbacks, label hooks).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from classifier import Thresholds
from service import audit, tables
from service.moderation import labels
from service.moderation.queries import thresholds_out, visible_comment
from service.problems import ApiError
from service.runtime import Services
from service.schemas import SiteThresholdsOut, ThresholdsIn
from service.scoring.thresholds import InvalidThresholds, SiteThresholds, set_site_thresholds
from service.users import UserPrincipal

log = logging.getLogger(__name__)

UNDO_NOTE = "undo"

# --- labels ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelRequest:
    """One comment's label as a moderator gives it."""

    comment_id: uuid.UUID
    label: tables.LabelValue
    note: str | None = None


def label_one(
    session: Session, services: Services, user: UserPrincipal, request: LabelRequest
) -> labels.AppliedLabel:
    """Label a comment the user may see (else 404); committed, then called back and hooked."""
    visible_comment(session, user, request.comment_id)
    applied = _apply(session, user, request)
    session.commit()
    labels.after_commit([applied], services.queue, services.label_hooks)
    return applied


def label_many(
    session: Session, services: Services, user: UserPrincipal, requests: Sequence[LabelRequest]
) -> list[labels.AppliedLabel]:
    """Label comments atomically: 404 and none labelled if any is unknown or not the user's."""
    wanted = {item.comment_id for item in requests}
    rows = session.execute(
        select(tables.Comment.id, tables.Comment.site_id).where(tables.Comment.id.in_(wanted))
    ).all()
    found = {comment_id: site_id for comment_id, site_id in rows}
    missing = sorted(str(cid) for cid in wanted if cid not in found or not user.can_see(found[cid]))
    if missing:
        raise ApiError(
            404,
            "not_found",
            f"{len(missing)} of the comments do not exist; nothing was labelled",
            details=[{"comment_id": cid} for cid in missing],
        )
    applied = [_apply(session, user, item) for item in requests]
    session.commit()
    labels.after_commit(applied, services.queue, services.label_hooks)
    return applied


def _apply(session: Session, user: UserPrincipal, request: LabelRequest) -> labels.AppliedLabel:
    return labels.apply_label(
        session,
        request.comment_id,
        request.label,
        tables.LabelSource.MODERATOR,
        user.name,
        user_id=user.id,
        note=request.note,
    )


@dataclass(frozen=True, slots=True)
class Undone:
    """An undone decision: the comment, and its label now (None: back in the queue)."""

    comment_id: uuid.UUID
    label: tables.LabelValue | None


def undo_last(
    session: Session, services: Services, user: UserPrincipal, since: datetime
) -> Undone | None:
    """Undo the user's newest decision given since `since` that is still the comment's label.

    A decision that replaced an earlier label is undone by applying that label again (a new,
    audited label, called back like any other). A decision that was the comment's first label
    is removed (`labels.remove_label`), which puts the comment back in the queue; that is
    refused (409) once its callback has been attempted (the platform has been told: label it
    again instead).
    """
    found = session.execute(
        select(tables.LabelAudit)
        .where(
            tables.LabelAudit.user_id == user.id,
            tables.LabelAudit.source == tables.LabelSource.MODERATOR.value,
            tables.LabelAudit.created_at >= since,
            tables.LabelAudit.label_id == labels.newest_label_id(tables.LabelAudit.comment_id),
            (tables.LabelAudit.note.is_(None)) | (tables.LabelAudit.note != UNDO_NOTE),
        )
        .order_by(tables.LabelAudit.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if found is None:
        session.commit()
        return None
    if found.before is not None:
        previous = tables.LabelValue(found.before)
        request = LabelRequest(found.comment_id, previous, note=UNDO_NOTE)
        applied = _apply(session, user, request)
        session.commit()
        labels.after_commit([applied], services.queue, services.label_hooks)
        return Undone(found.comment_id, previous)
    comment_id = found.comment_id
    try:
        account_id = labels.remove_label(session, found, user.id, user.name, UNDO_NOTE)
    except labels.AlreadyCalledBack as exc:
        raise ApiError(
            409,
            "already_called_back",
            "the platform has already been told of this label: label the comment again "
            "instead of undoing",
        ) from exc
    session.commit()
    # The label hooks put it in the near-duplicate memory: take it out again, or its near-copies
    # would still be decided by a label that no longer exists.
    if services.memory is not None:
        try:
            services.memory.forget(comment_id, account_id)
        except Exception:
            log.exception("undone label of %s left in the near-duplicate memory", comment_id)
    return Undone(comment_id, None)


# --- per-site thresholds (admins) --------------------------------------------------------


def model_thresholds(services: Services) -> Thresholds | None:
    """The thresholds of the model in use (with the deployment's overrides); None if none."""
    services.models.reload_if_changed()
    return services.models.current.thresholds if services.models.loaded else None


def update_site_thresholds(
    session: Session,
    services: Services,
    admin: UserPrincipal,
    site_id: int,
    body: ThresholdsIn,
    source: str = "api",
) -> SiteThresholdsOut:
    """Set (null: reset to the model's) a site's thresholds, audited; 404 if no such site, 422
    if the merged thresholds are out of order. Shared by the API and the console."""
    site = session.get(tables.Site, site_id)
    if site is None:
        raise ApiError(404, "not_found", f"no site {site_id}")
    before = SiteThresholds.of(site).to_dict()
    values = SiteThresholds(body.unsure, body.spam, body.discard, str(site.id))
    model = model_thresholds(services)
    try:
        set_site_thresholds(site, values, model)
    except InvalidThresholds as exc:
        session.rollback()
        raise ApiError(422, "invalid_thresholds", str(exc), details=exc.details) from exc
    url, account_id = site.url, site.account_id
    audit.record(
        session,
        audit.Actor(admin.name, source, admin.id),
        tables.AdminAction.THRESHOLDS_SET,
        f"site:{site_id}",
        before=before,
        after=values.to_dict(),
    )
    session.commit()
    services.sites.forget(account_id, url)  # at once here; other processes within their TTL
    log.info("site %s thresholds set to %s by %s", site_id, values.to_dict(), admin.name)
    return SiteThresholdsOut(
        site_id=site_id,
        site=url,
        own=ThresholdsIn(**values.to_dict()),
        effective=thresholds_out(values, model),
    )
