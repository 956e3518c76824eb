"""Scoring with reasons: a loaded model turns comments into verdicts.

The pipeline is linear before calibration, so a verdict's reasons are exact: each feature's
contribution to the log-odds is its value times its weight, and the reasons are the largest of
those, named in plain words.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import sparse

from classifier.features import (
    SIGNAL_NAMES,
    CommentVectorizer,
    Prepared,
    describe_signal,
    prepare,
    to_frame,
)
from classifier.record import Comment

DEFAULT_REASONS = 6


class Decision(StrEnum):
    """What a platform should do with a comment."""

    HAM = "ham"  # publish
    UNSURE = "unsure"  # hold for a moderator
    SPAM = "spam"  # put in the spam folder
    DISCARD = "discard"  # blatant spam: drop without review


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Probability cut-offs: unsure ≤ spam ≤ discard."""

    unsure: float
    spam: float
    discard: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.unsure <= self.spam <= self.discard <= 1.0:
            raise ValueError(f"thresholds must satisfy 0 ≤ unsure ≤ spam ≤ discard ≤ 1: {self}")

    def decide(self, score: float) -> Decision:
        if score >= self.discard:
            return Decision.DISCARD
        if score >= self.spam:
            return Decision.SPAM
        if score >= self.unsure:
            return Decision.UNSURE
        return Decision.HAM

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Thresholds:
        return cls(float(data["unsure"]), float(data["spam"]), float(data["discard"]))


@dataclass(frozen=True, slots=True)
class Reason:
    """One contribution to a verdict: `weight` > 0 pushes toward spam, < 0 toward ham."""

    feature: str  # machine name, e.g. "word:check out", "signal:links", "rule:honeypot"
    description: str  # plain words, e.g. 'the words "check out"'
    weight: float

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "description": self.description, "weight": self.weight}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The classifier's answer for one comment."""

    score: float  # calibrated probability of spam
    decision: Decision
    reasons: list[Reason] = field(default_factory=list)
    model_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "decision": self.decision.value,
            "reasons": [r.to_dict() for r in self.reasons],
            "model_version": self.model_version,
        }


class LoadedModel:
    """A verified pipeline with its thresholds, ready to score. Built by `load_model`."""

    def __init__(
        self,
        version: str,
        pipeline: Any,
        thresholds: Thresholds,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.version = version
        self.pipeline = pipeline
        self.thresholds = thresholds
        self.metadata = dict(metadata or {})
        self.vectorizer: CommentVectorizer = pipeline.named_steps["features"]
        calibrated = pipeline.named_steps["classifier"].calibrated_classifiers_[0]
        self._coef = np.asarray(calibrated.estimator.coef_, dtype=np.float64).ravel()
        self._intercept = float(np.ravel(calibrated.estimator.intercept_)[0])
        calibrator = calibrated.calibrators[0]
        self._a = float(calibrator.a_)
        self._b = float(calibrator.b_)
        self._names = _FeatureNames(self.vectorizer)

    def probabilities(self, comments: Iterable[Comment | Mapping[str, Any] | str]) -> np.ndarray:
        """The calibrated probability of spam of each comment."""
        return self._probabilities(self._features(self._prepare(comments)))

    def score(self, comment: Comment | Mapping[str, Any] | str, reasons: int = DEFAULT_REASONS) -> Verdict:
        """Score one comment, with its reasons."""
        return self.score_many([comment], reasons=reasons)[0]

    def score_many(
        self, comments: Iterable[Comment | Mapping[str, Any] | str], reasons: int = DEFAULT_REASONS
    ) -> list[Verdict]:
        """Score comments in one batch, each with its reasons."""
        prepared = self._prepare(comments)
        features = self._features(prepared)
        scores = self._probabilities(features)
        verdicts = []
        for i, score in enumerate(scores):
            row = features.getrow(i)
            verdicts.append(
                Verdict(
                    score=float(score),
                    decision=self.thresholds.decide(float(score)),
                    reasons=self._reasons(row, reasons) if reasons else [],
                    model_version=self.version,
                )
            )
        return verdicts

    def _prepare(self, comments: Iterable[Comment | Mapping[str, Any] | str]) -> list[Prepared]:
        return [prepare(row) for row in to_frame(comments)]

    def _features(self, prepared: Sequence[Prepared]) -> sparse.csr_matrix:
        return self.vectorizer.transform_prepared(prepared)

    def _probabilities(self, features: sparse.csr_matrix) -> np.ndarray:
        logits = features @ self._coef + self._intercept
        # Platt scaling, exactly as sklearn's _SigmoidCalibration.predict.
        return 1.0 / (1.0 + np.exp(self._a * logits + self._b))

    def _raw_value(self, index: int, value: float) -> float:
        """A signal's value before standardisation (other features are returned as they are)."""
        first_signal = self._coef.shape[0] - len(SIGNAL_NAMES)
        if index < first_signal:
            return float(value)
        j = index - first_signal
        return float(value * self.vectorizer.signal_scale_[j] + self.vectorizer.signal_mean_[j])

    def _reasons(self, row: sparse.csr_matrix, limit: int) -> list[Reason]:
        contributions = row.data * self._coef[row.indices]
        order = np.argsort(-np.abs(contributions), kind="stable")[:limit]
        reasons = []
        for k in order:
            weight = float(contributions[k])
            if weight == 0.0:
                continue
            index = int(row.indices[k])
            feature, description = self._names.describe(index, self._raw_value(index, row.data[k]))
            reasons.append(Reason(feature, description, round(weight, 4)))
        return reasons


class _FeatureNames:
    """Index → (machine name, plain words), without materialising every feature's name."""

    def __init__(self, vectorizer: CommentVectorizer) -> None:
        self._blocks: list[tuple[str, int, list[str]]] = []
        offset = 0
        for family, vocabulary in (
            ("word", vectorizer.word_vocabulary_),
            ("chars", vectorizer.char_vocabulary_),
            ("domain", vectorizer.domain_vocabulary_),
            ("signal", {name: i for i, name in enumerate(SIGNAL_NAMES)}),
        ):
            terms = [""] * len(vocabulary)
            for term, i in vocabulary.items():
                terms[i] = term
            self._blocks.append((family, offset, terms))
            offset += len(vocabulary)

    def describe(self, index: int, value: float) -> tuple[str, str]:
        for family, offset, terms in reversed(self._blocks):
            if index >= offset:
                term = terms[index - offset]
                return f"{family}:{term}", _describe(family, term, value)
        raise IndexError(index)


_DOMAIN_WORDS = {
    "link": "a link to {}",
    "mail": "an e-mail address at {}",
    "author": "the author's website is {}",
    "from": "the author's e-mail is at {}",
}


def _describe(family: str, term: str, value: float) -> str:
    if family == "word":
        return f'the word{"s" if " " in term else ""} "{term}"'
    if family == "chars":
        return f'the text fragment "{term.strip() or term}"'
    if family == "domain":
        kind, _, domain = term.partition(":")
        return _DOMAIN_WORDS.get(kind, "{}").format(domain)
    return describe_signal(term, value)


def logit(probability: float) -> float:
    """Log-odds of a probability (clipped away from 0 and 1)."""
    p = min(max(probability, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))
