"""usage-limit, key-sites, get-subscription and get-stats: what the Akismet answers count."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.orm import Session

from classifier import Decision
from classifier.scoring import SPAM_DECISIONS
from service import tables
from service.intake.sites import normalise_site_url
from service.moderation.labels import newest_label_ids

# What the platform was answered `false` for (unsure too: Akismet's answers are only true or
# false, so its reports count an unsure comment labelled spam as missed spam).
HAM_DECISIONS = frozenset(d.value for d in Decision) - SPAM_DECISIONS
KEY_SITES_ORDERS = ("total", "spam", "ham", "missed_spam", "false_positives")
KEY_SITES_DEFAULT_LIMIT = 500
KEY_SITES_CSV_HEADER = (
    "Site",
    "Total API Calls",
    "Spam",
    "Ham",
    "Missed Spam",
    "False Positives",
    "Is Revoked",
)

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


# --- usage-limit and key-sites -----------------------------------------------------------


def month_bounds(
    month: str | None = None, now: datetime | None = None
) -> tuple[str, datetime, datetime]:
    """("YYYY-MM", first instant, first instant of the next month), in UTC; ValueError if bad."""
    now = now or tables.utcnow()
    if month:
        match = _MONTH.match(month.strip())
        if match is None:
            raise ValueError(f"month must be YYYY-MM, not {month!r}")
        year, number = int(match[1]), int(match[2])
    else:
        year, number = now.year, now.month
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return f"{year:04d}-{number:02d}", start, end


def _counted(start: datetime, end: datetime) -> Any:
    """The comments that were API calls in [start, end): not tests, not brought in by feedback."""
    brought_in = exists().where(
        tables.Label.comment_id == tables.Comment.id, tables.Label.created_comment.is_(True)
    )
    return and_(
        tables.Comment.received_at >= start,
        tables.Comment.received_at < end,
        tables.Comment.is_test.is_(False),
        ~brought_in,
    )


def usage_count(session: Session, account_id: int, start: datetime, end: datetime) -> int:
    """Comment checks the account made in [start, end)."""
    return int(
        session.execute(
            select(func.count())
            .select_from(tables.Comment)
            .join(tables.Site, tables.Site.id == tables.Comment.site_id)
            .where(tables.Site.account_id == account_id, _counted(start, end))
        ).scalar_one()
    )


def usage_limit(session: Session, account_id: int, now: datetime | None = None) -> dict[str, Any]:
    """Akismet's usage-limit answer for this month.

    Akismet throttles a key that has gone over its limit three months running; `throttled`
    reports that state (commentguard itself refuses no call).
    """
    _, start, end = month_bounds(None, now)
    usage = usage_count(session, account_id, start, end)
    limit = session.execute(
        select(tables.Account.usage_limit).where(tables.Account.id == account_id)
    ).scalar_one_or_none()
    if limit is None:
        return {"limit": "none", "usage": usage, "percentage": "0.00", "throttled": False}
    percentage = usage / limit * 100 if limit > 0 else (100.0 if usage else 0.0)
    throttled = usage > limit and all(
        usage_count(session, account_id, *_previous_month(start, back)) > limit for back in (1, 2)
    )
    return {
        "limit": limit,
        "usage": usage,
        "percentage": f"{percentage:.2f}",
        "throttled": throttled,
    }


def _previous_month(start: datetime, back: int) -> tuple[datetime, datetime]:
    index = start.year * 12 + start.month - 1 - back
    first = datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
    _, _, end = month_bounds(f"{first.year:04d}-{first.month:02d}")
    return first, end


@dataclass(frozen=True, slots=True)
class SiteActivity:
    site: str
    api_calls: int = 0
    spam: int = 0
    ham: int = 0
    missed_spam: int = 0
    false_positives: int = 0
    is_revoked: bool = False

    def sort_value(self, order: str) -> int:
        return self.api_calls if order == "total" else int(getattr(self, order))


@dataclass(frozen=True, slots=True)
class KeySites:
    month: str
    sites: list[SiteActivity]
    limit: int
    offset: int
    total: int

    def to_json(self) -> dict[str, Any]:
        # Counts as strings, `is_revoked` as a boolean: the shape of Akismet's own answer.
        rows = [
            {
                "site": s.site,
                "api_calls": str(s.api_calls),
                "spam": str(s.spam),
                "ham": str(s.ham),
                "missed_spam": str(s.missed_spam),
                "false_positives": str(s.false_positives),
                "is_revoked": s.is_revoked,
            }
            for s in self.sites
        ]
        return {self.month: rows, "limit": self.limit, "offset": self.offset, "total": self.total}

    def to_csv(self, key_name: str) -> str:
        out = io.StringIO()
        out.write(
            f"Active sites for {key_name} during {self.month} "
            f"(limit:{self.limit}, offset: {self.offset}, total: {self.total})\n"
        )
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(KEY_SITES_CSV_HEADER)
        for s in self.sites:
            writer.writerow(
                [
                    s.site,
                    s.api_calls,
                    s.spam,
                    s.ham,
                    s.missed_spam,
                    s.false_positives,
                    "true" if s.is_revoked else "false",
                ]
            )
        return out.getvalue().rstrip("\n")


def _int_param(value: str, default: int, maximum: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        return default
    if number < 0:
        return default
    return min(number, maximum) if maximum is not None else number


@dataclass(frozen=True, slots=True)
class Activity:
    """What a site's checks and labels count in a period, as Akismet's reports count them."""

    api_calls: int = 0
    spam: int = 0
    ham: int = 0
    missed_spam: int = 0
    false_positives: int = 0

    def __add__(self, other: Activity) -> Activity:
        return Activity(
            self.api_calls + other.api_calls,
            self.spam + other.spam,
            self.ham + other.ham,
            self.missed_spam + other.missed_spam,
            self.false_positives + other.false_positives,
        )

    def any(self) -> bool:
        return any((self.api_calls, self.spam, self.ham, self.missed_spam, self.false_positives))


def activity(
    session: Session, account_id: int, start: datetime, end: datetime, site_id: int | None = None
) -> dict[int, Activity]:
    """Each of the account's sites' activity in [start, end) (only `site_id`'s if given).

    api_calls, spam and ham count the checks by verdict (unsure is ham: it was answered
    `false`, let through to moderation); missed_spam and false_positives count the comments
    whose newest label, given in the period, contradicts the answer the platform got.
    """
    decision = tables.Verdict.decision
    only_site = [tables.Comment.site_id == site_id] if site_id is not None else []
    calls = session.execute(
        select(
            tables.Comment.site_id,
            func.count(),
            func.sum(case((decision.in_(SPAM_DECISIONS), 1), else_=0)),
            func.sum(case((decision.in_(HAM_DECISIONS), 1), else_=0)),
        )
        .join(tables.Site, tables.Site.id == tables.Comment.site_id)
        .outerjoin(tables.Verdict, tables.Verdict.comment_id == tables.Comment.id)
        .where(tables.Site.account_id == account_id, _counted(start, end), *only_site)
        .group_by(tables.Comment.site_id)
    ).all()
    newest = newest_label_ids()
    corrections = session.execute(
        select(
            tables.Comment.site_id,
            func.sum(
                case((and_(tables.Label.label == "spam", decision.in_(HAM_DECISIONS)), 1), else_=0)
            ),
            func.sum(
                case((and_(tables.Label.label == "ham", decision.in_(SPAM_DECISIONS)), 1), else_=0)
            ),
        )
        .select_from(tables.Label)
        .join(newest, newest.c.id == tables.Label.id)
        .join(tables.Comment, tables.Comment.id == tables.Label.comment_id)
        .join(tables.Site, tables.Site.id == tables.Comment.site_id)
        .join(tables.Verdict, tables.Verdict.comment_id == tables.Comment.id)
        .where(
            tables.Site.account_id == account_id,
            tables.Label.created_at >= start,
            tables.Label.created_at < end,
            tables.Label.created_comment.is_(False),
            tables.Comment.is_test.is_(False),
            *only_site,
        )
        .group_by(tables.Comment.site_id)
    ).all()
    counts: dict[int, Activity] = {}
    for site, total, spam, ham in calls:
        counts[site] = Activity(api_calls=total, spam=int(spam or 0), ham=int(ham or 0))
    for site, missed, false_positives in corrections:
        counts[site] = counts.get(site, Activity()) + Activity(
            missed_spam=int(missed or 0), false_positives=int(false_positives or 0)
        )
    return counts


def key_sites(
    session: Session,
    account_id: int,
    month: str | None = None,
    url_filter: str = "",
    order: str = "total",
    limit: str = "",
    offset: str = "",
) -> KeySites:
    """Per-site activity of the account in a month, as Akismet's key-sites reports it
    (see `activity`). ValueError for a malformed month."""
    name, start, end = month_bounds(month)
    order = order if order in KEY_SITES_ORDERS else "total"
    page_limit = _int_param(limit, KEY_SITES_DEFAULT_LIMIT, KEY_SITES_DEFAULT_LIMIT)
    page_offset = _int_param(offset, 0)
    counts = activity(session, account_id, start, end)
    query = select(tables.Site.id, tables.Site.url).where(tables.Site.id.in_(list(counts)))
    if url_filter.strip():
        query = query.where(
            func.lower(tables.Site.url).contains(url_filter.strip().lower(), autoescape=True)
        )
    sites = [
        SiteActivity(
            site=url,
            api_calls=counts[site_id].api_calls,
            spam=counts[site_id].spam,
            ham=counts[site_id].ham,
            missed_spam=counts[site_id].missed_spam,
            false_positives=counts[site_id].false_positives,
        )
        for site_id, url in session.execute(query).all()
        if counts[site_id].any()
    ]
    sites.sort(key=lambda s: (-s.sort_value(order), s.site))
    page = sites[page_offset : page_offset + page_limit]
    return KeySites(name, page, page_limit, page_offset, len(sites))


# --- the WordPress plugin's settings page: get-subscription, get-stats ----------------------

STATS_PERIODS = ("all", "6-months", "60-days")


def subscription(session: Session, account_id: int, now: datetime | None = None) -> dict[str, Any]:
    """Akismet's get-subscription answer, in the fields the WordPress plugin reads.

    `status` is `active` (the plugin saves a key only when it is `active`, `active-dunning` or
    `no-sub`); `limit_reached` follows the account's usage limit as usage-limit reports it:
    `yellow` over it this month, `red` once throttled.
    """
    name = session.execute(
        select(tables.Account.name).where(tables.Account.id == account_id)
    ).scalar_one()
    usage = usage_limit(session, account_id, now)
    limit_reached: str | bool = False
    if usage["throttled"]:
        limit_reached = "red"
    elif usage["limit"] != "none" and usage["usage"] > usage["limit"]:
        limit_reached = "yellow"
    return {
        "account_id": account_id,
        "account_name": f"commentguard ({name})",
        "account_type": "commentguard",
        "status": "active",
        "next_billing_date": None,
        "limit_reached": limit_reached,
    }


def _site_id(session: Session, account_id: int, blog: str) -> int | None:
    return session.execute(
        select(tables.Site.id).where(
            tables.Site.account_id == account_id, tables.Site.url == normalise_site_url(blog)
        )
    ).scalar_one_or_none()


def _periods(
    session: Session, account_id: int, site_id: int, period: str, now: datetime
) -> list[tuple[str, datetime, datetime]]:
    """The breakdown's periods, oldest first: days for 60-days, months otherwise."""
    if period == "60-days":
        today = datetime(now.year, now.month, now.day, tzinfo=UTC)
        days = [today - timedelta(days=back) for back in range(59, -1, -1)]
        return [(d.strftime("%Y-%m-%d"), d, d + timedelta(days=1)) for d in days]
    _, this_month, _ = month_bounds(None, now)
    if period == "6-months":
        first = _previous_month(this_month, 5)[0]
    else:
        oldest = session.execute(
            select(func.min(tables.Comment.received_at)).where(tables.Comment.site_id == site_id)
        ).scalar_one_or_none()
        first = month_bounds(None, oldest)[1] if oldest is not None else this_month
    months = []
    while first <= this_month:
        name, start, end = month_bounds(None, first)
        months.append((name, start, end))
        first = end
    return months


def stats(
    session: Session, account_id: int, blog: str, period: str, now: datetime | None = None
) -> dict[str, Any]:
    """Akismet's get-stats answer for one site: totals and a breakdown by month (by day for
    `60-days`), from the same counts as key-sites. ValueError for an unknown period.

    `accuracy` is the share of checks whose answer no label contradicted, in percent (100
    with no checks). Akismet's `time_saved` is left out: commentguard does not measure it.
    """
    if period not in STATS_PERIODS:
        raise ValueError(f'"from" must be one of {", ".join(STATS_PERIODS)}, not {period!r}')
    now = now or tables.utcnow()
    site_id = _site_id(session, account_id, blog)
    breakdown: dict[str, dict[str, Any]] = {}
    total = Activity()
    if site_id is not None:
        for name, start, end in _periods(session, account_id, site_id, period, now):
            counted = activity(session, account_id, start, end, site_id).get(site_id, Activity())
            total = total + counted
            breakdown[name] = {"date": name, **_stat_counts(counted)}
    wrong = total.missed_spam + total.false_positives
    checked = total.spam + total.ham
    accuracy = 100.0 if checked == 0 else max(0.0, 100.0 * (checked - wrong) / checked)
    return {**_stat_counts(total), "accuracy": round(accuracy, 2), "breakdown": breakdown}


def _stat_counts(counted: Activity) -> dict[str, int]:
    return {
        "spam": counted.spam,
        "ham": counted.ham,
        "missed_spam": counted.missed_spam,
        "false_positives": counted.false_positives,
    }
