"""The ceiling a replay cannot beat: the model trained on the replayed corpus itself.

Five shuffled, stratified folds of the corpus (the default pipeline, fitted on four, scoring the
fifth) give every comment a score from a model that saw 80% of the corpus, future comments
included: far more than any model learning from the stream in date order ever sees. The F1 at a
ham false-positive rate of 1% (and 2%, 5%) is then an upper bound of what the replay can reach
with this model family and these labels.

    .venv/bin/python bench/replay_ceiling.py youtube instagram
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from sklearn.model_selection import StratifiedKFold  # noqa: E402

from classifier.features import to_frame  # noqa: E402
from training.corpora import read_file  # noqa: E402
from training.metrics import classification_metrics, threshold_for_fpr  # noqa: E402
from training.train import fit  # noqa: E402

FOLDERS = {
    "youtube": "data/corpora/youtube-spam-collection",
    "instagram": "data/corpora/instagram-scam-comments",
}


def ceiling(name: str, seed: int = 0) -> list[str]:
    examples = [e for p in sorted((ROOT / FOLDERS[name]).glob("*.csv")) for e in read_file(p)]
    y = np.array([e.label for e in examples])
    scores = np.zeros(len(examples))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    for train_rows, test_rows in folds.split(np.zeros(len(y)), y):
        model = fit([examples[i] for i in train_rows])
        frame = to_frame([examples[i].comment for i in test_rows])
        scores[test_rows] = model.predict_proba(frame)[:, 1]
    lines = []
    for rate in (0.01, 0.02, 0.05):
        threshold = threshold_for_fpr(y, scores, rate)
        m = classification_metrics(y, scores, threshold)
        lines.append(
            f"| {name} | {rate:.0%} | {m['f1']:.3f} | {m['recall']:.3f} | {m['precision']:.3f} "
            f"| {m['fpr']:.2%} | {m['roc_auc']:.4f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpora", nargs="+", choices=sorted(FOLDERS))
    args = parser.parse_args()
    print("| corpus | ham FPR allowed | F1 | recall | precision | ham FPR | ROC AUC |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.corpora:
        for line in ceiling(name):
            print(line, flush=True)


if __name__ == "__main__":
    main()
