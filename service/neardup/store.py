"""The near-duplicate index's storage: labelled comments' signatures and LSH bands in Redis,
written and queried by Lua scripts in one round trip each (see service/neardup/__init__.py).

Redis layout (all keys of one account share the hash tag `{a<id>}`, so a script touches one
cluster slot):

    <prefix>:{a<id>}:b:<band>:<hex>   set of comment ids whose band hashes there
    <prefix>:{a<id>}:e:<comment id>   hash: label, label_id, at, sig (num_perm uint32), bands

Each account has its own index: one account's labels never change another account's verdicts.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from classifier.scoring import SPAM_DECISIONS
from service.neardup.signing import Signature, Signer
from service.settings import Settings

log = logging.getLogger(__name__)

MAX_CANDIDATES = 64  # signatures a query reads at most (a spam wave can fill one bucket)
DEFAULT_PREFIX = "commentguard:neardup"
OUTAGE_BACKOFF_SECONDS = 2.0  # after a Redis error, queries skip the memory this long
LABELS = ("spam", "ham")

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


