"""The moderation queries the API and the console share: the queue, per-site statistics and a
comment's history, each limited to the sites a user may see (elsewhere: 404, as if it did not
exist). Plain functions of a session; the callers commit.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import TypeAdapter
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Select,
    SQLColumnExpression,
    and_,
    case,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased, contains_eager

from classifier import Decision, Thresholds
from service import tables
from service.moderation import labels
from service.problems import ApiError
from service.schemas import (
    AuditOut,
    DeliveryOut,
    HistoryOut,
    QueueItemOut,
    QueuePageOut,
    SiteStatsOut,
    ThresholdsIn,
    ThresholdsOut,
    UtcDateTime,
)
from service.scoring.thresholds import SiteThresholds
from service.users import UserPrincipal

# --- who sees what -----------------------------------------------------------------------


def visible(user: UserPrincipal) -> ColumnElement[bool]:
    """The comments of the sites the user may see."""
    if user.site_ids is None:
        return true()
    return tables.Comment.site_id.in_(sorted(user.site_ids))


def visible_comment(session: Session, user: UserPrincipal, comment_id: uuid.UUID) -> int:
    """The comment's site id, or 404 if it does not exist or is on a site the user cannot see."""
    site_id = session.execute(
        select(tables.Comment.site_id).where(tables.Comment.id == comment_id)
    ).scalar_one_or_none()
    if site_id is None or not user.can_see(site_id):
        raise ApiError(404, "not_found", f"no comment {comment_id}")
    return site_id


def check_site(user: UserPrincipal, site: int | None) -> None:
    """404 if `site` is given and not one the user may see."""
    if site is not None and not user.can_see(site):
        raise ApiError(404, "not_found", f"no site {site}")


# --- the queue ---------------------------------------------------------------------------

# `review`: the comments whose labels teach the site's model most first: the least sure
# (|score − 0.5| ascending, the site's adapted score), but one of each group of near-copies
# (`tables.Verdict.cluster`) before a second one of any group, so that a spam run of forty
# copies takes one label (the near-duplicate memory applies it to the rest), not the first
# forty places. `uncertainty`: least sure first, copies or not. `newest`: by arrival.
Order = Literal["review", "uncertainty", "newest"]
DecisionFilter = Literal["unsure", "ham", "spam", "discard", "all"]


_CURSOR_TIME: TypeAdapter[datetime] = TypeAdapter(UtcDateTime)


