"""The Akismet protocol: parsing its requests, its test values, and what its answers count.

The router (`service/api/routes/akismet.py`) only turns these results into Akismet's exact bodies.
A checked comment goes through the same functions as `POST /v1/check` (`intake` and `engine`),
so it is stored and scored exactly like any other comment.
"""

from __future__ import annotations

import codecs
import csv
import io
import ipaddress
import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_to_bytes

from annotated_types import MaxLen
from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.orm import Session

from classifier import Decision, LoadedModel, Reason
from classifier.scoring import SPAM_DECISIONS
from service import security, tables
from service.engine import attach, compute_verdict
from service.intake import (
    SiteCache,
    SiteRef,
    new_comment,
    normalise_site_url,
    resolve_site,
    store_comment,
)
from service.moderation.labels import AppliedLabel, apply_label, newest_label_ids
from service.neardup.store import NearDuplicateMemory
from service.privacy import hash_ip
from service.schemas import CommentIn

log = logging.getLogger(__name__)

SUBMISSION_THANKS = "Thanks for making the web a better place."
GUARANTEED_SPAM_AUTHOR = "akismet-guaranteed-spam"
GUARANTEED_SPAM_EMAIL = "akismet-guaranteed-spam@example.com"
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
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def _max_lengths() -> dict[str, int]:
    limits = {}
    for name, info in CommentIn.model_fields.items():
        for constraint in info.metadata:
            if isinstance(constraint, MaxLen):
                limits[name] = constraint.max_length
    return limits


_MAX_LENGTHS = _max_lengths()


# --- requests ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AkismetRequest:
    """The fields of one Akismet call (each name with every value sent), and its Host."""

    fields: dict[str, list[str]]
    host: str = ""

    def value(self, name: str) -> str:
        """The first value sent for `name`, or ""."""
        values = self.fields.get(name)
        return values[0] if values else ""

    def api_key(self, prefer_key: bool = False) -> tuple[str, str]:
        """(key, where it came from): `api_key`, then `key` (the other way round for
        verify-key), then the first label of the Host header (the older sub-domain form,
        `<key>.rest.akismet.com`). ("", "") when there is none."""
        names = ("key", "api_key") if prefer_key else ("api_key", "key")
        for name in names:
            if key := self.value(name).strip():
                return key, name
        host = self.host.strip().lower()
        if host.startswith("["):
            return "", ""  # an IPv6 literal
        host = host.rsplit(":", 1)[0]  # host names are case-insensitive; keys are lower-case
        label, dot, rest = host.partition(".")
        if not dot or not rest or _is_ip(host):
            return "", ""
        return label, "Host"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _charset(content_type: str | None) -> str | None:
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"'):
            return value.strip().strip('"')
    return None


# Codecs Python calls text encodings that do not decode bytes of text: a body declaring one is
# refused rather than decoded into something no one sent.
_NOT_TEXT = frozenset({"idna", "punycode", "undefined"})


