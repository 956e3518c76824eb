"""Classifier benchmark: training time, artifact size, batch throughput on one core, single
comment latency, and resident memory with the model loaded.

    .venv/bin/python bench/classifier.py            # writes the "Classifier" section
    .venv/bin/python bench/classifier.py --no-write # print only

Targets (issue 2): ≥ 20,000 comments/s batch on one core; single comment p50 ≤ 0.5 ms and
p99 ≤ 2 ms in process; artifact ≤ 50 MB; RSS with the model loaded ≤ 250 MB; training the
default model ≤ 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One core, and no BLAS threads: the figure is per core.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench.report import machine, write_section

RSS_PROBE = """
import json, resource, sys
from pathlib import Path
from classifier.artifact import load_model
model = load_model(Path(sys.argv[1]))
model.score_many(["warm up", "check out my channel http://bit.ly/x"])
import psutil
print(json.dumps({"rss_mb": psutil.Process().memory_info().rss / 2**20,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print, don't update the docs")
    parser.add_argument("--repeat", type=int, default=5, help="batch passes (best is reported)")
    parser.add_argument("--singles", type=int, default=5000, help="single-comment calls")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    from classifier.artifact import load_model
    from training.corpora import load_bundled
    from training.train import DEFAULT_CORPORA, train_default

    models = Path(tempfile.mkdtemp(prefix="bench-models-"))
    started = time.perf_counter()
    result = train_default(models)
    train_seconds = time.perf_counter() - started
    artifact_mb = (result.path / "model.joblib").stat().st_size / 2**20
    model = load_model(models, result.version)

    comments = [e.comment for e in load_bundled(["youtube", "instagram", "sms"])]
    mean_chars = float(np.mean([len(c.content) for c in comments]))
    model.probabilities(comments[:100])
    best = 0.0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        model.probabilities(comments)
        best = max(best, len(comments) / (time.perf_counter() - t0))
    t0 = time.perf_counter()
    model.score_many(comments)
    with_reasons = len(comments) / (time.perf_counter() - t0)

    latencies = []
    rng = np.random.default_rng(0)
    for i in rng.integers(0, len(comments), args.singles):
        t0 = time.perf_counter()
        model.score(comments[int(i)])
        latencies.append(time.perf_counter() - t0)
    ms = np.array(latencies) * 1e3

    probe = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(models)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    rss = json.loads(probe.stdout)

    figures = {
        "train_seconds": train_seconds,
        "n_train": result.validation["at_0.5"]["n"] * 5,
        "artifact_mb": artifact_mb,
        "batch_per_second": best,
        "batch_with_reasons_per_second": with_reasons,
        "single_p50_ms": float(np.percentile(ms, 50)),
        "single_p99_ms": float(np.percentile(ms, 99)),
        "rss_mb": rss["rss_mb"],
        "n_batch": len(comments),
        "mean_chars": mean_chars,
    }
    print(json.dumps(figures, indent=2))

    def verdict(ok: bool) -> str:
        return "meets" if ok else "**misses**"

    table = f"""## Classifier

Command: `.venv/bin/python bench/classifier.py` (pinned to one core, BLAS threads 1).
Machine: {machine()}.
Default model: trained on {", ".join(DEFAULT_CORPORA)} (bundled, deduplicated).

| measure | figure | target | |
| --- | ---: | ---: | --- |
| training the default model | {train_seconds:.1f} s | ≤ 60 s | {verdict(train_seconds <= 60)} |
| artifact (`model.joblib`) | {artifact_mb:.1f} MB | ≤ 50 MB | {verdict(artifact_mb <= 50)} |
| batch scoring, one core ({len(comments)} comments, mean {mean_chars:.0f} chars) | {best:,.0f} comments/s | ≥ 20,000/s | {verdict(best >= 20000)} |
| batch scoring with reasons | {with_reasons:,.0f} comments/s | | |
| single comment with reasons, p50 | {figures["single_p50_ms"]:.3f} ms | ≤ 0.5 ms | {verdict(figures["single_p50_ms"] <= 0.5)} |
| single comment with reasons, p99 | {figures["single_p99_ms"]:.3f} ms | ≤ 2 ms | {verdict(figures["single_p99_ms"] <= 2)} |
| process RSS with the model loaded | {rss["rss_mb"]:.0f} MB | ≤ 250 MB | {verdict(rss["rss_mb"] <= 250)} |
"""
    if not args.no_write:
        write_section("classifier", table)


if __name__ == "__main__":
    main()