def _encode_cursor(value: Any, comment_id: uuid.UUID) -> str:
    raw = json.dumps([value, str(comment_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, order: Order) -> tuple[Any, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, comment_id = json.loads(raw)
        if order == "review":
            rank, uncertainty = value
            value = (int(rank), float(uncertainty))
        elif order == "uncertainty":
            value = float(value)
        else:
            value = _CURSOR_TIME.validate_python(datetime.fromisoformat(value))
        return value, uuid.UUID(comment_id)
    except (binascii.Error, ValueError, TypeError, OverflowError, RecursionError) as exc:
        # What went wrong inside is ours to know: the caller learns only that the cursor is bad.
        message = "the cursor is not one this endpoint returned (with the same order)"
        raise ApiError(
            422,
            "invalid_cursor",
            message,
            details=[{"loc": ["query", "cursor"], "msg": message, "type": "invalid_cursor"}],
        ) from exc


class _FoldedLike(ColumnElement[bool]):
    """`column` matches the LIKE `pattern` ignoring case: ILIKE on PostgreSQL; plain LIKE on
    SQLite, which ignores ASCII case already (as its lower() does), so no lower() per row."""

    inherit_cache = True
    type = Boolean()

    def __init__(self, column: SQLColumnExpression[str], pattern: str) -> None:
        self.column = column
        self.pattern = literal(pattern)


@compiles(_FoldedLike)
def _folded_like(element: _FoldedLike, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    pattern = compiler.process(element.pattern, **kw)
    return f"{column} ILIKE {pattern} ESCAPE '/'"


@compiles(_FoldedLike, "sqlite")
def _folded_like_sqlite(element: _FoldedLike, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    pattern = compiler.process(element.pattern, **kw)
    return f"{column} LIKE {pattern} ESCAPE '/'"


def _uncertainty() -> ColumnElement[float]:
    # 0.5 written into the SQL, not bound: only then does the expression match the index
    # ix_verdicts_queue (SQLite and PostgreSQL compare index expressions as written).
    return func.abs(tables.Verdict.score - literal_column("0.5"))


def queue_select(
    user: UserPrincipal,
    *,
    site: int | None = None,
    decision: str = "unsure",
    since: datetime | None = None,
    until: datetime | None = None,
    search: str | None = None,
) -> Select[tables.Comment, str, float]:
    """The queue's comments (scored, unlabelled, not tests, on the user's sites) with their
    site URL and uncertainty, filtered; unordered. Shared by the API and the console."""
    comment = tables.Comment
    uncertainty = _uncertainty().label("uncertainty")
    labelled = exists().where(tables.Label.comment_id == comment.id)
    query = (
        select(comment, tables.Site.url, uncertainty)
        .join(tables.Verdict, tables.Verdict.comment_id == comment.id)
        .join(tables.Site, tables.Site.id == comment.site_id)
        .where(visible(user), ~labelled, comment.is_test.is_(False))
    )
    if site is not None:
        query = query.where(comment.site_id == site)
    if decision != "all":
        query = query.where(tables.Verdict.decision == Decision(decision).value)
    if since is not None:
        query = query.where(comment.received_at >= since)
    if until is not None:
        query = query.where(comment.received_at < until)
    if search:
        pattern = "%" + re.sub(r"([%_/])", r"/\1", search) + "%"
        columns = (
            comment.content,
            comment.author,
            comment.author_email,
            comment.author_url,
            comment.user_ip,
        )
        query = query.where(or_(*(_FoldedLike(column, pattern) for column in columns)))
    return query


def queue_count(
    session: Session, user: UserPrincipal, *, cap: int | None = None, **filters: Any
) -> int:
    """How many comments `queue_select(user, **filters)` holds; with `cap`, counting stops
    past it (the answer is then cap + 1), which keeps a count of a huge queue cheap."""
    query = queue_select(user, **filters).with_only_columns(
        tables.Comment.id, maintain_column_froms=True
    )
    if cap is not None:
        query = query.limit(cap + 1)
    counted = select(func.count()).select_from(query.subquery())
    return int(session.execute(counted).scalar_one())


def _review_rank(user: UserPrincipal, filters: dict[str, Any]) -> Any:
    """Each queued comment's place within its group of near-copies (1: the least sure of its
    group), among the comments the same filters select."""
    group = func.coalesce(tables.Verdict.cluster, -tables.Verdict.id)
    rank = func.row_number().over(
        partition_by=group, order_by=(_uncertainty(), tables.Comment.id)
    )
    return (
        queue_select(user, **filters)
        .with_only_columns(
            tables.Comment.id.label("id"), rank.label("rank"), maintain_column_froms=True
        )
        .subquery()
    )


def queue_page(
    session: Session,
    user: UserPrincipal,
    *,
    order: Order = "review",
    limit: int = 50,
    cursor: str | None = None,
    **filters: Any,
) -> QueuePageOut:
    """One keyset-paginated page of the queue (see `queue_select` for the filters)."""
    comment = tables.Comment
    uncertainty = _uncertainty()
    # The verdicts come with the rows (the query joins them already): no second query.
    query = queue_select(user, **filters).options(contains_eager(comment.verdict))
    if order == "review":
        ranked = _review_rank(user, filters)
        query = query.join(ranked, ranked.c.id == comment.id).add_columns(ranked.c.rank)
        if cursor is not None:
            (rank, value), after = _decode_cursor(cursor, order)
            query = query.where(
                or_(
                    ranked.c.rank > rank,
                    and_(ranked.c.rank == rank, uncertainty > value),
                    and_(ranked.c.rank == rank, uncertainty == value, comment.id > after),
                )
            )
        query = query.order_by(ranked.c.rank, uncertainty, comment.id)
    elif order == "uncertainty":
        if cursor is not None:
            value, after = _decode_cursor(cursor, order)
            query = query.where(
                or_(uncertainty > value, and_(uncertainty == value, comment.id > after))
            )
        query = query.order_by(uncertainty, comment.id)
    else:
        if cursor is not None:
            value, after = _decode_cursor(cursor, order)
            query = query.where(
                or_(
                    comment.received_at < value,
                    and_(comment.received_at == value, comment.id < after),
                )
            )
        query = query.order_by(comment.received_at.desc(), comment.id.desc())
    rows = session.execute(query.limit(limit + 1)).all()
    items = [QueueItemOut.from_row(row[0], row[1]) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last_row: Any = rows[limit - 1]
        last = last_row[0]
        position: Any = last.received_at.isoformat()
        if order == "review":
            position = [last_row[3], last_row[2]]
        elif order == "uncertainty":
            position = last_row[2]
        next_cursor = _encode_cursor(position, last.id)
    return QueuePageOut(items=items, next_cursor=next_cursor)


# --- statistics --------------------------------------------------------------------------


def site_stats(
    session: Session,
    user: UserPrincipal,
    site: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    model_thresholds: Thresholds | None = None,
) -> list[SiteStatsOut]:
    """Per-site counts of the comments received in [since, until), for the user's sites.

    With `model_thresholds` (the model's in use), each site also shows the thresholds its
    comments are decided with.

    Each comment counts once, by its verdict and its newest label. Test comments and those
    brought in by Akismet feedback (never checked) are left out, as in key-sites.
    """
    comment, verdict, label = tables.Comment, tables.Verdict, tables.Label
    decision = verdict.decision
    newest = labels.newest_label_ids()
    kind = labels.kind_in_sql(decision, label.label)
    feedback = aliased(tables.Label)  # the outer query joins the newest label already
    brought_in = exists().where(
        feedback.comment_id == comment.id, feedback.created_comment.is_(True)
    )

    def count(condition: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    query = (
        select(
            comment.site_id,
            count(verdict.id.is_not(None)),
            count(decision == "ham"),
            count(decision == "unsure"),
            count(decision == "spam"),
            count(decision == "discard"),
            count(verdict.id.is_(None)),
            count(label.label == "spam"),
            count(label.label == "ham"),
            count(kind == tables.LabelKind.MISSED_SPAM.value),
            count(kind == tables.LabelKind.FALSE_POSITIVE.value),
            count(and_(decision == "unsure", label.id.is_(None))),
        )
        .select_from(comment)
        .outerjoin(verdict, verdict.comment_id == comment.id)
        .outerjoin(newest, newest.c.comment_id == comment.id)
        .outerjoin(label, label.id == newest.c.id)
        .where(visible(user), comment.is_test.is_(False), ~brought_in)
        .group_by(comment.site_id)
    )
    sites_query = select(tables.Site).order_by(tables.Site.id)
    if user.site_ids is not None:
        sites_query = sites_query.where(tables.Site.id.in_(sorted(user.site_ids)))
    if site is not None:
        query = query.where(comment.site_id == site)
        sites_query = sites_query.where(tables.Site.id == site)
    if since is not None:
        query = query.where(comment.received_at >= since)
    if until is not None:
        query = query.where(comment.received_at < until)
    counts = {row[0]: [int(v) for v in row[1:]] for row in session.execute(query).all()}
    out = []
    for row in session.execute(sites_query).scalars():
        if user.site_ids is None and site is None and row.id not in counts:
            continue  # an admin's list: the sites with comments in the period
        values = counts.get(row.id, [0] * 11)
        own = SiteThresholds.of(row)
        out.append(
            SiteStatsOut(
                site_id=row.id,
                site=row.url,
                account_id=row.account_id,
                thresholds=thresholds_out(own, model_thresholds),
                own_thresholds=ThresholdsIn(**own.to_dict()),
                checked=values[0],
                ham=values[1],
                unsure=values[2],
                spam=values[3],
                discard=values[4],
                pending=values[5],
                labelled_spam=values[6],
                labelled_ham=values[7],
                missed_spam=values[8],
                false_positives=values[9],
                unlabelled_unsure=values[10],
            )
        )
    return out


def thresholds_out(own: SiteThresholds, model: Thresholds | None) -> ThresholdsOut | None:
    if model is None:
        return None
    return ThresholdsOut(**own.effective(model).to_dict())


# --- a comment's history -----------------------------------------------------------------


def comment_history(session: Session, user: UserPrincipal, comment_id: uuid.UUID) -> HistoryOut:
    """A comment with its verdict, its label, every label event and every callback; 404 if
    the user cannot see it."""
    site_id = visible_comment(session, user, comment_id)
    comment = session.get(tables.Comment, comment_id)
    site = session.get(tables.Site, site_id)
    assert comment is not None and site is not None
    events = session.execute(
        select(tables.LabelAudit)
        .where(tables.LabelAudit.comment_id == comment_id)
        .order_by(tables.LabelAudit.id)
    ).scalars()
    deliveries = session.execute(
        select(tables.CallbackDelivery)
        .where(tables.CallbackDelivery.comment_id == comment_id)
        .order_by(tables.CallbackDelivery.created_at, tables.CallbackDelivery.event)
    ).scalars()
    result = HistoryOut(
        comment=QueueItemOut.from_row(comment, site.url),
        label=labels.current_label(session, comment_id),
        audit=[
            AuditOut(
                id=a.id,
                label_id=a.label_id,
                actor=a.actor,
                user_id=a.user_id,
                source=tables.LabelSource(a.source),
                before=tables.LabelValue(a.before) if a.before else None,
                after=tables.LabelValue(a.after) if a.after else None,
                kind=tables.LabelKind(a.kind),
                decision=a.decision,
                note=a.note,
                created_at=a.created_at,
            )
            for a in events
        ],
        deliveries=[
            DeliveryOut(
                id=d.id,
                event=d.event,
                status=tables.DeliveryStatus(d.status),
                attempts=d.attempts,
                last_status_code=d.last_status_code,
                last_error=d.last_error,
                created_at=d.created_at,
                delivered_at=d.delivered_at,
            )
            for d in deliveries
        ],
    )
    return result


