"""What the console's pages show, assembled from the moderation functions (no HTTP in between)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment
from sqlalchemy import select
from sqlalchemy.orm import Session

from classifier import registry
from classifier.artifact import active_version
from classifier.scoring import SPAM_DECISIONS
from service import tables
from service.console import charts, highlight, web
from service.console.auth import ConsoleUser
from service.moderation import actions, labels, queries
from service.problems import ApiError
from service.runtime import Services
from service.schemas import QueueItemOut, ThresholdsIn
from training.runs import list_runs

DECISIONS = (
    ("unsure", "Unsure (held)"),
    ("spam", "Spam"),
    ("discard", "Discard"),
    ("ham", "Ham"),
    ("all", "Any decision"),
)
FILTER_KEYS = ("site", "decision", "since", "until", "q")
MAX_SEARCH = 200
# The queue's count stops here: counting a huge queue exactly would cost more than the page.
COUNT_CAP = 1000

log = logging.getLogger(__name__)


@cache
def templates() -> Environment:
    return web.make_templates()


def render(
    request: Request, name: str, context: Mapping[str, Any], status: int = 200
) -> HTMLResponse:
    """A template rendered to an HTML response (autoescaped)."""
    html = templates().get_template(name).render({"request": request, **context})
    return HTMLResponse(html, status_code=status)


# --- the queue -----------------------------------------------------------------------------


def _is_row_id(text: str) -> bool:
    # isdigit() alone admits "²" and other digits int() refuses.
    return text.isascii() and text.isdigit() and 0 < int(text) <= tables.MAX_ROW_ID


@dataclass(frozen=True, slots=True)
class QueueFilters:
    """The queue's filters, read leniently from a query string (a form leaves fields empty)."""

    site: int | None = None
    decision: str = "unsure"
    since: date | None = None
    until: date | None = None
    q: str | None = None
    cursor: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> QueueFilters:
        def day(name: str) -> date | None:
            try:
                return date.fromisoformat(params.get(name, "").strip())
            except ValueError:
                return None

        site_text = params.get("site", "").strip()
        decision = params.get("decision", "unsure")
        q = params.get("q", "").strip()[:MAX_SEARCH]
        return cls(
            site=int(site_text) if _is_row_id(site_text) else None,
            decision=decision if decision in dict(DECISIONS) else "unsure",
            since=day("since"),
            until=day("until"),
            q=q or None,
            cursor=params.get("cursor") or None,
        )

    @property
    def received_from(self) -> datetime | None:
        return datetime.combine(self.since, time(), UTC) if self.since else None

    @property
    def received_before(self) -> datetime | None:
        # "until" is a whole day: everything received before the next one (if there is one).
        if self.until is None or self.until == date.max:
            return None
        return datetime.combine(self.until + timedelta(days=1), time(), UTC)

    def query_string(self) -> str:
        values = {
            "site": str(self.site) if self.site is not None else "",
            "decision": self.decision if self.decision != "unsure" else "",
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "q": self.q or "",
        }
        return urlencode({k: v for k, v in values.items() if v})

    @property
    def active(self) -> bool:
        return bool(self.query_string())


def clean_query(raw: str) -> str:
    """Only the queue's filter keys of a query string (for redirects back to the queue)."""
    pairs = [(k, v) for k, v in parse_qsl(raw, keep_blank_values=False) if k in FILTER_KEYS]
    return urlencode(pairs)


def _queue_args(filters: QueueFilters) -> dict[str, Any]:
    return {
        "site": filters.site,
        "decision": filters.decision,
        "since": filters.received_from,
        "until": filters.received_before,
        "search": filters.q,
    }


def queue_total(session: Session, user: ConsoleUser, filters: QueueFilters) -> int:
    """How many comments the queue holds with these filters (COUNT_CAP + 1: more than the cap)."""
    if filters.site is not None and not user.principal.can_see(filters.site):
        return 0
    total = queries.queue_count(session, user.principal, cap=COUNT_CAP, **_queue_args(filters))
    session.commit()
    return total


def _thresholds(services: Services) -> dict[str, float] | None:
    if not services.models.loaded:
        return None
    return services.models.current.thresholds.to_dict()


@dataclass(frozen=True, slots=True)
class ReasonView:
    description: str
    weight: float
    link: str | None


