"""Features of prepared comments from a fitted vocabulary, in numpy alone: what scoring runs.

A comment is normalised once (`prepare_comment`) and its hashed word and character n-grams,
domains and metadata signals become sparse entries plus a dense signal block (`FeatureParts`).
`FeatureTransform` computes them from a fitted vocabulary. It is shared by the scikit-learn
transformer that learns the vocabulary (`classifier.features.CommentVectorizer`) and by
`ScoringFeatures`, the same vocabulary read back from plain arrays, so that a model can be
loaded and scored without importing scikit-learn or SciPy (see `classifier.artifact`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from classifier import hashing
from classifier.normalize import (
    clean_text,
    email_domain,
    extract_emails,
    extract_urls,
    lower_clean_text,
    url_domain,
)
from classifier.record import Comment
from classifier.signals import signal_matrix

FIELDS: tuple[str, ...] = (
    "content",
    "author",
    "author_email",
    "author_url",
    "user_ip",
    "user_agent",
    "referrer",
    "permalink",
    "comment_type",
    "blog",
    "blog_lang",
    "user_role",
    "honeypot",
    "site",
)
_CONTENT, _AUTHOR_EMAIL, _AUTHOR_URL, _HONEYPOT, _SITE = (
    FIELDS.index("content"),
    FIELDS.index("author_email"),
    FIELDS.index("author_url"),
    FIELDS.index("honeypot"),
    FIELDS.index("site"),
)

# Feature text is capped: an e-mail-length comment says what it is in its first few thousand
# characters, and the cap bounds the cost of the character n-grams.
MAX_FEATURE_CHARS = 3000


def to_frame(comments: Iterable[Comment | Mapping[str, Any] | str]) -> np.ndarray:
    """A 2-D object array of comment fields in `FIELDS` order, the pipeline's input."""
    rows: list[list[str]] = []
    for comment in comments:
        if isinstance(comment, str):
            rows.append([comment] + [""] * (len(FIELDS) - 1))
        elif isinstance(comment, Comment):
            rows.append([getattr(comment, name) or "" for name in FIELDS])
        else:
            rows.append([str(comment.get(name) or "") for name in FIELDS])
    frame = np.empty((len(rows), len(FIELDS)), dtype=object)
    for i, row in enumerate(rows):
        frame[i, :] = row
    return frame


def _cell(row: Sequence[Any], index: int) -> str:
    if index >= len(row):
        return ""
    value = row[index]
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A comment after normalisation: what every feature family reads."""

    text: str  # normalised (folded, lower-cased)
    clean: str  # normalised but with its letter case
    raw: str  # as submitted (for signals about disguise: look-alikes, mixed scripts)
    domains: tuple[str, ...]  # "link:x.com", "mail:y.org", "author:z.net", "from:w.com"
    honeypot: str
    site: str = ""  # the site key (per-site features)


def prepare(row: Sequence[Any]) -> Prepared:
    """Normalise one row of `FIELDS` (missing trailing fields count as empty)."""
    return prepare_fields(
        _cell(row, _CONTENT),
        _cell(row, _AUTHOR_URL),
        _cell(row, _AUTHOR_EMAIL),
        _cell(row, _HONEYPOT),
        _cell(row, _SITE),
    )


def prepare_comment(comment: Comment | Mapping[str, Any] | str) -> Prepared:
    """`prepare` straight from a record, without building the 2-D frame (the scoring path)."""
    if isinstance(comment, str):
        return prepare_fields(comment, "", "", "")
    if isinstance(comment, Comment):
        return prepare_fields(
            comment.content or "",
            comment.author_url or "",
            comment.author_email or "",
            comment.honeypot or "",
            comment.site or "",
        )
    return prepare(to_frame([comment])[0])


def prepare_fields(
    content: str, author_url: str, author_email: str, honeypot: str, site: str = ""
) -> Prepared:
    """Normalise a comment's text once and extract its link, author and e-mail domains."""
    raw = content[: MAX_FEATURE_CHARS * 2]
    clean = clean_text(raw)[:MAX_FEATURE_CHARS]
    return Prepared(
        text=lower_clean_text(clean),
        clean=clean,
        raw=raw,
        domains=tuple(_domain_tokens(clean, author_url, author_email)),
        honeypot=honeypot,
        site=site,
    )


def _domain_tokens(clean: str, author_url: str, author_email: str) -> list[str]:
    tokens = [f"link:{url_domain(u)}" for u in extract_urls(clean)]
    tokens += [f"mail:{email_domain(e)}" for e in extract_emails(clean)]
    if author_url.strip():
        tokens.append(f"author:{url_domain(author_url.strip()) or 'invalid'}")
    if author_email.strip():
        tokens.append(f"from:{email_domain(author_email) or 'invalid'}")
    return [t for t in tokens if not t.endswith(":")]


