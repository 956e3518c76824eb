"""Training: fit the pipeline, choose thresholds on held-out data, write a new model version."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import _SigmoidCalibration
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from classifier.artifact import save_model
from classifier.features import to_frame
from classifier.pipeline import (
    DEFAULT_PARAMS,
    build_classifier,
    build_features,
    build_pipeline,
    calibrated_pipeline,
)
from classifier.scoring import Thresholds
from training.corpora import (
    BUNDLED,
    GATE_VALIDATION_SHARE,
    Example,
    corpus_files,
    file_sha256,
    load_bundled,
    split_corpus,
)
from training.metrics import classification_metrics, threshold_for_fpr

# The default model's training mix, chosen from the cross-corpus results in docs/benchmarks.md.
DEFAULT_CORPORA: tuple[str, ...] = ("youtube", "instagram", "sms")

# Target false-positive rates on ham, on validation data.
SPAM_FPR = 0.01  # `spam`: at most 1% of ham goes to the spam folder
DISCARD_FPR = 0.001  # `discard`: far stricter, since nobody reviews what is discarded
UNSURE_FPR = 0.05  # `unsure`: the band below `spam` worth a human look

Report = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class TrainResult:
    version: str
    path: Path
    thresholds: Thresholds
    validation: dict[str, Any]
    seconds: float


@dataclass(frozen=True, slots=True)
class Fitted:
    """A fitted, calibrated pipeline and what it was calibrated and thresholded on: each
    training row's calibrated score by a model that never saw that row's domain (`domains`)."""

    pipeline: Pipeline
    unseen_scores: np.ndarray
    labels: np.ndarray
    domains: np.ndarray
    protocol: str  # how the unseen scores were made: "leave-one-domain-out" or "3-fold"


def choose_thresholds(
    labels: np.ndarray,
    scores: np.ndarray,
    spam_fpr: float = SPAM_FPR,
    discard_fpr: float = DISCARD_FPR,
    unsure_fpr: float = UNSURE_FPR,
    domains: np.ndarray | None = None,
) -> Thresholds:
    """Thresholds that meet the target ham false-positive rates on held-out scores.

    With `domains`, each target is met on every domain's ham separately (the strictest cut of
    them all): a threshold is a promise to a site nobody has measured, so it is chosen where
    the model is weakest, not on the average. `spam` never goes below 0.5 (a calibrated model
    should not call a comment spam that it thinks is more likely ham), `discard` never below
    0.9, and `unsure` sits below `spam`.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=float)
    groups = [np.ones(len(labels), dtype=bool)]
    if domains is not None and len(set(np.asarray(domains).tolist())) > 1:
        domains = np.asarray(domains)
        groups = [domains == d for d in sorted(set(domains.tolist()))]

    def cut(fpr: float) -> float:
        return max(threshold_for_fpr(labels[g], scores[g], fpr) for g in groups)

    spam = min(1.0, max(0.5, cut(spam_fpr)))
    discard = min(1.0, max(0.9, spam, cut(discard_fpr)))
    unsure = min(spam, max(0.05, cut(unsure_fpr)))
    return Thresholds(unsure=_round_up(unsure), spam=_round_up(spam), discard=_round_up(discard))


def _round_up(value: float) -> float:
    # Rounding down could let the boundary ham back over the threshold.
    return min(1.0, math.ceil(value * 1e6) / 1e6)


def fit(examples: Sequence[Example], params: dict[str, Any] | None = None) -> Any:
    """Fit a pipeline on examples (the cross-validated calibration of `build_pipeline`)."""
    X = to_frame([e.comment for e in examples])
    y = np.array([e.label for e in examples])
    return build_pipeline(params).fit(X, y)


