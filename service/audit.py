"""The admin audit: every change to a credential, a grant or a site's thresholds, as it happens.

One writer (`record`), called in the transaction of the change it describes, so that a change
and its entry are committed together or not at all. Like the label audit, entries are never
updated or deleted.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import tables

AdminAction = tables.AdminAction


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change: an admin (API, console) or whoever runs the command line."""

    name: str
    source: str  # "api", "console" or "cli"
    user_id: int | None = None

    @classmethod
    def cli(cls) -> Actor:
        try:
            who = getpass.getuser()
        except (KeyError, OSError):  # no name for this uid (a container's)
            who = "unknown"
        return cls(f"cli:{who}", "cli")


def record(
    session: Session,
    actor: Actor,
    action: tables.AdminAction,
    target: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Add an entry for a change made in `session` (committed with it by the caller)."""
    session.add(
        tables.AdminAudit(
            action=action.value,
            source=actor.source,
            actor=actor.name[:200],
            user_id=actor.user_id,
            target=target,
            before=before,
            after=after,
        )
    )


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    action: str
    source: str
    actor: str
    user_id: int | None
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: datetime


def entries(session: Session, limit: int = 100, before_id: int | None = None) -> list[Entry]:
    """The newest entries first (older than `before_id` if given)."""
    query = select(tables.AdminAudit).order_by(tables.AdminAudit.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(tables.AdminAudit.id < before_id)
    return [
        Entry(a.id, a.action, a.source, a.actor, a.user_id, a.target, a.before, a.after,
              a.created_at)
        for a in session.execute(query).scalars()
    ]  # fmt: skip
