"""Accuracy benchmark: leave-one-video-out, each bundled corpus held out in turn, and 5-fold
cross-validation of the default mix, for commentguard's model and the plain baseline.

    .venv/bin/python bench/accuracy.py            # writes the "Accuracy" section (~15 min)
    .venv/bin/python bench/accuracy.py --no-write

Flagged = calibrated probability of spam ≥ 0.5. `fpr` is the share of ham flagged.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import machine, write_section
from training import evaluate
from training.corpora import BUNDLED
from training.train import DEFAULT_CORPORA


def _row(name: str, ours: dict[str, Any], base: dict[str, Any]) -> str:
    m, b = ours["metrics"], base["metrics"]
    return (
        f"| {name} | {m['n']} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
        f"{m['mcc']:.3f} | {m['roc_auc']:.3f} | {m['fpr']:.3%} | {b['f1']:.3f} | {b['mcc']:.3f} | "
        f"{b['fpr']:.3%} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--json", type=Path, help="also save every result to this file")
    parser.add_argument("--from-json", type=Path, help="render saved results instead of running")
    args = parser.parse_args()

    results: dict[str, dict[str, Any]] = {}
    if args.from_json:
        results = json.loads(args.from_json.read_text())

    def both(key: str, run: Any) -> None:
        print(f"running {key}", file=sys.stderr, flush=True)
        results[key] = {"ours": run(False), "baseline": run(True)}

    if not results:
        both("lovo", lambda base: evaluate.leave_one_video_out(baseline=base))
        for name in BUNDLED:
            both(
                f"held-out {name}",
                lambda base, n=name: evaluate.held_out_file(Path(n), baseline=base),
            )
        both("cv5", lambda base: evaluate.cross_validate(5, DEFAULT_CORPORA, seed=0, baseline=base))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))

    head = (
        "| protocol | n | precision | recall | F1 | MCC | ROC AUC | ham FPR | baseline F1 | "
        "baseline MCC | baseline FPR |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
        "---: | ---: | ---: |"
    )
    lovo = results["lovo"]
    folds = "\n".join(
        f"| {f['fold']} | {f['n']} | {f['f1']:.3f} | {f['mcc']:.3f} | {b['f1']:.3f} | {b['mcc']:.3f} |"
        for f, b in zip(lovo["ours"]["folds"], lovo["baseline"]["folds"], strict=True)
    )
    held = "\n".join(
        _row(f"{name} held out (trained on the other three)", **_pair(results[f"held-out {name}"]))
        for name in BUNDLED
    )
    text = f"""## Accuracy

Command: `.venv/bin/python bench/accuracy.py` (also `commentguard evaluate --lovo --json`,
`--test NAME`, `--cv 5`, each with `--baseline`). Machine: {machine()}.
Flagged means a calibrated probability of spam ≥ 0.5; ham FPR is the share of ham flagged.
Baseline: TF-IDF over raw words (1–2-grams) and a default logistic regression
(`training/baseline.py`). Data are deduplicated on normalised text before any split; held-out
comments whose normalised text also occurs in the training corpora are dropped.

### Leave one YouTube video out (acceptance: MCC ≥ 0.90, F1 ≥ 0.95)

{head}
{_row("5 videos, pooled", **_pair(lovo))}

| video | n | F1 | MCC | baseline F1 | baseline MCC |
| --- | ---: | ---: | ---: | ---: | ---: |
{folds}

The model's hyper-parameters (word 1–3-grams, character 4–5-grams, C = 20) were chosen on this
protocol, so its figure is slightly optimistic; the held-out figures below were not tuned.

### Cross-corpus: each bundled corpus held out in turn

{head}
{held}

"Spam" means something different in each corpus (promotion on YouTube, crypto scams on
Instagram, premium-rate texts in SMS, commercial e-mail in SpamAssassin). On the three comment
corpora a model that never saw a corpus's kind of spam still ranks it well (ROC AUC 0.85–0.96)
but misses most of it at the 0.5 cut (recall 0.21–0.71), while beating the baseline by a wide
margin. E-mail is another matter: trained on the three others, the model flags most SpamAssassin
ham (long bodies full of links and headers look like spam to a comment model; AUC 0.63).

### The default mix ({", ".join(DEFAULT_CORPORA)}), 5-fold cross-validation

{head}
{_row("5-fold CV", **_pair(results["cv5"]))}

**The default mix, chosen from these numbers:** every comment-like corpus (YouTube, Instagram,
SMS), because each kind of spam is learned only from its own corpus (the held-out recalls
above), and not SpamAssassin, whose e-mail is the furthest from comments (the lowest held-out
AUC) and whose long bodies make training several times slower (over the 60 s budget). Train
on it too with `commentguard train --corpus youtube --corpus instagram --corpus sms --corpus
spamassassin`. The learning loop then adapts the model to each site's own spam.
"""
    print(text)
    if not args.no_write:
        write_section("accuracy", text)


def _pair(result: dict[str, Any]) -> dict[str, Any]:
    return {"ours": result["ours"], "base": result["baseline"]}


if __name__ == "__main__":
    main()
