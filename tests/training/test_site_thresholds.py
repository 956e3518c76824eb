from __future__ import annotations

import numpy as np

from classifier.scoring import Thresholds
from training.site_thresholds import (
    ham_cut,
    learn_all,
    learn_site_thresholds,
    threshold_for_count,
)


def test_threshold_for_count_allows_that_many_ham_above() -> None:
    ham = np.array([0.1, 0.5, 0.7, 0.9])
    assert threshold_for_count(ham, 0) > 0.9
    cut = threshold_for_count(ham, 1)
    assert 0.7 < cut <= 0.9 and int((ham >= cut).sum()) == 1
    assert threshold_for_count(ham, 4) == 0.0


def test_ham_cut_reads_the_count_off_the_scores_where_the_rate_allows_enough_ham() -> None:
    ham = np.linspace(0.0, 0.9, 1000)
    # 1% of 1,000 ham: 10 ham at or above the cut, counted.
    assert ham_cut(ham, 0.01, 1000) == threshold_for_count(ham, 10)


def test_ham_cut_extrapolates_the_tail_where_the_rate_allows_fewer_than_five() -> None:
    rng = np.random.default_rng(0)
    log_odds = rng.normal(-3.0, 1.0, 40)
    ham = 1 / (1 + np.exp(-log_odds))
    # 0.1% of 400 ham is 0.4 of a comment: not one above the highest of 40 is not enough.
    cut = ham_cut(ham, 0.001, 400)
    assert cut > threshold_for_count(ham, 0) > ham.max()
    # A heavier tail (the highest scores further apart) puts the cut higher.
    heavier = ham.copy()
    heavier[np.argmax(heavier)] = 0.8
    assert ham_cut(heavier, 0.001, 400) > cut
    # The same scores on a site with ten times the ham: one in a thousand lies lower.
    assert ham_cut(ham, 0.001, 4000) < cut


def test_learn_site_thresholds_needs_enough_of_each_class() -> None:
    labels = [0] * 30 + [1] * 19
    scores = [0.1] * 30 + [0.99] * 19
    assert learn_site_thresholds(labels, scores, ham_labels=30, published=500) is None
    assert learn_site_thresholds(labels, scores, 30, 500, min_per_class=10) is not None


def test_learn_site_thresholds_meet_the_targets_on_the_site_ham() -> None:
    rng = np.random.default_rng(0)
    ham = np.sort(rng.uniform(0.0, 0.8, 40))
    spam = rng.uniform(0.9, 1.0, 60)
    labels = [0] * 40 + [1] * 60
    # 40 of the site's 80 ham labels were scored; 920 more of its comments were published.
    own = learn_site_thresholds(labels, [*ham, *spam], ham_labels=80, published=920)
    assert own is not None
    # 1% of 1000 ham is 10, 5 of them in the scored half: 5 scored ham at or above `spam`.
    assert int((ham >= own.spam).sum()) == 5 or own.spam == 0.5
    assert int((ham >= own.discard).sum()) == 0 and own.discard >= 0.9
    assert own.unsure <= own.spam <= own.discard
    # 5% of 1000 is 50, 25 of them scored: `unsure` lets 25 scored ham through.
    assert int((ham >= own.unsure).sum()) == 25


def test_learn_all_leaves_out_sites_with_too_few_labels() -> None:
    by_site = {
        "a": ([0] * 25 + [1] * 25, [0.1] * 25 + [0.95] * 25),
        "b": ([0] * 5 + [1] * 25, [0.1] * 5 + [0.95] * 25),
    }
    learned = learn_all(by_site, {"a": 25, "b": 5}, {"a": 100})
    assert set(learned) == {"a"} and isinstance(learned["a"], Thresholds)
