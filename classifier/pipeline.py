"""The scikit-learn pipeline: comment fields in, a calibrated probability of spam out."""

from __future__ import annotations

from typing import Any

from sklearn.calibration import CalibratedClassifierCV
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
}


def build_pipeline(params: dict[str, Any] | None = None) -> Pipeline:
    """An unfitted pipeline: features → logistic regression, Platt-calibrated.

    The classifier is linear, so every verdict is explained by its per-feature contributions;
    calibration (a sigmoid fitted on cross-validated scores, `ensemble=False`) maps the linear
    score to a probability without changing the ranking.
    """
    p = {**DEFAULT_PARAMS, **(params or {})}
    features = CommentVectorizer(
        word_ngrams=int(p["word_ngrams"]),
        char_ngrams=(int(p["char_ngrams"][0]), int(p["char_ngrams"][1])),
        min_df=int(p["min_df"]),
        word_bits=int(p["word_bits"]),
        char_bits=int(p["char_bits"]),
        sites=tuple(str(site) for site in p["sites"] or ()),
    )
    classifier = CalibratedClassifierCV(
        LogisticRegression(C=float(p["C"]), max_iter=2000, solver="liblinear"),
        method="sigmoid",
        # Shuffled folds: corpora are concatenated in order, and contiguous folds would
        # calibrate on one corpus's scores from a model trained mostly on another.
        cv=StratifiedKFold(int(p["calibration_folds"]), shuffle=True, random_state=int(p["seed"])),
        ensemble=False,
    )
    return Pipeline([("features", features), ("classifier", classifier)])
