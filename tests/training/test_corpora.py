from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.corpora import (
    BUNDLED,
    CorpusError,
    corpus_files,
    deduplicate,
    load_bundled,
    read_file,
)


def test_bundled_corpora_ship_with_the_project() -> None:
    for name in BUNDLED:
        for path in corpus_files(name):
            assert path.is_file(), path


def test_load_bundled_youtube_deduplicates_on_normalised_text() -> None:
    examples = load_bundled(["youtube"])
    assert 1600 < len(examples) < 1956  # the 196 exact repeats and near-identical ones go
    from classifier.normalize import normalize_text

    texts = [normalize_text(e.comment.content) for e in examples]
    assert len(texts) == len(set(texts))
    assert {e.group for e in examples} == {p.stem for p in corpus_files("youtube")}


def test_load_bundled_maps_fields_and_keeps_extra_columns() -> None:
    examples = load_bundled(["spamassassin"])
    with_email = [e for e in examples if e.comment.author_email]
    assert with_email, "author_email should be read from the SpamAssassin corpus"
    assert any(e.comment.user_ip for e in examples)
    assert all("label" not in e.comment.extra for e in examples)


def test_deduplicate_drops_texts_labelled_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("content,label\nBuy now,1\nbuy  NOW\ufeff,0\nhello,0\nhello,0\nnice,spam\n")
    examples = deduplicate(read_file(path))
    assert [(e.comment.content, e.label) for e in examples] == [("hello", 0), ("nice", 1)]


def test_read_file_accepts_jsonl_with_comment_fields(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    rows = [
        {"content": "hi", "label": "ham", "author": "ann", "comment_author_url": "http://a.b"},
        {"content": "win", "label": 1, "site": "blog.example", "campaign": "x"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    examples = read_file(path)
    assert examples[0].comment.author == "ann"
    assert examples[0].comment.author_url == "http://a.b"
    assert examples[1].comment.blog == "blog.example"
    assert examples[1].comment.extra == {"campaign": "x"}


@pytest.mark.parametrize(
    "body",
    ["content\nhello\n", "content,label\nhello,maybe\n", "text_only,label\nhello,1\n"],
)
def test_read_file_rejects_rows_without_content_or_label(tmp_path: Path, body: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(CorpusError, match=r"bad\.csv:2"):
        read_file(path)


def test_read_file_reports_broken_json_with_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"content": "a", "label": 1}\n{not json\n')
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2"):
        read_file(path)