def reason_views(reasons: Sequence[Any]) -> list[ReasonView]:
    """Reasons for display; a near-duplicate's matched comment becomes a console link."""
    out = []
    for reason in reasons:
        data = reason if isinstance(reason, Mapping) else _as_dict(reason)
        link = None
        matched = data.get("comment_id")
        if data.get("kind") == "near_duplicate" and matched:
            try:
                link = f"{web.PREFIX}/comments/{uuid.UUID(str(matched))}"
            except ValueError:
                link = None
        out.append(
            ReasonView(str(data.get("description", "")), float(data.get("weight", 0.0)), link)
        )
    return out


def _as_dict(reason: Any) -> dict[str, Any]:
    data = dict(reason.model_dump()) if hasattr(reason, "model_dump") else dict(vars(reason))
    data.update(getattr(reason, "model_extra", None) or {})
    return data


@dataclass(frozen=True, slots=True)
class ItemView:
    """A queue item as the template shows it."""

    id: uuid.UUID
    site: str
    author: str
    author_email: str
    author_url: str
    user_ip: str
    received_at: datetime
    verdict: Any
    reasons: list[ReasonView]
    highlighted: Any
    on_platform: str


def on_platform(decision: str | None, callback: bool) -> str:
    """What the platform did with the answer it got, and what a moderator's decision does
    there. A label reaches the platform only as a callback: a comment without a callback URL
    (every Akismet one) stays as the platform left it, and an unsure one was answered "not
    spam", so a WordPress blog shows it (or holds it for its own moderation)."""
    if decision is None:
        return "Not scored yet."
    if callback:
        return "On the platform: your decision is sent to it by a signed callback."
    stays = (
        "Your decision stays in commentguard: this comment named no callback URL, so the "
        "platform keeps what it did with its answer. Through the Akismet API that answer was "
    )
    if decision in SPAM_DECISIONS:
        return (
            f"{stays}spam (true): WordPress put it in Spam, or discarded it; its Not Spam "
            "button publishes it and labels it here too."
        )
    return (
        f"{stays}not spam (false): WordPress published it, or holds it if the blog moderates "
        "comments; its Spam button takes it down and labels it here too."
    )


def item_view(item: QueueItemOut) -> ItemView:
    verdict = item.verdict
    raw_reasons = [_as_dict(r) for r in verdict.reasons] if verdict is not None else []
    return ItemView(
        id=item.id,
        site=item.site,
        author=item.author,
        author_email=item.author_email,
        author_url=item.author_url,
        user_ip=item.user_ip,
        received_at=item.received_at,
        verdict=verdict,
        reasons=reason_views(raw_reasons),
        highlighted=highlight.highlight(item.content, raw_reasons),
        on_platform=on_platform(verdict.decision if verdict is not None else None, item.callback),
    )


def queue_context(
    session: Session,
    services: Services,
    user: ConsoleUser,
    filters: QueueFilters,
    params: Mapping[str, str],
) -> dict[str, Any]:
    """Everything queue.html shows."""
    page_size = services.settings.console_page_size
    visible_site = filters.site is None or user.principal.can_see(filters.site)
    if visible_site:
        page = queries.queue_page(
            session,
            user.principal,
            limit=page_size,
            cursor=filters.cursor,
            **_queue_args(filters),
        )
        items, next_cursor = page.items, page.next_cursor
    else:
        items, next_cursor = [], None
    total = queue_total(session, user, filters)
    sites = visible_sites(session, user)
    session.commit()
    query = filters.query_string()
    next_url = None
    if next_cursor:
        next_url = (
            f"{web.PREFIX}/queue?{urlencode({**dict(parse_qsl(query)), 'cursor': next_cursor})}"
        )
    return {
        "page": "queue",
        "user": user,
        "items": [item_view(item) for item in items],
        "total": total,
        "filters": filters,
        "filtered": filters.active,
        "decisions": DECISIONS,
        "sites": sites,
        "thresholds": _thresholds(services),
        "query_string": query,
        "next_url": next_url,
    }


def visible_sites(session: Session, user: ConsoleUser) -> list[tables.Site]:
    """The sites the user may see (for the site filter), by URL."""
    query = select(tables.Site).order_by(tables.Site.url, tables.Site.id)
    if user.principal.site_ids is not None:
        query = query.where(tables.Site.id.in_(sorted(user.principal.site_ids)))
    return list(session.execute(query.limit(500)).scalars())


# --- labels and undo -----------------------------------------------------------------------


def label_one(
    session: Session,
    services: Services,
    user: ConsoleUser,
    comment_id: uuid.UUID,
    label: tables.LabelValue,
) -> labels.AppliedLabel:
    """Label one comment exactly as `POST /v1/comments/{id}/label` does."""
    request = actions.LabelRequest(comment_id, label)
    return actions.label_one(session, services, user.principal, request)


