"""Verdicts: a comment row in, the model's verdict out (with its site's adapter and thresholds,
and a near-duplicate of a labelled comment taking its label's side)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from classifier import Comment, LoadedModel, Thresholds, Verdict
from service import tables
from service.intake.writes import transient
from service.neardup.policy import overrule
from service.neardup.signing import Signature, cluster_key
from service.neardup.store import Match, NearDuplicateMemory

if TYPE_CHECKING:
    from classifier.adapter import SiteAdapter

log = logging.getLogger(__name__)


def to_record(row: tables.Comment) -> Comment:
    """The classifier's view of a stored comment."""
    return Comment(
        content=row.content,
        author=row.author,
        author_email=row.author_email,
        author_url=row.author_url,
        user_ip=row.user_ip,
        user_agent=row.user_agent,
        referrer=row.referrer,
        permalink=row.permalink,
        comment_type=row.comment_type,
        created_at=row.created_at,
        blog=row.blog,
        blog_lang=row.blog_lang,
        user_role=row.user_role,
        honeypot=row.honeypot,
        extra=dict(row.extra or {}),
        site=str(row.site_id) if row.site_id is not None else "",
    )


def compute_verdict(
    comment: tables.Comment,
    model: LoadedModel,
    memory: NearDuplicateMemory | None = None,
    account_id: int | None = None,
    thresholds: Thresholds | None = None,
    adapter: SiteAdapter | None = None,
) -> tables.Verdict:
    """Score a comment (its `id` set) into a verdict row, touching no database.

    `thresholds` are the comment's site's (see `thresholds`; None: the model's), and
    `adapter` what its site's labels taught (service/learning/adapters.py; None: the model
    alone). With a `memory` (and the comment's `account_id`), a near-duplicate of a comment
    labelled in that account takes the label's side, its reason first (see
    `service.neardup.policy.overrule`).
    """
    return compute_verdicts(
        [comment], model, memory, [account_id], [thresholds], adapters=[adapter]
    )[0]


@dataclass(frozen=True, slots=True)
class Scored:
    """What the model (and the memory's signer) made of a batch of comments: the CPU part of
    `compute_verdicts`, done ahead (on the API's event loop: service/intake/batching.py)."""

    verdicts: list[Verdict]
    signatures: list[Signature | None] | None  # None: no memory to sign for
    seconds: float


def score_ahead(
    comments: Sequence[tables.Comment],
    model: LoadedModel,
    memory: NearDuplicateMemory | None,
    adapters: Sequence[SiteAdapter | None] | None = None,
) -> Scored:
    """Score comments (each with its site's adapter, if any) and sign them for the memory,
    touching no database and no network."""
    started = time.perf_counter()
    verdicts = model.score_many([to_record(comment) for comment in comments], adapters=adapters)
    signatures = None if memory is None else [memory.signer.sign(c.content) for c in comments]
    return Scored(verdicts, signatures, time.perf_counter() - started)


def compute_verdicts(
    comments: Sequence[tables.Comment],
    model: LoadedModel,
    memory: NearDuplicateMemory | None,
    account_ids: Sequence[int | None],
    thresholds: Sequence[Thresholds | None],
    ahead: Scored | None = None,
    adapters: Sequence[SiteAdapter | None] | None = None,
) -> list[tables.Verdict]:
    """`compute_verdict` for several comments at once: one call into the model, one round
    trip to the memory. Each verdict's `duration_ms` is the time the batch took. With
    `ahead` (`score_ahead` of these comments by this model), the scores are not computed
    again."""
    if ahead is None:
        ahead = score_ahead(comments, model, memory, adapters)
    started = time.perf_counter()  # the time scoring took is ahead.seconds
    scored = ahead.verdicts
    matches = _recall(memory, account_ids, comments, ahead.signatures)
    duration_ms = round((time.perf_counter() - started + ahead.seconds) * 1000, 3)
    scored_at = tables.utcnow()
    verdicts = []
    signatures = ahead.signatures or [None] * len(comments)
    for comment, verdict, match, own, signature in zip(
        comments, scored, matches, thresholds, signatures, strict=True
    ):
        limits = own or model.thresholds
        score = verdict.score
        decision = limits.decide(score)
        reasons = [reason.to_dict() for reason in verdict.reasons]
        if match is not None:
            score, decision, reason = overrule(match, score, decision, limits)
            reasons = [reason, *reasons]
        verdicts.append(
            transient(
                tables.Verdict,
                comment_id=comment.id,
                score=score,
                decision=decision.value,
                reasons=reasons,
                model_version=verdict.model_version,
                duration_ms=duration_ms,
                scored_at=scored_at,
                cluster=cluster_key(comment.content, signature),
            )
        )
    return verdicts


def _recall(
    memory: NearDuplicateMemory | None,
    account_ids: Sequence[int | None],
    comments: Sequence[tables.Comment],
    signatures: Sequence[Signature | None] | None,
) -> list[Match | None]:
    wanted = [
        (i, account_id, comment.content)
        for i, (account_id, comment) in enumerate(zip(account_ids, comments, strict=True))
        if account_id is not None
    ]
    found: list[Match | None] = [None] * len(comments)
    if memory is None or not wanted:
        return found
    signed = None if signatures is None else [signatures[i] for i, _, _ in wanted]
    try:
        matches = memory.match_many([(a, text) for _, a, text in wanted], signed)
    except Exception:  # the memory helps the model; it must never stop a comment being scored
        log.exception("near-duplicate memory failed; scoring with the model alone")
        return found
    for (i, _, _), match in zip(wanted, matches, strict=True):
        found[i] = match
    return found
