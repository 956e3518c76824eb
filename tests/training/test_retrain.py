"""Retraining: the gate, the splits, promotion and rejection, per-site learning, the registry."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from classifier.artifact import (
    METADATA_FILE,
    MODEL_FILE,
    ArtifactError,
    active_version,
    load_model,
    set_active,
)
from classifier.record import Comment
from classifier.registry import Status, activate, rollback, status_of, versions
from training.corpora import Example, load_bundled
from training.gate import GateParams, decide
from training.retrain import (
    LabelRecord,
    RetrainParams,
    learned_sites,
    retrain,
    split_corpus,
    split_labels,
)
from training.runs import RUN_FILE, read_run
from training.train import train

START = datetime(2026, 11, 1, tzinfo=UTC)
# Retrains that learn from the labels (an installation that trusts every account alike).
SHARED = RetrainParams(train_on_labels=True)


def _m(mcc: float, fpr: float, n: int = 100, spam: int = 50) -> dict[str, float]:
    return {"mcc": mcc, "fpr": fpr, "n": n, "spam": spam}


# --- the gate ------------------------------------------------------------------------------


def test_gate_promotes_candidate_without_active_model() -> None:
    decision = decide({"labels": _m(0.1, 0.5)}, None)
    assert decision.promote
    assert "no active model" in decision.reasons[0]


def test_gate_promotes_candidate_within_tolerance() -> None:
    active = {"labels": _m(0.80, 0.010), "corpus": _m(0.90, 0.005)}
    candidate = {"labels": _m(0.79, 0.010), "corpus": _m(0.95, 0.009)}
    decision = decide(candidate, active, GateParams(mcc_tolerance=0.02, target_fpr=0.01))
    assert decision.promote, decision.reasons
    assert {(c["set"], c["metric"]) for c in decision.checks} == {
        ("labels", "mcc"), ("labels", "fpr"), ("corpus", "mcc"), ("corpus", "fpr"),
    }  # fmt: skip


def test_gate_rejects_candidate_with_lower_mcc() -> None:
    active = {"labels": _m(0.80, 0.0), "corpus": _m(0.90, 0.0)}
    candidate = {"labels": _m(0.95, 0.0), "corpus": _m(0.85, 0.0)}
    decision = decide(candidate, active, GateParams(mcc_tolerance=0.02))
    assert not decision.promote
    assert any("corpus: MCC" in r for r in decision.reasons)


def test_gate_rejects_candidate_with_higher_ham_fpr() -> None:
    active = {"corpus": _m(0.9, 0.004)}
    # Above both the active model's rate and the 1% target.
    decision = decide({"corpus": _m(0.95, 0.04)}, active, GateParams(target_fpr=0.01))
    assert not decision.promote
    assert "false-positive rate" in decision.reasons[0]
    # Above the active model's rate but within the target (one of 50 ham): allowed.
    assert decide({"corpus": _m(0.95, 0.02)}, active, GateParams(target_fpr=0.01)).promote
    big = {"corpus": _m(0.9, 0.004, n=2000, spam=1000)}
    assert not decide({"corpus": _m(0.95, 0.011, n=2000, spam=1000)}, big).promote


def test_gate_skips_mcc_on_set_with_too_few_of_a_class() -> None:
    active = {"labels": _m(0.9, 0.0, n=10, spam=2), "corpus": _m(0.9, 0.0)}
    candidate = {"labels": _m(0.1, 0.0, n=10, spam=2), "corpus": _m(0.9, 0.0)}
    decision = decide(candidate, active, GateParams(min_per_class=5))
    assert decision.promote
    assert any("fewer than 5" in r for r in decision.reasons)


def test_gate_rejects_candidate_when_nothing_can_be_judged() -> None:
    empty = {"labels": _m(0.0, 0.0, n=0, spam=0)}
    decision = decide(empty, empty)
    assert not decision.promote
    assert "no data set large enough" in decision.reasons[-1]


# --- splits --------------------------------------------------------------------------------


def test_split_corpus_is_fixed_by_content() -> None:
    examples = load_bundled(["youtube"])[:500]
    train_a, val_a = split_corpus(examples, 0.2)
    shuffled = list(reversed(examples))
    _, val_b = split_corpus(shuffled, 0.2)
    assert {e.comment.content for e in val_a} == {e.comment.content for e in val_b}
    assert 0.1 < len(val_a) / len(examples) < 0.3
    assert len(train_a) + len(val_a) == len(examples)


def test_split_labels_holds_out_the_newest() -> None:
    labels = [
        LabelRecord(Comment(f"c{i}"), i % 2, START + timedelta(hours=i), f"{i}") for i in range(20)
    ]
    train_part, holdout = split_labels(list(reversed(labels)), 0.2, minimum=10)
    assert [r.comment_id for r in holdout] == ["16", "17", "18", "19"]
    assert len(train_part) == 16
    assert split_labels(labels[:5], 0.2, minimum=10) == (labels[:5], [])


def test_learned_sites_need_minimum_per_class() -> None:
    labels = [LabelRecord(Comment("x", site="a"), i % 2, START) for i in range(40)]
    labels += [LabelRecord(Comment("x", site="b"), 1, START) for _ in range(40)]
    labels += [LabelRecord(Comment("x", site=""), i % 2, START) for i in range(40)]
    assert learned_sites(labels, 20) == ["a"]
    assert learned_sites(labels, 21) == []


# --- retraining ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> list[Example]:
    examples = load_bundled(["youtube"])
    random.Random(0).shuffle(examples)
    return examples


def _labels(examples: list[Example], flip: bool = False, site: str = "") -> list[LabelRecord]:
    return [
        LabelRecord(
            Comment(e.comment.content, author=e.comment.author, site=site),
            1 - e.label if flip else e.label,
            START + timedelta(minutes=i),
            f"label-{i}",
        )
        for i, e in enumerate(examples)
    ]


@pytest.fixture
def weak_models(tmp_path: Path, corpus: list[Example]) -> Path:
    """A registry whose active model saw 120 corpus comments (none of the validation split)."""
    train_part, _ = split_corpus(corpus, 0.2)
    base = train(train_part[:120], tmp_path, seed=0)
    activate(tmp_path, base.version)
    return tmp_path


def test_retrain_promotes_better_candidate_and_records_run(
    weak_models: Path, corpus: list[Example]
) -> None:
    before = active_version(weak_models)
    result = retrain(corpus[:700], _labels(corpus[700:1000]), weak_models, params=SHARED, now=START)
    assert result.promoted and result.activated, result.decision.reasons
    assert active_version(weak_models) == result.version
    assert result.previous_active == before
    assert status_of(weak_models, result.version) is Status.ACTIVE
    assert status_of(weak_models, before) is Status.RETIRED  # type: ignore[arg-type]
    record = read_run(weak_models, result.run_id)
    assert record is not None and record["promoted"] and record["version"] == result.version
    assert (weak_models / result.version / RUN_FILE).is_file()
    assert record["data"]["labels_holdout"] == 60  # the newest 20% of 300
    cand = record["candidate"]["metrics"]
    act = record["active"]["metrics"]
    for name in ("labels", "corpus"):
        assert cand[name]["n"] > 0 and act[name]["n"] == cand[name]["n"]
    rows = {row["version"]: row for row in versions(weak_models)}
    assert rows[result.version]["gate"]["promote"] is True
    # Rollback goes back to the model it replaced.
    assert rollback(weak_models) == before
    assert active_version(weak_models) == before


def test_retrain_rejects_candidate_trained_on_flipped_labels(
    weak_models: Path, corpus: list[Example]
) -> None:
    before = active_version(weak_models)
    # The labels' holdout is flipped too, so only the corpus validation can tell.
    flipped = _labels(corpus[700:1300], flip=True)
    result = retrain(corpus[:700], flipped, weak_models, params=SHARED, now=START)
    assert not result.promoted and not result.activated
    assert active_version(weak_models) == before
    assert status_of(weak_models, result.version) is Status.REJECTED
    assert any("corpus: MCC" in r for r in result.decision.reasons), result.decision.reasons


def test_retrain_is_deterministic_for_a_seed(weak_models: Path, corpus: list[Example]) -> None:
    params = RetrainParams(seed=3, activate=False)
    labels = _labels(corpus[700:900])
    first = retrain(corpus[:500], labels, weak_models, params=params, now=START)
    second = retrain(corpus[:500], labels, weak_models, params=params, now=START)
    assert first.record["candidate"] == second.record["candidate"]
    assert first.decision == second.decision
    comments = [e.comment for e in corpus[1000:1050]]
    a = load_model(weak_models, first.version).probabilities(comments)
    b = load_model(weak_models, second.version).probabilities(comments)
    assert a.tolist() == b.tolist()


def _pattern(i: int) -> str:
    events = ["bake sale", "choir practice", "charity run", "book club", "potluck dinner"]
    days = ["Saturday", "Sunday", "Friday night", "next week", "tomorrow", "tonight"]
    return f"Join our {events[i % 5]} at the community hall {days[i % 6]}, everyone welcome {i}"


def test_retrain_learns_site_pattern_without_changing_other_sites(
    weak_models: Path, corpus: list[Example]
) -> None:
    """Site A's moderators call community-event notices spam, site B's call them ham: each
    site gets its way, and a site with no labels keeps the shared model's verdict."""
    train_part, _ = split_corpus(corpus, 0.2)
    spams = [e for e in train_part[600:] if e.label == 1]
    hams = [e for e in train_part[600:] if e.label == 0]
    labels = []
    for i in range(30):
        labels += [
            LabelRecord(Comment(_pattern(i), site="A"), 1, START, f"a{i}"),
            LabelRecord(Comment(hams[i].comment.content, site="A"), 0, START, f"ah{i}"),
            LabelRecord(Comment(_pattern(i + 100), site="B"), 0, START, f"b{i}"),
            LabelRecord(Comment(spams[i].comment.content, site="B"), 1, START, f"bs{i}"),
        ]
    probe = "Join our bake sale at the community hall this weekend, everyone welcome"
    before = load_model(weak_models)
    before_scores = {s: float(before.probabilities([Comment(probe, site=s)])[0]) for s in "ABC"}
    assert all(score < before.thresholds.spam for score in before_scores.values())
    params = RetrainParams(min_holdout_labels=10**6, activate=False, train_on_labels=True)
    result = retrain(corpus[:700], labels, weak_models, params=params, now=START)
    assert result.record["sites"] == ["A", "B"]
    after = load_model(weak_models, result.version)
    verdicts = {s: after.score(Comment(probe, site=s)) for s in "ABC"}
    assert verdicts["A"].decision.value in ("spam", "discard")
    assert verdicts["B"].decision.value == "ham"
    # A site without labels is not flagged, as before, and its score barely moves (the unsure
    # band follows the new model's thresholds, so the comparison is on the score).
    assert verdicts["C"].decision.value not in ("spam", "discard")
    assert verdicts["C"].score == pytest.approx(before_scores["C"], abs=0.1)
    # An unknown site is scored by exactly the shared model: the same as no site at all.
    assert verdicts["C"].score == after.score(Comment(probe)).score
    # The site-specific features explain themselves.
    site_reasons = [r for r in after.score(Comment(probe, site="A"), reasons=40).reasons]
    assert any(
        r.feature.startswith("site-word:") and r.description.endswith("(this site)")
        for r in site_reasons
    )
    # One model for all sites (no per-site features) cannot satisfy both A and B.
    shared = retrain(
        corpus[:700],
        labels,
        weak_models,
        params=RetrainParams(
            train_on_labels=True,
            min_holdout_labels=10**6,
            activate=False,
            min_site_labels_per_class=10**6,
        ),
        now=START,
    )
    assert shared.record["sites"] == []
    one = load_model(weak_models, shared.version)
    scores = {s: one.score(Comment(probe, site=s)) for s in "AB"}
    assert scores["A"].score == scores["B"].score


