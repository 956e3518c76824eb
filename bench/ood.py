"""Out of domain: how the served model's decisions hold on a comment corpus it never saw.

For each bundled comment corpus, a model is trained exactly as `commentguard train` trains it
(the command itself, run on the default mix less that corpus, into a temporary models folder),
and the held-out corpus is scored (its texts deduplicated, and any text the training corpora
also hold left out). Reported: ROC AUC; at the model's own thresholds, the share of the
held-out ham at or above `spam` (its false-positive rate there) and at or above `unsure` (what
a new site's moderators would review), and the share of its spam caught at `spam`. No site
labels are involved: this is a new site's first day.

    .venv/bin/python bench/ood.py                     # all three; writes "Out of domain"
    .venv/bin/python bench/ood.py --corpus sms --json # one corpus, JSON on stdout, no write-up
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.report import machine, write_section  # noqa: E402
from classifier.artifact import load_model  # noqa: E402
from classifier.normalize import normalize_text  # noqa: E402
from training.corpora import Example, load_bundled  # noqa: E402
from training.metrics import flagged_metrics  # noqa: E402
from training.train import DEFAULT_CORPORA  # noqa: E402

COMMENT_CORPORA = ("youtube", "instagram", "sms")
TARGETS = {"fpr_at_spam": 0.02, "ham_at_unsure": 0.10}


def held_out(name: str, training: list[str]) -> list[Example]:
    """The corpus deduplicated, less any text that the training corpora hold too."""
    seen = {normalize_text(e.comment.content) for e in load_bundled(training)}
    return [e for e in load_bundled([name]) if normalize_text(e.comment.content) not in seen]


def train_like_the_cli(corpora: list[str], models: Path, seed: int) -> None:
    """`commentguard train` itself, so that what is measured is what that command serves."""
    command = [sys.executable, "-m", "service.cli", "train", "--models-dir", str(models)]
    command += [arg for name in corpora for arg in ("--corpus", name)]
    command += ["--seed", str(seed)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")


def measure(name: str, seed: int = 0) -> dict[str, Any]:
    """Train without `name`, score `name`: the figures of one corpus held out."""
    training = [c for c in DEFAULT_CORPORA if c != name]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"ood-{name}-") as folder:
        models = Path(folder)
        train_like_the_cli(training, models, seed)
        model = load_model(models)
    examples = held_out(name, training)
    labels = np.array([e.label for e in examples])
    scores = np.asarray(model.probabilities([e.comment for e in examples]), dtype=float)
    thresholds = model.thresholds
    ham, spam = scores[labels == 0], scores[labels == 1]
    at_spam = flagged_metrics(labels, (scores >= thresholds.spam).astype(int), scores)
    return {
        "corpus": name,
        "trained_on": training,
        "model_version": model.version,
        "comments": len(examples),
        "spam": int(labels.sum()),
        "ham": int((labels == 0).sum()),
        "thresholds": thresholds.to_dict(),
        "roc_auc": at_spam["roc_auc"],
        "fpr_at_spam": float((ham >= thresholds.spam).mean()) if len(ham) else 0.0,
        "ham_at_unsure": float((ham >= thresholds.unsure).mean()) if len(ham) else 0.0,
        "ham_at_discard": float((ham >= thresholds.discard).mean()) if len(ham) else 0.0,
        "spam_caught_at_spam": float((spam >= thresholds.spam).mean()) if len(spam) else 0.0,
        "f1_at_spam": at_spam["f1"],
        "seconds": round(time.monotonic() - started, 1),
    }


def _mark(value: float, target: float) -> str:
    return "met" if value <= target else "**missed**"


def section(results: list[dict[str, Any]], seed: int) -> str:
    lines = [
        "## Out of domain",
        "",
        f"`.venv/bin/python bench/ood.py` (seed {seed}) — {machine()}.",
        "",
        "Each bundled comment corpus is held out in turn: `commentguard train` trains on the "
        "default mix less that corpus (into a temporary models folder), and the held-out corpus "
        "is scored by that model at its own thresholds, as a new site's comments would be on "
        "its first day, before any of its labels. The held-out texts are deduplicated, and "
        "those the training corpora also hold are left out. `ham ≥ spam` is the held-out ham "
        "the model would send to spam or discard (its false-positive rate), `ham ≥ unsure` the "
        "ham it would not publish (held for review, spam or discard).",
        "",
        "| held out | trained on | comments (spam) | ROC AUC | ham ≥ spam | ham ≥ unsure "
        "| ham ≥ discard | spam caught at spam | F1 at spam | thresholds (unsure / spam / discard) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        t = r["thresholds"]
        lines.append(
            f"| {r['corpus']} | {', '.join(r['trained_on'])} | {r['comments']} ({r['spam']}) "
            f"| {r['roc_auc']:.4f} "
            f"| {r['fpr_at_spam']:.2%} ({_mark(r['fpr_at_spam'], TARGETS['fpr_at_spam'])}) "
            f"| {r['ham_at_unsure']:.2%} ({_mark(r['ham_at_unsure'], TARGETS['ham_at_unsure'])}) "
            f"| {r['ham_at_discard']:.2%} | {r['spam_caught_at_spam']:.1%} | {r['f1_at_spam']:.3f} "
            f"| {t['unsure']:.3f} / {t['spam']:.3f} / {t['discard']:.3f} |"
        )
    lines += [
        "",
        f"Targets (issue 15): ham ≥ spam ≤ {TARGETS['fpr_at_spam']:.0%} and ham ≥ unsure ≤ "
        f"{TARGETS['ham_at_unsure']:.0%} on every held-out corpus. `--json` prints these figures "
        "as JSON; `--corpus NAME` measures one corpus.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus",
        action="append",
        choices=COMMENT_CORPORA,
        help="Measure this corpus only (repeatable; default: all three).",
    )
    parser.add_argument("--seed", type=int, default=0, help="`commentguard train --seed`.")
    parser.add_argument("--json", action="store_true", help="Print JSON; write nothing.")
    parser.add_argument("--no-write", action="store_true", help="Do not write the docs.")
    args = parser.parse_args()
    names = args.corpus or list(COMMENT_CORPORA)
    results = []
    for name in names:
        print(f"holding out {name}", file=sys.stderr, flush=True)
        results.append(measure(name, args.seed))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    text = section(results, args.seed)
    print(text)
    if not args.no_write and not args.corpus:
        write_section("ood", text)


if __name__ == "__main__":
    main()