def fit_unseen(
    frame: np.ndarray,
    y: np.ndarray,
    domains: Sequence[str],
    params: dict[str, Any] | None = None,
    weights: np.ndarray | None = None,
    report: Report | None = None,
) -> Fitted:
    """Fit the pipeline so that its probabilities and thresholds describe comments from a
    domain (a corpus, a site) it has never seen.

    Features are fitted once on every row. With two or more domains, each domain's rows are
    scored by a logistic regression fitted on the other domains only; with one, by 3-fold
    cross-validation. The Platt sigmoid is fitted on those unseen scores and paired with the
    logistic regression refitted on every row (as `CalibratedClassifierCV(ensemble=False)`
    pairs cross-validated scores with a refit). The unseen scores are returned for choosing
    thresholds. In-domain validation would tell a new site that its false-positive rate is
    the corpora's own, which it never is.
    """
    p = {**DEFAULT_PARAMS, **(params or {})}
    step = report or (lambda _msg, _frac: None)
    y = np.asarray(y)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    dom = np.asarray([str(d) for d in domains], dtype=object)
    features = build_features(p)
    X = features.fit_transform(frame)
    names = sorted(set(dom.tolist()))
    usable = [d for d in names if len(set(y[dom != d].tolist())) == 2]
    if len(names) >= 2 and len(usable) == len(names):
        folds = [(np.flatnonzero(dom != d), np.flatnonzero(dom == d)) for d in names]
        protocol = "leave-one-domain-out"
    else:
        splitter = StratifiedKFold(3, shuffle=True, random_state=int(p["seed"]))
        folds = list(splitter.split(np.zeros(len(y)), y))
        protocol = "3-fold"
    logits = np.zeros(len(y))
    for k, (fit_rows, score_rows) in enumerate(folds):
        step(
            f"scoring unseen rows ({protocol}, {k + 1} of {len(folds)})", 0.1 + 0.6 * k / len(folds)
        )
        held_out = build_classifier(p).fit(X[fit_rows], y[fit_rows], sample_weight=w[fit_rows])
        logits[score_rows] = held_out.decision_function(X[score_rows])
    step("refitting on every row", 0.75)
    final = build_classifier(p).fit(X, y, sample_weight=w)
    sigmoid = _SigmoidCalibration().fit(logits, y, sample_weight=w)
    pipeline = calibrated_pipeline(features, final, X, y)  # its sigmoid is replaced below
    calibrator = pipeline.named_steps["classifier"].calibrated_classifiers_[0].calibrators[0]
    calibrator.a_, calibrator.b_ = sigmoid.a_, sigmoid.b_
    unseen = 1.0 / (1.0 + np.exp(sigmoid.a_ * logits + sigmoid.b_))
    return Fitted(pipeline, unseen, y, dom, protocol)


def domains_of(examples: Sequence[Example]) -> list[str]:
    """What `fit_unseen` holds out in turn: each example's corpus, or its file (a YouTube
    video) when all come from one corpus."""
    domains = [e.corpus for e in examples]
    return domains if len(set(domains)) > 1 else [e.group for e in examples]


def train(
    examples: Sequence[Example],
    models_dir: Path,
    *,
    params: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    seed: int = 0,
    report: Report | None = None,
) -> TrainResult:
    """Train and save a new version, its probabilities calibrated and its thresholds chosen
    on comments from corpora it had not seen (`fit_unseen`; domain = each example's corpus,
    or its file when there is one corpus)."""
    started = time.perf_counter()
    step = report or (lambda _msg, _frac: None)
    labels = np.array([e.label for e in examples])
    if len(set(labels.tolist())) < 2:
        raise ValueError("training needs both spam and ham examples")
    p = {**DEFAULT_PARAMS, **(params or {}), "seed": seed}
    fitted = fit_unseen(
        to_frame([e.comment for e in examples]), labels, domains_of(examples), p, report=step
    )
    thresholds = choose_thresholds(fitted.labels, fitted.unseen_scores, domains=fitted.domains)
    scores = fitted.unseen_scores
    validation = {
        "protocol": fitted.protocol,
        "at_0.5": classification_metrics(labels, scores, 0.5),
        "at_spam_threshold": classification_metrics(labels, scores, thresholds.spam),
        "domains": {
            str(d): classification_metrics(
                labels[fitted.domains == d], scores[fitted.domains == d], thresholds.spam
            )
            for d in sorted(set(fitted.domains.tolist()))
        },
    }
    step("saving", 0.95)
    metadata = {
        "params": p,
        "seed": seed,
        "data": data or {},
        "n_examples": len(examples),
        "n_spam": int(labels.sum()),
        "metrics": {"validation": validation},
        "threshold_targets": {
            "spam_fpr": SPAM_FPR,
            "discard_fpr": DISCARD_FPR,
            "unsure_fpr": UNSURE_FPR,
            "chosen_on": f"unseen scores ({fitted.protocol}), each domain's ham",
        },
    }
    path = save_model(fitted.pipeline, models_dir, thresholds=thresholds, metadata=metadata)
    seconds = time.perf_counter() - started
    step("done", 1.0)
    return TrainResult(path.name, path, thresholds, validation, seconds)


def bundled_data_record(names: Sequence[str]) -> dict[str, Any]:
    """What the artifact records of bundled training data: every file with its SHA-256."""
    return {
        "corpora": {
            name: {str(p.relative_to(p.parents[1])): file_sha256(p) for p in corpus_files(name)}
            for name in names
        }
    }


def train_default(models_dir: Path, *, seed: int = 0, report: Report | None = None) -> TrainResult:
    """Train the default model from the bundled corpora, less their fixed validation split
    (which the promotion gate compares models on: no model it judges has seen it)."""
    examples, _ = split_corpus(load_bundled(DEFAULT_CORPORA), GATE_VALIDATION_SHARE)
    return train(
        examples, models_dir, data=bundled_data_record(DEFAULT_CORPORA), seed=seed, report=report
    )


__all__ = [
    "BUNDLED",
    "DEFAULT_CORPORA",
    "TrainResult",
    "choose_thresholds",
    "fit",
    "train",
    "train_default",
]
