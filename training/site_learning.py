"""A site's own learning: its adapter (classifier/adapter.py) and the thresholds that keep the
same ham false-positive promises on its own traffic.

`learn_site` fits the adapter on every label of the site, and, once the site has
`min_per_class` spam and ham labels, scores each label by an adapter fitted without it (K-fold)
and chooses the site's thresholds on those scores (training/site_thresholds.py: the ham
false-positive rate's denominator is the site's ham as far as anyone knows it, its ham labels
plus the published comments nobody labelled). Below that the site keeps the shared model's
thresholds, which were chosen on corpora the model had not seen (training/train.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold

from classifier.adapter import AdapterParams, Rows, SiteAdapter, fit, select
from classifier.scoring import Thresholds
from training.site_thresholds import DEFAULT_MIN_PER_CLASS, learn_site_thresholds

CV_FOLDS = 5


@dataclass(frozen=True, slots=True)
class SiteLearning:
    adapter: SiteAdapter
    thresholds: Thresholds | None  # None: the shared model's
    unseen_scores: np.ndarray | None  # each label's score by an adapter fitted without it


def learn_site(
    batch: Rows,
    labels: np.ndarray,
    *,
    published: int = 0,
    params: AdapterParams | None = None,
    min_per_class: int = DEFAULT_MIN_PER_CLASS,
    base_version: str = "",
    seed: int = 0,
    previous: SiteAdapter | None = None,
) -> SiteLearning:
    """The site's adapter fitted on all its labels, and its thresholds when it has enough.

    `previous`, the site's adapter before its newest labels (on the same base model), only
    starts the fit nearer its optimum; the result is the same without it."""
    y = np.asarray(labels, dtype=int)
    adapter = fit(batch, y, params, base_version=base_version, start=previous)
    n_spam, n_ham = int(y.sum()), int(len(y) - y.sum())
    if min_per_class <= 0 or n_spam < min_per_class or n_ham < min_per_class:
        return SiteLearning(adapter, None, None)
    unseen = np.zeros(len(y))
    folds = StratifiedKFold(min(CV_FOLDS, n_spam, n_ham), shuffle=True, random_state=seed)
    for fit_rows, score_rows in folds.split(np.zeros(len(y)), y):
        held_out = fit(select(batch, fit_rows), y[fit_rows], params, start=adapter)
        unseen[score_rows] = held_out.probabilities(select(batch, score_rows))
    thresholds = learn_site_thresholds(y.tolist(), unseen.tolist(), n_ham, published, min_per_class)
    return SiteLearning(adapter, thresholds, unseen)
