"""Synchronous checks (`POST /v1/check`), scored and stored in batches.

Checks that arrive together go through the model in one call, through the near-duplicate
memory in one Redis round trip, and into the database in one transaction (see
`service.batching`). A batch in which some `(site, external_id)` was submitted before, or
twice, falls back to checking each comment on its own, as `check_one` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from classifier import LoadedModel, Thresholds
from service import tables
from service.batching import Item, pass_turn
from service.deps import Services
from service.engine import attach, compute_verdicts, score_into
from service.intake import SiteRef, new_comment, resolve_site, store_comment
from service.schemas import CheckIn, CommentOut
from service.writes import insert_many


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """A check as the API accepted it: size checked, personal fields protected."""

    account_id: int
    body: CheckIn


def check_batch(
    services: Services, items: Sequence[Item[CheckRequest]]
) -> list[CommentOut | BaseException]:
    """Score and store a batch of checks; one answer (or exception) per check, in order."""
    services.models.reload_if_changed()  # a stat() at most once per check interval
    model = services.models.current
    requests = [item.value for item in items]
    with services.sessions() as session:
        sites = [resolve_site(session, services.sites, r.account_id, r.body.blog) for r in requests]
        fresh = [
            new_comment(site.id, r.body, r.body.external_id)
            for r, site in zip(requests, sites, strict=True)
        ]
        limits = [site.thresholds.effective(model.thresholds) for site in sites]
        # Scored before any write: on SQLite a write transaction holds the database's only
        # write lock, so it should last for the inserts alone.
        verdicts = compute_verdicts(
            fresh, model, services.memory, [r.account_id for r in requests], limits
        )
        for comment in fresh:
            comment.status = tables.CommentStatus.SCORED
        pass_turn()  # what is left mostly waits on the database: the next batch may start
        if insert_many(session, fresh, verdicts):
            answers: list[CommentOut | BaseException] = []
            for comment, verdict, site in zip(fresh, verdicts, sites, strict=True):
                comment.verdict = verdict
                answers.append(CommentOut.from_row(comment, site.url))
            return answers
        # Some external_id was submitted before: each comment on its own, as one check would.
        answers = []
        for item, comment, verdict, site, thresholds in zip(
            items, fresh, verdicts, sites, limits, strict=True
        ):
            one = partial(
                check_one, session, services, model, item.value, site, comment, verdict, thresholds
            )
            try:
                answers.append(item.run(one))
            except Exception as exc:
                session.rollback()
                answers.append(exc)
        return answers


def check_one(
    session: Session,
    services: Services,
    model: LoadedModel,
    request: CheckRequest,
    site: SiteRef,
    fresh: tables.Comment,
    verdict: tables.Verdict,
    thresholds: Thresholds,
) -> CommentOut:
    """Store one scored check, or answer from the comment its external_id already names."""
    fresh.status = tables.CommentStatus.SCORED
    if insert_many(session, [fresh], [verdict]):
        fresh.verdict = verdict
        return CommentOut.from_row(fresh, site.url)
    fresh.status = tables.CommentStatus.PENDING
    comment, created = store_comment(session, fresh)
    if created:
        attach(session, comment, verdict)
    elif comment.verdict is None:
        score_into(session, comment, model, services.memory, request.account_id, thresholds)
    try:
        session.commit()
    except IntegrityError:
        # A worker scored this (webhook-submitted) comment in the meantime: use its verdict.
        session.rollback()
        stored = session.get(tables.Comment, comment.id, populate_existing=True)
        if stored is None or stored.verdict is None:
            raise
        comment = stored
    return CommentOut.from_row(comment, site.url)