@dataclass(frozen=True, slots=True)
class FeatureParts:
    """Features of a batch: sparse (doc, column, value) entries for n-grams and domains, in no
    particular order, and the dense standardised signals (the last columns)."""

    n: int
    doc: np.ndarray
    column: np.ndarray
    value: np.ndarray
    signals: np.ndarray
    words: hashing.Grams  # the hashed n-grams themselves, to name them in reasons
    chars: hashing.Grams


class FeatureTransform:
    """The transform of a fitted vocabulary: hashed n-grams to columns with TF-IDF and unit L2
    norm per block, domains, per-site word copies, centred signals.

    The fitted state is the attributes below; a subclass sets them (by fitting, or from
    arrays) and then calls `_set_lookups`.
    """

    word_ngrams: int
    char_ngrams: tuple[int, int]
    word_bits: int
    char_bits: int
    word_buckets_: np.ndarray
    word_idf_: np.ndarray
    char_buckets_: np.ndarray
    char_idf_: np.ndarray
    domain_vocabulary_: dict[str, int]
    sites_: list[str]
    site_keys_: np.ndarray
    signal_mean_: np.ndarray
    signal_scale_: np.ndarray
    _word_lookup: np.ndarray
    _char_lookup: np.ndarray
    _text_idf: np.ndarray
    _site_index: dict[str, int]

    def _check_fitted(self) -> None:
        """Raise if there is no fitted state (the scikit-learn transformer's check)."""

    def _set_lookups(self) -> None:
        # Hashed bucket -> column (-1: not a feature). Rebuilt after unpickling rather than
        # stored, since it is large and derived.
        self._word_lookup = _lookup(self.word_buckets_, self.word_bits)
        self._char_lookup = _lookup(self.char_buckets_, self.char_bits)
        self._text_idf = np.concatenate((self.word_idf_, self.char_idf_))
        self._site_index = {site: i for i, site in enumerate(getattr(self, "sites_", []))}

    def _doc_sites(self, prepared: Sequence[Prepared]) -> np.ndarray:
        """Each comment's index in `sites_`, or -1."""
        index = self._site_index
        return np.fromiter((index.get(p.site, -1) for p in prepared), np.int64, len(prepared))

    def transform_parts(self, prepared: Sequence[Prepared]) -> FeatureParts:
        """The features of prepared comments as sparse entries plus a dense signal block.

        This is what scoring reads: it avoids building a sparse matrix on the hot path.
        """
        texts = [p.text for p in prepared]
        words = hashing.word_ngrams(texts, self.word_ngrams, self.word_bits)
        chars = hashing.char_ngrams(texts, *self.char_ngrams, self.char_bits)
        return self._parts(prepared, words, chars, signal_matrix(prepared))

    def _parts(
        self,
        prepared: Sequence[Prepared],
        words: hashing.Grams,
        chars: hashing.Grams,
        raw_signals: np.ndarray,
    ) -> FeatureParts:
        """`transform_parts` given the comments' hashed n-grams and raw signals."""
        n = len(prepared)
        n_words = len(self.word_buckets_)
        n_text = n_words + len(self.char_buckets_)
        word_cols = self._word_lookup[words.column]
        char_cols = self._char_lookup[chars.column]
        keep_w, keep_c = word_cols >= 0, char_cols >= 0
        doc = np.concatenate((words.doc[keep_w], chars.doc[keep_c]))
        column = np.concatenate((word_cols[keep_w], char_cols[keep_c] + n_words)).astype(np.int64)
        keys, counts = np.unique(doc * n_text + column, return_counts=True)
        doc, column = keys // n_text, keys % n_text
        value = (np.log(counts) + 1.0) * self._text_idf[column]
        # Unit L2 norm per comment within each block (words, characters).
        block = doc * 2 + (column >= n_words)
        norms = np.sqrt(np.bincount(block, weights=value**2, minlength=2 * n))
        value = value / np.where(norms > 0, norms, 1.0)[block]

        domain_offset = n_text
        d_doc: list[int] = []
        d_col: list[int] = []
        for i, p in enumerate(prepared):
            for j in {
                self.domain_vocabulary_[t] for t in p.domains if t in self.domain_vocabulary_
            }:
                d_doc.append(i)
                d_col.append(domain_offset + j)
        docs = [doc, np.asarray(d_doc, dtype=np.int64)]
        columns = [column, np.asarray(d_col, dtype=np.int64)]
        values = [value, np.ones(len(d_doc))]
        if len(self.site_keys_):
            site_entries = self._site_entries(prepared, doc, column, value)
            if site_entries is not None:
                docs.append(site_entries[0])
                columns.append(site_entries[1])
                values.append(site_entries[2])
        signals = (raw_signals - self.signal_mean_) / self.signal_scale_
        return FeatureParts(
            n=n,
            doc=np.concatenate(docs),
            column=np.concatenate(columns),
            value=np.concatenate(values),
            signals=signals,
            words=words,
            chars=chars,
        )

    def _site_entries(
        self, prepared: Sequence[Prepared], doc: np.ndarray, column: np.ndarray, value: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The per-site copies of the word entries of comments from learned sites."""
        doc_site = self._doc_sites(prepared)
        if not (doc_site >= 0).any():
            return None
        n_words = len(self.word_buckets_)
        mine = (column < n_words) & (doc_site[doc] >= 0)
        keys = doc_site[doc[mine]] << self.word_bits | self.word_buckets_[column[mine]]
        position = np.searchsorted(self.site_keys_, keys)
        position = np.minimum(position, len(self.site_keys_) - 1)
        found = self.site_keys_[position] == keys
        first = self.offsets["site"]
        return doc[mine][found], first + position[found], value[mine][found]

    @property
    def offsets(self) -> dict[str, int]:
        """The first column of each feature family."""
        self._check_fitted()
        word = 0
        chars = word + len(self.word_buckets_)
        domain = chars + len(self.char_buckets_)
        site = domain + len(self.domain_vocabulary_)
        signal = site + len(self.site_keys_)
        return {"word": word, "chars": chars, "domain": domain, "site": site, "signal": signal}

    def site_feature(self, column: int) -> tuple[str, int]:
        """The site key and word bucket of a per-site column (`column` counts from 0)."""
        key = int(self.site_keys_[column])
        return self.sites_[key >> self.word_bits], key & ((1 << self.word_bits) - 1)


class ScoringFeatures(FeatureTransform):
    """A fitted vocabulary read back from `feature_arrays`' form: transforms exactly as the
    `CommentVectorizer` it was taken from, with numpy alone."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        def scalar(name: str) -> int:
            return int(arrays[f"features.{name}"])

        self.word_ngrams = scalar("word_ngrams")
        self.char_ngrams = (scalar("char_ngrams_min"), scalar("char_ngrams_max"))
        self.word_bits = scalar("word_bits")
        self.char_bits = scalar("char_bits")
        self.word_buckets_ = np.asarray(arrays["features.word_buckets"], dtype=np.int64)
        self.word_idf_ = np.asarray(arrays["features.word_idf"], dtype=np.float64)
        self.char_buckets_ = np.asarray(arrays["features.char_buckets"], dtype=np.int64)
        self.char_idf_ = np.asarray(arrays["features.char_idf"], dtype=np.float64)
        self.domain_vocabulary_ = {
            str(term): i for i, term in enumerate(arrays["features.domains"].tolist())
        }
        self.sites_ = [str(site) for site in arrays["features.sites"].tolist()]
        self.site_keys_ = np.asarray(arrays["features.site_keys"], dtype=np.int64)
        self.signal_mean_ = np.asarray(arrays["features.signal_mean"], dtype=np.float64)
        self.signal_scale_ = np.asarray(arrays["features.signal_scale"], dtype=np.float64)
        self._set_lookups()


def feature_arrays(features: FeatureTransform) -> dict[str, np.ndarray]:
    """A fitted vocabulary as named plain arrays (no objects: `np.load` reads them back
    without unpickling), which `ScoringFeatures` reads."""
    domains = sorted(features.domain_vocabulary_, key=features.domain_vocabulary_.__getitem__)
    return {
        "features.word_ngrams": np.asarray(features.word_ngrams, dtype=np.int64),
        "features.char_ngrams_min": np.asarray(features.char_ngrams[0], dtype=np.int64),
        "features.char_ngrams_max": np.asarray(features.char_ngrams[1], dtype=np.int64),
        "features.word_bits": np.asarray(features.word_bits, dtype=np.int64),
        "features.char_bits": np.asarray(features.char_bits, dtype=np.int64),
        "features.word_buckets": np.asarray(features.word_buckets_, dtype=np.int64),
        "features.word_idf": np.asarray(features.word_idf_, dtype=np.float64),
        "features.char_buckets": np.asarray(features.char_buckets_, dtype=np.int64),
        "features.char_idf": np.asarray(features.char_idf_, dtype=np.float64),
        "features.domains": np.asarray(domains, dtype=np.str_),
        "features.sites": np.asarray(list(features.sites_), dtype=np.str_),
        "features.site_keys": np.asarray(features.site_keys_, dtype=np.int64),
        "features.signal_mean": np.asarray(features.signal_mean_, dtype=np.float64),
        "features.signal_scale": np.asarray(features.signal_scale_, dtype=np.float64),
    }


def _lookup(buckets: np.ndarray, bits: int) -> np.ndarray:
    lookup = np.full(1 << bits, -1, dtype=np.int32)
    lookup[buckets] = np.arange(len(buckets), dtype=np.int32)
    return lookup
