"""Near-duplicate memory: a label takes effect on near-copies of its comment at once.

When a moderator labels a comment, its MinHash signature goes into a locality-sensitive index in
Redis, shared by every API process and worker. A comment scored afterwards that near-duplicates
a labelled one (estimated Jaccard similarity of their shingles at least the threshold) takes
that label's side without waiting for a retrained model: spam is caught, ham is protected.

How it works:

- Shingles are the character 5-grams of `classifier.normalize.normalize_text(content)`, so HTML,
  invisible characters, homoglyphs and case fold away first. They are hashed in one numpy pass
  (a polynomial over the code points, 32 bits) and fed to datasketch's `MinHash`, whose seeded
  permutations (`seed`, computed once per process) make a signature the same in every process
  and on every machine. Only the first `MAX_CHARS` normalised characters count, to bound the cost.
- A text with fewer than `min_shingles` distinct shingles is neither remembered nor matched:
  "nice post!" labelled spam once must not make every "nice post!" spam.
- Bands: the signature is cut into `b` bands of `r` values, with `b` and `r` chosen by
  datasketch's `MinHashLSH` for the threshold. Each band is one Redis set of comment ids. A
  candidate found through a band matches only if its estimated similarity (the share of equal
  MinHash values) reaches the threshold.

Why not `MinHashLSH(storage_config={"type": "redis"})`: its `query` reads one band per Redis
round trip (9 bands for 128 permutations at 0.8 with its default weights) and returns only the
candidates' keys, whose signatures then need another read to check their similarity. Every
scored comment queries the memory, and the service aims at 800 checks/s on 2 cores (2.5 ms of
CPU a check, all included), so the bands are stored here instead and a query is ONE round trip:
a Lua script that reads every band set and returns the candidates' labels and signatures.
`bench/memory.py` measures both (docs/benchmarks.md, section "Near-duplicate memory"): datasketch's
query took about twice the CPU of this whole `match`, signature included, and 9 network waits.

Redis layout (all keys of one account share the hash tag `{a<id>}`, so a script touches one
cluster slot):

    <prefix>:{a<id>}:b:<band>:<hex>   set of comment ids whose band hashes there
    <prefix>:{a<id>}:e:<comment id>   hash: label, label_id, at, sig (num_perm uint32), bands

Each account has its own index: one account's labels never change another account's verdicts.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import redis
from datasketch import MinHash, MinHashLSH
from sqlalchemy import select

from classifier import Decision, Thresholds
from classifier.normalize import normalize_text
from classifier.scoring import SPAM_DECISIONS
from service import tables
from service.db import SessionFactory
from service.moderation.labels import newest_label_ids
from service.settings import Settings

if TYPE_CHECKING:
    from service.moderation.labels import AppliedLabel

log = logging.getLogger(__name__)

SHINGLE_SIZE = 5
MAX_CHARS = 4000  # normalised characters shingled; a longer text is judged by its beginning
MAX_CANDIDATES = 64  # signatures a query reads at most (a spam wave can fill one bucket)
SEED = 1
DEFAULT_PREFIX = "commentguard:neardup"
OUTAGE_BACKOFF_SECONDS = 2.0  # after a Redis error, queries skip the memory this long
LABELS = ("spam", "ham")
_MULTIPLIER = np.uint64(1_000_003)
_HALF = np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)

# KEYS: the query's band keys. ARGV[1]: the entry key prefix, ARGV[2]: at most this many
# candidates. Returns a flat list: id, label, label_id, at, sig, id, label, ...
_QUERY = """
local seen = {}
local out = {}
local left = tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  for _, id in ipairs(redis.call('SMEMBERS', key)) do
    if not seen[id] then
      seen[id] = true
      local e = redis.call('HMGET', ARGV[1] .. id, 'label', 'label_id', 'at', 'sig')
      if e[1] then
        out[#out + 1] = id
        out[#out + 1] = e[1]
        out[#out + 1] = e[2]
        out[#out + 1] = e[3]
        out[#out + 1] = e[4]
        left = left - 1
        if left <= 0 then return out end
      end
    end
  end
end
return out
"""

# KEYS[1]: the entry key, then the new band keys. ARGV: comment id, label, label_id, at, sig,
# the band prefix, then the new bands' suffixes. A label older (smaller label_id) than the one
# stored is ignored, so that the newest label wins whatever order the calls arrive in; a call
# without a label_id ("") always replaces. Returns 1 if stored, 0 if ignored.
_REMEMBER = """
local entry = KEYS[1]
local id = ARGV[1]
local old = redis.call('HMGET', entry, 'label_id', 'bands')
if ARGV[3] ~= '' and old[1] and old[1] ~= '' and tonumber(old[1]) > tonumber(ARGV[3]) then
  return 0
end
if old[2] then
  for band in string.gmatch(old[2], '%S+') do redis.call('SREM', ARGV[6] .. band, id) end
end
local bands = {}
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], id)
  bands[#bands + 1] = ARGV[5 + i]
end
redis.call('HSET', entry, 'label', ARGV[2], 'label_id', ARGV[3], 'at', ARGV[4], 'sig', ARGV[5],
           'bands', table.concat(bands, ' '))
return 1
"""

# KEYS[1]: the entry key. ARGV[1]: comment id, ARGV[2]: the band prefix. Returns 1 if forgotten.
_FORGET = """
local bands = redis.call('HGET', KEYS[1], 'bands')
if not bands then return 0 end
for band in string.gmatch(bands, '%S+') do redis.call('SREM', ARGV[2] .. band, ARGV[1]) end
redis.call('DEL', KEYS[1])
return 1
"""


@dataclass(frozen=True, slots=True)
class Match:
    """A labelled comment the text near-duplicates."""

    comment_id: str
    label: str  # "spam" or "ham"
    similarity: float  # estimated Jaccard similarity of the two texts' shingles
    # What a spam match makes of the comment: "discard" (the default of the service's setting
    # `near_duplicate_spam_decision`) or "spam" (the spam folder, where moderators see it).
    spam_decision: str = "spam"


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


class NearDuplicateMemory:
    """Labelled comments' signatures in Redis, queried for every comment scored.

    Safe to share between threads (redis-py's pool is). `match` never raises on a Redis error:
    it logs, answers None, and skips Redis for `OUTAGE_BACKOFF_SECONDS` so that an outage
    costs the scoring path nothing. `remember` and `forget` raise `redis.RedisError`.
    """

    def __init__(
        self,
        client: redis.Redis,
        threshold: float = 0.8,
        num_perm: int = 128,
        min_shingles: int = 24,
        prefix: str = DEFAULT_PREFIX,
        spam_decision: str = "spam",
    ) -> None:
        if spam_decision not in SPAM_DECISIONS:
            raise ValueError(f"spam_decision must be one of {sorted(SPAM_DECISIONS)}")
        self.client = client
        self.threshold = threshold
        self.spam_decision = spam_decision
        self.signer = Signer(threshold, num_perm, min_shingles)
        self.prefix = prefix
        self._query = client.register_script(_QUERY)
        self._remember = client.register_script(_REMEMBER)
        self._forget = client.register_script(_FORGET)
        self._skip_until = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> NearDuplicateMemory | None:
        """The memory on `settings.redis_url`, or None without Redis or when disabled."""
        if not settings.redis_url or not settings.near_duplicate_enabled:
            return None
        timeout = settings.near_duplicate_timeout_seconds
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        return cls(
            client,
            threshold=settings.near_duplicate_threshold,
            num_perm=settings.near_duplicate_num_perm,
            min_shingles=settings.near_duplicate_min_shingles,
            spam_decision=settings.near_duplicate_spam_decision,
        )

    def close(self) -> None:
        self.client.close()

    # --- keys --------------------------------------------------------------------------

    def _account(self, account_id: int) -> str:
        return f"{self.prefix}:{{a{account_id}}}"

    def _entry_prefix(self, account_id: int) -> str:
        return f"{self._account(account_id)}:e:"

    def _band_prefix(self, account_id: int) -> str:
        return f"{self._account(account_id)}:b:"

    # --- writing -----------------------------------------------------------------------

    def remember(
        self,
        comment_id: uuid.UUID | str,
        account_id: int,
        text: str,
        label: str,
        label_id: int | None = None,
    ) -> bool:
        """Index a labelled comment; a relabel replaces its entry (the newest label wins).

        `label_id` orders labels (the label row's id): an older label arriving late is ignored.
        Without it, the call replaces whatever is stored (the calls' own order decides).
        Returns False when the text is too short to remember (fewer than `min_shingles`
        shingles) or a newer label is already stored.
        """
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, not {label!r}")
        signature = self.signer.sign(text)
        key = str(comment_id)
        if signature is None:
            # Nothing to match it by; a previous label of the same comment goes too.
            self.forget(key, account_id)
            return False
        order = str(label_id) if label_id is not None else ""
        bands = self._band_prefix(account_id)
        stored = self._remember(
            keys=[self._entry_prefix(account_id) + key, *(bands + b for b in signature.bands)],
            args=[
                key,
                label,
                order,
                repr(time.time()),
                signature.values.tobytes(),
                bands,
                *signature.bands,
            ],
        )
        return bool(stored)

    def forget(self, comment_id: uuid.UUID | str, account_id: int) -> bool:
        """Remove a comment from the memory; True if it was there."""
        key = str(comment_id)
        done = self._forget(
            keys=[self._entry_prefix(account_id) + key], args=[key, self._band_prefix(account_id)]
        )
        return bool(done)

    # --- reading -----------------------------------------------------------------------

    def match(self, account_id: int, text: str) -> Match | None:
        """The labelled comment of this account that `text` near-duplicates most, if any.

        When several match, the most similar wins; at equal similarity, the newest label
        (the moderators' latest word). Raises nothing: a Redis error is logged and is None.
        """
        return self.match_many([(account_id, text)])[0]

    def match_many(
        self,
        queries: Sequence[tuple[int, str]],
        signatures: Sequence[Signature | None] | None = None,
    ) -> list[Match | None]:
        """`match` for several (account, text) pairs, in one round trip to Redis.
        `signatures`, if given, are the texts' (`self.signer.sign`), computed ahead."""
        found: list[Match | None] = [None] * len(queries)
        if time.monotonic() < self._skip_until:
            return found
        if signatures is None:
            signatures = [self.signer.sign(text) for _, text in queries]
        signed = [
            (i, account_id, signature)
            for i, ((account_id, _), signature) in enumerate(zip(queries, signatures, strict=True))
            if signature is not None
        ]
        if not signed:
            return found
        try:
            replies = self._query_all([self._query_of(a, sig) for _, a, sig in signed])
        except redis.RedisError as exc:
            with self._lock:
                self._skip_until = time.monotonic() + OUTAGE_BACKOFF_SECONDS
            log.warning(
                "near-duplicate memory unavailable (%s); scoring with the model alone for %.0fs",
                exc,
                OUTAGE_BACKOFF_SECONDS,
            )
            return found
        for (i, _, signature), reply in zip(signed, replies, strict=True):
            found[i] = self._best(signature, reply)
        return found

    def _query_all(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run the query script for each (keys, args) in one round trip.

        A pipeline of redis-py `Script`s first asks SCRIPT EXISTS, a round trip of its own on
        every call; this sends EVALSHA directly and loads the script only when Redis answers
        that it does not know it (after a restart).
        """

        def send() -> list[Any]:
            pipeline = self.client.pipeline(transaction=False)
            for keys, args in calls:
                pipeline.evalsha(self._query.sha, len(keys), *keys, *args)
            return pipeline.execute()

        try:
            return send()
        except redis.exceptions.NoScriptError:
            self.client.script_load(_QUERY)
            return send()

    def _query_of(self, account_id: int, signature: Signature) -> tuple[list[str], list[Any]]:
        """The query script's keys and arguments."""
        bands = self._band_prefix(account_id)
        return [bands + b for b in signature.bands], [
            self._entry_prefix(account_id),
            MAX_CANDIDATES,
        ]

    def _best(self, signature: Signature, found: list[Any]) -> Match | None:
        best: tuple[float, float, str, str] | None = None
        for i in range(0, len(found) - 4, 5):
            raw_id, raw_label, _, raw_at, sig = found[i : i + 5]
            values = np.frombuffer(sig, dtype=np.uint32)
            if len(values) != len(signature.values):
                continue  # stored with another num_perm: not comparable
            similarity = float(np.count_nonzero(values == signature.values)) / len(values)
            if similarity < self.threshold:
                continue
            at = _float(raw_at)
            key = (similarity, at, _text(raw_id), _text(raw_label))
            if best is None or key[:2] > best[:2]:
                best = key
        if best is None:
            return None
        return Match(
            comment_id=best[2],
            label=best[3],
            similarity=round(best[0], 4),
            spam_decision=self.spam_decision,
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(value: Any) -> float:
    try:
        return float(_text(value))
    except ValueError:
        return math.nan


# --- verdicts and labels ---------------------------------------------------------------------


def overrule(
    match: Match, score: float, decision: Decision, thresholds: Thresholds
) -> tuple[float, Decision, dict[str, Any]]:
    """The verdict a near-duplicate match gives: (score, decision, its reason as stored).

    A spam match makes the comment `match.spam_decision` with a score of at least that
    decision's threshold: `spam` (a model already at `discard` keeps `discard`, its score
    unchanged) or `discard`. A ham match makes it `ham` with a score just under the unsure
    threshold at most. Either way `thresholds.decide(score)` still gives the decision, so the
    score and the decision never disagree.
    """
    if match.label == "spam":
        if match.spam_decision == "discard":
            new_score = max(score, thresholds.discard)
            new_decision = Decision.DISCARD
        else:
            new_score = max(score, thresholds.spam)
            new_decision = Decision.DISCARD if decision == Decision.DISCARD else Decision.SPAM
        weight = 1.0  # the match decides; the weight only gives its direction, as a rule's does
    else:
        new_score = min(score, max(0.0, math.nextafter(thresholds.unsure, 0.0)))
        new_decision = Decision.HAM
        weight = -1.0
    percent = f"{match.similarity:.0%}"
    reason = {
        "feature": f"near_duplicate:{match.label}",
        "description": (
            f"a near-duplicate ({percent} similar) of comment {match.comment_id}, "
            f"labelled {match.label}"
        ),
        "weight": weight,
        "kind": "near_duplicate",
        "comment_id": match.comment_id,
        "label": match.label,
        "similarity": match.similarity,
    }
    return new_score, new_decision, reason


def remember_label(
    memory: NearDuplicateMemory | None,
    comment_id: uuid.UUID,
    account_id: int,
    text: str,
    label: str,
    label_id: int | None = None,
) -> None:
    """Put a committed label into the memory; an error is logged, never raised.

    Call it after the label's transaction commits: the label stands whatever Redis does, and
    a label the memory missed only waits for the retrained model (or the next label).
    """
    if memory is None:
        return
    try:
        memory.remember(comment_id, account_id, text, label, label_id)
    except redis.RedisError as exc:
        log.warning("label of comment %s not put in the near-duplicate memory: %s", comment_id, exc)


def remember_applied(memory: NearDuplicateMemory | None, applied: Sequence[AppliedLabel]) -> None:
    """The label hook (see `service.moderation.labels.after_commit`): committed labels into the
    memory."""
    for label in applied:
        remember_label(
            memory, label.comment_id, label.account_id, label.content, label.label, label.label_id
        )


def rebuild(sessions: SessionFactory, memory: NearDuplicateMemory, batch: int = 500) -> int:
    """Put every labelled comment's current label (its newest) into the memory again.

    For a Redis that lost its data, or after a change of `near_duplicate_num_perm`. Safe to run
    while serving: each entry is ordered by its label's id, so a label applied meanwhile wins.
    Returns how many labels were remembered (texts too short to compare are not counted).
    """
    newest = newest_label_ids()
    query = (
        select(
            tables.Label.id,
            tables.Label.label,
            tables.Comment.id,
            tables.Comment.content,
            tables.Site.account_id,
        )
        .join(newest, newest.c.id == tables.Label.id)
        .join(tables.Comment, tables.Comment.id == tables.Label.comment_id)
        .join(tables.Site, tables.Site.id == tables.Comment.site_id)
        .order_by(tables.Label.id)
        .execution_options(yield_per=batch)
    )
    remembered = 0
    with sessions() as session:
        for label_id, label, comment_id, content, account_id in session.execute(query):
            if memory.remember(comment_id, account_id, content, label, label_id):
                remembered += 1
    return remembered
