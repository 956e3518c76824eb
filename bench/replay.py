"""The learning loop measured: replay each bundled comment corpus through the service.

Each corpus is replayed (`commentguard replay`) by an embedded service whose models never learn
from that corpus: its first model and every retrained one train on the other default corpora
only. The figures go into the "replay" section of docs/benchmarks.md, the learning curves into
docs/img/replay-<corpus>.png.

    .venv/bin/python bench/replay.py                      # replays both (tens of minutes)
    .venv/bin/python bench/replay.py --from-dir /tmp/replay   # only write up finished replays
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.report import machine, write_section  # noqa: E402

CORPORA = {
    "youtube": ("data/corpora/youtube-spam-collection", "https://youtube.example"),
    "instagram": ("data/corpora/instagram-scam-comments", "https://instagram.example"),
}
TARGETS = {"f1": 0.95, "fpr": 0.01, "reviewed_share": 0.15}


def run(name: str, out: Path, seed: int) -> float:
    folder, site = CORPORA[name]
    files = sorted(str(p) for p in (ROOT / folder).glob("*.csv"))
    started = time.monotonic()
    command = [str(Path(sys.executable).parent / "commentguard"), "replay", *files]
    command += ["--site", site, "--out", str(out / name), "--seed", str(seed)]
    subprocess.run(command, check=True, cwd=ROOT, env=os.environ.copy())
    return time.monotonic() - started


def verdict(value: float, target: float, higher: bool) -> str:
    met = value >= target if higher else value <= target
    return "met" if met else "**missed**"


def section(out: Path, seconds: dict[str, float]) -> str:
    from service.settings import Settings

    settings = Settings(_env_file=None)
    lines = [
        "## Replay: the learning loop",
        "",
        f"`.venv/bin/python bench/replay.py` — {machine()}.",
        "",
        "Each bundled comment corpus is played through an embedded service (webhook intake, "
        "queue, worker) in date order, ten comments at a time, by `commentguard replay`. The "
        "replay reviews every comment the service put in the queue (`unsure`, `spam`) with its "
        "true label, reports a published spam as missed with probability 0.5 (seeded) through "
        "Akismet `submit-spam`, and never sees `discard`. Retraining runs on its normal trigger "
        f"({settings.retrain_label_count} new labels; a label weighs "
        f"{settings.retrain_label_weight:g} corpus rows; a site's own thresholds once "
        f"{settings.retrain_min_site_threshold_labels} spam and ham labels are scored unseen; "
        f"near-copies of a labelled spam: `{settings.near_duplicate_spam_decision}`). "
        "The service's first model, and every retrained one, learn from the "
        "other default corpora only, never from the replayed one. A comment counts as flagged "
        "when its decision at arrival was `spam` or `discard`. `after warm-up` leaves out the "
        "first 300 comments.",
        "",
        "| corpus | comments | F1 after warm-up | ham FPR after warm-up | reviewed | F1 overall "
        "| retrains (promoted) | time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in CORPORA:
        path = out / name / "replay.json"
        if not path.exists():
            continue
        report = json.loads(path.read_text())
        after = report["after_warmup"]
        promoted = sum(1 for r in report["retrains"] if r.get("activated"))
        took = f"{seconds[name] / 60:.0f} min" if name in seconds else ""
        lines.append(
            f"| {name} | {report['overall']['n']} "
            f"| {after['f1']:.3f} ({verdict(after['f1'], TARGETS['f1'], True)}) "
            f"| {after['fpr']:.2%} ({verdict(after['fpr'], TARGETS['fpr'], False)}) "
            f"| {report['reviewed_share']:.1%} "
            f"({verdict(report['reviewed_share'], TARGETS['reviewed_share'], False)}) "
            f"| {report['overall']['f1']:.3f} | {len(report['retrains'])} ({promoted}) | {took} |"
        )
        image = ROOT / "docs" / "img" / f"replay-{name}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / name / "learning_curve.png", image)
    lines += [
        "",
        "Targets: after the warm-up, F1 ≥ 0.95 and ham false-positive rate ≤ 1%, with moderators "
        "reviewing ≤ 15% of the comments. The whole reports (every window, every retrain and "
        "the gate's reasons) are `replay.json` in each output folder.",
        "",
    ]
    for name in CORPORA:
        if (out / name / "replay.json").exists():
            lines += [f"![Learning curve of the {name} replay](img/replay-{name}.png)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "replay")
    parser.add_argument("--from-dir", type=Path, help="Write up the replays in this folder.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    seconds: dict[str, float] = {}
    out = args.from_dir or args.out
    if args.from_dir is None:
        for name in CORPORA:
            seconds[name] = run(name, out, args.seed)
    text = section(out, seconds)
    print(text)
    if not args.no_write:
        write_section("replay", text)


if __name__ == "__main__":
    main()