class UnsupportedCharset(ValueError):
    """A body whose declared charset names a codec that is no text encoding."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f'Unsupported charset "{name}": it is no text encoding; send UTF-8 (or declare '
            "the charset the body is in)"
        )


def _codec(*names: str | None) -> str:
    """The first name that is a known codec; UTF-8 if none is (an unknown name may be a real
    charset Python lacks, and UTF-8 is the best guess). UnsupportedCharset if that codec is
    no text encoding (base64, idna, ...)."""
    for name in names:
        if not name:
            continue
        try:
            info = codecs.lookup(name)
        except LookupError:
            continue
        if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_TEXT:
            raise UnsupportedCharset(name)
        return info.name
    return "utf-8"


def _decode(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(charset, "replace").replace("\x00", "")
    except UnicodeError as exc:  # a codec that cannot replace what it cannot decode
        raise UnsupportedCharset(charset) from exc


def _pairs(raw: bytes) -> Iterable[tuple[bytes, bytes]]:
    for part in raw.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        yield (
            unquote_to_bytes(name.replace(b"+", b" ")),
            unquote_to_bytes(value.replace(b"+", b" ")),
        )


def parse_request(
    body: bytes, content_type: str | None, query: bytes = b"", host: str = ""
) -> AkismetRequest:
    """Decode a form-urlencoded body (and, for the 1.2 calls, the query string).

    The charset is the Content-Type's, else the `blog_charset` field's, else UTF-8; bytes
    that are not valid in it become U+FFFD rather than an error. NULs are dropped, since
    PostgreSQL cannot store them. UnsupportedCharset when the charset is no text encoding.
    """
    pairs = [*_pairs(query), *_pairs(body)]
    declared = next((v for n, v in pairs if n == b"blog_charset"), b"").decode("ascii", "replace")
    charset = _codec(_charset(content_type), declared)
    fields: dict[str, list[str]] = {}
    for raw_name, raw_value in pairs:
        fields.setdefault(_decode(raw_name, charset), []).append(_decode(raw_value, charset))
    return AkismetRequest(fields, host)


def missing_field(request: AkismetRequest, *names: str) -> str | None:
    """The first of `names` the request lacks (or sends empty)."""
    return next((name for name in names if not request.value(name).strip()), None)


def authenticate(session: Session, keys: security.KeyCache, secret: str, key: str) -> int | None:
    """The account of an API key, `cg` or Akismet-shaped (cached like the bearer keys of /v1,
    which refuse Akismet-shaped keys before their cache), or None."""
    if not key:
        return None
    if security.is_akismet_key(key.lower()):
        key = key.lower()
    account_id = keys.get(key, secret)
    if account_id is None:
        account_id = security.authenticate_akismet(session, key, secret)
        if account_id is not None:
            keys.put(key, secret, account_id)
    return account_id


def public_name(key: str, secret: str) -> str:
    """A key as reports show it: never the key itself."""
    return f"{security.key_label(key, secret)}…"


def actor(key: str, secret: str) -> str:
    """How labels name the key that sent them."""
    return f"akismet:{security.key_label(key, secret)}"


# --- privacy: addresses and cookies among the other fields ---------------------------------

# Fields whose value carries the commenter's address (REMOTE_ADDR, comment_author_IP,
# HTTP_X_FORWARDED_FOR, HTTP_X_REAL_IP, HTTP_CLIENT_IP, HTTP_CF_CONNECTING_IP, HTTP_FORWARDED…):
# every address in them is hashed, wherever it stands in the value.
_ADDRESS_FIELD = re.compile(r"(^|_)(IP|ADDR|ADDRESS|FORWARDED|CLIENT)(_|$)", re.IGNORECASE)
# Fields never stored: the commenter's cookies and credentials (a logged-in WordPress user's
# cookies are a session).
_SECRET_FIELD = re.compile(r"COOKIE|AUTHORIZATION|^PHP_AUTH_", re.IGNORECASE)
# An address as it appears in those headers: bare, with a port, or in brackets (IPv6).
_ADDRESS_TOKEN = re.compile(r"[0-9A-Za-z:.%]+")


def _address(token: str) -> str | None:
    """The IP address a token spells (`1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`), else None."""
    for candidate in (token, token.rsplit(":", 1)[0] if token.count(":") == 1 else ""):
        try:
            ipaddress.ip_address(candidate.split("%")[0])
        except ValueError:
            continue
        return candidate
    return None


def _hash_addresses(value: str, secret: str, whole_only: bool) -> str:
    if whole_only:
        address = _address(value.strip())
        return value.replace(address, hash_ip(address, secret), 1) if address else value

    def replace(match: re.Match[str]) -> str:
        address = _address(match[0])
        if address is None:
            return match[0]
        return match[0].replace(address, hash_ip(address, secret), 1)  # a port stays

    return _ADDRESS_TOKEN.sub(replace, value)


def private_extra(extra: dict[str, Any], secret: str, keep_addresses: bool) -> dict[str, Any]:
    """The fields an Akismet call adds to `extra` as they may be stored: no cookie or
    credential header; the commenter's addresses hashed like `user_ip` (unless
    `keep_addresses`, COMMENTGUARD_STORE_RAW_IP): every address in an address-bearing field,
    and any other field whose whole value is an address."""
    kept: dict[str, Any] = {}
    for name, value in extra.items():
        if _SECRET_FIELD.search(name):
            continue
        if not keep_addresses:
            whole_only = _ADDRESS_FIELD.search(name) is None
            if isinstance(value, list):
                value = [_hash_addresses(v, secret, whole_only) for v in value]
            else:
                value = _hash_addresses(value, secret, whole_only)
        kept[name] = value
    return kept


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
class Submission:
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


def to_submission(request: AkismetRequest, max_content_bytes: int) -> Submission:
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
    return Submission(comment, _rule(comment, honeypot_name), notes)


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


def _verdict(
    comment: tables.Comment,
    submission: Submission,
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
    submission: Submission,
    model: LoadedModel,
    memory: NearDuplicateMemory | None = None,
) -> tables.Comment:
    """Store and score a comment, as `POST /v1/check` does; returns it with its verdict."""
    site = resolve_site(session, sites, account_id, submission.comment.blog)
    # End any transaction the lookups opened: on SQLite it holds the only write lock, and
    # scoring happens outside of it.
    session.commit()
    fresh = new_comment(site.id, submission.comment, None)
    verdict = _verdict(fresh, submission, model, memory, account_id, site)
    comment, _ = store_comment(session, fresh)
    attach(session, comment, verdict)
    session.commit()
    return comment


def answers_spam(decision: str) -> bool:
    """Akismet's `true`: spam and discard. Ham and unsure (held for a moderator) are `false`."""
    return decision in SPAM_DECISIONS


