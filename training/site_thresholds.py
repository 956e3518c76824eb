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

* a rate that allows fewer than `TAIL_POINTS` ham above the cut (the 0.1% `discard` on any site
  of fewer than 5,000 ham) is not read off the highest labelled ham, which says where one ham in
  40 lies, not one in a thousand: the ham's tail is extrapolated (`ham_cut`).

The same floors as the model's apply: `spam` ≥ 0.5, `discard` ≥ max(spam, 0.9), unsure ≤ spam.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from classifier.scoring import Thresholds
from training.train import DISCARD_FPR, SPAM_FPR, UNSURE_FPR

DEFAULT_MIN_PER_CLASS = 20
TAIL_POINTS = 5  # below this many ham allowed above a cut, the cut is extrapolated (ham_cut)
MIN_TAIL_SCALE = 0.1  # in log-odds: a tail no thinner than this


def threshold_for_count(ham_scores: np.ndarray, allowed: int) -> float:
    """The lowest cut-off with at most `allowed` of `ham_scores` at or above it."""
    ham = np.sort(ham_scores)
    if allowed >= len(ham):
        return 0.0
    return float(np.nextafter(ham[len(ham) - allowed - 1], np.inf))


def ham_cut(ham_scores: np.ndarray, rate: float, site_ham: float) -> float:
    """The lowest cut-off that keeps `rate` of a site's ham (`site_ham` comments, of which
    `ham_scores` are the highest-scored ones, its labelled ham) below it.

    Where the rate allows `TAIL_POINTS` ham or more above the cut, that count is read off the
    scores. Where it allows fewer (a 0.1% `discard` on a site with fewer than 5,000 ham), the
    highest scores cannot say where one ham in a thousand lies: the highest of 40 is the
    site's 2.5% point, not its 0.1% point. There the ham's tail is extrapolated, as peaks over
    a threshold are: in log-odds, the `TAIL_POINTS` highest scores' mean excess over the next
    one (β, at least `MIN_TAIL_SCALE`) gives an exponential tail, whose point for `rate` lies
    β·ln(p₀/rate) above it (p₀ the share of the site's ham above it). The cut is never below
    the one read off the scores.
    """
    ham = np.asarray(ham_scores, dtype=float)
    counted = threshold_for_count(ham, math.floor(rate * site_ham + 1e-9))
    if rate * site_ham >= TAIL_POINTS or len(ham) <= TAIL_POINTS:
        return counted
    clipped = np.clip(ham, 1e-6, 1 - 1e-6)
    highest = np.sort(np.log(clipped / (1 - clipped)))[::-1]
    start = highest[TAIL_POINTS]
    scale = max(MIN_TAIL_SCALE, float(np.mean(highest[:TAIL_POINTS] - start)))
    log_odds = start + scale * math.log(TAIL_POINTS / site_ham / rate)
    return max(counted, 1.0 / (1.0 + math.exp(-log_odds)))


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
        # The site's ham in the scored share's terms.
        return ham_cut(ham, rate, site_ham * share)

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