def test_activate_refuses_corrupted_artifact(weak_models: Path, corpus: list[Example]) -> None:
    before = active_version(weak_models)
    other = train(corpus[:100], weak_models, seed=1)
    model_file = other.path / MODEL_FILE
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        activate(weak_models, other.version)
    with pytest.raises(ArtifactError):
        set_active(weak_models, other.version)
    assert active_version(weak_models) == before
    assert (other.path / METADATA_FILE).is_file()


def test_retrain_learns_thresholds_for_a_site_with_enough_labels(
    weak_models: Path, corpus: list[Example]
) -> None:
    labels = _labels(corpus[700:1300], site="S")
    params = RetrainParams(activate=False, train_on_labels=True)
    result = retrain(corpus[:700], labels, weak_models, params=params, now=START, published={})
    learned = result.record["candidate"]["site_thresholds"]
    assert set(learned) == {"S"}, learned
    model = load_model(weak_models, result.version)
    own = model.thresholds.for_site("S")
    assert own.to_dict() == learned["S"]
    assert (
        model.thresholds.for_site("elsewhere").to_dict() == result.record["candidate"]["thresholds"]
    )
    # Off: every site decides with the model's thresholds.
    off = RetrainParams(activate=False, min_site_threshold_labels=0, train_on_labels=True)
    plain = retrain(corpus[:700], labels, weak_models, params=off, now=START)
    assert plain.record["candidate"]["site_thresholds"] == {}
    assert load_model(weak_models, plain.version).thresholds.sites == {}


def test_retrain_by_default_learns_nothing_from_labels(
    weak_models: Path, corpus: list[Example]
) -> None:
    """The shared model serves every account: whatever the labels say, a default retrain
    makes the same model (they only measure it, as the gate's label set)."""
    params = RetrainParams(activate=False)
    honest = retrain(corpus[:500], _labels(corpus[700:900]), weak_models, params=params, now=START)
    flipped = retrain(
        corpus[:500], _labels(corpus[700:900], flip=True), weak_models, params=params, now=START
    )
    assert honest.record["data"]["labels_train"] == 0
    assert honest.record["data"]["labels_holdout"] == 200
    comments = [e.comment for e in corpus[1000:1050]]
    a = load_model(weak_models, honest.version).probabilities(comments)
    b = load_model(weak_models, flipped.version).probabilities(comments)
    assert a.tolist() == b.tolist()