# --- submit-spam / submit-ham ------------------------------------------------------------


def _by_guid(session: Session, account_id: int, guid: str) -> tables.Comment | None:
    try:
        comment_id = uuid.UUID(guid.strip())
    except ValueError:
        return None
    return session.execute(
        select(tables.Comment)
        .join(tables.Site, tables.Site.id == tables.Comment.site_id)
        .where(tables.Comment.id == comment_id, tables.Site.account_id == account_id)
    ).scalar_one_or_none()


def _by_content(session: Session, site_id: int, comment: CommentIn) -> tables.Comment | None:
    return (
        session.execute(
            select(tables.Comment)
            .where(
                tables.Comment.site_id == site_id,
                tables.Comment.author == comment.author,
                tables.Comment.content == comment.content,
            )
            .order_by(tables.Comment.received_at.desc())
            .limit(1)
        )
        .scalars()
        .first()
    )


def record_feedback(
    session: Session,
    sites: SiteCache,
    account_id: int,
    submission: Submission,
    label: tables.LabelValue,
    guid: str,
    who: str,
    model: LoadedModel,
    memory: NearDuplicateMemory | None = None,
) -> AppliedLabel:
    """Label the comment the platform reports (by guid, else same site, author and content).

    A comment never checked is stored, and scored so that it has a verdict like every other
    one; its label says it came in this way, so it counts neither as a call nor as a miss.
    The label goes through `labels.apply_label` (so it is audited); the caller runs
    `labels.after_commit` with the result.
    """
    site = resolve_site(session, sites, account_id, submission.comment.blog)
    comment = _by_guid(session, account_id, guid) if guid.strip() else None
    if comment is None:
        comment = _by_content(session, site.id, submission.comment)
    created = comment is None
    if comment is None:
        fresh = new_comment(site.id, submission.comment, None)
        verdict = _verdict(fresh, submission, model, memory, account_id, site)
        comment, _ = store_comment(session, fresh)
        attach(session, comment, verdict)
    applied = apply_label(
        session,
        comment.id,
        label,
        tables.LabelSource.FEEDBACK,
        who,
        created_comment=created,
    )
    session.commit()
    return applied


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
