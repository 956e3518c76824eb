"""Per-site adaptation: a site's own correction to the shared model, learned from its labels.

The shared model (the base) is trained on installation-level data only. What one site's
moderators teach goes into that site's adapter and nowhere else, so a site's labels take effect
for it within seconds and can never move another site's verdicts.

The adapter is a logistic regression whose prior is the base model:

    log-odds(spam) = a · base log-odds + b + Σ v_k · x_k

where x are the comment's own features, hashed without the base's vocabulary (so a word the
corpora never had, an SEO campaign's or a help forum's, can be learned): word n-grams, character
n-grams and link/e-mail/author domains, each block L2-normalised, and the base's centred
metadata signals. It is fitted by minimising the labels' log-loss plus

    λ/2 · ‖v‖² + μ(n)/2 · ((a − 1)² + b²),   μ(n) = max(μ_min, μ · n₀ / (n₀ + n))

so with no labels it IS the base model (a = 1, b = 0, v = 0), and every label moves it away
only as far as the evidence carries. `a` and `b` recalibrate the base for the site (a base that
is too sure or too shy there); `v` learns what is spam or ham on this site in particular.

The recalibration's prior μ(n) weakens as the site's labels n come: with a handful of labels
a strong prior (μ = 30) keeps two contradictory ones from squashing every score of the site
toward 0.5, and with hundreds a weak one (μ_min = 3) lets the site's evidence say how far the
base is to be trusted there (the base is usually too sure on a stream it has never seen). The
replays behind these values are in docs/benchmarks.md ("Replay offline").

Everything here is numpy and scipy: fitting takes milliseconds for a few hundred labels, and
scoring a comment costs one sorted lookup per n-gram on top of the base model's own work.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from classifier.features import FeatureParts, Prepared
from classifier.signals import SIGNAL_NAMES

# Feature families, in the high bits of a feature key (the low 40 bits hold the bucket).
WORD, CHARS, DOMAIN, SIGNAL = 0, 1, 2, 3
FAMILY_NAMES = ("word", "chars", "domain", "signal")
_SHIFT = 40
_DOMAIN_BITS = 24


@dataclass(frozen=True, slots=True)
class AdapterParams:
    """Regularisation of the site's weights (`l2`) and of the base's recalibration
    (`prior`, weakening with the labels: `prior_for`); `max_labels` keeps the newest labels
    only, bounding a fit's time."""

    l2: float = 0.3
    prior: float = 30.0
    prior_labels: float = 20.0  # n₀: labels at which the prior is half as strong (0: fixed)
    prior_min: float = 3.0

    def prior_for(self, labels: float) -> float:
        """μ(n): the recalibration's prior for a site with `labels` (weighted) labels."""
        if self.prior_labels <= 0:
            return self.prior
        return max(self.prior_min, self.prior * self.prior_labels / (self.prior_labels + labels))

    max_labels: int = 5000
    max_iter: int = 200


@dataclass(frozen=True, slots=True)
class Rows:
    """A batch's adapter features as sparse (doc, key, value) entries, plus each doc's base
    log-odds."""

    n: int
    doc: np.ndarray
    key: np.ndarray
    value: np.ndarray
    base: np.ndarray


def domain_key(token: str) -> int:
    """A stable bucket for a domain token such as "link:x.com"."""
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - _DOMAIN_BITS)


def rows(prepared: Sequence[Prepared], parts: FeatureParts, base_log_odds: np.ndarray) -> Rows:
    """The adapter's features of a batch, from the base model's own work on it (`parts`: the
    hashed n-grams and the centred signals; `base_log_odds`: its calibrated log-odds)."""
    n = len(prepared)
    docs: list[np.ndarray] = []
    keys: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for family, grams in ((WORD, parts.words), (CHARS, parts.chars)):
        if len(grams.doc) == 0:
            continue
        k = grams.doc.astype(np.int64) << _SHIFT | grams.column.astype(np.int64)
        unique, counts = np.unique(k, return_counts=True)
        doc = unique >> _SHIFT
        value = np.log(counts) + 1.0
        norms = np.sqrt(np.bincount(doc, weights=value**2, minlength=n))
        docs.append(doc)
        keys.append(family << _SHIFT | (unique & ((1 << _SHIFT) - 1)))
        values.append(value / norms[doc])
    d_doc: list[int] = []
    d_key: list[int] = []
    for i, p in enumerate(prepared):
        for token in set(p.domains):
            d_doc.append(i)
            d_key.append(DOMAIN << _SHIFT | domain_key(token))
    docs.append(np.asarray(d_doc, dtype=np.int64))
    keys.append(np.asarray(d_key, dtype=np.int64))
    values.append(np.ones(len(d_doc)))
    n_signals = parts.signals.shape[1]
    docs.append(np.repeat(np.arange(n, dtype=np.int64), n_signals))
    keys.append(np.tile(SIGNAL << _SHIFT | np.arange(n_signals, dtype=np.int64), n))
    values.append(parts.signals.reshape(-1))
    return Rows(
        n,
        np.concatenate(docs),
        np.concatenate(keys),
        np.concatenate(values),
        np.asarray(base_log_odds, dtype=np.float64),
    )


