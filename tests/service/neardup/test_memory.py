"""Near-duplicate memory: a label takes effect on near-copies at once, before any retraining.

Labels go in through the real Akismet submit-spam / submit-ham path (the `akismet` package
against a live uvicorn); near-copies come back through `POST /v1/check`, Akismet comment-check
and `POST /v1/comments` (scored by a real Celery worker), all on a real Redis.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import akismet
import httpx
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from classifier import Decision, Thresholds
from service.api.app import create_app
from service.embedded import Supervisor, start_redis
from service.neardup.policy import overrule
from service.neardup.signing import Signer
from service.neardup.store import DEFAULT_PREFIX, Match, NearDuplicateMemory
from service.settings import Settings
from tests.service.akismet.test_akismet_client import make_client
from tests.service.conftest import (
    AKISMET_THRESHOLDS,
    Account,
    LiveServer,
    SettingsFor,
    create_account,
    make_settings,
    wait_until,
)

pytestmark = [pytest.mark.xdist_group("memory"), pytest.mark.slow]

BLOG = "https://blog.example"
# The tiny test model calls this ham (0.16); a moderator knows a bot posts it everywhere.
SPAM_TEXT = (
    "This song reminds me of my childhood summers at the lake, my grandmother Maria used to "
    "sing it every evening"
)
SPAM_NEAR = SPAM_TEXT.replace("Maria", "Marta") + "!"
# The tiny model calls this discard; a moderator says it is a real fan.
HAM_TEXT = (
    "Check out my channel http://bit.ly/x subscribe!!! I upload my own guitar covers of this "
    "song every week, thanks everyone for listening"
)
HAM_NEAR = HAM_TEXT.replace("every week", "every Friday")
UNRELATED = "Great performance, the drummer is amazing and the vocals gave me chills."
SHORT = "Nice video!!"


# --- units: signatures ---------------------------------------------------------------------

TEXTS = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]),
    min_size=60,
    max_size=400,
)


def _exact_jaccard(signer: Signer, a: str, b: str) -> float:
    left, right = set(signer.shingles(a).tolist()), set(signer.shingles(b).tolist())
    return len(left & right) / len(left | right)


@hypothesis_settings(max_examples=60, deadline=None)
@given(TEXTS)
def test_sign_identical_texts_alike(text: str) -> None:
    signer = Signer()
    first, again = signer.sign(text), Signer().sign(text)
    if first is None:
        assert again is None
        assert len(signer.shingles(text)) < signer.min_shingles
        return
    assert again is not None
    assert np.array_equal(first.values, again.values)
    assert first.bands == again.bands


@hypothesis_settings(max_examples=60, deadline=None)
@given(TEXTS)
def test_signature_values_are_datasketchs_minhash(text: str) -> None:
    """The vectorised signing computes exactly what datasketch's MinHash does (signatures
    already stored in Redis stay comparable)."""
    signer = Signer()
    signature, minhash = signer.sign(text), signer.minhash(text)
    assert (signature is None) == (minhash is None)
    if signature is not None and minhash is not None:
        assert np.array_equal(signature.values, np.asarray(minhash.hashvalues, dtype=np.uint32))


def test_sign_same_in_another_process() -> None:
    signer = Signer()
    sign = signer.sign(SPAM_TEXT)
    assert sign is not None
    code = (
        "import sys; from service.neardup.signing import Signer; "
        "print(Signer().sign(sys.argv[1]).values.tobytes().hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, SPAM_TEXT],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parents[3],
    )
    assert out.stdout.strip() == sign.values.tobytes().hex()


@hypothesis_settings(max_examples=40, deadline=None)
@given(TEXTS, TEXTS)
def test_estimate_jaccard_within_sampling_error(a: str, b: str) -> None:
    signer = Signer()
    left, right = signer.sign(a), signer.sign(a[: len(a) // 2] + b)
    if left is None or right is None:
        return
    estimate = float(np.count_nonzero(left.values == right.values)) / signer.num_perm
    # 128 permutations: the estimate's standard error is at most 0.044.
    assert abs(estimate - _exact_jaccard(signer, a, a[: len(a) // 2] + b)) < 0.2


def test_sign_folds_obfuscation() -> None:
    signer = Signer()
    plain = signer.sign(SPAM_TEXT)
    hidden = signer.sign(
        "<p>" + SPAM_TEXT.replace("o", "\u043e").replace("e", "\u0435").upper() + "\u200b</p>"
    )
    assert plain is not None and hidden is not None
    assert np.array_equal(plain.values, hidden.values)


def test_sign_refuses_short_text() -> None:
    signer = Signer(min_shingles=24)
    assert signer.sign(SHORT) is None
    assert signer.sign("") is None
    assert signer.sign(SPAM_TEXT) is not None


def test_overrule_keeps_score_and_decision_consistent() -> None:
    thresholds = Thresholds(unsure=0.3, spam=0.8, discard=0.99)
    spam = Match(str(uuid.uuid4()), "spam", 0.93)
    score, decision, reason = overrule(spam, 0.1, Decision.HAM, thresholds)
    assert (score, decision) == (0.8, Decision.SPAM)
    assert thresholds.decide(score) == decision
    assert reason["kind"] == "near_duplicate" and reason["comment_id"] == spam.comment_id
    assert overrule(spam, 0.995, Decision.DISCARD, thresholds)[:2] == (0.995, Decision.DISCARD)
    discard = Match(str(uuid.uuid4()), "spam", 0.93, spam_decision="discard")
    score, decision, _ = overrule(discard, 0.1, Decision.HAM, thresholds)
    assert (score, decision) == (0.99, Decision.DISCARD) and thresholds.decide(score) == decision
    ham = Match(str(uuid.uuid4()), "ham", 0.85)
    score, decision, reason = overrule(ham, 0.999, Decision.DISCARD, thresholds)
    assert decision == Decision.HAM and thresholds.decide(score) == Decision.HAM
    assert score < 0.3 and reason["weight"] < 0


# --- units: the index on a real Redis ------------------------------------------------------


@pytest.fixture
def memory(redis_url: str) -> Iterator[NearDuplicateMemory]:
    client = redis.Redis.from_url(redis_url)
    store = NearDuplicateMemory(client, prefix=f"test-memory-{uuid.uuid4().hex}")
    yield store
    for key in client.scan_iter(f"{store.prefix}:*"):
        client.delete(key)
    store.close()


def test_match_remembered_near_duplicate(memory: NearDuplicateMemory) -> None:
    spam_id = uuid.uuid4()
    assert memory.remember(spam_id, 1, SPAM_TEXT, "spam")
    found = memory.match(1, SPAM_NEAR)
    assert found is not None
    assert (found.comment_id, found.label) == (str(spam_id), "spam")
    assert memory.threshold <= found.similarity < 1.0
    assert memory.match(1, SPAM_TEXT) == Match(str(spam_id), "spam", 1.0)
    assert memory.match(1, UNRELATED) is None
    assert memory.match(2, SPAM_NEAR) is None  # another account's labels are not seen


def test_remember_relabel_moves_and_forget_removes(memory: NearDuplicateMemory) -> None:
    comment_id = uuid.uuid4()
    memory.remember(comment_id, 1, SPAM_TEXT, "spam", label_id=1)
    memory.remember(comment_id, 1, SPAM_TEXT, "ham", label_id=2)
    assert memory.match(1, SPAM_NEAR) == Match(
        str(comment_id),
        "ham",
        memory.match(1, SPAM_NEAR).similarity,  # type: ignore[union-attr]
    )
    # An older label arriving late does not undo the newer one.
    assert memory.remember(comment_id, 1, SPAM_TEXT, "spam", label_id=1) is False
    assert memory.match(1, SPAM_NEAR).label == "ham"  # type: ignore[union-attr]
    assert memory.forget(comment_id, 1)
    assert memory.match(1, SPAM_NEAR) is None
    assert not memory.forget(comment_id, 1)
    leftovers = list(memory.client.scan_iter(f"{memory.prefix}:*"))
    assert leftovers == [], "forgetting leaves no band set or entry behind"


def test_remember_without_label_id_replaces(memory: NearDuplicateMemory) -> None:
    comment_id = uuid.uuid4()
    memory.remember(comment_id, 1, SPAM_TEXT, "spam", label_id=7)
    assert memory.remember(comment_id, 1, SPAM_TEXT, "ham") is True
    assert memory.match(1, SPAM_TEXT) == Match(str(comment_id), "ham", 1.0)
    assert memory.remember(comment_id, 1, SPAM_TEXT, "spam", label_id=3) is True
    assert memory.match(1, SPAM_TEXT) == Match(str(comment_id), "spam", 1.0)


@hypothesis_settings(max_examples=30, deadline=None)
@given(TEXTS)
def test_match_remembered_text_itself(redis_url: str, text: str) -> None:
    client = redis.Redis.from_url(redis_url)
    memory = NearDuplicateMemory(client, prefix=f"test-memory-{uuid.uuid4().hex}")
    try:
        comment_id = uuid.uuid4()
        remembered = memory.remember(comment_id, 1, text, "spam")
        found = memory.match(1, text)
        if remembered:
            assert found == Match(str(comment_id), "spam", 1.0)
        else:
            assert found is None
            assert len(memory.signer.shingles(text)) < memory.signer.min_shingles
    finally:
        for key in client.scan_iter(f"{memory.prefix}:*"):
            client.delete(key)
        memory.close()


def test_match_prefers_the_most_similar_label(memory: NearDuplicateMemory) -> None:
    near_id, exact_id = uuid.uuid4(), uuid.uuid4()
    memory.remember(near_id, 1, SPAM_NEAR, "spam")
    memory.remember(exact_id, 1, SPAM_TEXT, "ham")
    assert memory.match(1, SPAM_TEXT) == Match(str(exact_id), "ham", 1.0)
    found = memory.match(1, SPAM_NEAR)
    assert found is not None and (found.comment_id, found.label) == (str(near_id), "spam")


def test_match_many_after_redis_forgot_the_script(memory: NearDuplicateMemory) -> None:
    """A batch sends EVALSHA without asking first; after a restart (scripts gone) it reloads."""
    spam_id = uuid.uuid4()
    memory.remember(spam_id, 1, SPAM_TEXT, "spam")
    memory.client.script_flush()
    found = memory.match_many([(1, SPAM_NEAR), (1, UNRELATED), (2, SPAM_NEAR)])
    assert found[0] is not None and found[0].comment_id == str(spam_id)
    assert found[1:] == [None, None]
    assert memory.client.script_exists(memory._query.sha) == [True]


def test_remember_refuses_short_text(memory: NearDuplicateMemory) -> None:
    assert memory.remember(uuid.uuid4(), 1, SHORT, "spam") is False
    assert memory.match(1, SHORT) is None


def test_remember_refuses_unknown_label(memory: NearDuplicateMemory) -> None:
    with pytest.raises(ValueError, match="label"):
        memory.remember(uuid.uuid4(), 1, SPAM_TEXT, "maybe")


# --- the service: labels through Akismet, near-copies through every scoring path -----------


@pytest.fixture(scope="module")
def settings(settings_for: SettingsFor, redis_url: str) -> Settings:
    """The shared fixture's settings plus known thresholds (see AKISMET_THRESHOLDS)."""
    # Account ids start again in each database this module runs on; the memory must too.
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{DEFAULT_PREFIX}:*"):
        client.delete(key)
    client.close()
    return settings_for(**AKISMET_THRESHOLDS)


