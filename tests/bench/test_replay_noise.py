"""The label-noise measure behind the replay's documented limits (bench/replay_noise.py)."""

from __future__ import annotations

from bench.replay_noise import SCAM, conflicting_twins
from classifier.record import Comment
from training.corpora import Example

SCAM_TEXT = "i'm paying $4,000 to the first (7) people to hmu with help me out, stay blessed y'all"


def example(text: str, label: int) -> Example:
    return Example(Comment.from_mapping({"content": text}), label, "test", "g")


def test_count_conflicting_twins_exact_and_near() -> None:
    examples = [
        example(SCAM_TEXT, 1),
        example(SCAM_TEXT.upper(), 0),  # identical once normalised, labelled the other way
        example(SCAM_TEXT + "!!", 0),  # near-identical
        example("a real comment about the song, nothing to see here at all", 0),
        example("a real comment about the song, nothing to see here at all", 0),  # agreeing
    ]
    twins = conflicting_twins(examples)
    assert twins["exact_groups"] == 1
    assert twins["exact_rows"] == 2
    assert twins["near_pairs"] == 2  # the spam with each of its two ham copies
    assert twins["near_spam_rows"] == 1


def test_mark_scam_text_and_not_conversation() -> None:
    assert SCAM.search(SCAM_TEXT)
    assert SCAM.search("wow thank you @trade_forex_elizabeth i have 2.2 btc")
    assert not SCAM.search("this song reminds me of my summer in lisbon")
