"""comment-check: an Akismet request becomes a comment (with Akismet's test values as rules),
stored and scored through the same functions as `POST /v1/check` (`intake` and `scoring`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from annotated_types import MaxLen
from sqlalchemy.orm import Session

from classifier import Decision, LoadedModel, Reason
from classifier.scoring import SPAM_DECISIONS
from service import tables
from service.akismet.requests import AkismetRequest
from service.intake.comments import new_comment, store_comment
from service.intake.sites import SiteCache, SiteRef, resolve_site
from service.neardup.store import NearDuplicateMemory
from service.schemas import CommentIn
from service.scoring.store import attach
from service.scoring.verdicts import compute_verdict

log = logging.getLogger(__name__)


GUARANTEED_SPAM_AUTHOR = "akismet-guaranteed-spam"
GUARANTEED_SPAM_EMAIL = "akismet-guaranteed-spam@example.com"

# Akismet field → CommentIn field. Everything not named here (nor a protocol field) is kept
# in the comment's `extra`, under the name the platform used.
_FIELDS = {
    "comment_content": "content",
    "comment_author": "author",
    "comment_author_email": "author_email",
    "comment_author_url": "author_url",
    "user_ip": "user_ip",
    "user_agent": "user_agent",
    "referrer": "referrer",
    "permalink": "permalink",
    "comment_type": "comment_type",
    "blog": "blog",
    "blog_lang": "blog_lang",
    "user_role": "user_role",
}
# Read by the protocol itself and never stored: the key above all.
_PROTOCOL_FIELDS = frozenset({"api_key", "key", "guid", "is_test"})


def _max_lengths() -> dict[str, int]:
    limits = {}
    for name, info in CommentIn.model_fields.items():
        for constraint in info.metadata:
            if isinstance(constraint, MaxLen):
                limits[name] = constraint.max_length
    return limits


_MAX_LENGTHS = _max_lengths()


# --- the comment and the test values -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """A verdict decided by a rule rather than the model (Akismet's test values, honeypot)."""

    decision: Decision
    feature: str
    description: str

    def reason(self) -> Reason:
        # A rule decides; it adds no log-odds. The weight only gives its direction.
        weight = 1.0 if self.decision in (Decision.SPAM, Decision.DISCARD) else -1.0
        return Reason(self.feature, self.description, weight)


@dataclass(frozen=True, slots=True)
class AkismetSubmission:
    """An Akismet call's comment, ready for `intake`, and the rule that decides it (if any)."""

    comment: CommentIn
    rule: Rule | None = None
    notes: list[str] = field(default_factory=list)


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _clip(name: str, value: str) -> str:
    limit = _MAX_LENGTHS.get(name)
    return value[:limit] if limit is not None else value


def _parse_date(value: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_submission(request: AkismetRequest, max_content_bytes: int) -> AkismetSubmission:
    """The comment an Akismet call describes; unknown fields go to `extra`, as sent."""
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    notes: list[str] = []
    honeypot_name = request.value("honeypot_field_name").strip()
    for name, sent in request.fields.items():
        if name in _PROTOCOL_FIELDS or (honeypot_name and name == honeypot_name):
            continue
        if name in _FIELDS:
            values[_FIELDS[name]] = _clip(_FIELDS[name], sent[0])
        else:
            extra[name] = sent[0] if len(sent) == 1 else sent
    # Akismet does not require comment_content (a trackback may carry none).
    content = values.setdefault("content", "")
    encoded = content.encode("utf-8")
    if len(encoded) > max_content_bytes:
        values["content"] = encoded[:max_content_bytes].decode("utf-8", "ignore")
        notes.append(f"comment_content truncated to {max_content_bytes} bytes")
    created = _parse_date(request.value("comment_date_gmt"))
    if created is not None:
        extra.pop("comment_date_gmt", None)
    honeypot = request.value(honeypot_name) if honeypot_name else ""
    comment = CommentIn(
        **values,
        created_at=created,
        honeypot=_clip("honeypot", honeypot),
        is_test=_truthy(request.value("is_test")),
        extra=extra,
    )
    return AkismetSubmission(comment, _rule(comment, honeypot_name), notes)


def _rule(comment: CommentIn, honeypot_name: str) -> Rule | None:
    # Akismet's documented test values first, so that a test behaves the same on every site.
    if (
        comment.author.strip().lower() == GUARANTEED_SPAM_AUTHOR
        or comment.author_email.strip().lower() == GUARANTEED_SPAM_EMAIL
    ):
        return Rule(
            Decision.SPAM,
            "rule:akismet-guaranteed-spam",
            "Akismet's test value for guaranteed spam (comment_author or comment_author_email)",
        )
    if "administrator" in comment.user_role.lower():
        return Rule(Decision.HAM, "rule:administrator", 'the user_role contains "administrator"')
    if comment.honeypot.strip():
        return Rule(
            Decision.SPAM,
            "rule:honeypot",
            f'the honeypot field "{honeypot_name}" was filled in',
        )
    return None


def verdict_of(
    comment: tables.Comment,
    submission: AkismetSubmission,
    model: LoadedModel,
    memory: NearDuplicateMemory | None = None,
    account_id: int | None = None,
    site: SiteRef | None = None,
) -> tables.Verdict:
    """The model's verdict at the site's thresholds (a near-duplicate of a labelled comment
    takes its label, as in `/v1/check`); a rule, if one applies, decides and comes first
    among the reasons.

    A rule leaves the score as it was, so that it remains the model's (or the memory's).
    """
    thresholds = site.thresholds.effective(model.thresholds) if site is not None else None
    adapter = site.adapter if site is not None else None
    verdict = compute_verdict(comment, model, memory, account_id, thresholds, adapter)
    if submission.rule is not None:
        verdict.decision = submission.rule.decision.value
        verdict.reasons = [submission.rule.reason().to_dict(), *verdict.reasons]
    return verdict


# --- comment-check -----------------------------------------------------------------------


def check(
    session: Session,
    sites: SiteCache,
    account_id: int,
    submission: AkismetSubmission,
    model: LoadedModel,
    memory: NearDuplicateMemory | None = None,
) -> tables.Comment:
    """Store and score a comment, as `POST /v1/check` does; returns it with its verdict."""
    site = resolve_site(session, sites, account_id, submission.comment.blog)
    # End any transaction the lookups opened: on SQLite it holds the only write lock, and
    # scoring happens outside of it.
    session.commit()
    fresh = new_comment(site.id, submission.comment, None)
    verdict = verdict_of(fresh, submission, model, memory, account_id, site)
    comment, _ = store_comment(session, fresh)
    attach(session, comment, verdict)
    session.commit()
    return comment


def answers_spam(decision: str) -> bool:
    """Akismet's `true`: spam and discard. Ham and unsure (held for a moderator) are `false`."""
    return decision in SPAM_DECISIONS
