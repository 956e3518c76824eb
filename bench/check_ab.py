"""`POST /v1/check` of this checkout against another revision, alternating, in one run.

Both run at once as `commentguard serve --api-workers 2` (each its own embedded Redis and
SQLite database, the same model: bench/peers.py's, trained on four YouTube videos), and the
same client drives them in turn, closed loop: A, B, B, A, A, B ... at each concurrency, so that
both see the same machine. A change is kept when B beats A in this run, whatever the machine's
absolute speed.

    .venv/bin/python bench/check_ab.py --base main                  # about 3 minutes
    .venv/bin/python bench/check_ab.py --base HEAD~1 --rounds 2 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.peers import (  # noqa: E402
    Filter,
    check_body,
    commentguard_answer,
    load_phase,
    running_commentguard,
    summary,
    train_commentguard,
)
from bench.service_load import machine  # noqa: E402


async def alternate(
    args: argparse.Namespace, filters: list[Filter], test: list[Any]
) -> dict[str, dict[int, list[dict[str, Any]]]]:
    rows: dict[str, dict[int, list[dict[str, Any]]]] = {f.name: {} for f in filters}
    for r in range(args.rounds):
        for c in args.concurrency:
            for flt in filters if r % 2 == 0 else filters[::-1]:
                row = await load_phase(flt, test, c, args.seconds, args.warmup)
                rows[flt.name].setdefault(c, []).append(row)
                s = summary([row])
                print(
                    f"round {r + 1} {flt.name} @{c}: {s['per_s']:.0f}/s p50 {s['p50']:.1f} "
                    f"p99 {s['p99']:.1f} ms, cpu {s['cpu_ms']:.2f} ms",
                    flush=True,
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="the revision to compare with (A)")
    parser.add_argument(
        "--source", type=Path, help="B's code from this folder instead of this checkout"
    )
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[8, 32],
        help="comma-separated",
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    args.seconds = min(args.seconds, 60.0)
    args.rounds = max(1, min(args.rounds, 10))

    from training.corpora import load_bundled

    examples = load_bundled(["youtube"])
    train = [e for e in examples if e.group != "Youtube05-Shakira"]
    test = [e for e in examples if e.group == "Youtube05-Shakira"]
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix="cg-ab-") as tmp:
        folder = Path(tmp)
        base = folder / "base"
        base.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.base], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        models_dir = folder / "models"
        train_commentguard(train, models_dir)
        (folder / "a").mkdir()
        (folder / "b").mkdir()
        with (
            running_commentguard(folder / "a", models_dir, source=base) as (a_port, a_key, a_pid),
            running_commentguard(folder / "b", models_dir, source=args.source) as (
                b_port,
                b_key,
                b_pid,
            ),
        ):
            filters = [
                Filter(
                    f"A ({args.base})",
                    a_port,
                    "/v1/check",
                    {"Authorization": f"Bearer {a_key}", "Content-Type": "application/json"},
                    check_body,
                    commentguard_answer,
                    [a_pid],
                ),
                Filter(
                    f"B ({args.source or 'this checkout'})",
                    b_port,
                    "/v1/check",
                    {"Authorization": f"Bearer {b_key}", "Content-Type": "application/json"},
                    check_body,
                    commentguard_answer,
                    [b_pid],
                ),
            ]
            rows = asyncio.run(alternate(args, filters, test))
    a_name, b_name = (f.name for f in filters)
    print(f"\n| concurrency | {a_name} | {b_name} | B ÷ A |\n| ---: | --- | --- | --- |")
    for c in args.concurrency:
        a, b = summary(rows[a_name][c]), summary(rows[b_name][c])
        cells = [
            f"{s['per_s']:.0f}/s, p50 {s['p50']:.1f}, p99 {s['p99']:.1f} ms, "
            f"CPU {s['cpu_ms']:.2f} ms"
            for s in (a, b)
        ]
        print(
            f"| {c} | {cells[0]} | {cells[1]} | ×{b['per_s'] / a['per_s']:.2f} /s, "
            f"p99 ×{b['p99'] / a['p99']:.2f}, CPU ×{b['cpu_ms'] / a['cpu_ms']:.2f} |"
        )


if __name__ == "__main__":
    main()
