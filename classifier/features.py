"""Features as scikit-learn transformers.

The pipeline's input is a 2-D array of comment fields in `FIELDS` order (`to_frame` builds it).
`CommentVectorizer` normalises each comment once (`prepare`) and turns it into word and
character n-grams, link/author/e-mail domains and metadata signals.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from classifier.normalize import (
    clean_text,
    email_domain,
    extract_emails,
    extract_urls,
    normalize_text,
    url_domain,
)
from classifier.record import Comment

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
)
_CONTENT, _AUTHOR_EMAIL, _AUTHOR_URL, _HONEYPOT = (
    FIELDS.index("content"),
    FIELDS.index("author_email"),
    FIELDS.index("author_url"),
    FIELDS.index("honeypot"),
)

# Feature text is capped: an e-mail-length comment says what it is in its first few thousand
# characters, and the cap bounds the cost of the character n-grams.
MAX_FEATURE_CHARS = 3000

URL_SHORTENERS = frozenset(
    "bit.ly goo.gl tinyurl.com t.co ow.ly is.gd buff.ly adf.ly bit.do cutt.ly rebrand.ly "
    "shorte.st tiny.cc rb.gy t.me wa.me linktr.ee".split()
)


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


def prepare(row: Sequence[Any]) -> Prepared:
    """Normalise one row of `FIELDS` (missing trailing fields count as empty)."""
    raw = _cell(row, _CONTENT)[: MAX_FEATURE_CHARS * 2]
    clean = clean_text(raw)[:MAX_FEATURE_CHARS]
    return Prepared(
        text=normalize_text(clean),
        clean=clean,
        raw=raw,
        domains=tuple(_domain_tokens(clean, _cell(row, _AUTHOR_URL), _cell(row, _AUTHOR_EMAIL))),
        honeypot=_cell(row, _HONEYPOT),
    )


def _domain_tokens(clean: str, author_url: str, author_email: str) -> list[str]:
    tokens = [f"link:{url_domain(u)}" for u in extract_urls(clean)]
    tokens += [f"mail:{email_domain(e)}" for e in extract_emails(clean)]
    if author_url.strip():
        tokens.append(f"author:{url_domain(author_url.strip()) or 'invalid'}")
    if author_email.strip():
        tokens.append(f"from:{email_domain(author_email) or 'invalid'}")
    return [t for t in tokens if not t.endswith(":")]


_WORD = re.compile(r"\w+")


def word_grams(text: str, max_n: int) -> list[str]:
    """Word 1..max_n-grams of normalised text."""
    tokens = _WORD.findall(text)
    grams = list(tokens)
    if max_n >= 2:
        grams += [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]
    if max_n >= 3:
        grams += [
            f"{a} {b} {c}" for a, b, c in zip(tokens, tokens[1:], tokens[2:], strict=False)
        ]
    return grams


def char_grams(text: str, min_n: int, max_n: int) -> list[str]:
    """Character min_n..max_n-grams of normalised text, padded with a space at each end."""
    padded = f" {text} "
    grams: list[str] = []
    for n in range(min_n, max_n + 1):
        grams += [padded[i : i + n] for i in range(len(padded) - n + 1)]
    return grams


# Feature families, in the order of the output's columns.
FAMILIES: tuple[str, ...] = ("word", "chars", "domain", "signal")


class CommentVectorizer(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """All features of a comment in one pass: TF-IDF word and character n-grams over the
    normalised text, binary link/author/e-mail domains, and the metadata signals.

    Input: a 2-D array of fields in `FIELDS` order (any cell is read as text; missing trailing
    columns count as empty). Output: a CSR matrix whose columns are, in order, the word
    vocabulary, the character vocabulary, the domain vocabulary and `SIGNAL_NAMES`. Each n-gram
    block has sublinear TF, smooth IDF and unit L2 norm, as `TfidfVectorizer` would give.

    The work is fused so that a comment is normalised once, which is what makes scoring fast
    enough for a request's hot path.
    """

    def __init__(
        self,
        word_ngrams: int = 3,
        char_ngrams: tuple[int, int] = (3, 5),
        min_df: int = 2,
        max_char_features: int | None = 300_000,
    ) -> None:
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.min_df = min_df
        self.max_char_features = max_char_features

    def fit(self, X: Any, y: Any = None) -> CommentVectorizer:
        X = validate_data(self, X, dtype=None, ensure_all_finite=True, reset=True)
        prepared = [prepare(row) for row in X]
        min_n, max_n = self.char_ngrams
        words, word_df = _vocabulary(
            (word_grams(p.text, self.word_ngrams) for p in prepared), self.min_df, None
        )
        chars, char_df = _vocabulary(
            (char_grams(p.text, min_n, max_n) for p in prepared),
            self.min_df,
            self.max_char_features,
        )
        domains, _ = _vocabulary((p.domains for p in prepared), self.min_df, None)
        n_docs = len(prepared)
        signals = np.array([signal_values(p) for p in prepared], dtype=np.float64)
        signals = signals.reshape(n_docs, len(SIGNALS))
        # Signals are standardised so that a reason's weight is measured against a typical
        # comment, not against zero ("51 characters long" is not evidence by itself).
        self.signal_mean_ = signals.mean(axis=0) if n_docs else np.zeros(len(SIGNALS))
        std = signals.std(axis=0) if n_docs else np.ones(len(SIGNALS))
        self.signal_scale_ = np.where(std > 1e-9, std, 1.0)
        self.word_vocabulary_ = words
        self.char_vocabulary_ = chars
        self.domain_vocabulary_ = domains
        self.word_idf_ = np.log((1 + n_docs) / (1 + word_df)) + 1.0
        self.char_idf_ = np.log((1 + n_docs) / (1 + char_df)) + 1.0
        self.n_features_out_ = len(words) + len(chars) + len(domains) + len(SIGNALS)
        return self

    def transform(self, X: Any) -> sparse.csr_matrix:
        check_is_fitted(self, "word_vocabulary_")
        X = validate_data(self, X, dtype=None, ensure_all_finite=True, reset=False)
        return self.transform_prepared([prepare(row) for row in X])

    def transform_prepared(self, prepared: Sequence[Prepared]) -> sparse.csr_matrix:
        """`transform` for comments already prepared (the scorer prepares once for reasons)."""
        min_n, max_n = self.char_ngrams
        n_words = len(self.word_vocabulary_)
        n_chars = len(self.char_vocabulary_)
        n_domains = len(self.domain_vocabulary_)
        word_block = _tfidf_block(
            [word_grams(p.text, self.word_ngrams) for p in prepared],
            self.word_vocabulary_,
            self.word_idf_,
        )
        char_block = _tfidf_block(
            [char_grams(p.text, min_n, max_n) for p in prepared],
            self.char_vocabulary_,
            self.char_idf_,
        )
        domain_block = _binary_block([p.domains for p in prepared], self.domain_vocabulary_)
        raw_signals = np.array([signal_values(p) for p in prepared], dtype=np.float64)
        raw_signals = raw_signals.reshape(len(prepared), len(SIGNALS))
        signals = sparse.csr_matrix((raw_signals - self.signal_mean_) / self.signal_scale_)
        blocks = [
            _resize(word_block, n_words),
            _resize(char_block, n_chars),
            _resize(domain_block, n_domains),
            signals,
        ]
        return sparse.hstack(blocks, format="csr", dtype=np.float64)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "word_vocabulary_")
        names = [""] * self.n_features_out_
        offset = 0
        for family, vocabulary in (
            ("word", self.word_vocabulary_),
            ("chars", self.char_vocabulary_),
            ("domain", self.domain_vocabulary_),
        ):
            for term, index in vocabulary.items():
                names[offset + index] = f"{family}:{term}"
            offset += len(vocabulary)
        for i, name in enumerate(SIGNAL_NAMES):
            names[offset + i] = f"signal:{name}"
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        return tags


def _vocabulary(
    docs: Iterable[Iterable[str]], min_df: int, max_features: int | None
) -> tuple[dict[str, int], np.ndarray]:
    df: Counter[str] = Counter()
    for grams in docs:
        df.update(set(grams))
    kept = [(term, count) for term, count in df.items() if count >= min_df]
    if max_features is not None and len(kept) > max_features:
        kept.sort(key=lambda item: (-item[1], item[0]))
        kept = kept[:max_features]
    kept.sort()
    vocabulary = {term: i for i, (term, _) in enumerate(kept)}
    return vocabulary, np.array([count for _, count in kept], dtype=np.float64)


def _coo_parts(
    docs: Sequence[Sequence[str]], vocabulary: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    rows: list[int] = []
    cols: list[int] = []
    lookup = vocabulary.get
    for i, grams in enumerate(docs):
        found = [j for j in map(lookup, grams) if j is not None]
        cols += found
        rows += [i] * len(found)
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def _tfidf_block(
    docs: Sequence[Sequence[str]], vocabulary: dict[str, int], idf: np.ndarray
) -> sparse.csr_matrix:
    rows, cols = _coo_parts(docs, vocabulary)
    counts = sparse.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(docs), max(len(vocabulary), 1))
    )
    counts.sum_duplicates()
    counts.data = (np.log(counts.data) + 1.0) * idf[counts.indices]
    norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    counts.data /= np.repeat(norms, np.diff(counts.indptr))
    return counts


def _binary_block(
    docs: Sequence[Sequence[str]], vocabulary: dict[str, int]
) -> sparse.csr_matrix:
    rows, cols = _coo_parts(docs, vocabulary)
    block = sparse.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(docs), max(len(vocabulary), 1))
    )
    block.sum_duplicates()
    block.data[:] = 1.0
    return block


def _resize(block: sparse.csr_matrix, width: int) -> sparse.csr_matrix:
    # An empty vocabulary still gets a placeholder column in _tfidf_block; drop it.
    return block if block.shape[1] == width else block[:, :width]


_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f]")
_PHONE = re.compile(r"(?:\+|\b)\d(?:[\s().-]{0,2}\d){8,14}\b")
_WALLET = re.compile(
    r"\b(?:0x[a-fA-F0-9]{40}|(?:bc1|[13])[a-km-zA-HJ-NP-Z1-9]{25,39}|T[1-9A-HJ-NP-Za-km-z]{33})\b"
)
_MENTION = re.compile(r"(?:^|\s)[@#][\w.]{2,}")
_REPEAT = re.compile(r"(.)\1{3,}")
_MONEY = re.compile(r"[$€£₿]|\b(?:usd|btc|eth|usdt|bitcoin|crypto|forex|profit)\b", re.IGNORECASE)
_LATIN = re.compile(r"[A-Za-z]")
_OTHER_LOOKALIKE_SCRIPT = re.compile("[\u0370-\u03ff\u0400-\u04ff\u0500-\u052f]")
_MIXED_WORD = re.compile(
    "\\b(?=\\w*[A-Za-z])(?=\\w*[\u0370-\u03ff\u0400-\u04ff])\\w+\\b"
)

# (name, plain-words description with {} for the value); the order is the output's columns.
SIGNALS: tuple[tuple[str, str], ...] = (
    ("links", "{} link(s)"),
    ("link_domains", "links to {} different site(s)"),
    ("shortened_link", "a shortened link"),
    ("author_url", "the author gave a website"),
    ("author_url_linked", "the author's website is linked in the text"),
    ("email_in_text", "an e-mail address in the text"),
    ("capitals", "{:.0%} capital letters"),
    ("digits", "{:.0%} digits"),
    ("repeated_chars", "a character repeated {} times in a row"),
    ("length", "{} characters long"),
    ("words", "{} words"),
    ("emoji", "{} emoji"),
    ("mixed_scripts", "words mixing Latin and Cyrillic or Greek letters"),
    ("disguised_letters", "{:.0%} of letters disguised (look-alikes, accents)"),
    ("phone_number", "a phone number"),
    ("crypto_wallet", "a crypto-wallet address"),
    ("mentions", "{} @mention(s) or #hashtag(s)"),
    ("exclamations", "{} exclamation mark(s)"),
    ("money", "{} money word(s) or symbol(s)"),
    ("honeypot", "the honeypot field was filled in"),
)
SIGNAL_NAMES: tuple[str, ...] = tuple(name for name, _ in SIGNALS)


def signal_values(prepared: Prepared) -> list[float]:
    """The value of each signal (counts log-scaled), in `SIGNALS` order."""
    clean, raw, tokens = prepared.clean, prepared.raw, prepared.domains
    links = [t[5:] for t in tokens if t.startswith("link:")]
    author = next((t[7:] for t in tokens if t.startswith("author:")), "")
    letters = sum(c.isalpha() for c in clean) or 1
    n_chars = len(clean) or 1
    repeat = max((len(m.group(0)) for m in _REPEAT.finditer(clean)), default=0)
    raw_letters = _LATIN.findall(raw)
    disguised = _count_disguised(raw, clean)
    return [
        math.log1p(len(links)),
        math.log1p(len(set(links))),
        float(any(d in URL_SHORTENERS for d in links)),
        float(bool(author)),
        float(bool(author) and author in links),
        float(any(t.startswith("mail:") for t in tokens)),
        sum(c.isupper() for c in clean) / letters,
        sum(c.isdigit() for c in clean) / n_chars,
        math.log1p(repeat),
        math.log1p(len(clean)),
        math.log1p(len(clean.split())),
        math.log1p(len(_EMOJI.findall(raw))),
        float(bool(raw_letters) and _MIXED_WORD.search(raw) is not None),
        min(1.0, disguised / letters),
        float(_PHONE.search(clean) is not None),
        float(_WALLET.search(clean) is not None),
        math.log1p(len(_MENTION.findall(clean))),
        math.log1p(clean.count("!")),
        math.log1p(len(_MONEY.findall(clean))),
        float(bool(prepared.honeypot.strip())),
    ]


def _count_disguised(raw: str, clean: str) -> int:
    """How many letters the normalisation had to change (look-alikes, accents, styled text)."""
    if raw.isascii() or _LATIN.search(raw) is None:
        return 0
    return sum(1 for c in raw if c.isalpha() and not c.isascii() and not _is_native_script(c))


def _is_native_script(char: str) -> bool:
    # Letters of scripts that are not look-alikes of Latin (CJK, Hangul, Devanagari, Arabic...)
    # are a language, not a disguise.
    code = ord(char)
    return (
        0x0590 <= code <= 0x1DFF and not 0x1D00 <= code <= 0x1DBF
    ) or 0x2E80 <= code <= 0xD7FF or 0xAC00 <= code <= 0xD7AF


def describe_signal(name: str, raw_value: float) -> str:
    """Plain words for a signal and its value, for a verdict's reasons."""
    template = dict(SIGNALS)[name]
    if "{:.0%}" in template:
        return template.format(raw_value)
    if "{}" in template:
        count = round(math.expm1(raw_value)) if name not in ("capitals", "digits") else raw_value
        return template.format(count)
    return template
