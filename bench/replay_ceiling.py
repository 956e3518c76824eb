"""The ceiling a replay cannot beat: the model trained on the replayed corpus itself.

Five shuffled, stratified folds of the corpus as the replay plays it (every row; the default
pipeline, fitted on four folds, scoring the fifth) give every comment a score from a model that
saw 80% of the corpus, future comments included: far more than any model learning from the
stream in date order ever sees. The F1 at the threshold giving a ham false-positive rate of 1%
on those scores (and 2%, 5%) is then an upper bound of what the replay can reach with this
model family and these labels; `bench/replay.py` draws the 1% figure (`ceiling()`) beside each
replay.

`--dedupe` drops repeated normalised texts first (and texts labelled both ways:
`training.corpora.deduplicate`), so no fold scores a copy of a comment it trained on;
`--variants` also tries other settings of the pipeline (n-gram ranges, regularisation).

    .venv/bin/python bench/replay_ceiling.py youtube instagram sms
    .venv/bin/python bench/replay_ceiling.py instagram --dedupe --variants
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from sklearn.model_selection import StratifiedKFold  # noqa: E402

from classifier.features import to_frame  # noqa: E402
from classifier.pipeline import DEFAULT_PARAMS, build_classifier, build_features  # noqa: E402
from training.corpora import Example, corpus_files, deduplicate, read_file  # noqa: E402
from training.metrics import classification_metrics, threshold_for_fpr  # noqa: E402

CORPORA = ("youtube", "instagram", "sms")
# Other settings of the same pipeline (classifier/pipeline.py's DEFAULT_PARAMS otherwise):
# regularisation from strong to weak, shorter and longer character n-grams, fewer word n-grams.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "C=1": {"C": 1.0},
    "C=5": {"C": 5.0},
    "C=100": {"C": 100.0},
    "chars 2-5": {"char_ngrams": (2, 5)},
    "chars 3-6": {"char_ngrams": (3, 6)},
    "words 1-2": {"word_ngrams": 2},
}


def out_of_fold_scores(
    examples: list[Example], seed: int = 0, params: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores): every example scored by the fold's model that did not train on it.

    The score is the logistic regression's decision value: the pipeline's probability is one
    sigmoid of it (its calibration is not an ensemble), so every rank-based figure here (the
    threshold for a ham FPR, F1 there, ROC AUC) is the same, without the calibration's own
    folds, which would cost several fits more per fold.
    """
    p = {**DEFAULT_PARAMS, **(params or {})}
    y = np.array([e.label for e in examples])
    frame = to_frame([e.comment for e in examples])
    scores = np.zeros(len(examples))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    for train_rows, test_rows in folds.split(np.zeros(len(y)), y):
        features = build_features(p)
        X = features.fit_transform(frame[train_rows])
        model = build_classifier(p).fit(X, y[train_rows])
        scores[test_rows] = model.decision_function(features.transform(frame[test_rows]))
    return y, scores


def corpus(name: str, dedupe: bool = False) -> list[Example]:
    """The bundled corpus's rows in file order, as the replay reads them."""
    examples = [e for path in corpus_files(name) for e in read_file(path)]
    return deduplicate(examples) if dedupe else examples


def ceiling(name: str, seed: int = 0, rate: float = 0.01) -> dict[str, Any]:
    """The corpus's own ceiling: five folds, metrics at the threshold giving `rate` ham FPR."""
    y, scores = out_of_fold_scores(corpus(name), seed)
    threshold = threshold_for_fpr(y, scores, rate)
    return {
        "corpus": name,
        "fpr_allowed": rate,
        "threshold": float(threshold),
        "seed": seed,
        **classification_metrics(y, scores, threshold),
    }


def table(
    name: str,
    seed: int = 0,
    dedupe: bool = False,
    params: dict[str, Any] | None = None,
    label: str = "",
) -> list[str]:
    y, scores = out_of_fold_scores(corpus(name, dedupe), seed, params)
    lines = []
    for rate in (0.01, 0.02, 0.05):
        threshold = threshold_for_fpr(y, scores, rate)
        m = classification_metrics(y, scores, threshold)
        lines.append(
            f"| {name}{label} | {rate:.0%} | {m['f1']:.3f} | {m['recall']:.3f} | {m['precision']:.3f} "
            f"| {m['fpr']:.2%} | {m['roc_auc']:.4f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpora", nargs="+", choices=CORPORA)
    parser.add_argument("--dedupe", action="store_true", help="Deduplicate the corpus first.")
    parser.add_argument("--variants", action="store_true", help="Try other pipeline settings.")
    parser.add_argument("--only", nargs="+", metavar="VARIANT", help="Only these variants.")
    parser.add_argument("--json", action="store_true", help="Print the 1%% ceilings as JSON.")
    args = parser.parse_args()
    if args.json:
        print(json.dumps([ceiling(name) for name in args.corpora], indent=2))
        return
    variants = VARIANTS if args.variants else {"default": {}}
    if args.only:
        variants = {name: VARIANTS[name] for name in args.only}
    print("| corpus | ham FPR allowed | F1 | recall | precision | ham FPR | ROC AUC |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.corpora:
        for variant, params in variants.items():
            label = f" ({variant})" if args.variants else ""
            for line in table(name, dedupe=args.dedupe, params=params, label=label):
                print(line, flush=True)


if __name__ == "__main__":
    main()
