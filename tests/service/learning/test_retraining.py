"""Retraining in the running service: real database, real Redis, real Celery workers and beat,
and the API on a real server.

The module has its own models folder (a copy of the session's tiny model), since its tests
retrain and activate models, which every other module must not see.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from classifier.artifact import ACTIVE_FILE, MODEL_FILE, active_version, set_active
from service import db, tables
from service.learning.retraining import load_labels, run_retrain
from service.settings import Settings
from tests.service.conftest import (
    Account,
    SettingsFor,
    create_account,
    create_admin,
    serve_app,
    wait_until,
)
from training.corpora import Example, load_bundled
from training.runs import list_runs

pytestmark = pytest.mark.xdist_group("retraining")

LABEL_COUNT = 150


@pytest.fixture(scope="module")
def settings(settings_for: SettingsFor) -> Settings:
    return settings_for(
        own_models=True,
        retrain_corpora=["youtube"],
        retrain_label_count=LABEL_COUNT,
        # These tests are about the shared model learning from labels, which an installation
        # whose accounts are all trusted alike may turn on.
        retrain_shared_labels=True,
        retrain_check_interval_seconds=1.0,
        retrain_soft_time_limit_seconds=600,
        retrain_time_limit_seconds=900,
        # The hot-reload test streams checks from one address as fast as the API answers,
        # past the default per-IP limit: it is about reloads, not limits.
        rate_limit_per_ip=0,
        rate_limit_per_key=0,
    )


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[str]:
    """The app on a real uvicorn server, with the queue (unlike the Akismet tests' server)."""
    with serve_app(settings) as url:
        yield url


@pytest.fixture(scope="module")
def owner(settings: Settings) -> Account:
    return create_account(settings, "retraining")


@pytest.fixture(scope="module")
def admin(settings: Settings) -> Account:
    return create_admin(settings)


@pytest.fixture(scope="module")
def instagram() -> list[Example]:
    """Labels from another platform than the corpus trained on (YouTube): what a retrain
    learns from them shows on the label holdout."""
    examples = load_bundled(["instagram"])
    random.Random(1).shuffle(examples)
    return examples


def _store_labelled(
    sessions: db.SessionFactory,
    account_id: int,
    examples: list[Example],
    *,
    flip: bool = False,
    blog: str = "https://labels.example",
) -> list[uuid.UUID]:
    """Comments as a platform sent them, each with a moderator's label (one transaction)."""
    ids = []
    with sessions() as session:
        site = tables.Site(account_id=account_id, url=f"{blog}/{uuid.uuid4().hex[:6]}",
                           callback_secret="s" * 64)  # fmt: skip
        session.add(site)
        session.flush()
        for example in examples:
            comment = tables.Comment(
                id=uuid.uuid4(),
                site_id=site.id,
                content=example.comment.content,
                author=example.comment.author,
                status=tables.CommentStatus.SCORED,
            )
            session.add(comment)
            label = example.label if not flip else 1 - example.label
            session.add(
                tables.Label(
                    comment_id=comment.id,
                    label="spam" if label else "ham",
                    source=tables.LabelSource.MODERATOR,
                    actor="test-moderator",
                )
            )
            ids.append(comment.id)
        session.commit()
    return ids


def _check(client: httpx.Client, account: Account, content: str) -> dict[str, Any]:
    response = client.post(
        "/v1/check", json={"content": content, "blog": "https://blog.example"},
        headers=account.headers,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# The tests run in this order and build on each other's state.


def test_reject_candidate_trained_on_flipped_labels_and_exclude_test_traffic(
    settings: Settings, sessions: db.SessionFactory, owner: Account, instagram: list[Example]
) -> None:
    """A batch of wrong labels (older), then honest ones (the newest, so the holdout): the
    candidate that learnt the wrong ones is worse than the active model and is rejected."""
    before = active_version(settings.models_dir)
    flipped = _store_labelled(sessions, owner.id, instagram[:400], flip=True)
    honest = _store_labelled(sessions, owner.id, instagram[400:500])
    assert len(load_labels(sessions)) == 500
    result = run_retrain(settings, sessions, trigger="test")
    assert result is not None
    assert not result.promoted, result.record["gate"]
    assert active_version(settings.models_dir) == before
    assert any(r.startswith("labels: MCC") for r in result.decision.reasons)
    # Marked as test traffic, these labels are no longer trained on (nor counted).
    with sessions() as session:
        session.execute(
            update(tables.Comment)
            .where(tables.Comment.id.in_(flipped + honest))
            .values(is_test=True)
        )
        session.commit()
    assert load_labels(sessions) == []


def test_retrain_after_enough_labels_and_serve_new_version(
    settings: Settings,
    sessions: db.SessionFactory,
    owner: Account,
    admin: Account,
    instagram: list[Example],
    workers: Any,
    api: str,
) -> None:
    before = active_version(settings.models_dir)
    with httpx.Client(base_url=api, timeout=30) as client:
        assert _check(client, owner, "hello there")["verdict"]["model_version"] == before
        # Beat checks the label count every second; the retraining worker trains.
        _store_labelled(sessions, owner.id, instagram[500 : 500 + LABEL_COUNT])
        previous_runs = {r["run_id"] for r in list_runs(settings.models_dir)}

        def new_runs() -> list[dict[str, Any]]:
            return [r for r in list_runs(settings.models_dir) if r["run_id"] not in previous_runs]

        wait_until(
            lambda: any(r["status"] in ("done", "failed") for r in new_runs()),
            300,
            "a retrain triggered by the label count",
        )
        run = new_runs()[0]
        assert run["status"] == "done" and run["trigger"] == f"labels:{LABEL_COUNT}", run
        assert run["promoted"], run["gate"]
        new = active_version(settings.models_dir)
        started = time.monotonic()
        wait_until(
            lambda: _check(client, owner, "hello again")["verdict"]["model_version"] == new,
            10,
            "the API to serve the new model",
        )
        assert time.monotonic() - started <= 10
        models = client.get("/v1/models", headers=admin.headers).json()
    assert models["active"] == new
    rows = {row["version"]: row for row in models["versions"]}
    assert rows[new]["status"] == "active"
    assert rows[before]["status"] == "retired"
    assert rows[new]["gate"]["promote"] is True
    assert rows[new]["run_id"] == run["run_id"]


def test_retrain_requested_through_api_records_its_outcome(
    settings: Settings, owner: Account, admin: Account, workers: Any, api: str
) -> None:
    with httpx.Client(base_url=api, timeout=30) as client:
        assert client.post("/v1/models/retrain").status_code == 401
        response = client.post("/v1/models/retrain", headers=admin.headers)
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "queued"

        def outcome() -> dict[str, Any]:
            result: dict[str, Any] = client.get(body["url"], headers=admin.headers).json()
            return result

        wait_until(lambda: outcome()["status"] in ("done", "failed"), 300, "the retrain run")
        record = outcome()
        missing = client.get("/v1/models/runs/run-nope", headers=admin.headers)
    assert record["status"] == "done", record
    assert record["trigger"] == "api"
    assert {"promote", "reasons", "checks"} <= set(record["gate"])
    assert record["candidate"]["metrics"]["corpus"]["n"] > 0
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def _copy_version(settings: Settings, version: str, suffix: str) -> str:
    name = f"{version}-{suffix}"
    shutil.copytree(settings.models_dir / version, settings.models_dir / name)
    return name


def _webhook_version(client: httpx.Client, account: Account) -> str | None:
    response = client.post(
        "/v1/comments",
        json={
            "content": f"webhook {uuid.uuid4()}",
            "blog": "https://blog.example",
            "external_id": str(uuid.uuid4()),
        },
        headers=account.headers,
    )
    assert response.status_code == 202, response.text
    comment_id = response.json()["id"]
    found: dict[str, Any] = {}

    def scored() -> bool:
        body = client.get(f"/v1/comments/{comment_id}", headers=account.headers).json()
        found.update(body)
        return body.get("verdict") is not None

    wait_until(scored, 20, "the worker's verdict")
    version: str = found["verdict"]["model_version"]
    return version


def test_activate_reloads_api_and_worker_within_10s_without_failed_request(
    settings: Settings, owner: Account, admin: Account, workers: Any, api: str
) -> None:
    current = active_version(settings.models_dir)
    assert current is not None
    target = _copy_version(settings, current, "hot")
    failures: list[str] = []
    versions_seen: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        with httpx.Client(base_url=api, timeout=30) as client:
            while not stop.is_set():
                try:
                    r = client.post(
                        "/v1/check", json={"content": "streaming comment"}, headers=owner.headers
                    )
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text}")
                else:
                    versions_seen.append(r.json()["verdict"]["model_version"])

    threads = [threading.Thread(target=stream) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        with httpx.Client(base_url=api, timeout=30) as client:
            wait_until(lambda: len(versions_seen) > 5, 20, "requests before the switch")
            response = client.post(f"/v1/models/{target}/activate", headers=admin.headers)
            assert response.status_code == 200, response.text
            assert response.json() == {"active": target, "previous": current}
            switched = time.monotonic()
            wait_until(lambda: versions_seen[-1] == target, 10, "the API to serve the new model")
            seen: list[tuple[float, str | None]] = []

            def worker_serves_target() -> bool:
                seen.append((time.monotonic() - switched, _webhook_version(client, owner)))
                return seen[-1][1] == target

            wait_until(worker_serves_target, 10, "the worker to reload")
            assert time.monotonic() - switched <= 10
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert failures == []
    assert set(versions_seen) == {current, target}


def test_never_serve_corrupted_artifact(
    settings: Settings, owner: Account, admin: Account, workers: Any, api: str
) -> None:
    current = active_version(settings.models_dir)
    assert current is not None
    broken = _copy_version(settings, current, "broken")
    model_file = settings.models_dir / broken / MODEL_FILE
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_file.write_bytes(bytes(data))
    with httpx.Client(base_url=api, timeout=30) as client:
        response = client.post(f"/v1/models/{broken}/activate", headers=admin.headers)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "invalid_artifact"
        assert active_version(settings.models_dir) == current
        unknown = client.post("/v1/models/nope/activate", headers=admin.headers)
        assert unknown.status_code == 404
        # Every process serves the active model first (a worker idle since an earlier test's
        # promotion picks it up with its next comment)...
        wait_until(lambda: _webhook_version(client, owner) == current, 30, "the worker to serve it")
        # ...then, pointed at by hand, the corrupted version is refused by every process, which
        # keep serving the model they have.
        (settings.models_dir / ACTIVE_FILE).write_text(broken + "\n")
        try:
            deadline = time.monotonic() + 3 * max(settings.model_reload_check_seconds, 1.0)
            while time.monotonic() < deadline:
                assert _check(client, owner, "still served")["verdict"]["model_version"] == current
            assert _webhook_version(client, owner) == current
        finally:
            set_active(settings.models_dir, current)


def test_count_published_unlabelled_comments_per_site(
    sessions: db.SessionFactory, owner: Account
) -> None:
    """The denominator of a site's learned thresholds: its comments decided `ham` that nobody
    labelled (test traffic left out)."""
    from service.learning.retraining import published_unlabelled

    with sessions() as session:
        site = tables.Site(account_id=owner.id, url=f"https://published.example/{uuid.uuid4().hex[:6]}",
                           callback_secret="s" * 64)  # fmt: skip
        session.add(site)
        session.flush()
        cases = [("ham", None, False), ("ham", None, False), ("ham", "spam", False),
                 ("spam", None, False), ("unsure", "ham", False), ("ham", None, True)]  # fmt: skip
        for decision, label, is_test in cases:
            comment = tables.Comment(
                id=uuid.uuid4(),
                site_id=site.id,
                content="a comment",
                status=tables.CommentStatus.SCORED,
                is_test=is_test,
            )
            session.add(comment)
            session.flush()
            verdict = tables.Verdict(
                comment_id=comment.id,
                score=0.1,
                decision=decision,
                reasons=[],
                model_version="v",
                duration_ms=0.1,
            )
            session.add(verdict)
            if label is not None:
                moderator = tables.LabelSource.MODERATOR
                session.add(
                    tables.Label(comment_id=comment.id, label=label, source=moderator, actor="t")
                )
        session.commit()
        key = str(site.id)
    assert published_unlabelled(sessions)[key] == 2


def test_a_queued_run_learns_from_the_labels_given_before_it_was_queued(
    settings: Settings, sessions: db.SessionFactory, owner: Account, instagram: list[Example]
) -> None:
    """Labels that arrive while a run waits in the queue are for the next run: what a run
    trains on does not depend on how fast a worker picks it up."""
    from training.runs import record_queued

    before = len(load_labels(sessions))
    _store_labelled(sessions, owner.id, instagram[500:540])
    run_id = record_queued(settings.models_dir, "test")
    _store_labelled(sessions, owner.id, instagram[540:560])  # while the run waits
    assert len(load_labels(sessions)) == before + 60
    current = active_version(settings.models_dir)
    try:
        result = run_retrain(settings, sessions, run_id=run_id, trigger="test")
        assert result is not None
        assert result.record["data"]["labels"] == before + 40
    finally:
        assert current is not None
        set_active(settings.models_dir, current)
