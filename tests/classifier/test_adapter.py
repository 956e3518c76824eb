"""A site's adapter: the shared model with no labels, the site's own patterns with them."""

from __future__ import annotations

import numpy as np

from classifier.adapter import AdapterParams, SiteAdapter, fit, rows, select
from classifier.scoring import LoadedModel
from training.site_learning import learn_site

EVENTS = ["bake sale", "choir practice", "charity run", "book club", "potluck dinner"]
DAYS = ["Saturday", "Sunday", "Friday night", "next week", "tomorrow"]


def _notices(n: int, offset: int = 0) -> list[str]:
    """Community notices, the kind of comment one site calls spam and another welcomes."""
    return [
        f"Join our {EVENTS[(i + offset) % 5]} {DAYS[(i * 3 + offset) % 5]}, everyone welcome "
        f"#{i + offset}"
        for i in range(n)
    ]


def _ordinary(n: int) -> list[str]:
    topics = ["the chorus", "the second verse", "this video", "the drums", "her voice"]
    return [f"I really like {topics[i % 5]}, thanks for sharing ({i})" for i in range(n)]


def _batch(model: LoadedModel, texts: list[str]):  # type: ignore[no-untyped-def]
    prepared, parts, log_odds = model.analyse(texts)
    return rows(prepared, parts, log_odds)


def test_adapter_without_labels_is_the_shared_model(model: LoadedModel) -> None:
    texts = _notices(5) + _ordinary(5)
    empty = fit(_batch(model, []), np.zeros(0))
    assert empty.scale == 1.0 and empty.bias == 0.0 and len(empty.keys) == 0
    adapted = model.score_many(texts, adapters=[empty] * len(texts))
    plain = model.score_many(texts)
    assert [v.score for v in adapted] == [v.score for v in plain]


def test_adapter_learns_what_the_site_calls_spam(model: LoadedModel) -> None:
    train = _notices(30) + _ordinary(30)
    labels = np.array([1] * 30 + [0] * 30)
    adapter = fit(_batch(model, train), labels)
    fresh = _notices(10, offset=100)
    before = model.probabilities(fresh)
    after = adapter.probabilities(_batch(model, fresh))
    assert after.min() > 0.9 > before.max(), (before, after)
    ordinary = _ordinary(10)
    assert adapter.probabilities(_batch(model, ordinary)).max() < 0.5
    verdict = model.score_many([fresh[0]], adapters=[adapter])[0]
    assert verdict.score == after[0]
    assert any(r.feature.startswith("site-") and r.weight > 0 for r in verdict.reasons)


def test_adapter_of_one_site_leaves_another_site_alone(model: LoadedModel) -> None:
    spam_here = fit(_batch(model, _notices(30) + _ordinary(30)), np.array([1] * 30 + [0] * 30))
    texts = _notices(4, offset=50)
    scores = model.score_many(texts, adapters=[spam_here, None, spam_here, None])
    plain = model.probabilities(texts)
    assert scores[1].score == plain[1] and scores[3].score == plain[3]
    assert scores[0].score > 0.9 and scores[2].score > 0.9


def test_adapter_survives_a_round_trip_through_bytes(model: LoadedModel) -> None:
    batch = _batch(model, _notices(20) + _ordinary(20))
    adapter = fit(batch, np.array([1] * 20 + [0] * 20), base_version="v1")
    copy = SiteAdapter.from_bytes(adapter.to_bytes())
    assert copy.base_version == "v1" and copy.n_spam == 20 and copy.n_ham == 20
    np.testing.assert_allclose(copy.probabilities(batch), adapter.probabilities(batch), atol=1e-5)


def test_stronger_prior_keeps_the_adapter_closer_to_the_shared_model(model: LoadedModel) -> None:
    batch = _batch(model, _notices(10) + _ordinary(10))
    labels = np.array([1] * 10 + [0] * 10)
    loose = fit(batch, labels, AdapterParams(l2=0.1, prior=0.1))
    tight = fit(batch, labels, AdapterParams(l2=100.0, prior=100.0))
    base = batch.base
    assert (
        np.abs(tight.log_odds(batch)[0] - base).max()
        < np.abs(loose.log_odds(batch)[0] - base).max()
    )


def test_the_recalibration_prior_weakens_as_the_site_labels_more(model: LoadedModel) -> None:
    """Strong with a few labels, weak with many: a site whose labels keep saying the shared
    model is wrong about it moves the recalibration further than a fixed prior lets it."""
    params = AdapterParams()
    assert params.prior_for(0) == params.prior
    assert params.prior_for(params.prior_labels) == params.prior / 2
    assert params.prior_for(10_000) == params.prior_min
    batch = _batch(model, _notices(100) + _ordinary(100))
    labels = np.array([1] * 100 + [0] * 100)
    fixed = fit(batch, labels, AdapterParams(prior_labels=0))
    weakening = fit(batch, labels, params)
    assert abs(weakening.bias) + abs(weakening.scale - 1) > abs(fixed.bias) + abs(fixed.scale - 1)


def test_learn_site_chooses_thresholds_only_with_enough_labels(model: LoadedModel) -> None:
    batch = _batch(model, _notices(25) + _ordinary(25))
    labels = np.array([1] * 25 + [0] * 25)
    few = learn_site(select(batch, np.arange(0, 50, 2)), labels[::2], min_per_class=20)
    assert few.thresholds is None and few.unseen_scores is None
    enough = learn_site(batch, labels, published=200, min_per_class=20)
    assert enough.thresholds is not None and enough.unseen_scores is not None
    assert enough.thresholds.unsure <= enough.thresholds.spam <= enough.thresholds.discard


def test_a_few_contradictory_labels_do_not_push_the_site_ham_toward_unsure(
    model: LoadedModel,
) -> None:
    """One blatant spam called ham (a fan's channel link) must not squash every score of the
    site toward 0.5: the recalibration's prior holds until many labels say otherwise."""
    labelled = [
        "Check out my channel http://bit.ly/y subscribe!!! (I am a real fan)",
        "I love this song, it reminds me of my childhood. Visit my profile.",
    ]
    adapter = fit(_batch(model, labelled), np.array([0, 1]))
    ordinary = _batch(model, _ordinary(10))
    base = 1.0 / (1.0 + np.exp(-ordinary.base))
    assert np.abs(adapter.probabilities(ordinary) - base).max() < 0.1
    assert adapter.scale > 0.8


def test_a_fit_started_from_the_previous_adapter_reaches_the_same_adapter(
    model: LoadedModel,
) -> None:
    texts = _notices(30) + _ordinary(30)
    labels = np.array([1] * 30 + [0] * 30)
    batch = _batch(model, texts)
    previous = fit(select(batch, np.arange(50)), labels[:50])
    cold = fit(batch, labels)
    warm = fit(batch, labels, start=previous)
    fresh = _batch(model, _notices(5, offset=70) + _ordinary(5))
    assert np.allclose(warm.probabilities(fresh), cold.probabilities(fresh), atol=1e-3)
    assert abs(warm.scale - cold.scale) < 1e-2 and abs(warm.bias - cold.bias) < 1e-2
    # And learn_site's thresholds do not depend on where its fits started.
    a = learn_site(batch, labels, min_per_class=10)
    b = learn_site(batch, labels, min_per_class=10, previous=previous)
    assert a.thresholds is not None and b.thresholds is not None
    assert np.allclose(a.unseen_scores, b.unseen_scores, atol=1e-3)
