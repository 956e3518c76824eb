"""Per-site thresholds: a site's unsure, spam and discard cut-offs, learned from its own labels.

The model's thresholds are chosen on the bundled corpora's validation split (training/train.py),
whose score distribution is not any one site's: on a site whose spam the retrained model knows
well, a `discard` chosen for the corpora (0.996) sends three spam in four to the queue. Once a
site has labels enough, a retrain chooses that site's cut-offs for the same ham false-positive
targets (`SPAM_FPR`, `DISCARD_FPR`, `UNSURE_FPR`) on the site's own comments, and the model
carries them (`Thresholds.sites`, the artifact's `site_thresholds`).

What they are chosen on, and why it is honest:

* scores the candidate's fit did not see: the site's labels in the calibration slice (scored by
  the model fitted without them, `training.retrain.fit_candidate`) and in the gate's time-based
  holdout (scored by the candidate);
* the false-positive rate's denominator is the site's ham as far as anyone knows it: its ham
  labels plus its published comments that nobody labelled (`published`, counted by the caller;
  a published spam that nobody reported counts as ham there, which errs a little on the lenient
  side). The labelled ham are the ones moderators saw (unsure, spam), which is where a threshold's
  false positives come from; the unlabelled ones were scored below `unsure` when they arrived.
  The slice holds a share of the site's ham labels, so the ham count allowed above a cut-off is
  scaled by that share.
* a site needs `min_per_class` spam AND ham labels among those scores (default 20, as for
  per-site features) before it gets its own thresholds; below that it keeps the model's.

The same floors as the model's apply: `spam` ≥ 0.5, `discard` ≥ max(spam, 0.9), unsure ≤ spam.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from classifier.scoring import Thresholds
from training.train import DISCARD_FPR, SPAM_FPR, UNSURE_FPR

DEFAULT_MIN_PER_CLASS = 20


def threshold_for_count(ham_scores: np.ndarray, allowed: int) -> float:
    """The lowest cut-off with at most `allowed` of `ham_scores` at or above it."""
    ham = np.sort(ham_scores)
    if allowed >= len(ham):
        return 0.0
    return float(np.nextafter(ham[len(ham) - allowed - 1], np.inf))


def learn_site_thresholds(
    labels: Sequence[int],
    scores: Sequence[float],
    ham_labels: int,
    published: int,
    min_per_class: int = DEFAULT_MIN_PER_CLASS,
    spam_fpr: float = SPAM_FPR,
    discard_fpr: float = DISCARD_FPR,
    unsure_fpr: float = UNSURE_FPR,
) -> Thresholds | None:
    """One site's thresholds from its labels' unseen `scores`, or None if it has too few.

    `ham_labels` is every ham label of the site (of which `labels` holds the scored share),
    `published` its published comments nobody labelled.
    """
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    ham = s[y == 0]
    if len(ham) < min_per_class or int(y.sum()) < min_per_class or ham_labels <= 0:
        return None
    share = min(1.0, len(ham) / ham_labels)  # of the site's labelled ham, the share scored here
    site_ham = ham_labels + max(0, published)

    def cut(rate: float) -> float:
        # Ham allowed at or above the cut among the site's ham, in the scored share's terms.
        return threshold_for_count(ham, math.floor(rate * site_ham * share + 1e-9))

    spam = min(1.0, max(0.5, cut(spam_fpr)))
    discard = min(1.0, max(0.9, spam, cut(discard_fpr)))
    unsure = min(spam, max(0.05, cut(unsure_fpr)))
    return Thresholds(_round_up(unsure), _round_up(spam), _round_up(discard))


def learn_all(
    by_site: Mapping[str, tuple[list[int], list[float]]],
    ham_labels: Mapping[str, int],
    published: Mapping[str, int],
    min_per_class: int = DEFAULT_MIN_PER_CLASS,
    spam_fpr: float = SPAM_FPR,
    discard_fpr: float = DISCARD_FPR,
    unsure_fpr: float = UNSURE_FPR,
) -> dict[str, Thresholds]:
    """Every site's learned thresholds (sites with too few labels are left out)."""
    learned = {}
    for site, (labels, scores) in sorted(by_site.items()):
        own = learn_site_thresholds(
            labels, scores, ham_labels.get(site, 0), published.get(site, 0), min_per_class,
            spam_fpr, discard_fpr, unsure_fpr,
        )  # fmt: skip
        if own is not None:
            learned[site] = own
    return learned


def _round_up(value: float) -> float:
    return min(1.0, math.ceil(value * 1e6) / 1e6)
