from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classifier.artifact import load_model
from training.corpora import load_bundled
from training.metrics import classification_metrics, threshold_for_fpr
from training.train import choose_thresholds, train


def test_threshold_for_fpr_meets_the_target() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0] * 1000 + [1] * 200)
    scores = np.concatenate([rng.beta(2, 8, 1000), rng.beta(8, 2, 200)])
    for target in (0.001, 0.01, 0.05):
        t = threshold_for_fpr(labels, scores, target)
        fpr = (scores[labels == 0] >= t).mean()
        assert fpr <= target
        # and it is the lowest such threshold: one ham more would be flagged just below it
        assert (scores[labels == 0] >= np.nextafter(t, 0) - 1e-12).mean() > fpr or t == 0.0


def test_choose_thresholds_orders_the_bands() -> None:
    rng = np.random.default_rng(1)
    labels = np.array([0] * 500 + [1] * 500)
    scores = np.concatenate([rng.uniform(0, 0.7, 500), rng.uniform(0.3, 1, 500)])
    t = choose_thresholds(labels, scores)
    assert 0.05 <= t.unsure <= t.spam <= t.discard <= 1.0
    assert t.spam >= 0.5 and t.discard >= 0.9


def test_classification_metrics_reports_fpr_and_mcc() -> None:
    m = classification_metrics([0, 0, 0, 1, 1], [0.1, 0.6, 0.2, 0.9, 0.4])
    assert m["fpr"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(0.5)
    assert m["precision"] == pytest.approx(0.5)
    assert -1 <= m["mcc"] <= 1 and m["n"] == 5


def test_train_writes_a_verifiable_version_with_its_record(tmp_path: Path) -> None:
    examples = load_bundled(["youtube"])
    result = train(examples, tmp_path, data={"files": {"x.csv": "0" * 64}}, seed=3)
    meta = json.loads((result.path / "metadata.json").read_text())
    assert meta["version"] == result.version
    assert meta["n_examples"] == len(examples)
    assert meta["seed"] == 3
    assert meta["thresholds"] == result.thresholds.to_dict()
    assert meta["metrics"]["validation"]["at_spam_threshold"]["fpr"] <= 0.011
    model = load_model(tmp_path, result.version)
    assert model.score("subscribe to my channel http://bit.ly/x").score > 0.8


def test_train_is_reproducible_for_a_seed(tmp_path: Path) -> None:
    examples = load_bundled(["youtube"])[:600]
    a = train(examples, tmp_path / "a", seed=7)
    b = train(examples, tmp_path / "b", seed=7)
    assert a.thresholds == b.thresholds
    texts = [e.comment for e in examples[:50]]
    np.testing.assert_array_equal(
        load_model(tmp_path / "a").probabilities(texts),
        load_model(tmp_path / "b").probabilities(texts),
    )


def test_train_refuses_a_single_class(tmp_path: Path) -> None:
    ham = [e for e in load_bundled(["youtube"]) if e.label == 0][:50]
    with pytest.raises(ValueError, match="both spam and ham"):
        train(ham, tmp_path)
