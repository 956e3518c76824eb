"""How long the command line takes to answer: `commentguard score TEXT` above all.

Each command runs `--runs` times in a fresh process (as a shell loop would run it), timed from
spawn to exit; its CPU time is the children's user + system time. Beside it, what the score's
imports cost alone (the Python interpreter, scikit-learn's import, which unpickling the model's
pipeline needs), so that a figure can be read against its floor. Needs a trained model in
COMMENTGUARD_MODELS_DIR (default ./models: `make run` or `commentguard train` makes one).

    .venv/bin/python bench/cli.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import sklearn.base'": [sys.executable, "-c", "import sklearn.base"],
    "commentguard --help": [str(BIN / "commentguard"), "--help"],
    'commentguard score "hello"': [str(BIN / "commentguard"), "score", "hello"],
    'commentguard score "hello" --json': [str(BIN / "commentguard"), "score", "hello", "--json"],
    "commentguard models list": [str(BIN / "commentguard"), "models", "list"],
}


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `command`, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def cpu_probe() -> float:
    """Milliseconds of a fixed pure-Python loop: how fast this machine is right now."""
    started = time.perf_counter()
    total = 0
    for i in range(3_000_000):
        total += i % 7
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    load = os.getloadavg()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; load average {load[0]:.1f}; "
        f"CPU probe {cpu_probe():.0f} ms"
    )
    print("| command | runs | wall median | wall min | wall max | CPU median |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, command in COMMANDS.items():
        timed(command)  # a first run fills the page cache; not counted
        runs = [timed(command) for _ in range(args.runs)]
        walls = [w for w, _ in runs]
        cpus = [c for _, c in runs]
        print(
            f"| `{name}` | {args.runs} | {statistics.median(walls):.2f} s | {min(walls):.2f} s "
            f"| {max(walls):.2f} s | {statistics.median(cpus):.2f} s |",
            flush=True,
        )


if __name__ == "__main__":
    main()
