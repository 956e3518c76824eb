"""Scoring with reasons: a loaded model turns comments into verdicts.

The pipeline is linear before calibration, so a verdict's reasons are exact: each feature's
contribution to the log-odds is its value times its weight, and the reasons are the largest of
those, named in plain words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from classifier.hashing import Grams
from classifier.record import Comment
from classifier.signals import SIGNAL_NAMES, describe_signal
from classifier.vectors import (
    FeatureParts,
    FeatureTransform,
    Prepared,
    ScoringFeatures,
    feature_arrays,
    prepare_comment,
)

if TYPE_CHECKING:
    # Imported where a site's adapter is applied: it needs SciPy, which plain scoring does not.
    from classifier.adapter import SiteAdapter

DEFAULT_REASONS = 6
BATCH_CHUNK = 512


class Decision(StrEnum):
    """What a platform should do with a comment."""

    HAM = "ham"  # publish
    UNSURE = "unsure"  # hold for a moderator
    SPAM = "spam"  # put in the spam folder
    DISCARD = "discard"  # blatant spam: drop without review


# The decisions that tell a platform "spam" (Akismet's `true`); ham and unsure tell it "not spam".
SPAM_DECISIONS = frozenset({Decision.SPAM.value, Decision.DISCARD.value})


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Probability cut-offs: unsure ≤ spam ≤ discard."""

    unsure: float
    spam: float
    discard: float
    # A site's own cut-offs, learned from its moderators' labels when the model was retrained
    # (training/site_thresholds.py), by site key; any other site uses the three above.
    sites: Mapping[str, Thresholds] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.unsure <= self.spam <= self.discard <= 1.0:
            raise ValueError(f"thresholds must satisfy 0 ≤ unsure ≤ spam ≤ discard ≤ 1: {self}")

    def for_site(self, site: str) -> Thresholds:
        """The thresholds that decide for `site`: its learned ones if it has any, else these."""
        own = self.sites.get(site) if site and self.sites else None
        return own if own is not None else self

    def decide(self, score: float) -> Decision:
        if score >= self.discard:
            return Decision.DISCARD
        if score >= self.spam:
            return Decision.SPAM
        if score >= self.unsure:
            return Decision.UNSURE
        return Decision.HAM

    def to_dict(self) -> dict[str, float]:
        """The deployment-wide cut-offs (a site's learned ones: `sites_to_dict`)."""
        return {"unsure": self.unsure, "spam": self.spam, "discard": self.discard}

    def sites_to_dict(self) -> dict[str, dict[str, float]]:
        return {site: own.to_dict() for site, own in sorted(self.sites.items())}

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], sites: Mapping[str, Mapping[str, Any]] | None = None
    ) -> Thresholds:
        """From `to_dict`'s form; `sites` in `sites_to_dict`'s."""
        own = {str(site): cls.from_dict(values) for site, values in (sites or {}).items()}
        return cls(float(data["unsure"]), float(data["spam"]), float(data["discard"]), own)


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
    """A verified model with its thresholds, ready to score. Built by `load_model`.

    Scoring reads plain arrays only: the vectorizer's fitted vocabulary, the logistic
    regression's weights and the sigmoid's two numbers (`scoring_arrays`). A model is built
    from a fitted pipeline, or from those arrays (`from_arrays`) with the pipeline unpickled
    only when something asks for it (`pipeline`), so that scoring never imports scikit-learn.
    """

    def __init__(
        self,
        version: str,
        pipeline: Any,
        thresholds: Thresholds,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        calibrated = pipeline.named_steps["classifier"].calibrated_classifiers_[0]
        calibrator = calibrated.calibrators[0]
        self._setup(
            version,
            thresholds,
            metadata,
            pipeline.named_steps["features"],
            calibrated.estimator.coef_,
            calibrated.estimator.intercept_,
            calibrator.a_,
            calibrator.b_,
        )
        self._pipeline: Any = pipeline
        self._load_pipeline: Callable[[], Any] | None = None

    @classmethod
    def from_arrays(
        cls,
        version: str,
        arrays: Mapping[str, np.ndarray],
        thresholds: Thresholds,
        metadata: Mapping[str, Any] | None = None,
        load_pipeline: Callable[[], Any] | None = None,
    ) -> LoadedModel:
        """A model from `scoring_arrays`' form; `load_pipeline` unpickles the pipeline they
        were taken from, on first use of `pipeline`."""
        model = cls.__new__(cls)
        model._setup(
            version,
            thresholds,
            metadata,
            ScoringFeatures(arrays),
            arrays["model.coef"],
            arrays["model.intercept"],
            arrays["model.sigmoid_a"],
            arrays["model.sigmoid_b"],
        )
        model._pipeline = None
        model._load_pipeline = load_pipeline
        return model

    def _setup(
        self,
        version: str,
        thresholds: Thresholds,
        metadata: Mapping[str, Any] | None,
        vectorizer: FeatureTransform,
        coef: Any,
        intercept: Any,
        a: Any,
        b: Any,
    ) -> None:
        self.version = version
        self.thresholds = thresholds
        self.metadata = dict(metadata or {})
        self.vectorizer = vectorizer
        self._coef = np.asarray(coef, dtype=np.float64).ravel()
        self._intercept = float(np.ravel(intercept)[0])
        self._a = float(np.ravel(a)[0])
        self._b = float(np.ravel(b)[0])
        self._names = _FeatureNames(self.vectorizer)
        self._first_signal = self.vectorizer.offsets["signal"]

    @property
    def pipeline(self) -> Any:
        """The fitted scikit-learn pipeline (unpickled on first use for a model loaded from
        its arrays, which imports scikit-learn)."""
        if self._pipeline is None:
            if self._load_pipeline is None:
                raise RuntimeError(f"model {self.version} was loaded without its pipeline")
            self._pipeline = self._load_pipeline()
        return self._pipeline

    def arrays(self) -> dict[str, np.ndarray]:
        """What this model scores with, as `scoring_arrays` gives it."""
        return {
            **feature_arrays(self.vectorizer),
            "model.coef": self._coef.copy(),
            "model.intercept": np.asarray(self._intercept, dtype=np.float64),
            "model.sigmoid_a": np.asarray(self._a, dtype=np.float64),
            "model.sigmoid_b": np.asarray(self._b, dtype=np.float64),
        }

    def probabilities(self, comments: Iterable[Comment | Mapping[str, Any] | str]) -> np.ndarray:
        """The calibrated probability of spam of each comment."""
        prepared = self._prepare(comments)
        # Chunks keep the n-gram arrays small enough to stay in cache.
        chunks = [
            self._probabilities(self._features(prepared[i : i + BATCH_CHUNK]))
            for i in range(0, len(prepared), BATCH_CHUNK)
        ]
        return np.concatenate(chunks) if chunks else np.zeros(0)

    def score(
        self, comment: Comment | Mapping[str, Any] | str, reasons: int = DEFAULT_REASONS
    ) -> Verdict:
        """Score one comment, with its reasons."""
        return self.score_many([comment], reasons=reasons)[0]

    def score_many(
        self,
        comments: Iterable[Comment | Mapping[str, Any] | str],
        reasons: int = DEFAULT_REASONS,
        adapters: Sequence[SiteAdapter | None] | None = None,
    ) -> list[Verdict]:
        """Score comments in one batch, each with its reasons. `adapters`, one per comment
        (None: the shared model alone), are the comments' sites' own corrections
        (classifier/adapter.py): their weights join the reasons as `site-…` features."""
        prepared = self._prepare(comments)
        features = self._features(prepared)
        log_odds = self.log_odds(features)
        scores = 1.0 / (1.0 + np.exp(-log_odds))
        own: dict[int, list[Reason]] = {}
        scale = np.ones(len(scores))
        if adapters is not None and any(a is not None for a in adapters):
            scale = self._adapt(prepared, features, log_odds, adapters, scores, own, reasons)
        verdicts = []
        if reasons:
            order, bounds = _group_by_doc(features.doc, len(scores))
            word_order, word_bounds = _group_by_doc(features.words.doc, len(scores))
            char_order, char_bounds = _group_by_doc(features.chars.doc, len(scores))
        for i, score in enumerate(scores):
            found: list[Reason] = []
            if reasons:
                found = self._reasons(
                    prepared[i],
                    features,
                    order[bounds[i] : bounds[i + 1]],
                    i,
                    reasons,
                    (
                        word_order[word_bounds[i] : word_bounds[i + 1]],
                        char_order[char_bounds[i] : char_bounds[i + 1]],
                    ),
                    float(scale[i]),
                )
                if i in own:
                    found = sorted(found + own[i], key=lambda r: -abs(r.weight))[:reasons]
            verdicts.append(
                Verdict(
                    score=float(score),
                    decision=self.thresholds.for_site(prepared[i].site).decide(float(score)),
                    reasons=found,
                    model_version=self.version,
                )
            )
        return verdicts

    def _adapt(
        self,
        prepared: Sequence[Prepared],
        features: FeatureParts,
        log_odds: np.ndarray,
        adapters: Sequence[SiteAdapter | None],
        scores: np.ndarray,
        own: dict[int, list[Reason]],
        limit: int,
    ) -> np.ndarray:
        """Apply each comment's adapter: its score in `scores`, its site's reasons in `own`;
        returns the factor by which the shared model's reasons count in each comment's
        adapted log-odds."""
        from classifier.adapter import rows as adapter_rows
        from classifier.adapter import select as select_rows

        batch = adapter_rows(prepared, features, log_odds)
        # The shared model's reasons of an adapted comment, in its adapted log-odds.
        scale = np.ones(len(scores))
        groups: dict[int, tuple[SiteAdapter, list[int]]] = {}
        for i, fitted in enumerate(adapters):
            if fitted is not None:
                groups.setdefault(id(fitted), (fitted, []))[1].append(i)
        for fitted, members in groups.values():
            index = np.asarray(members, dtype=np.int64)
            sub = select_rows(batch, index)
            z, contributions = fitted.log_odds(sub)
            scores[index] = 1.0 / (1.0 + np.exp(-z))
            scale[index] = -self._a * fitted.scale
            if not limit:
                continue
            for k, i in enumerate(members):
                mine = np.flatnonzero((sub.doc == k) & (contributions != 0.0))
                top = mine[np.argsort(-np.abs(contributions[mine]), kind="stable")[:limit]]
                own[i] = [
                    self._site_reason(
                        prepared[i],
                        features,
                        i,
                        int(sub.key[j]),
                        float(contributions[j]),
                        float(sub.value[j]),
                    )
                    for j in top
                ]
        return scale

    def _site_reason(
        self, prepared: Prepared, parts: FeatureParts, i: int, key: int, weight: float, value: float
    ) -> Reason:
        from classifier.adapter import domain_key, family_of

        family, bucket = family_of(key)
        if family == "signal":
            name = SIGNAL_NAMES[bucket]
            j = bucket
            raw = value * self.vectorizer.signal_scale_[j] + self.vectorizer.signal_mean_[j]
            return Reason(
                f"site-signal:{name}", f"{describe_signal(name, raw)} (this site)", round(weight, 4)
            )
        if family == "domain":
            term = next((t for t in prepared.domains if domain_key(t) == bucket), f"#{bucket}")
            return Reason(
                f"site-domain:{term}", f"{_describe('domain', term)} (this site)", round(weight, 4)
            )
        grams = parts.words if family == "word" else parts.chars
        term = _gram_text(prepared, grams, np.flatnonzero(grams.doc == i), family, bucket)
        return Reason(
            f"site-{family}:{term}", f"{_describe(family, term)} (this site)", round(weight, 4)
        )

    def analyse(
        self, comments: Iterable[Comment | Mapping[str, Any] | str]
    ) -> tuple[list[Prepared], FeatureParts, np.ndarray]:
        """The batch's prepared comments, features and calibrated log-odds of spam: what a
        site's adapter (classifier/adapter.py) builds on."""
        prepared = self._prepare(comments)
        parts = self._features(prepared)
        return prepared, parts, self.log_odds(parts)

    def log_odds(self, parts: FeatureParts) -> np.ndarray:
        """The calibrated log-odds of spam (the logit of `probabilities`)."""
        return -(self._a * self._logits(parts) + self._b)

    def _prepare(self, comments: Iterable[Comment | Mapping[str, Any] | str]) -> list[Prepared]:
        return [prepare_comment(c) for c in comments]

    def _features(self, prepared: Sequence[Prepared]) -> FeatureParts:
        return self.vectorizer.transform_parts(prepared)

    def _logits(self, parts: FeatureParts) -> np.ndarray:
        sparse_part = np.bincount(
            parts.doc, weights=parts.value * self._coef[parts.column], minlength=parts.n
        )
        return sparse_part + parts.signals @ self._coef[self._first_signal :] + self._intercept

    def _probabilities(self, parts: FeatureParts) -> np.ndarray:
        # Platt scaling, exactly as sklearn's _SigmoidCalibration.predict.
        return 1.0 / (1.0 + np.exp(self._a * self._logits(parts) + self._b))

    def _reasons(
        self,
        prepared: Prepared,
        parts: FeatureParts,
        rows: np.ndarray,
        i: int,
        limit: int,
        grams: tuple[np.ndarray, np.ndarray],
        scale: float = 1.0,
    ) -> list[Reason]:
        columns = np.concatenate(
            (parts.column[rows], self._first_signal + np.arange(parts.signals.shape[1]))
        )
        values = np.concatenate((parts.value[rows], parts.signals[i]))
        contributions = values * self._coef[columns] * scale
        order = np.argsort(-np.abs(contributions), kind="stable")[:limit]
        describe = self._names.describer(prepared, parts, grams)
        reasons = []
        for k in order:
            weight = float(contributions[k])
            if weight == 0.0:
                continue
            column = int(columns[k])
            value = float(values[k])
            j = column - self._first_signal
            if j >= 0:  # back to the signal's own scale, for its description
                value = value * self.vectorizer.signal_scale_[j] + self.vectorizer.signal_mean_[j]
            feature, description = describe(column, float(value))
            reasons.append(Reason(feature, description, round(weight, 4)))
        return reasons


def scoring_arrays(pipeline: Any) -> dict[str, np.ndarray]:
    """What a fitted pipeline scores with, as named plain arrays (no objects): the vectorizer's
    fitted vocabulary (`classifier.vectors.feature_arrays`), the logistic regression's weights
    and intercept, and the Platt sigmoid's `a` and `b`. `LoadedModel.from_arrays` reads them."""
    return LoadedModel("", pipeline, Thresholds(0.0, 0.0, 0.0)).arrays()


def _group_by_doc(doc: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of `doc` sorted by document, and where each document's run starts."""
    order = np.argsort(doc, kind="stable")
    return order, np.searchsorted(doc[order], np.arange(n + 1))


class _FeatureNames:
    """Column → (machine name, plain words). N-gram columns are hashed, so their words are
    recovered from the comment being explained: the n-gram of its text that hashes there."""

    def __init__(self, vectorizer: FeatureTransform) -> None:
        self._vectorizer = vectorizer
        offsets = vectorizer.offsets
        self._word = offsets["word"]
        self._chars = offsets["chars"]
        self._domain = offsets["domain"]
        self._site = offsets["site"]
        self._signal = offsets["signal"]
        self._domains = [""] * len(vectorizer.domain_vocabulary_)
        for term, i in vectorizer.domain_vocabulary_.items():
            self._domains[i] = term

    def describer(
        self, prepared: Prepared, parts: FeatureParts, own: tuple[np.ndarray, np.ndarray]
    ) -> Callable[[int, float], tuple[str, str]]:
        """A function naming the columns of one comment's feature row; `own` indexes that
        comment's entries in `parts.words` and `parts.chars`."""
        v = self._vectorizer

        def gram(family: str, bucket: int) -> str:
            grams, mine = (parts.words, own[0]) if family == "word" else (parts.chars, own[1])
            return _gram_text(prepared, grams, mine, family, bucket)

        def describe(column: int, value: float) -> tuple[str, str]:
            if column >= self._signal:
                name = SIGNAL_NAMES[column - self._signal]
                return f"signal:{name}", describe_signal(name, value)
            if column >= self._site:
                _site, bucket = v.site_feature(column - self._site)
                term = gram("word", bucket)
                return f"site-word:{term}", f"{_describe('word', term)} (this site)"
            if column >= self._domain:
                term = self._domains[column - self._domain]
                return f"domain:{term}", _describe("domain", term)
            if column >= self._chars:
                term = gram("chars", int(v.char_buckets_[column - self._chars]))
                return f"chars:{term}", _describe("chars", term)
            term = gram("word", int(v.word_buckets_[column - self._word]))
            return f"word:{term}", _describe("word", term)

        return describe


def _gram_text(prepared: Prepared, grams: Grams, mine: np.ndarray, family: str, bucket: int) -> str:
    """The n-gram of a comment's text that hashes to `bucket` (`mine`: the comment's entries
    in `grams`)."""
    found = mine[grams.column[mine] == bucket]
    if len(found) == 0:
        return f"#{bucket}"
    k = found[0]
    text = prepared.text if family == "word" else f" {prepared.text} "
    shift = 0 if family == "word" else 1  # char offsets count from before the pad
    return str(text[grams.start[k] + shift : grams.stop[k] + shift])


_DOMAIN_WORDS = {
    "link": "a link to {}",
    "mail": "an e-mail address at {}",
    "author": "the author's website is {}",
    "from": "the author's e-mail is at {}",
}


def _describe(family: str, term: str) -> str:
    if family == "word":
        return f'the word{"s" if " " in term else ""} "{term}"'
    if family == "chars":
        return f'the text fragment "{term.strip() or term}"'
    if family == "domain":
        kind, _, domain = term.partition(":")
        return _DOMAIN_WORDS.get(kind, "{}").format(domain)
    raise ValueError(family)
