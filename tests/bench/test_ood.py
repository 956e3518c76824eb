"""The out-of-domain bench (bench/ood.py): a held-out corpus shares no text with training."""

from __future__ import annotations

from bench.ood import held_out
from classifier.normalize import normalize_text
from training.corpora import load_bundled


def test_hold_out_corpus_without_texts_the_training_corpora_hold() -> None:
    seen = {normalize_text(e.comment.content) for e in load_bundled(["instagram"])}
    examples = held_out("youtube", ["instagram"])
    texts = [normalize_text(e.comment.content) for e in examples]
    assert examples and all(e.corpus == "youtube" for e in examples)
    assert not seen & set(texts)
    assert len(texts) == len(set(texts))