@pytest.fixture(scope="module")
def akismet_settings(settings: Settings) -> Settings:
    # The live server runs with Redis here, so that it has the memory.
    return settings


@pytest.fixture
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=10.0) as client:
        yield client


@pytest.fixture
def platform(live_server: LiveServer, account: Account) -> Iterator[akismet.SyncClient]:
    with make_client(live_server, account.key, BLOG) as client:
        yield client


def check(http: httpx.Client, account: Account, text: str) -> dict[str, Any]:
    """`POST /v1/check`: the stored comment, its verdict included."""
    response = http.post(
        "/v1/check",
        json={"content": text, "author": "Ann", "blog": BLOG},
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def label(platform: akismet.SyncClient, text: str, spam: bool) -> None:
    submit = platform.submit_spam if spam else platform.submit_ham
    assert submit(user_ip="203.0.113.7", comment_author="Ann", comment_content=text) is True


def near_duplicate(verdict: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in verdict["reasons"] if r.get("kind") == "near_duplicate"), None)


def test_label_spam_then_near_duplicate_checked_is_spam(
    http: httpx.Client, platform: akismet.SyncClient, account: Account
) -> None:
    first = check(http, account, SPAM_TEXT)
    assert first["verdict"]["decision"] in ("ham", "unsure"), "the model alone lets it through"
    assert near_duplicate(first["verdict"]) is None
    label(platform, SPAM_TEXT, spam=True)  # finds the checked comment by author and content
    labelled_at = time.monotonic()
    verdict = check(http, account, SPAM_NEAR)["verdict"]
    assert time.monotonic() - labelled_at < 1.0
    assert verdict["decision"] == "discard"  # near_duplicate_spam_decision's default
    assert verdict["score"] >= AKISMET_THRESHOLDS["threshold_discard"]
    reason = verdict["reasons"][0]
    assert reason["kind"] == "near_duplicate" and reason["label"] == "spam"
    assert reason["comment_id"] == first["id"]
    assert 0.8 <= reason["similarity"] < 1.0
    assert reason["comment_id"] in reason["description"]
    # Akismet comment-check answers from the same memory.
    assert platform.comment_check(
        user_ip="203.0.113.8", comment_author="Bob", comment_content=SPAM_NEAR
    ) in (akismet.CheckResponse.SPAM, akismet.CheckResponse.DISCARD)
    # An unrelated comment, and a short one, are the model's alone.
    assert near_duplicate(check(http, account, UNRELATED)["verdict"]) is None


