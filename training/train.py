"""Training: fit the pipeline, choose thresholds on held-out data, write a new model version."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from classifier.artifact import save_model
from classifier.features import to_frame
from classifier.pipeline import DEFAULT_PARAMS, build_pipeline
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
VALIDATION_SHARE = 0.2

Report = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class TrainResult:
    version: str
    path: Path
    thresholds: Thresholds
    validation: dict[str, Any]
    seconds: float


def choose_thresholds(
    labels: np.ndarray,
    scores: np.ndarray,
    spam_fpr: float = SPAM_FPR,
    discard_fpr: float = DISCARD_FPR,
    unsure_fpr: float = UNSURE_FPR,
) -> Thresholds:
    """Thresholds that meet the target ham false-positive rates on validation scores.

    `spam` never goes below 0.5 (a calibrated model should not call a comment spam that it
    thinks is more likely ham), `discard` never below 0.9, and `unsure` sits below `spam`.
    """
    spam = min(1.0, max(0.5, threshold_for_fpr(labels, scores, spam_fpr)))
    discard = min(1.0, max(0.9, spam, threshold_for_fpr(labels, scores, discard_fpr)))
    unsure = min(spam, max(0.05, threshold_for_fpr(labels, scores, unsure_fpr)))
    return Thresholds(unsure=_round_up(unsure), spam=_round_up(spam), discard=_round_up(discard))


def _round_up(value: float) -> float:
    # Rounding down could let the boundary ham back over the threshold.
    return min(1.0, math.ceil(value * 1e6) / 1e6)


def fit(examples: Sequence[Example], params: dict[str, Any] | None = None) -> Any:
    """Fit a pipeline on examples."""
    X = to_frame([e.comment for e in examples])
    y = np.array([e.label for e in examples])
    return build_pipeline(params).fit(X, y)


def train(
    examples: Sequence[Example],
    models_dir: Path,
    *,
    params: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    seed: int = 0,
    report: Report | None = None,
) -> TrainResult:
    """Train and save a new version.

    A stratified validation split (seeded) is held out to choose the thresholds and to measure
    the model; the saved model is then refitted on all examples with those thresholds.
    """
    started = time.perf_counter()
    step = report or (lambda _msg, _frac: None)
    labels = np.array([e.label for e in examples])
    if len(set(labels.tolist())) < 2:
        raise ValueError("training needs both spam and ham examples")
    indices = np.arange(len(examples))
    fit_idx, val_idx = train_test_split(
        indices, test_size=VALIDATION_SHARE, stratify=labels, random_state=seed
    )
    step("fitting on the training split", 0.1)
    candidate = fit([examples[i] for i in fit_idx], params)
    step("choosing thresholds on the validation split", 0.45)
    val_examples = [examples[i] for i in val_idx]
    val_scores = candidate.predict_proba(to_frame([e.comment for e in val_examples]))[:, 1]
    val_labels = labels[val_idx]
    thresholds = choose_thresholds(val_labels, val_scores)
    validation = {
        "at_0.5": classification_metrics(val_labels, val_scores, 0.5),
        "at_spam_threshold": classification_metrics(val_labels, val_scores, thresholds.spam),
    }
    step("refitting on all examples", 0.5)
    pipeline = fit(examples, params)
    step("saving", 0.95)
    metadata = {
        "params": {**DEFAULT_PARAMS, **(params or {})},
        "seed": seed,
        "data": data or {},
        "n_examples": len(examples),
        "n_spam": int(labels.sum()),
        "metrics": {"validation": validation},
        "threshold_targets": {
            "spam_fpr": SPAM_FPR,
            "discard_fpr": DISCARD_FPR,
            "unsure_fpr": UNSURE_FPR,
        },
    }
    path = save_model(pipeline, models_dir, thresholds=thresholds, metadata=metadata)
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
