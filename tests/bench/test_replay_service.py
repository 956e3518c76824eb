"""The replay (bench/replay_service.py): a labelled corpus played through the real service,
with moderators acting on it."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bench.replay_service import (
    Moderators,
    Outcome,
    Row,
    ServiceClient,
    load_rows,
    replay,
    summarise,
    write_outputs,
)
from service import db, tables
from service.settings import Settings
from tests.service.conftest import create_account, create_admin, serve_app

pytestmark = pytest.mark.xdist_group("replay")

CORPUS = """id,author,date,content,label
c3,eve,2024-01-03T10:00:00,third by date,0
c1,ann,2024-01-01T10:00:00,first by date,1
c2,bob,,undated: takes the date before it in the file,0
c0,cat,2023-12-31T10:00:00,oldest,1
"""


def test_play_rows_in_date_order(tmp_path: Path) -> None:
    path = tmp_path / "corpus.csv"
    path.write_text(CORPUS)
    rows = load_rows([path])
    assert [row.id for row in rows] == ["c0", "c1", "c2", "c3"]  # c2 right after c1
    assert [row.number for row in rows] == [0, 1, 2, 3]
    assert rows[0].label == 1 and rows[0].fields["author"] == "cat"


TIES = "id,date,content,label\n" + "".join(
    f"t{i},2024-01-01T10:00:00,same second {i},0\nu{i},,undated after t{i},1\n" for i in range(8)
)


def test_order_equal_timestamps_by_seed_keeping_undated_after_theirs(tmp_path: Path) -> None:
    path = tmp_path / "ties.csv"
    path.write_text(TIES)
    orders = {seed: [row.id for row in load_rows([path], seed=seed)] for seed in range(4)}
    assert orders[1] == [row.id for row in load_rows([path], seed=1)]  # same seed, same order
    assert len({tuple(order) for order in orders.values()}) > 1
    for order in orders.values():
        # Each undated comment still follows the dated one before it in the file.
        assert all(order[order.index(f"t{i}") + 1] == f"u{i}" for i in range(8))


def test_play_undated_file_in_file_order_whatever_the_seed(tmp_path: Path) -> None:
    path = tmp_path / "undated.csv"
    path.write_text("id,content,label\n" + "".join(f"s{i},text {i},{i % 2}\n" for i in range(9)))
    for seed in (0, 1, 2):
        assert [row.id for row in load_rows([path], seed=seed)] == [f"s{i}" for i in range(9)]


def test_moderators_review_queue_report_some_missed_spam_never_see_discard() -> None:
    moderators = Moderators(seed=3, missed_report_rate=0.5)
    acts = [moderators.act(decision, label) for decision in ("unsure", "spam") for label in (0, 1)]
    assert acts == [(True, False)] * 4
    assert moderators.act("discard", 1) == (False, False)
    assert moderators.act("ham", 0) == (False, False)
    reports = [moderators.act("ham", 1)[1] for _ in range(200)]
    assert 60 < sum(reports) < 140  # about half, drawn from the seed
    again = Moderators(seed=3, missed_report_rate=0.5)
    for decision, label in [("unsure", 0), ("unsure", 1), ("spam", 0), ("spam", 1)]:
        again.act(decision, label)
    again.act("discard", 1)
    again.act("ham", 0)
    assert [again.act("ham", 1)[1] for _ in range(200)] == reports


def _outcome(number: int, label: int, decision: str) -> Outcome:
    reviewed = decision in ("unsure", "spam")
    return Outcome(number, f"c{number}", label, decision, 0.5, "v1", reviewed, False)


def test_count_flagged_as_spam_or_discard_at_arrival() -> None:
    outcomes = [
        _outcome(0, 1, "discard"),  # caught, unseen
        _outcome(1, 1, "spam"),  # caught, reviewed
        _outcome(2, 1, "unsure"),  # held: reviewed, but not flagged
        _outcome(3, 0, "ham"),
        _outcome(4, 0, "spam"),  # a false positive
        _outcome(5, 0, "ham"),
    ]
    report = summarise(outcomes, [], [{"version": "v1", "first_comment": 0}], warmup=3, window=2)
    assert report.overall["precision"] == pytest.approx(2 / 3)
    assert report.overall["recall"] == pytest.approx(2 / 3)
    assert report.overall["fpr"] == pytest.approx(1 / 3)
    assert report.reviewed_share == pytest.approx(3 / 6)
    assert report.after_warmup["n"] == 3 and report.after_warmup["fpr"] == pytest.approx(1 / 3)
    assert [(p["start"], p["end"]) for p in report.learning_curve] == [(0, 2), (2, 4), (4, 6)]


@pytest.fixture(scope="module")
def youtube_rows() -> list[Row]:
    root = Path(__file__).resolve().parents[2]
    rows = load_rows([root / "data/corpora/youtube-spam-collection/Youtube02-KatyPerry.csv"])
    return rows[:40]


def test_replay_labels_what_moderators_review_through_the_service(
    settings: Settings, workers: Any, youtube_rows: list[Row], tmp_path: Path
) -> None:
    account = create_account(settings, "replayed site")
    admin = create_admin(settings)
    site = "https://replay.example"
    with serve_app(settings) as url:
        client = ServiceClient(url, account.key, admin.key, timeout=60)
        try:
            report, outcomes = replay(youtube_rows, client, site, seed=7, warmup=10, window=10)
        finally:
            client.close()
    assert [o.number for o in outcomes] == list(range(len(youtube_rows)))
    assert {o.decision for o in outcomes} <= {"ham", "unsure", "spam", "discard"}
    reviewed = sum(o.reviewed for o in outcomes)
    reported = sum(o.reported for o in outcomes)
    assert reported == report.reported_missed
    assert all(o.label == 1 and o.decision == "ham" for o in outcomes if o.reported)
    engine = db.make_engine(settings)
    try:
        with db.make_session_factory(engine)() as session:
            sources = dict(
                session.execute(
                    select(tables.Label.source, func.count())
                    .join(tables.Comment, tables.Comment.id == tables.Label.comment_id)
                    .join(tables.Site, tables.Site.id == tables.Comment.site_id)
                    .where(tables.Site.account_id == account.id)
                    .group_by(tables.Label.source)
                ).all()
            )
    finally:
        engine.dispose()
    # Every reviewed comment got its true label from a moderator; every reported miss came
    # through the feedback path.
    assert sources.get("moderator", 0) == reviewed
    assert sources.get("feedback", 0) == reported
    assert report.overall["n"] == len(youtube_rows)
    assert report.after_warmup["n"] == len(youtube_rows) - 10
    assert len(report.learning_curve) == 4

    write_outputs(report, outcomes, tmp_path, "test replay")
    written = json.loads((tmp_path / "replay.json").read_text())
    assert {"overall", "after_warmup", "reviewed_share", "retrains", "model_versions"} <= set(
        written
    )
    assert (tmp_path / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _learning_db(tmp_path: Path, adapters: bool) -> Any:
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path / 'learned.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE comments (id INTEGER PRIMARY KEY, is_test BOOLEAN)"))
        connection.execute(text("CREATE TABLE labels (id INTEGER PRIMARY KEY, comment_id INTEGER)"))
        connection.execute(text("INSERT INTO comments VALUES (1, 0), (2, 1)"))
        connection.execute(text("INSERT INTO labels VALUES (7, 1), (9, 2)"))  # 9: test traffic
        if adapters:
            connection.execute(text("CREATE TABLE site_adapters (labels_seen VARCHAR)"))
            connection.execute(text("INSERT INTO site_adapters VALUES ('3:6')"))
    return engine


def test_wait_for_site_adapter_until_fitted_on_newest_label(tmp_path: Path) -> None:
    from sqlalchemy import text

    from bench.replay_service import _learned

    engine = _learning_db(tmp_path, adapters=True)
    try:
        assert not _learned(engine, timeout=0.1)  # fitted up to label 6; label 7 is newer
        with engine.begin() as connection:
            connection.execute(text("UPDATE site_adapters SET labels_seen = '4:7'"))
        assert _learned(engine, timeout=0.1)
    finally:
        engine.dispose()


def test_wait_for_nothing_without_site_adapters(tmp_path: Path) -> None:
    from bench.replay_service import _learned

    engine = _learning_db(tmp_path, adapters=False)
    try:
        assert _learned(engine, timeout=0.1)
    finally:
        engine.dispose()


def test_replay_reports_what_was_played_when_the_service_goes_away(
    settings: Settings, workers: Any, youtube_rows: list[Row]
) -> None:
    account = create_account(settings, "replayed site")
    admin = create_admin(settings)
    with contextlib.ExitStack() as server:
        url = server.enter_context(serve_app(settings))
        client = ServiceClient(url, account.key, admin.key, timeout=60)

        def stop_after_two_batches(done: int, total: int) -> None:
            if done == 20:
                server.close()  # the service goes away between two batches

        try:
            report, outcomes = replay(
                youtube_rows, client, "https://replay.example", seed=7, warmup=10, window=10,
                progress=stop_after_two_batches,
            )  # fmt: skip
        finally:
            client.close()
    assert [o.number for o in outcomes] == list(range(20))
    assert report.overall["n"] == 20
    assert report.settings["stopped_early"] is True
    assert "Error" in report.settings["stopped_by"]
