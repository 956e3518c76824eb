"""Synchronous checks (`POST /v1/check`), scored and stored in batches.

Checks that arrive together go through the model in one call (on the event loop:
`prepare_checks`), through the near-duplicate memory in one Redis round trip, and into the
database in one transaction (in a batcher thread: `check_batch`; see `service.intake.batching`).
A batch in which some `(site, external_id)` was submitted before, or twice, falls back to
checking each comment on its own, as `check_one` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from classifier import LoadedModel, Thresholds
from service import tables
from service.intake.batching import Item
from service.intake.comments import check_resubmission, new_comment, store_comment
from service.intake.sites import SiteRef, normalise_site_url, resolve_site
from service.intake.writes import insert_many
from service.runtime import Services
from service.schemas import CheckIn, CommentOut
from service.scoring.store import attach, score_into
from service.scoring.verdicts import Scored, compute_verdicts, score_ahead


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """A check as the API accepted it: size checked, personal fields protected."""

    account_id: int
    body: CheckIn


@dataclass(frozen=True, slots=True)
class PreparedChecks:
    """A batch's checks scored on the event loop (`prepare_checks`), for `check_batch`."""

    model: LoadedModel
    sites: list[SiteRef]
    comments: list[tables.Comment]
    scored: Scored


def prepare_checks(services: Services, items: Sequence[Item[CheckRequest]]) -> None:
    """On the event loop, before `check_batch`: build the rows and score them, CPU only.

    Leaves the batch unprepared (`check_batch` then does it all) when a site is not in the
    cache, since finding or creating one takes the database.
    """
    model = services.models.current  # a new model is loaded by check_batch, off the loop
    sites = []
    for item in items:
        site = services.sites.get(item.value.account_id, normalise_site_url(item.value.body.blog))
        if site is None:
            return
        sites.append(site)
    fresh = _new_comments([item.value for item in items], sites)
    adapters = [site.adapter for site in sites]
    prepared = PreparedChecks(
        model, sites, fresh, score_ahead(fresh, model, services.memory, adapters)
    )
    items[0].prepared = prepared  # the whole batch's, kept on its first item


def _new_comments(
    requests: Sequence[CheckRequest], sites: Sequence[SiteRef]
) -> list[tables.Comment]:
    return [
        new_comment(site.id, r.body, r.body.external_id)
        for r, site in zip(requests, sites, strict=True)
    ]


def check_batch(
    services: Services, items: Sequence[Item[CheckRequest]]
) -> list[CommentOut | BaseException]:
    """Score and store a batch of checks; one answer (or exception) per check, in order."""
    requests = [item.value for item in items]
    services.models.reload_if_changed()  # a stat() at most once per check interval
    model = services.models.current
    prepared: PreparedChecks | None = items[0].prepared if items else None
    if prepared is not None and prepared.model is not model:
        prepared = None  # scored by the model this one replaced: scored again
    with services.sessions() as session:
        if prepared is not None:
            sites, fresh = prepared.sites, prepared.comments
        else:
            sites = [
                resolve_site(session, services.sites, r.account_id, r.body.blog) for r in requests
            ]
            fresh = _new_comments(requests, sites)
        limits = [site.thresholds.effective(model.thresholds) for site in sites]
        # Scored before any write: on SQLite a write transaction holds the database's only
        # write lock, so it should last for the inserts alone.
        verdicts = compute_verdicts(
            fresh,
            model,
            services.memory,
            [r.account_id for r in requests],
            limits,
            prepared.scored if prepared is not None else None,
            adapters=[site.adapter for site in sites],
        )
        for comment in fresh:
            comment.status = tables.CommentStatus.SCORED
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
    if not created:
        check_resubmission(comment, fresh)
    if created:
        attach(session, comment, verdict)
    elif comment.verdict is None:
        score_into(
            session, comment, model, services.memory, request.account_id, thresholds, site.adapter
        )
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
