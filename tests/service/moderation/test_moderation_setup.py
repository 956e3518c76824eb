"""Moderation's setup: the `users` commands, and the migration auditing labels written before it."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from service import db, security, tables, users
from service.cli import app
from tests.service.conftest import POSTGRES_ENV, make_settings

pytestmark = pytest.mark.xdist_group("moderation_setup")


def test_create_grant_and_list_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'users.db'}"
    monkeypatch.setenv("COMMENTGUARD_DATABASE_URL", url)
    monkeypatch.setenv("COMMENTGUARD_SECRET_KEY", "k" * 32)
    runner = CliRunner()
    settings = make_settings(database_url=url, secret_key="k" * 32)
    created = runner.invoke(app, ["users", "create", "ann", "--role", "moderator"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("cgu_")
    monkeypatch.setenv("COMMENTGUARD_NEW_USER_PASSWORD", "s3cret pass")
    assert runner.invoke(app, ["users", "create", "root", "--role", "admin"]).exit_code == 0
    monkeypatch.delenv("COMMENTGUARD_NEW_USER_PASSWORD")

    assert runner.invoke(app, ["users", "create", "ann", "--role", "admin"]).exit_code == 2
    assert runner.invoke(app, ["users", "create", "bob", "--role", "boss"]).exit_code == 2
    unknown_site = runner.invoke(app, ["users", "grant", "ann", "https://blog.example"])
    assert unknown_site.exit_code == 2 and "no site" in unknown_site.output

    engine = db.make_engine(settings)
    with db.make_session_factory(engine)() as session:
        account = security.create_account_with_key(session, "blog", settings.secret_key)
        session.commit()
    granted = runner.invoke(
        app,
        ["users", "grant", "ann", "https://Blog.example/", "--account", str(account.account_id)],
    )
    assert granted.exit_code == 0, granted.output
    again = runner.invoke(app, ["users", "grant", "ann", "https://blog.example"])
    assert again.exit_code == 0, again.output  # found by URL now; granting twice is harmless
    listed = runner.invoke(app, ["users", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    by_name = {u["name"]: u for u in json.loads(listed.stdout)}
    assert by_name["ann"]["sites"] == ["https://blog.example"]
    assert by_name["ann"]["has_password"] is False and by_name["root"]["has_password"] is True
    second = runner.invoke(app, ["users", "token", "ann"])
    assert second.exit_code == 0, second.output

    with db.make_session_factory(engine)() as session:
        ann = users.authenticate_token(session, token, settings.secret_key)
        assert ann is not None and ann.name == "ann" and ann.site_ids is not None
        assert len(ann.site_ids) == 1
        root = users.authenticate_password(session, "root", "s3cret pass")
        assert root is not None and root.site_ids is None
        later = users.authenticate_token(
            session, second.stdout.strip().splitlines()[-1], settings.secret_key
        )
        assert later is not None and later.id == ann.id
    with engine.connect() as connection:
        dump = "".join(str(r) for r in connection.exec_driver_sql("SELECT * FROM user_tokens"))
    engine.dispose()
    assert token not in dump and token[4:] not in dump


# --- the migration -----------------------------------------------------------------------


def _kinds() -> list[str]:
    return ["sqlite", "postgres"] if os.environ.get(POSTGRES_ENV) else ["sqlite"]


@pytest.fixture(params=_kinds())
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrate.db'}"
        return
    base = make_url(os.environ[POSTGRES_ENV])
    name = f"cg_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_migration_audits_the_labels_written_before_it(empty_database: str) -> None:
    settings = make_settings(database_url=empty_database)
    db.upgrade(settings, "0002")
    engine = db.make_engine(settings)
    comment_id = uuid.uuid4()
    when = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(
            tables.Account.__table__.insert(), [{"id": 1, "name": "a", "created_at": when}]
        )
        connection.execute(
            tables.Site.__table__.insert(),
            [{"id": 1, "account_id": 1, "url": "", "callback_secret": "s", "created_at": when}],
        )
        # The tables' Core inserts (0003 changes none of these tables).
        connection.execute(
            tables.Comment.__table__.insert(),
            [{"id": comment_id, "site_id": 1, "content": "x", "status": "scored"}],
        )
        connection.execute(
            tables.Verdict.__table__.insert(),
            [
                {
                    "comment_id": comment_id,
                    "score": 0.99,
                    "decision": "spam",
                    "reasons": [],
                    "model_version": "v",
                    "duration_ms": 1.0,
                    "scored_at": when,
                }
            ],
        )
        for value in ("spam", "ham"):
            connection.execute(
                tables.Label.__table__.insert(),
                [
                    {
                        "comment_id": comment_id,
                        "label": value,
                        "source": "feedback",
                        "actor": "akismet:cgabc",
                        "created_comment": False,
                        "created_at": when,
                    }
                ],
            )
    engine.dispose()

    db.upgrade(settings)

    engine = db.make_engine(settings)
    with db.make_session_factory(engine)() as session:
        audit = (
            session.execute(select(tables.LabelAudit).order_by(tables.LabelAudit.id))
            .scalars()
            .all()
        )
        assert [(a.before, a.after, a.kind, a.decision) for a in audit] == [
            (None, "spam", "confirmation", "spam"),
            ("spam", "ham", "false_positive", "spam"),
        ]
        assert all(a.comment_id == comment_id and a.created_at == when for a in audit)
    engine.dispose()
    command.downgrade(db.alembic_config(empty_database), "0002")
    command.upgrade(db.alembic_config(empty_database), "head")
