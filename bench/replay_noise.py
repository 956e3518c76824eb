"""Label noise in a bundled comment corpus: the evidence behind the replay's ceiling.

Three measures, all on the corpus as shipped:

* conflicting twins: comments whose normalised texts (`classifier.normalize.normalize_text`) are
  identical, or near-identical (Jaccard similarity of their character 5-gram shingles, the
  near-duplicate memory's, at least 0.8), but whose labels disagree;
* the false positives of the ceiling (`bench/replay_ceiling.py`: five shuffled folds, the
  default pipeline) at a ham false-positive rate of 1%: how many of those "ham" carry the
  marks of the corpus's own spam (money amounts, "dm me", a handle to contact, trading and
  investment talk); `--show N` prints N of them to read;
* the corpus after deduplication: how many rows `training.corpora.deduplicate` drops.

    .venv/bin/python bench/replay_noise.py instagram --show 15
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from datasketch import MinHash, MinHashLSH  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402

from bench.replay_ceiling import CORPORA, corpus  # noqa: E402
from classifier.features import to_frame  # noqa: E402
from classifier.normalize import normalize_text  # noqa: E402
from training.corpora import Example, deduplicate  # noqa: E402
from training.metrics import threshold_for_fpr  # noqa: E402
from training.train import fit  # noqa: E402

SHINGLE = 5
JACCARD = 0.8
# The marks of a money scam, as the corpus's spam shows them: an amount, a contact request, a
# handle to write to, trading/investment/"passive income" talk. A heuristic, to count; the
# printed samples are what to read.
SCAM = re.compile(
    r"[$€£]\s?\d|\d\s?(k|grands?|dollars|usd)\b|\bdm\b|\binbox\b|\bhmu\b|\bmessage me\b"
    r"|whats\s?app|telegram|@\w*(fx|trad|invest|coach|crypto|forex|profit|earn|finance)"
    r"|\b(forex|bitcoin|btc|crypto|binance|payout|trader|trading|recover)\b"
    r"|\binvest(ed|ing|ment)?\b|\bprofit\b|passive income|\bearn(ing|ed)?\b",
    re.IGNORECASE,
)


def shingles(text: str) -> set[str]:
    return {text[i : i + SHINGLE] for i in range(max(1, len(text) - SHINGLE + 1))}


def conflicting_twins(examples: list[Example]) -> dict[str, int]:
    """Counts of exact and near-duplicate pairs (and the comments in them) that disagree."""
    texts = [normalize_text(e.comment.content) for e in examples]
    labels = [e.label for e in examples]
    exact: dict[str, set[int]] = defaultdict(set)
    for i, t in enumerate(texts):
        exact[t].add(i)
    exact_groups = [g for t, g in exact.items() if t and len({labels[i] for i in g}) > 1]
    exact_rows = sum(len(g) for g in exact_groups)

    sets = [shingles(t) for t in texts]
    lsh = MinHashLSH(threshold=JACCARD, num_perm=128)
    hashes = []
    for i, s in enumerate(sets):
        m = MinHash(num_perm=128, seed=1)
        m.update_batch([x.encode("utf-8") for x in s])
        hashes.append(m)
        lsh.insert(str(i), m)
    pairs = set()
    for i, m in enumerate(hashes):
        for key in lsh.query(m):
            j = int(key)
            if j <= i or labels[i] == labels[j] or not texts[i] or not texts[j]:
                continue
            jaccard = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
            if jaccard >= JACCARD:
                pairs.add((i, j))
    near_rows = {k for pair in pairs for k in pair}
    return {
        "exact_groups": len(exact_groups),
        "exact_rows": exact_rows,
        "near_pairs": len(pairs),
        "near_rows": len(near_rows),
        "near_spam_rows": sum(labels[k] for k in near_rows),
    }


def false_positives(
    examples: list[Example], rate: float = 0.01, seed: int = 0
) -> tuple[list[tuple[float, str]], int, float]:
    """The labelled-ham comments flagged at `rate` by the five-fold ceiling, highest first."""
    y = np.array([e.label for e in examples])
    scores = np.zeros(len(examples))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    for train_rows, test_rows in folds.split(np.zeros(len(y)), y):
        model = fit([examples[i] for i in train_rows])
        frame = to_frame([examples[i].comment for i in test_rows])
        scores[test_rows] = model.predict_proba(frame)[:, 1]
    threshold = threshold_for_fpr(y, scores, rate)
    flagged = [
        (float(scores[i]), examples[i].comment.content)
        for i in range(len(y))
        if y[i] == 0 and scores[i] >= threshold
    ]
    spam_marked = float(
        np.mean([bool(SCAM.search(e.comment.content)) for e in examples if e.label])
    )
    return sorted(flagged, reverse=True), int((y == 0).sum()), spam_marked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", choices=CORPORA)
    parser.add_argument("--show", type=int, default=10, help="False positives to print.")
    args = parser.parse_args()
    examples = corpus(args.corpus)
    spam = sum(e.label for e in examples)
    print(f"{args.corpus}: {len(examples)} comments, {spam} spam, {len(examples) - spam} ham")
    kept = deduplicate(list(examples))
    print(f"deduplicated (exact normalised text, conflicts dropped): {len(kept)} kept")
    twins = conflicting_twins(examples)
    print(
        f"labels disagree: {twins['exact_groups']} identical normalised texts "
        f"({twins['exact_rows']} comments); {twins['near_pairs']} pairs at Jaccard >= {JACCARD} "
        f"({twins['near_rows']} comments, {twins['near_spam_rows']} of them labelled spam)"
    )
    flagged, ham, spam_marked = false_positives(examples)
    marked = [t for _, t in flagged if SCAM.search(t)]
    print(
        f"ceiling at 1% FPR: {len(flagged)} of {ham} ham flagged; {len(marked)} of them carry "
        f"a scam mark (as do {spam_marked:.0%} of the labelled spam)"
    )
    for score, text in flagged[: args.show]:
        mark = "*" if SCAM.search(text) else " "
        print(f"  {mark} {score:.3f} {text[:200]!r}")


if __name__ == "__main__":
    main()
