"""The scikit-learn pipeline: comment fields in, a calibrated probability of spam out."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from classifier.features import CommentVectorizer

# Chosen by leave-one-video-out evaluation on the YouTube corpus (docs/benchmarks.md).
DEFAULT_PARAMS: dict[str, Any] = {
    "word_ngrams": 3,
    "char_ngrams": (4, 5),
    "min_df": 2,
    "word_bits": 20,
    "char_bits": 21,
    "C": 20.0,
    "calibration_folds": 3,
    "seed": 0,
    # Site keys that get per-site copies of the word features (training/retrain.py picks them).
    "sites": (),
    # The metadata signals' scale against the n-grams' (below 1, the regulariser holds their
    # weights back more). 1.0 measured best both left-one-video-out and out of domain
    # (docs/benchmarks.md); 0.5 was also tried.
    "signal_strength": 1.0,
}


def build_features(params: dict[str, Any] | None = None) -> CommentVectorizer:
    """The pipeline's unfitted feature step."""
    p = {**DEFAULT_PARAMS, **(params or {})}
    return CommentVectorizer(
        word_ngrams=int(p["word_ngrams"]),
        char_ngrams=(int(p["char_ngrams"][0]), int(p["char_ngrams"][1])),
        min_df=int(p["min_df"]),
        word_bits=int(p["word_bits"]),
        char_bits=int(p["char_bits"]),
        sites=tuple(str(site) for site in p["sites"] or ()),
        signal_strength=float(p["signal_strength"]),
    )


def build_classifier(params: dict[str, Any] | None = None) -> LogisticRegression:
    """The unfitted logistic regression, before calibration."""
    p = {**DEFAULT_PARAMS, **(params or {})}
    # The dual problem: with far more features (hashed n-grams) than comments, liblinear's dual
    # coordinate descent reaches the optimum at the default tolerance, in less time than the
    # primal Newton method, which stops short of it there (docs/benchmarks.md, training). The
    # coordinate descent visits coordinates in a random order: seeded, so a fit is repeatable.
    # Its iterations are passes over the rows, cheap but many when heavily weighted rows (a
    # retrain's labels) disagree with others: a retrain in the tests needed 3,350.
    return LogisticRegression(
        C=float(p["C"]),
        max_iter=10_000,
        solver="liblinear",
        dual=True,
        random_state=int(p["seed"]),
    )


def build_pipeline(params: dict[str, Any] | None = None) -> Pipeline:
    """An unfitted pipeline: features → logistic regression, Platt-calibrated.

    The classifier is linear, so every verdict is explained by its per-feature contributions;
    calibration (a sigmoid fitted on cross-validated scores, `ensemble=False`) maps the linear
    score to a probability without changing the ranking.
    """
    p = {**DEFAULT_PARAMS, **(params or {})}
    classifier = CalibratedClassifierCV(
        build_classifier(p),
        method="sigmoid",
        # Shuffled folds: corpora are concatenated in order, and contiguous folds would
        # calibrate on one corpus's scores from a model trained mostly on another.
        cv=StratifiedKFold(int(p["calibration_folds"]), shuffle=True, random_state=int(p["seed"])),
        ensemble=False,
    )
    return Pipeline([("features", build_features(p)), ("classifier", classifier)])


def calibrated_pipeline(
    features: CommentVectorizer,
    estimator: LogisticRegression,
    X: sparse.spmatrix,
    y: np.ndarray,
    sample_weight: np.ndarray | None = None,
) -> Pipeline:
    """A pipeline of fitted steps whose sigmoid is fitted on `X`, `y`: featurised comments the
    fitted `estimator` has not been trained on.

    The result has the same structure as a fitted `build_pipeline()` (one calibrated
    classifier, one sigmoid), so it is saved, loaded and scored in the same way; only the
    calibration data differ (a held-out slice rather than cross-validated scores).
    """
    calibrated = CalibratedClassifierCV(FrozenEstimator(estimator), method="sigmoid")
    with warnings.catch_warnings():
        # sklearn warns that the frozen (already fitted) estimator ignores the weights: that
        # is intended, they weigh the sigmoid's fit only.
        warnings.filterwarnings("ignore", "Since FrozenEstimator does not", UserWarning)
        calibrated.fit(X, y, sample_weight=sample_weight)
    return Pipeline([("features", features), ("classifier", calibrated)])


def with_estimator(pipeline: Pipeline, estimator: LogisticRegression) -> Pipeline:
    """`pipeline` (from `calibrated_pipeline`) with its sigmoid applied to another fitted
    `estimator` on the same features, typically the same model refitted on more rows.

    This is what `CalibratedClassifierCV(ensemble=False)` does itself: it fits the sigmoid on
    scores of models that have not seen the rows scored, and pairs it with the estimator
    refitted on all rows.
    """
    calibrated = pipeline.named_steps["classifier"]
    frozen = FrozenEstimator(estimator)
    calibrated.estimator = frozen
    calibrated.calibrated_classifiers_[0].estimator = frozen
    return pipeline