def label_many(
    session: Session,
    services: Services,
    user: ConsoleUser,
    ids: Sequence[uuid.UUID],
    label: tables.LabelValue,
) -> list[labels.AppliedLabel]:
    """Label comments together exactly as `POST /v1/labels` does (all or none)."""
    requests = [actions.LabelRequest(i, label) for i in dict.fromkeys(ids)]
    return actions.label_many(session, services, user.principal, requests)


def undo_last(session: Session, services: Services, user: ConsoleUser) -> actions.Undone | None:
    """Undo the user's newest decision of this console session that is still in effect."""
    return actions.undo_last(session, services, user.principal, user.since)


def undone_context(
    session: Session,
    services: Services,
    user: ConsoleUser,
    undone: actions.Undone,
    filters: QueueFilters,
) -> dict[str, Any]:
    """The undone comment as queue.html shows it (back in the queue, or its restored label)."""
    context: dict[str, Any] = {
        "user": user,
        "total": queue_total(session, user, filters),
        "count_oob": True,
        "oob": True,
        "thresholds": _thresholds(services),
        "query_string": filters.query_string(),
        "comment_id": undone.comment_id,
        "label": undone.label.value if undone.label is not None else None,
        "kind": None,
    }
    if undone.label is None:
        history = queries.comment_history(session, user.principal, undone.comment_id)
        session.commit()
        context["item"] = item_view(history.comment)
    return context


# --- a comment's history -------------------------------------------------------------------


def comment_context(
    session: Session, services: Services, user: ConsoleUser, comment_id: uuid.UUID
) -> dict[str, Any]:
    history = queries.comment_history(session, user.principal, comment_id)
    session.commit()
    return {
        "page": "queue",
        "user": user,
        "history": history,
        "item": item_view(history.comment),
        "thresholds": _thresholds(services),
    }


# --- sites ---------------------------------------------------------------------------------


def sites_context(session: Session, services: Services, user: ConsoleUser) -> dict[str, Any]:
    stats = queries.site_stats(
        session, user.principal, model_thresholds=actions.model_thresholds(services)
    )
    session.commit()
    return {
        "page": "sites",
        "user": user,
        "stats": stats,
        "thresholds": _thresholds(services),
        "model_version": services.models.current.version if services.models.loaded else None,
        "threshold_errors": {},
        "threshold_values": {},
    }


@dataclass(frozen=True, slots=True)
class ThresholdForm:
    """The thresholds form of one site as posted: raw strings, blank for "the model's"."""

    unsure: str = ""
    spam: str = ""
    discard: str = ""

    def values(self) -> dict[str, str]:
        return {"unsure": self.unsure, "spam": self.spam, "discard": self.discard}

    def parse(self) -> tuple[ThresholdsIn | None, list[str]]:
        """The thresholds, or the errors to show next to the form."""
        numbers: dict[str, float | None] = {}
        errors = []
        for name, raw in self.values().items():
            raw = raw.strip()
            if not raw:
                numbers[name] = None
                continue
            try:
                number = float(raw)
            except ValueError:
                errors.append(f"{name}: {raw!r} is not a number")
                continue
            if not 0.0 <= number <= 1.0:  # also refuses NaN
                errors.append(f"{name}: must be between 0 and 1")
                continue
            numbers[name] = number
        if errors:
            return None, errors
        return ThresholdsIn(**numbers), []


def save_thresholds(
    session: Session, services: Services, user: ConsoleUser, site_id: int, form: ThresholdForm
) -> list[str]:
    """Store the form's thresholds for a site (admins); the errors to show, if any."""
    body, errors = form.parse()
    if body is None:
        return errors
    try:
        actions.update_site_thresholds(
            session, services, user.principal, site_id, body, source="console"
        )
    except ApiError as exc:
        if exc.status != 422:
            raise
        details = exc.details or []
        return [f"{d['loc'][-1]}: {d['msg']}" for d in details] or [str(exc)]
    return []


# --- models --------------------------------------------------------------------------------

CHART_DAYS = 30


@dataclass(frozen=True, slots=True)
class ModelRow:
    """A model version as the models page lists it."""

    version: str
    status: str
    created_at: str | None
    n_examples: int | None
    thresholds: dict[str, float] | None
    metrics: dict[str, Any]
    gate: dict[str, Any] | None
    reason: str
    run_id: str | None


