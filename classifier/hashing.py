"""Word and character n-grams hashed to column indices, for a whole batch at once in numpy.

A Python loop over n-grams costs ~0.3 µs each, and a comment has hundreds of them; hashing
them as vectors over the batch's code points is what lets scoring reach tens of thousands of
comments per second on one core. The hash is a fixed polynomial over Unicode code points with
64-bit wrap-around, so it is the same on every machine and in every process (unlike `hash()`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_SEPARATOR = 0  # code point between documents; normalised text never contains NUL
_MULTIPLIERS = np.array(
    [
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0xD6E8FEB86659FD93,
        0xFF51AFD7ED558CCD,
        0xC4CEB9FE1A85EC53,
    ],
    dtype=np.uint64,
)
_POLY = np.uint64(0x100000001B3)  # odd, so it has an inverse modulo 2**64
_POLY_INVERSE = np.uint64(pow(0x100000001B3, -1, 1 << 64))


@dataclass(frozen=True, slots=True)
class Grams:
    """Hashed n-grams of a batch: one entry per n-gram occurrence."""

    doc: np.ndarray  # int64: which document
    column: np.ndarray  # int64: hashed column in [0, 2**bits)
    start: np.ndarray  # int64: first character, as an offset into the document's text
    stop: np.ndarray  # int64: one past the last character


def _finalise(h: np.ndarray, bits: int) -> np.ndarray:
    # murmur3's 64-bit finaliser: spreads every input bit over the output.
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    h = h ^ (h >> np.uint64(33))
    return (h >> np.uint64(64 - bits)).astype(np.int64)


def _encode(texts: Sequence[str], pad: bool) -> tuple[np.ndarray, np.ndarray]:
    """Code points of the batch joined by a separator, and each document's first offset."""
    parts = [f" {t} " for t in texts] if pad else list(texts)
    joined = "\x00".join(parts)
    points = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    offsets = np.zeros(len(parts), dtype=np.int64)
    if len(parts) > 1:
        offsets[1:] = np.cumsum(lengths[:-1] + 1)
    return points, offsets


def char_ngrams(texts: Sequence[str], min_n: int, max_n: int, bits: int) -> Grams:
    """Hashed character n-grams of each text, padded with a space at each end."""
    points, offsets = _encode(texts, pad=True)
    separators = np.cumsum(points == _SEPARATOR)
    docs, columns, starts, stops = [], [], [], []
    for n in range(min_n, max_n + 1):
        count = len(points) - n + 1
        if count <= 0:
            continue
        h = np.full(count, np.uint64(n), dtype=np.uint64)
        for k in range(n):
            h = h + points[k : k + count] * _MULTIPLIERS[k]
        # A window is inside one document when no separator lies in it.
        before = np.concatenate(([0], separators[: count - 1])) if count else separators[:0]
        inside = separators[n - 1 : n - 1 + count] == before
        index = np.nonzero(inside)[0]
        doc = before[index]
        docs.append(doc)
        columns.append(_finalise(h[index], bits))
        starts.append(index - offsets[doc] - 1)  # -1: offsets count the leading pad
        stops.append(index - offsets[doc] - 1 + n)
    return _concat(docs, columns, starts, stops)


@lru_cache(maxsize=1)
def _word_table() -> np.ndarray:
    """For each BMP code point: does `\\w` match it (letters, digits, underscore)?"""
    import re

    word = re.compile(r"\w")
    return np.array([word.match(chr(c)) is not None for c in range(0x10000)], dtype=bool)


@lru_cache(maxsize=4)
def _powers(length: int) -> tuple[np.ndarray, np.ndarray]:
    powers = np.cumprod(np.full(length, _POLY, dtype=np.uint64), dtype=np.uint64)
    inverse = np.cumprod(np.full(length, _POLY_INVERSE, dtype=np.uint64), dtype=np.uint64)
    return np.concatenate(([np.uint64(1)], powers)), np.concatenate(([np.uint64(1)], inverse))


def _pow2_at_least(n: int) -> int:
    return 1 << max(10, (n - 1).bit_length())


def word_ngrams(texts: Sequence[str], max_n: int, bits: int) -> Grams:
    """Hashed word 1..max_n-grams (words are runs of `\\w`) of each text."""
    points, offsets = _encode(texts, pad=False)
    if len(points) == 0:
        return _concat([], [], [], [])
    table = _word_table()
    is_word = np.zeros(len(points), dtype=bool)
    bmp = points < 0x10000
    is_word[bmp] = table[points[bmp].astype(np.int64)]
    edges = np.diff(np.concatenate(([0], is_word.astype(np.int8), [0])))
    token_start = np.nonzero(edges == 1)[0]
    token_stop = np.nonzero(edges == -1)[0]
    if len(token_start) == 0:
        return _concat([], [], [], [])
    # Polynomial hash of each token from prefix sums: (H[stop] - H[start]) * P^-start.
    powers, inverse = _powers(_pow2_at_least(len(points) + 1))
    prefix = np.concatenate(
        ([np.uint64(0)], np.cumsum(points * powers[: len(points)], dtype=np.uint64))
    )
    token_hash = (prefix[token_stop] - prefix[token_start]) * inverse[token_start]
    token_hash = token_hash + (token_stop - token_start).astype(np.uint64) * _MULTIPLIERS[5]
    separators = np.concatenate(([0], np.cumsum(points == _SEPARATOR)))
    token_doc = separators[token_start]
    docs, columns, starts, stops = [], [], [], []
    for n in range(1, max_n + 1):
        count = len(token_hash) - n + 1
        if count <= 0:
            continue
        h = np.full(count, np.uint64(100 + n), dtype=np.uint64)
        for k in range(n):
            h = h + token_hash[k : k + count] * _MULTIPLIERS[k]
        index = np.nonzero(token_doc[n - 1 : n - 1 + count] == token_doc[:count])[0]
        doc = token_doc[index]
        docs.append(doc)
        columns.append(_finalise(h[index], bits))
        starts.append(token_start[index] - offsets[doc])
        stops.append(token_stop[index + n - 1] - offsets[doc])
    return _concat(docs, columns, starts, stops)


def _concat(
    docs: list[np.ndarray],
    columns: list[np.ndarray],
    starts: list[np.ndarray],
    stops: list[np.ndarray],
) -> Grams:
    empty = np.zeros(0, dtype=np.int64)
    return Grams(
        doc=np.concatenate(docs) if docs else empty,
        column=np.concatenate(columns) if columns else empty,
        start=np.concatenate(starts) if starts else empty,
        stop=np.concatenate(stops) if stops else empty,
    )