def submit(http: httpx.Client, account: Account, text: str) -> str:
    """`POST /v1/comments` (scored by the worker); the comment's id."""
    response = http.post(
        "/v1/comments",
        json={"content": text, "author": "Ann", "blog": BLOG, "external_id": uuid.uuid4().hex},
        headers=account.headers,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def scored(http: httpx.Client, account: Account, comment_id: str) -> dict[str, Any]:
    """The comment's verdict once the worker has scored it."""
    found: dict[str, Any] = {}

    def done() -> bool:
        response = http.get(f"/v1/comments/{comment_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        found.update(response.json())
        return found["verdict"] is not None

    wait_until(done, 30, f"the worker's verdict on {comment_id}")
    return found["verdict"]  # type: ignore[no-any-return]


def test_label_spam_then_near_duplicate_webhook_is_spam(
    http: httpx.Client, platform: akismet.SyncClient, account: Account, workers: Supervisor
) -> None:
    first = check(http, account, SPAM_TEXT)
    label(platform, SPAM_TEXT, spam=True)
    verdict = scored(http, account, submit(http, account, SPAM_NEAR))
    assert verdict["decision"] == "discard"
    reason = verdict["reasons"][0]
    assert (reason["kind"], reason["label"], reason["comment_id"]) == (
        "near_duplicate",
        "spam",
        first["id"],
    )
    unrelated = scored(http, account, submit(http, account, UNRELATED))
    assert near_duplicate(unrelated) is None


def test_label_ham_protects_near_duplicates(
    http: httpx.Client, platform: akismet.SyncClient, account: Account, workers: Supervisor
) -> None:
    first = check(http, account, HAM_TEXT)
    assert first["verdict"]["decision"] == "discard", "the model alone drops it"
    label(platform, HAM_TEXT, spam=False)
    for verdict in (
        check(http, account, HAM_NEAR)["verdict"],
        scored(http, account, submit(http, account, HAM_NEAR)),
    ):
        assert verdict["decision"] == "ham"
        assert verdict["score"] < AKISMET_THRESHOLDS["threshold_unsure"]
        reason = verdict["reasons"][0]
        assert (reason["kind"], reason["label"], reason["comment_id"]) == (
            "near_duplicate",
            "ham",
            first["id"],
        )
        assert reason["weight"] < 0
    assert (
        platform.comment_check(
            user_ip="203.0.113.8", comment_author="Bob", comment_content=HAM_NEAR
        )
        == akismet.CheckResponse.HAM
    )


def test_label_leaves_other_accounts_alone(
    http: httpx.Client, platform: akismet.SyncClient, account: Account, settings: Settings
) -> None:
    check(http, account, SPAM_TEXT)
    label(platform, SPAM_TEXT, spam=True)
    other = create_account(settings, "other")
    verdict = check(http, other, SPAM_NEAR)["verdict"]
    assert near_duplicate(verdict) is None
    assert verdict["decision"] in ("ham", "unsure")


def test_relabel_moves_the_memory(
    http: httpx.Client, platform: akismet.SyncClient, account: Account
) -> None:
    first = check(http, account, SPAM_TEXT)
    label(platform, SPAM_TEXT, spam=True)
    assert check(http, account, SPAM_NEAR)["verdict"]["decision"] == "discard"
    # The moderator changes their mind: the same comment (found by author and content) is ham.
    label(platform, SPAM_TEXT, spam=False)
    verdict = check(http, account, SPAM_NEAR)["verdict"]
    assert verdict["decision"] == "ham"
    reason = verdict["reasons"][0]
    assert (reason["kind"], reason["label"], reason["comment_id"]) == (
        "near_duplicate",
        "ham",
        first["id"],
    )


def test_label_short_text_does_not_match(
    http: httpx.Client, platform: akismet.SyncClient, account: Account
) -> None:
    check(http, account, SHORT)
    label(platform, SHORT, spam=True)
    verdict = check(http, account, SHORT)["verdict"]
    assert near_duplicate(verdict) is None
    assert verdict["decision"] == "ham"


def test_openapi_documents_the_near_duplicate_reason(http: httpx.Client) -> None:
    schemas = http.get("/openapi.json").json()["components"]["schemas"]
    reason = schemas["NearDuplicateReasonOut"]
    assert {"kind", "comment_id", "label", "similarity"} <= set(reason["properties"])
    items = schemas["VerdictOut"]["properties"]["reasons"]["items"]
    assert {"$ref": "#/components/schemas/NearDuplicateReasonOut"} in items["anyOf"]


# --- a Redis outage ------------------------------------------------------------------------


def test_score_with_the_model_when_redis_is_down(
    database_url: str, models_dir: Path, tmp_path: Path
) -> None:
    supervisor = Supervisor()  # a Redis of this test's own, to stop
    try:
        url = start_redis(supervisor, tmp_path)
        settings = make_settings(
            database_url=database_url,
            redis_url=url,
            models_dir=models_dir,
            data_dir=tmp_path / "var",
            **AKISMET_THRESHOLDS,
        )
        account = create_account(settings, "outage")
        with TestClient(create_app(settings)) as client:

            def verdict(text: str) -> dict[str, Any]:
                response = client.post(
                    "/v1/check", json={"content": text, "blog": BLOG}, headers=account.headers
                )
                assert response.status_code == 200, response.text
                return response.json()["verdict"]  # type: ignore[no-any-return]

            before = verdict(SPAM_NEAR)
            memory = client.app.state.services.memory  # type: ignore[attr-defined]
            assert memory is not None
            memory.remember(uuid.uuid4(), account.id, SPAM_TEXT, "spam")
            assert verdict(SPAM_NEAR)["decision"] == "discard"
            supervisor.stop()
            started = time.monotonic()
            after = verdict(SPAM_NEAR)
            assert time.monotonic() - started < 5
            assert near_duplicate(after) is None
            assert after["decision"] == before["decision"]
            # Still fine while the memory waits out its back-off.
            assert verdict(UNRELATED)["reasons"]
    finally:
        supervisor.stop()


# --- rebuilding a lost memory --------------------------------------------------------------


def test_rebuild_restores_a_lost_memory(
    http: httpx.Client, platform: akismet.SyncClient, account: Account, settings: Settings
) -> None:
    from typer.testing import CliRunner

    from service.cli import app
    from service.embedded import settings_env

    first = check(http, account, SPAM_TEXT)
    label(platform, SPAM_TEXT, spam=True)
    label(platform, SPAM_TEXT, spam=False)  # the newest label is the one rebuilt
    client = redis.Redis.from_url(str(settings.redis_url))
    for key in client.scan_iter(f"{DEFAULT_PREFIX}:*"):  # Redis lost its data
        client.delete(key)
    client.close()
    assert near_duplicate(check(http, account, SPAM_NEAR)["verdict"]) is None
    result = CliRunner().invoke(app, ["memory", "rebuild"], env=settings_env(settings))
    assert result.exit_code == 0, result.output
    assert "labelled comments remembered" in result.output
    reason = check(http, account, SPAM_NEAR)["verdict"]["reasons"][0]
    assert (reason["kind"], reason["label"], reason["comment_id"]) == (
        "near_duplicate",
        "ham",
        first["id"],
    )
