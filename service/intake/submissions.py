"""Webhook submissions (`POST /v1/comments`), stored and queued in batches.

Comments submitted together are committed in one transaction, then queued for scoring in one
message (`score_comments`, with whatever else was committed within `queue_linger_seconds`),
each with the id of the request that sent it (see `service.intake.batching`). Committed before
queued: a task never looks for a comment that is not there, and if Redis is down (or this
process dies before the message goes) the comments are safe and the pending sweep queues them.

A batch in which some `(site, external_id)` was submitted before, or twice, falls back to
storing each comment on its own: the first submission is stored, the others answer with it
(or 409, when they are a different comment under the same external_id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from service import logs, tables
from service.intake.batching import Item
from service.intake.comments import check_resubmission, new_comment, store_comment
from service.intake.sites import SiteRef, resolve_site
from service.intake.writes import insert_many
from service.runtime import Services
from service.schemas import CommentOut, WebhookCommentIn


@dataclass(frozen=True, slots=True)
class Submission:
    """A webhook comment as the API accepted it: checked, personal fields protected."""

    account_id: int
    body: WebhookCommentIn


@dataclass(frozen=True, slots=True)
class Accepted:
    """The stored comment, and whether this submission created it (else it existed)."""

    comment: CommentOut
    created: bool


def submission_batch(
    services: Services, items: Sequence[Item[Submission]]
) -> list[Accepted | BaseException]:
    """Store a batch of submissions and queue the new ones; one answer per submission."""
    with services.sessions() as session:
        sites = [
            resolve_site(session, services.sites, item.value.account_id, item.value.body.blog)
            for item in items
        ]
        fresh = [
            new_comment(site.id, item.value.body, item.value.body.external_id,
                        item.value.body.callback_url)
            for item, site in zip(items, sites, strict=True)
        ]  # fmt: skip
        if insert_many(session, fresh):
            answers: list[Accepted | BaseException] = [
                Accepted(CommentOut.from_row(comment, site.url), True)
                for comment, site in zip(fresh, sites, strict=True)
            ]
            created = [(item, comment) for item, comment in zip(items, fresh, strict=True)]
        else:
            answers, created = _one_by_one(session, items, fresh, sites)
    if created and services.queue is not None:
        services.queue.score_soon(
            [comment.id for _, comment in created],
            [item.run(logs.request_id.get) for item, _ in created],
        )
    return answers


def _one_by_one(
    session: Session,
    items: Sequence[Item[Submission]],
    fresh: Sequence[tables.Comment],
    sites: Sequence[SiteRef],
) -> tuple[list[Accepted | BaseException], list[tuple[Item[Submission], tables.Comment]]]:
    answers: list[Accepted | BaseException] = []
    created: list[tuple[Item[Submission], tables.Comment]] = []
    for item, comment, site in zip(items, fresh, sites, strict=True):
        try:
            if insert_many(session, [comment]):
                stored, new = comment, True
            else:
                stored, new = store_comment(session, comment)
                if not new:
                    check_resubmission(stored, comment)
                session.commit()
        except Exception as exc:
            session.rollback()
            answers.append(exc)
            continue
        answers.append(Accepted(CommentOut.from_row(stored, site.url), new))
        if new:
            created.append((item, stored))
    return answers, created
