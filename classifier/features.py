"""Features as scikit-learn transformers.

The pipeline's input is a 2-D array of comment fields in `FIELDS` order (`to_frame` builds it).
`CommentVectorizer` normalises each comment once (`prepare`) and turns it into word and
character n-grams, link/author/e-mail domains and metadata signals. It learns the vocabulary;
the transform itself is `classifier.vectors.FeatureTransform`, shared with scoring.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from classifier import hashing
from classifier.signals import SIGNAL_NAMES, SIGNALS, signal_matrix
from classifier.vectors import (
    FeatureParts,
    FeatureTransform,
    Prepared,
    prepare,
    prepare_comment,
    to_frame,
)

# The comment's preparation and the transform are in `classifier.vectors` (numpy alone, so that
# a model scores without scikit-learn); the names are still importable from here.
__all__ = [
    "CommentVectorizer",
    "FeatureParts",
    "Prepared",
    "prepare",
    "prepare_comment",
    "to_frame",
]


class CommentVectorizer(TransformerMixin, FeatureTransform, BaseEstimator):
    """All features of a comment in one pass: TF-IDF word and character n-grams over the
    normalised text, binary link/author/e-mail domains, and the metadata signals.

    Input: a 2-D array of fields in `FIELDS` order (any cell is read as text; missing trailing
    columns count as empty). Output: a CSR matrix whose columns are, in order, `2**word_bits`
    hashed word 1..`word_ngrams`-grams, `2**char_bits` hashed character n-grams, the domain
    vocabulary, and the standardised `SIGNAL_NAMES`. Each n-gram block has sublinear TF,
    smooth IDF (zero for n-grams seen in fewer than `min_df` training comments) and unit L2
    norm, as `TfidfVectorizer` would give.

    Work is fused so that a comment is normalised once and its n-grams are hashed as vectors
    over the whole batch (`classifier.hashing`): that is what makes scoring fast enough for a
    request's hot path.

    Per-site learning ("frustratingly easy domain adaptation", Daumé III 2007): for each site
    key in `sites`, a comment of that site also gets a site-specific copy of each of its word
    n-gram features (those seen in at least `min_df` of that site's training comments), in a
    block between the domains and the signals. The shared weights learn what spam is
    everywhere; a site's copies learn only how that site differs. A comment of any other site
    gets no copies, so it is scored by exactly the shared model.
    """

    def __init__(
        self,
        word_ngrams: int = 3,
        char_ngrams: tuple[int, int] = (4, 5),
        min_df: int = 2,
        word_bits: int = 20,
        char_bits: int = 21,
        sites: tuple[str, ...] = (),
        signal_strength: float = 1.0,
    ) -> None:
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.min_df = min_df
        self.word_bits = word_bits
        self.char_bits = char_bits
        self.sites = sites
        self.signal_strength = signal_strength

    def fit(self, X: Any, y: Any = None) -> CommentVectorizer:
        X = validate_data(self, X, dtype=None, ensure_all_finite=True, reset=True)
        self._fit_prepared([prepare(row) for row in X])
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> sparse.csr_matrix:
        # Normalise each comment once, not once for fit and again for transform.
        X = validate_data(self, X, dtype=None, ensure_all_finite=True, reset=True)
        # Their n-grams and signals are computed once too, and reused for the transform.
        prepared = [prepare(row) for row in X]
        words, chars, signals = self._fit_prepared(prepared)
        return self._matrix(self._parts(prepared, words, chars, signals))

    def _fit_prepared(
        self, prepared: Sequence[Prepared]
    ) -> tuple[hashing.Grams, hashing.Grams, np.ndarray]:
        """Fit on prepared comments; their hashed word and character n-grams and their raw
        signals are returned for `fit_transform` to reuse."""
        n_docs = len(prepared)
        texts = [p.text for p in prepared]
        words = hashing.word_ngrams(texts, self.word_ngrams, self.word_bits)
        chars = hashing.char_ngrams(texts, *self.char_ngrams, self.char_bits)
        self.word_buckets_, self.word_idf_ = _kept_buckets(
            words, n_docs, self.word_bits, self.min_df
        )
        self.char_buckets_, self.char_idf_ = _kept_buckets(
            chars, n_docs, self.char_bits, self.min_df
        )
        self._set_lookups()
        df: Counter[str] = Counter()
        for p in prepared:
            df.update(set(p.domains))
        kept = sorted(term for term, count in df.items() if count >= self.min_df)
        self.domain_vocabulary_ = {term: i for i, term in enumerate(kept)}
        self.sites_ = [str(site) for site in dict.fromkeys(self.sites or ())]
        self._site_index = {site: i for i, site in enumerate(self.sites_)}
        self.site_keys_ = self._site_vocabulary(prepared, words)
        signals = signal_matrix(prepared)
        # Signals are centred so that a reason's weight is measured against a typical comment,
        # not against zero ("51 characters long" is not evidence by itself). They are NOT
        # divided by their spread: a rare flag (a shortened link, an e-mail address) would then
        # stand dozens of spreads from the mean and a modest weight would decide alone, and the
        # corpora's rarities are not a new site's. One fixed scale for all (`signal_strength`).
        self.signal_mean_ = signals.mean(axis=0) if n_docs else np.zeros(len(SIGNALS))
        self.signal_scale_ = np.full(len(SIGNALS), 1.0 / self.signal_strength)
        self.n_features_out_ = (
            len(self.word_buckets_)
            + len(self.char_buckets_)
            + len(kept)
            + len(self.site_keys_)
            + len(SIGNALS)
        )
        return words, chars, signals

    def _site_vocabulary(self, prepared: Sequence[Prepared], words: hashing.Grams) -> np.ndarray:
        """Sorted keys `site index << word_bits | bucket` of the per-site word features: shared
        word buckets seen in at least `min_df` training comments of that site."""
        if not self._site_index:
            return np.zeros(0, dtype=np.int64)
        doc_site = self._doc_sites(prepared)
        pairs = _distinct(words.doc.astype(np.int64) << self.word_bits | words.column)
        docs, buckets = pairs >> self.word_bits, pairs & ((1 << self.word_bits) - 1)
        sites = doc_site[docs]
        mine = (sites >= 0) & (self._word_lookup[buckets] >= 0)
        keys, counts = np.unique(sites[mine] << self.word_bits | buckets[mine], return_counts=True)
        return keys[counts >= max(self.min_df, 1)].astype(np.int64)

    def _check_fitted(self) -> None:
        check_is_fitted(self, "word_idf_")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_word_lookup", None)
        state.pop("_char_lookup", None)
        state.pop("_text_idf", None)
        state.pop("_site_index", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Artifacts from before per-site features have none.
        state.setdefault("sites", ())
        state.setdefault("signal_strength", 1.0)
        if "word_buckets_" in state:
            state.setdefault("sites_", [])
            state.setdefault("site_keys_", np.zeros(0, dtype=np.int64))
        self.__dict__.update(state)
        if "word_buckets_" in state:
            self._set_lookups()

    def transform(self, X: Any) -> sparse.csr_matrix:
        check_is_fitted(self, "word_idf_")
        X = validate_data(self, X, dtype=None, ensure_all_finite=True, reset=False)
        return self.transform_prepared([prepare(row) for row in X])

    def transform_prepared(self, prepared: Sequence[Prepared]) -> sparse.csr_matrix:
        """`transform` for comments already prepared."""
        return self._matrix(self.transform_parts(prepared))

    def _matrix(self, parts: FeatureParts) -> sparse.csr_matrix:
        entries = sparse.csr_matrix(
            (parts.value, (parts.doc, parts.column)), shape=(parts.n, self.offsets["signal"])
        )
        return sparse.hstack([entries, sparse.csr_matrix(parts.signals)], format="csr")

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "word_idf_")
        names = [f"word:#{b}" for b in self.word_buckets_]
        names += [f"chars:#{b}" for b in self.char_buckets_]
        names += [
            f"domain:{t}"
            for t in sorted(self.domain_vocabulary_, key=self.domain_vocabulary_.__getitem__)
        ]
        names += [
            f"site:{site}:word:#{bucket}"
            for site, bucket in (self.site_feature(i) for i in range(len(self.site_keys_)))
        ]
        names += [f"signal:{name}" for name in SIGNAL_NAMES]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        return tags


def _kept_buckets(
    grams: hashing.Grams, n_docs: int, bits: int, min_df: int
) -> tuple[np.ndarray, np.ndarray]:
    """The buckets seen in at least `min_df` documents, and their smooth IDF."""
    pairs = _distinct(grams.doc.astype(np.int64) << bits | grams.column)
    df = np.bincount(pairs & ((1 << bits) - 1), minlength=1 << bits)
    buckets = np.flatnonzero(df >= max(min_df, 1))
    idf = np.log((1.0 + n_docs) / (1.0 + df[buckets])) + 1.0
    return buckets.astype(np.int64), idf.astype(np.float64)


def _distinct(keys: np.ndarray) -> np.ndarray:
    """`np.unique(keys)` by sorting. NumPy 2's `np.unique` hashes instead, and on these keys
    (document << bits | bucket: millions of them, clustered) that took over a hundred times as
    long as a sort (23 s against 0.2 s for 12 million keys)."""
    ordered = np.sort(keys)
    if len(ordered) == 0:
        return ordered
    first = np.empty(len(ordered), dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered[first]