def select(batch: Rows, which: np.ndarray) -> Rows:
    """The rows `which` (indices into the batch) of a batch, renumbered from 0."""
    which = np.asarray(which, dtype=np.int64)
    new_index = np.full(batch.n, -1, dtype=np.int64)
    new_index[which] = np.arange(len(which))
    keep = new_index[batch.doc] >= 0
    return Rows(
        len(which),
        new_index[batch.doc[keep]],
        batch.key[keep],
        batch.value[keep],
        batch.base[which],
    )


@dataclass(frozen=True, slots=True)
class SiteAdapter:
    """A fitted adapter: sorted feature keys with their weights, and the base's recalibration."""

    keys: np.ndarray
    weights: np.ndarray
    scale: float  # a
    bias: float  # b
    n_spam: int
    n_ham: int
    base_version: str = ""

    def log_odds(self, batch: Rows) -> tuple[np.ndarray, np.ndarray]:
        """Each comment's adapted log-odds, and each entry's contribution (0 where the site
        has no weight for it)."""
        contributions = np.zeros(len(batch.key))
        if len(self.keys):
            position = np.minimum(np.searchsorted(self.keys, batch.key), len(self.keys) - 1)
            found = self.keys[position] == batch.key
            contributions[found] = self.weights[position[found]] * batch.value[found]
        own = np.bincount(batch.doc, weights=contributions, minlength=batch.n)
        return self.scale * batch.base + self.bias + own, contributions

    def probabilities(self, batch: Rows) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-self.log_odds(batch)[0])))

    def to_bytes(self) -> bytes:
        """A compact, pickle-free serialisation (numpy's npz without object arrays)."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            keys=self.keys,
            weights=self.weights.astype(np.float32),
            meta=np.array([self.scale, self.bias, self.n_spam, self.n_ham], dtype=np.float64),
            base_version=np.array(self.base_version),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SiteAdapter:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = npz["meta"]
            return cls(
                keys=npz["keys"].astype(np.int64),
                weights=npz["weights"].astype(np.float64),
                scale=float(meta[0]),
                bias=float(meta[1]),
                n_spam=int(meta[2]),
                n_ham=int(meta[3]),
                base_version=str(npz["base_version"]),
            )


def fit(
    batch: Rows,
    labels: np.ndarray,
    params: AdapterParams | None = None,
    sample_weight: np.ndarray | None = None,
    base_version: str = "",
    start: SiteAdapter | None = None,
) -> SiteAdapter:
    """Fit a site's adapter on its labelled comments (`batch`, 1 = spam).

    `start`, an adapter fitted on much the same labels, is where the optimiser starts instead
    of the base model: the optimum is the same (the objective is convex), reached in fewer
    steps."""
    p = params or AdapterParams()
    y = np.asarray(labels, dtype=np.float64)
    if batch.n == 0:
        return SiteAdapter(np.zeros(0, np.int64), np.zeros(0), 1.0, 0.0, 0, 0, base_version)
    w = np.ones(batch.n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    keys, column = np.unique(batch.key, return_inverse=True)
    X = sparse.csr_matrix((batch.value, (batch.doc, column)), shape=(batch.n, len(keys)))
    base = batch.base
    sign = 2.0 * y - 1.0
    prior = p.prior_for(float(w.sum()))

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b, v = theta[0], theta[1], theta[2:]
        z = a * base + b + X @ v
        margin = sign * z
        loss = np.logaddexp(0.0, -margin)
        # d loss / d z = -sign * sigmoid(-margin)
        g = -sign * np.exp(-np.logaddexp(0.0, margin)) * w
        value = float(w @ loss) + 0.5 * p.l2 * float(v @ v)
        value += 0.5 * prior * ((a - 1.0) ** 2 + b**2)
        grad = np.empty_like(theta)
        grad[0] = g @ base + prior * (a - 1.0)
        grad[1] = g.sum() + prior * b
        grad[2:] = X.T @ g + p.l2 * v
        return value, grad

    theta0 = np.zeros(len(keys) + 2)
    theta0[0] = 1.0
    if start is not None:
        theta0[0], theta0[1] = start.scale, start.bias
        if len(start.keys):
            position = np.minimum(np.searchsorted(start.keys, keys), len(start.keys) - 1)
            found = start.keys[position] == keys
            theta0[2:][found] = start.weights[position[found]]
    # One BLAS thread: L-BFGS-B's vector operations are small, and a threaded BLAS spends
    # more time handing them over than computing them (a hundredfold on a busy machine).
    with threadpool_limits(1):
        result = minimize(
            objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": p.max_iter}
        )
    theta = result.x
    weights = theta[2:]
    keep = np.abs(weights) > 1e-6
    return SiteAdapter(
        keys=keys[keep].astype(np.int64),
        weights=weights[keep],
        scale=float(theta[0]),
        bias=float(theta[1]),
        n_spam=int(y.sum()),
        n_ham=int(len(y) - y.sum()),
        base_version=base_version,
    )


def family_of(key: int) -> tuple[str, int]:
    """(family name, bucket) of a feature key."""
    return FAMILY_NAMES[key >> _SHIFT], key & ((1 << _SHIFT) - 1)


def signal_name(bucket: int) -> str:
    return SIGNAL_NAMES[bucket]
