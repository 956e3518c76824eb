"""How long the command line takes to answer: `commentguard score TEXT` above all.

Each command runs `--runs` times in a fresh process (as a shell loop would run it), timed from
spawn to exit; its CPU time is the children's user + system time. The commands take turns
(one run of each, then the next round), so that a change in the machine's load falls on all
of them alike. Beside them, what the imports cost alone (the Python interpreter, numpy, and
scikit-learn, which `score` no longer imports), so that a figure can be read against its floor.
`--before DIR` times DIR's `commentguard score` too (another checkout with its own `.venv`, the
code before a change), on the same model. Needs a trained model in COMMENTGUARD_MODELS_DIR
(default ./models: `make run` or `commentguard train` makes one).

    .venv/bin/python bench/cli.py [--runs 10] [--before /path/to/other/checkout]
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


def commands(before: Path | None) -> dict[str, list[str]]:
    cg = str(BIN / "commentguard")
    found = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import numpy'": [sys.executable, "-c", "import numpy"],
        "python -c 'import sklearn.base'": [sys.executable, "-c", "import sklearn.base"],
        "commentguard --help": [cg, "--help"],
        'commentguard score "hello"': [cg, "score", "hello"],
        'commentguard score "hello" --json': [cg, "score", "hello", "--json"],
        "commentguard models list": [cg, "models", "list"],
    }
    if before is not None:
        old = str(before / ".venv" / "bin" / "commentguard")
        found['commentguard score "hello" (before)'] = [old, "score", "hello"]
    return found


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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--before", type=Path, help="another checkout (with .venv) to time `score` from too"
    )
    args = parser.parse_args()
    chosen = commands(args.before)
    load = os.getloadavg()
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"models: {os.environ.get('COMMENTGUARD_MODELS_DIR', 'models')}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"CPU probe {cpu_probe():.0f} ms; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        flush=True,
    )
    for command in chosen.values():
        timed(command)  # a first run fills the page cache; not counted
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in chosen}
    for _ in range(args.runs):
        for name, command in chosen.items():
            runs[name].append(timed(command))
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("| command | runs | wall median | wall min | wall max | CPU median |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, found in runs.items():
        walls = [w for w, _ in found]
        cpus = [c for _, c in found]
        print(
            f"| `{name}` | {args.runs} | {statistics.median(walls):.2f} s | {min(walls):.2f} s "
            f"| {max(walls):.2f} s | {statistics.median(cpus):.2f} s |",
            flush=True,
        )


if __name__ == "__main__":
    main()
