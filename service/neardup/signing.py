"""Signing for the near-duplicate index: a text's shingles, MinHash signature and LSH bands,
the same in every process and on every machine (seeded permutations)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from datasketch import MinHash, MinHashLSH

from classifier.normalize import normalize_text

SHINGLE_SIZE = 5
MAX_CHARS = 4000  # normalised characters shingled; a longer text is judged by its beginning
SEED = 1
_MULTIPLIER = np.uint64(1_000_003)
_HALF = np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class Signature:
    """A text's MinHash values and the hashes of its LSH bands."""

    values: np.ndarray  # uint32, num_perm long
    bands: list[str]  # "<band index>:<hex>", one per band


class Signer:
    """Text → MinHash signature, the same in every process (seeded permutations)."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, min_shingles: int = 24) -> None:
        self.threshold = threshold
        self.num_perm = num_perm
        self.min_shingles = min_shingles
        self._template = MinHash(num_perm=num_perm, seed=SEED)
        if self._template.scheme != "affine32":  # what `values` computes; datasketch is pinned
            raise RuntimeError(f"datasketch's MinHash scheme {self._template.scheme!r} is new")
        self._permutations = np.asarray(self._template.permutations, dtype=np.uint32)
        # datasketch picks the bands (b) and rows per band (r) for the threshold; an in-memory
        # index costs nothing to ask. Missed near-duplicates weigh 9:1 against extra candidates,
        # since every candidate's similarity is checked anyway: at 0.8 and 128 permutations that
        # is 14 bands of 9 rows, finding a pair at exactly 0.8 with probability 0.87 (0.999 at
        # 0.9), and one at 0.6 only 13% of the time (then dismissed by its similarity).
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
        self.bands: list[tuple[int, int]] = list(lsh.hashranges)

    def shingles(self, text: str) -> np.ndarray:
        """The distinct 32-bit hashes of the normalised text's character 5-grams."""
        normal = normalize_text(text)[:MAX_CHARS]
        if len(normal) < SHINGLE_SIZE:
            return np.zeros(0, dtype=np.uint32)
        points = np.frombuffer(normal.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        n = len(points) - SHINGLE_SIZE + 1
        hashed = points[:n].copy()
        for j in range(1, SHINGLE_SIZE):  # wraps modulo 2^64, as intended
            hashed *= _MULTIPLIER
            hashed += points[j : j + n]
        folded = np.sort(((hashed ^ (hashed >> _HALF)) & _LOW32).astype(np.uint32))
        # np.unique, without its overhead on small arrays
        return folded[np.concatenate(([True], folded[1:] != folded[:-1]))]

    def minhash(self, text: str) -> MinHash | None:
        """The text's MinHash, or None when it has fewer than `min_shingles` shingles."""
        shingles = self.shingles(text)
        if len(shingles) < self.min_shingles:
            return None
        minhash = MinHash(
            num_perm=self.num_perm,
            seed=SEED,
            hashfunc=int,  # the shingles are hashed already; datasketch mixes them (fmix32)
            permutations=self._template.permutations,
            scheme=self._template.scheme,
        )
        minhash.update_batch(shingles.tolist())
        return minhash

    def values(self, shingles: np.ndarray) -> np.ndarray:
        """The MinHash values of distinct shingle hashes, as `minhash` computes them, in one
        numpy expression instead of through a datasketch object per text (a third of what
        signing cost). datasketch's default scheme: MurmurHash3's finaliser on each hash,
        then a * h + b modulo 2^32 per permutation, the least per permutation."""
        h = shingles.astype(np.uint32).reshape(-1, 1)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
        a, b = self._permutations
        return np.asarray((h * a + b).min(axis=0), dtype=np.uint32)

    def sign(self, text: str) -> Signature | None:
        """The text's signature and band hashes, or None when it is too short to compare."""
        shingles = self.shingles(text)
        if len(shingles) < self.min_shingles:
            return None
        values = self.values(shingles)
        bands = []
        for i, (start, stop) in enumerate(self.bands):
            digest = hashlib.blake2b(values[start:stop].tobytes(), digest_size=8).hexdigest()
            bands.append(f"{i}:{digest}")
        return Signature(values, bands)


def cluster_key(text: str, signature: Signature | None) -> int:
    """A group key that near-copies share: the signature's first MinHash value, which two texts
    share with probability equal to their shingles' Jaccard similarity (0.8 for near-copies at
    the memory's threshold, seldom for unrelated texts). A text too short to sign (or scored
    with no memory) is grouped with its exact copies only, by a hash of its normalised form,
    in the range above 2^32 so that it never meets a MinHash value."""
    if signature is not None:
        return int(signature.values[0])
    digest = hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=4).digest()
    return (1 << 32) + int.from_bytes(digest, "big")
