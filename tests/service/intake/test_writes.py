"""The hot-path writes store every column as given, on SQLite and on PostgreSQL (where a batch
goes as one JSON parameter), fill in the columns' defaults, and refuse a duplicate as a whole."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import db, tables
from service.intake.writes import insert_many, transient
from service.settings import Settings
from tests.service.conftest import Account


def _site(session: Session, account: Account, url: str) -> tables.Site:
    site = tables.Site(account_id=account.id, url=url, callback_secret="s")
    session.add(site)
    session.commit()
    return site


def _comment(site_id: int, n: int, **fields: object) -> tables.Comment:
    return tables.Comment(**_values(site_id, n, **fields))


def _values(site_id: int, n: int, **fields: object) -> dict[str, object]:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "site_id": site_id,
        "external_id": f"w-{uuid.uuid4().hex}-{n}",
        "callback_url": None,
        "status": tables.CommentStatus.SCORED,
        "is_test": n % 2 == 0,
        "content": f"Comment {n}: «quoted» \"double\" \\ back\nslash, emoji 🚀, tab\t, 'single'",
        "author": "Zoë",
        "author_email": "z@example.org",
        "user_ip": "2001:db8::1",
        "extra": {"nested": {"list": [1, 2.5, None, True], "text": "ü\u2028"}, "n": n},
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2))),
        "received_at": datetime(2026, 1, 2, 1, 0, 0, tzinfo=UTC),
    }
    values.update(fields)
    return values


def _verdict(comment: tables.Comment) -> tables.Verdict:
    return tables.Verdict(
        comment_id=comment.id,
        score=0.123456789,
        decision="unsure",
        reasons=[{"code": "link", "text": "a link to ex.example", "weight": 0.25}],
        model_version="v-test",
        duration_ms=1.5,
    )  # scored_at left out: its default (now) fills it


def test_a_batch_reads_back_as_written(settings: Settings, account: Account) -> None:
    sessions = db.make_session_factory(db.make_engine(settings))
    with sessions() as session:
        site = _site(session, account, "https://writes.example")
        comments = [_comment(site.id, n) for n in range(5)]
        comments.append(_comment(site.id, 5, created_at=datetime(2026, 3, 4, 5, 6, 7)))
        verdicts = [_verdict(c) for c in comments]
        before = datetime.now(UTC)
        assert insert_many(session, comments, verdicts)

    with sessions() as session:
        for written in comments:
            stored = session.get(tables.Comment, written.id)
            assert stored is not None
            for column in tables.Comment.__table__.columns:
                if column.key not in vars(written):
                    continue
                expected = getattr(written, column.key)
                if isinstance(expected, datetime) and expected.tzinfo is None:
                    expected = expected.replace(tzinfo=UTC)  # a naive time is taken as UTC
                assert getattr(stored, column.key) == expected, column.key
            # Columns left out get their defaults, or NULL without one.
            assert (stored.author_url, stored.referrer, stored.purged_at) == ("", "", None)
            assert stored.verdict is not None
            assert stored.verdict.id is not None  # the serial key was left to the database
            assert stored.verdict.score == 0.123456789
            assert stored.verdict.reasons == [
                {"code": "link", "text": "a link to ex.example", "weight": 0.25}
            ]
            assert before - timedelta(seconds=1) <= stored.verdict.scored_at <= datetime.now(UTC)


def test_a_duplicate_refuses_its_whole_batch(settings: Settings, account: Account) -> None:
    sessions = db.make_session_factory(db.make_engine(settings))
    with sessions() as session:
        site = _site(session, account, "https://dupes.example")
        first = _comment(site.id, 1)
        assert insert_many(session, [first])
        again = [_comment(site.id, 2), _comment(site.id, 3, external_id=first.external_id)]
        assert not insert_many(session, again, [_verdict(c) for c in again])
        ids = {c.id for c in again}
        stored = select(tables.Comment.id).where(tables.Comment.id.in_(ids))
        assert session.scalars(stored).all() == []
        verdicts = select(tables.Verdict.id).where(tables.Verdict.comment_id.in_(ids))
        assert session.scalars(verdicts).all() == [], "no verdict of the refused batch stays"
        # The session is usable after the refusal.
        assert insert_many(session, again[:1], [_verdict(again[0])])
        assert session.scalars(verdicts).all() != []


def test_a_row_built_without_attribute_events_is_stored_whole(
    settings: Settings, account: Account
) -> None:
    """`transient` rows go through the fallback paths' `session.add` as well as through the
    Core inserts: either way every value they hold is stored."""
    sessions = db.make_session_factory(db.make_engine(settings))
    with sessions() as session:
        site = _site(session, account, "https://orm.example")
        by_orm = transient(tables.Comment, **_values(site.id, 7))
        by_core = transient(tables.Comment, **_values(site.id, 8))
        verdict = _verdict(by_orm)
        session.add(by_orm)
        by_orm.verdict = verdict  # a relationship set on it, as attach() does
        session.add(verdict)
        session.commit()
        assert insert_many(session, [by_core])
    with sessions() as session:
        for n, written in ((7, by_orm), (8, by_core)):
            stored = session.get(tables.Comment, written.id)
            assert stored is not None
            for column, value in _values(site.id, n, id=written.id).items():
                if column == "external_id":
                    value = written.external_id  # random in each _values call
                assert getattr(stored, column) == value, column
        assert session.get(tables.Verdict, verdict.id) is not None
        assert stored.verdict is None and by_orm.verdict is verdict
