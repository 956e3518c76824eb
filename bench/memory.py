"""Near-duplicate memory benchmark: what consulting the memory adds to each scored comment.

    .venv/bin/python bench/memory.py            # writes the "Near-duplicate memory" section
    .venv/bin/python bench/memory.py --no-write # print only

Starts a private redis-server on a free loopback port (stopped at the end), trains a small
model on the bundled YouTube corpus, labels `--labelled` comments of that corpus into the
memory, then scores `--comments` others with and without the memory, one at a time, as the
API and the workers do. Bounded: every loop has a fixed count.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench.report import machine, write_section


def _timed(calls: list[Callable[[], object]]) -> tuple[np.ndarray, float]:
    """Wall milliseconds of each call, and the process CPU milliseconds per call."""
    walls = np.empty(len(calls))
    cpu = time.process_time()
    for i, call in enumerate(calls):
        started = time.perf_counter()
        call()
        walls[i] = (time.perf_counter() - started) * 1000
    return walls, (time.process_time() - cpu) * 1000 / len(calls)


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    left, right = set(a.tolist()), set(b.tolist())
    return len(left & right) / max(1, len(left | right))


def _row(name: str, walls: np.ndarray, cpu_ms: float) -> str:
    p50, p99 = np.percentile(walls, [50, 99])
    return f"| {name} | {walls.mean():.3f} | {p50:.3f} | {p99:.3f} | {cpu_ms:.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print, don't update the docs")
    parser.add_argument("--labelled", type=int, default=1000, help="comments put in the memory")
    parser.add_argument("--comments", type=int, default=2000, help="comments scored each way")
    args = parser.parse_args()

    import psutil
    import redis

    from classifier.artifact import load_model, set_active
    from service import tables
    from service.embedded import Supervisor, start_redis
    from service.neardup.store import NearDuplicateMemory
    from service.scoring.verdicts import compute_verdict
    from training.corpora import load_bundled
    from training.train import train

    examples = load_bundled(["youtube"])
    rng = np.random.RandomState(0)
    order = rng.permutation(len(examples))
    training = [examples[i] for i in order[:600]]
    rest = [examples[i] for i in order[600:]]
    labelled = rest[: args.labelled]
    probes = [e.comment.content for e in rest[args.labelled :]]
    probes = (probes * (args.comments // max(1, len(probes)) + 1))[: args.comments]

    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    result = train(training, workdir / "models")
    set_active(workdir / "models", result.version)
    model = load_model(workdir / "models")

    supervisor = Supervisor()
    try:
        url = start_redis(supervisor, workdir)
        client = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        memory = NearDuplicateMemory(client)
        account = 1
        ids = [uuid.uuid4() for _ in labelled]
        remember_walls, remember_cpu = _timed(
            [
                (
                    lambda i=i, e=e: memory.remember(
                        ids[i], account, e.comment.content, "spam" if e.label else "ham"
                    )
                )
                for i, e in enumerate(labelled)
            ]
        )
        remembered = sum(1 for key in client.scan_iter(f"{memory.prefix}:*:e:*"))

        def row(text: str) -> tables.Comment:
            return tables.Comment(id=uuid.uuid4(), site_id=1, content=text)

        rows = [row(text) for text in probes]
        for r in rows[:50]:  # warm up: caches, the scripts loaded into Redis
            compute_verdict(r, model, memory, account)
        sign_walls, sign_cpu = _timed([(lambda t=t: memory.signer.sign(t)) for t in probes])
        match_walls, match_cpu = _timed([(lambda t=t: memory.match(account, t)) for t in probes])
        sample = probes[:500]
        matched = sum(1 for t in sample if memory.match(account, t) is not None)
        pairs = [
            (e.comment.content, e.comment.content.replace("a", "4", 1) + " !")
            for e in labelled[:500]
            if memory.signer.sign(e.comment.content) is not None
        ]
        near = [copy for _, copy in pairs]
        signer = memory.signer
        close = sum(
            1
            for original, copy in pairs
            if _jaccard(signer.shingles(original), signer.shingles(copy)) >= memory.threshold
        )
        hit_walls, hit_cpu = _timed([(lambda t=t: memory.match(account, t)) for t in near])
        hits = sum(1 for t in near if memory.match(account, t) is not None)
        # Paired, interleaved: each comment scored without then with the memory, so that the
        # machine's other load falls on both alike.
        plain_walls, with_walls = np.empty(len(rows)), np.empty(len(rows))
        plain_cpu = with_cpu = 0.0
        for i, r in enumerate(rows):
            plain = [lambda r=r: compute_verdict(r, model)]
            remembering = [lambda r=r: compute_verdict(r, model, memory, account)]
            if i % 2:  # alternate which goes first
                walls, cpu = _timed(remembering)
                with_walls[i], with_cpu = walls[0], with_cpu + cpu / len(rows)
            walls, cpu = _timed(plain)
            plain_walls[i], plain_cpu = walls[0], plain_cpu + cpu / len(rows)
            if not i % 2:
                walls, cpu = _timed(remembering)
                with_walls[i], with_cpu = walls[0], with_cpu + cpu / len(rows)
        # For comparison: datasketch's own Redis-backed index, same signatures, same Redis.
        from datasketch import MinHashLSH

        host, port = (
            client.connection_pool.connection_kwargs["host"],
            client.connection_pool.connection_kwargs["port"],
        )
        lsh = MinHashLSH(
            threshold=memory.threshold,
            num_perm=memory.signer.num_perm,
            storage_config={
                "type": "redis",
                "basename": b"bench",
                "redis": {"host": host, "port": port},
            },
        )
        with lsh.insertion_session() as session:
            for i, e in enumerate(labelled):
                signature = memory.signer.minhash(e.comment.content)
                if signature is not None:
                    session.insert(str(ids[i]), signature)
        minhashes = [m for m in (memory.signer.minhash(t) for t in probes) if m is not None]
        lsh_walls, lsh_cpu = _timed([(lambda m=m: lsh.query(m)) for m in minhashes])
        redis_process = psutil.Process(supervisor.children[0][1].pid)
        redis_before = sum(redis_process.cpu_times()[:2])
        for t in probes:
            memory.match(account, t)
        redis_cpu = (sum(redis_process.cpu_times()[:2]) - redis_before) * 1000 / len(probes)
        memory.close()
    finally:
        supervisor.stop()

    added = float(np.median(with_walls - plain_walls))
    text = "\n".join(
        [
            "## Near-duplicate memory",
            "",
            f"`python bench/memory.py` — {machine()}; load average before the run "
            f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}. A private redis-server on "
            f"loopback (same machine, same 2 cores); a model trained on 600 YouTube comments; "
            f"{remembered} labelled comments of the same corpus in the memory "
            f"({len(labelled) - remembered} too short to remember); {len(probes)} other "
            "comments scored one at a time, as the API and the workers score them. "
            "Milliseconds; CPU is this process's CPU time per call (Redis's own is not in it).",
            "",
            "| step | mean | p50 | p99 | CPU |",
            "| --- | --- | --- | --- | --- |",
            _row("signature (normalise, shingle, MinHash, band hashes)", sign_walls, sign_cpu),
            _row(
                f"`match`, one Lua round trip ({matched}/{len(sample)} matched)",
                match_walls,
                match_cpu,
            ),
            _row(
                f"`match` of near-copies of labelled comments (one letter changed, ` !` added: "
                f"{hits} of {len(near)} found; {close} are at least {memory.threshold} similar)",
                hit_walls,
                hit_cpu,
            ),
            _row("`remember` (a label)", remember_walls, remember_cpu),
            _row(
                f"for comparison: datasketch `MinHashLSH.query` on Redis ({lsh.b} bands, one "
                "round trip each; signature given, candidates only, no similarity)",
                lsh_walls,
                lsh_cpu,
            ),
            _row("`compute_verdict` without the memory", plain_walls, plain_cpu),
            _row("`compute_verdict` with the memory", with_walls, with_cpu),
            "",
            f"Consulting the memory adds about {added:.2f} ms (median of the paired "
            f"differences) of latency to each scored comment: {with_cpu - plain_cpu:.2f} ms of "
            f"the scoring process's CPU and {redis_cpu:.3f} ms of Redis's. "
            "datasketch's own Redis-backed `MinHashLSH.query` reads one band per round trip "
            "and returns candidate keys only (their signatures would need another read to check "
            "similarity): the comparison row is why the memory keeps datasketch's `MinHash` but "
            "stores its bands itself, read with the candidates' signatures in one round trip "
            "(a Lua script). The CPU columns are the cost; the wall columns also hold the "
            "waits for a core: on a machine loaded past its cores (see the load average), a "
            "blocking round trip right after a burst of scoring waits for redis-server to be "
            "scheduled, which is most of the added median latency when the load is high.",
        ]
    )
    print(text)
    if not args.no_write:
        write_section("memory", text)


if __name__ == "__main__":
    main()
