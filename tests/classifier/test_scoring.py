from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classifier.features import to_frame
from classifier.record import Comment
from classifier.scoring import Decision, LoadedModel, Thresholds
from training.corpora import load_bundled

SPAM = [
    "Check out my new channel http://bit.ly/abc123 and subscribe please!!!",
    "I make $500 a day from home with bitcoin trading, contact hazel on instagram",
    "Hey guys please subscribe to my channel, I upload new music videos every week",
    "Earn money online fast, visit www.myleadergate.com/moretraffic now",
]
HAM = ["I love this song so much, it brings back memories", "The dance at 2:19 is the best part"]

HOMOGLYPHS = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і"}
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]


def test_probabilities_match_the_sklearn_pipeline(model: LoadedModel) -> None:
    comments = SPAM + HAM + ["", "😀", "a" * 5000]
    fast = model.probabilities(comments)
    reference = model.pipeline.predict_proba(to_frame(comments))[:, 1]
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-12)


def test_score_returns_decision_reasons_and_version(model: LoadedModel) -> None:
    verdict = model.score(Comment(SPAM[0]))
    assert verdict.score > 0.9
    assert verdict.decision == model.thresholds.decide(verdict.score) != Decision.HAM
    assert verdict.model_version == model.version
    assert 0.0 <= verdict.score <= 1.0
    assert verdict.reasons and all(r.description for r in verdict.reasons)
    spam_reasons = [r for r in verdict.reasons if r.weight > 0]
    assert any("subscribe" in r.description or "link" in r.description for r in spam_reasons)


def test_score_explains_ham_with_negative_weights(model: LoadedModel) -> None:
    verdict = model.score(HAM[0])
    assert verdict.decision == Decision.HAM
    assert any(r.weight < 0 for r in verdict.reasons)


def test_score_many_equals_score_one_by_one(model: LoadedModel) -> None:
    batch = model.score_many(SPAM + HAM)
    single = [model.score(c) for c in SPAM + HAM]
    assert [v.to_dict() for v in batch] == [v.to_dict() for v in single]


def test_reasons_name_the_ngrams_of_the_comment(model: LoadedModel) -> None:
    verdict = model.score(SPAM[2], reasons=20)
    words = [r.feature.split(":", 1)[1] for r in verdict.reasons if r.feature.startswith("word:")]
    assert words and all(w in SPAM[2].lower() for w in words)


def test_thresholds_decide_by_band() -> None:
    t = Thresholds(unsure=0.2, spam=0.6, discard=0.95)
    assert [t.decide(s) for s in (0.1, 0.2, 0.59, 0.6, 0.95, 1.0)] == [
        Decision.HAM,
        Decision.UNSURE,
        Decision.UNSURE,
        Decision.SPAM,
        Decision.DISCARD,
        Decision.DISCARD,
    ]
    with pytest.raises(ValueError):
        Thresholds(unsure=0.7, spam=0.6, discard=0.9)


@functools.cache
def _flagged_spam() -> list[str]:
    """Real spam from the corpora, the first ones the tiny test model calls spam."""
    from classifier.artifact import load_model
    from tests.classifier.conftest import shared_models_dir

    model = load_model(shared_models_dir())
    spam = [e.comment.content for e in load_bundled(["youtube", "sms"]) if e.label == 1][:300]
    scores = model.probabilities(spam)
    return [text for text, p in zip(spam, scores, strict=True) if p >= model.thresholds.spam][:50]


@st.composite
def obfuscated(draw: st.DrawFn) -> tuple[str, str]:
    """A spam comment and a rewrite with zero-width characters, homoglyphs and entities."""
    plain = draw(st.sampled_from(_flagged_spam()))
    out = []
    for ch in plain:
        trick = draw(st.sampled_from(["keep", "keep", "homoglyph", "invisible", "entity"]))
        if trick == "homoglyph" and ch in HOMOGLYPHS:
            out.append(HOMOGLYPHS[ch])
        elif trick == "invisible":
            out.append(ch + draw(st.sampled_from(INVISIBLE)))
        elif trick == "entity" and ch.isalpha():
            out.append(draw(st.sampled_from([f"&#{ord(ch)};", f"&#x{ord(ch):x};"])))
        else:
            out.append(ch)
    return plain, "".join(out)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pair=obfuscated())
def test_obfuscating_spam_never_lowers_its_score_by_more_than_005(
    model: LoadedModel, pair: tuple[str, str]
) -> None:
    """Disguise must not help a spammer. It may count against them: look-alike letters mixed
    into Latin words are a signal of their own (`mixed_scripts`, `disguised_letters`)."""
    plain, disguised = pair
    assert model.score(disguised).score >= model.score(plain).score - 0.05