def _headline_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The validation metrics at the spam threshold, where training and retraining put them."""
    validation = metrics.get("validation")
    if isinstance(validation, Mapping):
        found = validation.get("at_spam_threshold")
        if isinstance(found, Mapping):
            return dict(found)
    return {}


def labelled_scores(
    session: Session, user: ConsoleUser, version: str
) -> tuple[list[float], list[bool]]:
    """Scores by model `version` of the comments since labelled, with their (newest) labels,
    on the sites the user may see."""
    newest = labels.newest_label_ids()
    query = (
        select(tables.Verdict.score, tables.Label.label)
        .join(tables.Comment, tables.Comment.id == tables.Verdict.comment_id)
        .join(newest, newest.c.comment_id == tables.Verdict.comment_id)
        .join(tables.Label, tables.Label.id == newest.c.id)
        .where(tables.Verdict.model_version == version, tables.Comment.is_test.is_(False))
    )
    if user.principal.site_ids is not None:
        query = query.where(tables.Comment.site_id.in_(sorted(user.principal.site_ids)))
    scores: list[float] = []
    spam: list[bool] = []
    for score, label in session.execute(query):
        scores.append(float(score))
        spam.append(label == tables.LabelValue.SPAM.value)
    return scores, spam


def mistakes_per_day(
    session: Session, user: ConsoleUser, days: int = CHART_DAYS
) -> tuple[list[date], list[int], list[int]]:
    """Label events per day (UTC) saying the verdict was a false positive, or missed spam."""
    today = tables.utcnow().date()
    start = today - timedelta(days=days - 1)
    query = select(tables.LabelAudit.created_at, tables.LabelAudit.kind).where(
        tables.LabelAudit.created_at >= datetime.combine(start, time(), UTC),
        tables.LabelAudit.label_id.is_not(None),  # not a label taken back since
        tables.LabelAudit.kind.in_(
            [tables.LabelKind.FALSE_POSITIVE.value, tables.LabelKind.MISSED_SPAM.value]
        ),
    )
    if user.principal.site_ids is not None:
        query = query.join(tables.Comment, tables.Comment.id == tables.LabelAudit.comment_id).where(
            tables.Comment.site_id.in_(sorted(user.principal.site_ids))
        )
    axis = [start + timedelta(days=i) for i in range(days)]
    index = {day: i for i, day in enumerate(axis)}
    false_positives = [0] * days
    missed = [0] * days
    for created_at, kind in session.execute(query):
        i = index.get(created_at.astimezone(UTC).date())
        if i is None:
            continue
        if kind == tables.LabelKind.FALSE_POSITIVE.value:
            false_positives[i] += 1
        else:
            missed[i] += 1
    return axis, false_positives, missed


def models_context(session: Session, services: Services, user: ConsoleUser) -> dict[str, Any]:
    """Everything models.html shows: versions, the gate, and the active model's pictures."""
    models_dir = services.settings.models_dir
    active = active_version(models_dir)
    rows = [
        ModelRow(
            version=row["version"],
            status=row["status"],
            created_at=row.get("created_at"),
            n_examples=row.get("n_examples"),
            thresholds=row.get("thresholds"),
            metrics=_headline_metrics(row.get("metrics") or {}),
            gate=row.get("gate"),
            reason=row.get("reason", ""),
            run_id=row.get("run_id"),
        )
        for row in reversed(registry.versions(models_dir))
    ]
    pictures: dict[str, Any] = {}
    n_labelled = 0
    if active is not None:
        scores, spam = labelled_scores(session, user, active)
        n_labelled = len(scores)
        curve = charts.precision_recall(scores, spam)
        if curve is not None:
            pictures["pr"] = charts.pr_curve_svg(
                curve, f"Precision-recall of {active} on labelled comments"
            )
            pictures["average_precision"] = curve.average_precision
        if scores:
            pictures["histogram"] = charts.histogram_svg(
                [s for s, y in zip(scores, spam, strict=True) if y],
                [s for s, y in zip(scores, spam, strict=True) if not y],
                f"Scores of {active} by true label",
            )
    axis, false_positives, missed = mistakes_per_day(session, user)
    session.commit()
    pictures["mistakes"] = charts.series_svg(
        axis,
        [("false positives", false_positives), ("missed spam", missed)],
        f"False positives and missed spam per day, last {CHART_DAYS} days",
    )
    return {
        "page": "models",
        "user": user,
        "active": active,
        "rollback_to": registry.previous_active(models_dir),
        "rows": rows,
        "pictures": pictures,
        "n_labelled": n_labelled,
        "mistake_totals": (sum(false_positives), sum(missed)),
        "runs": list(reversed(list_runs(models_dir)))[:5],
        "can_retrain": services.queue is not None,
    }
