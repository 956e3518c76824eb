"""The baseline every result is compared with: plain TF-IDF words + logistic regression."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline


class ContentColumn(TransformerMixin, BaseEstimator):
    """The raw content column of the pipeline's input, as text (no normalisation)."""

    def fit(self, X: Any, y: Any = None) -> ContentColumn:
        return self

    def transform(self, X: Any) -> list[str]:
        return [str(row[0]) for row in np.asarray(X, dtype=object)]


def build_baseline() -> Pipeline:
    """TF-IDF over raw words (1-2 grams) and a logistic regression with default settings."""
    return Pipeline(
        [
            ("content", ContentColumn()),
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
            ("classifier", LogisticRegression(max_iter=2000)),
        ]
    )
