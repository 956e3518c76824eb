"""Near-duplicate index ("memory"): a label takes effect on near-copies of its comment at once.

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

The package: `signing.py` (text → shingles → MinHash signature and bands), `store.py` (Redis:
the index and its scripts), `policy.py` (what a match does to a verdict), `labels.py` (committed
labels into the index: the label hook, and a rebuild from the database).
"""
