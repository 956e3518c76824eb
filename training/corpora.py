"""Labelled corpora: the ones bundled with the project, and any CSV or JSONL a user brings."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.artifact import sha256_of
from classifier.normalize import normalize_text
from classifier.record import Comment

CORPORA_DIR = Path(__file__).resolve().parent.parent / "data" / "corpora"

# name -> (folder, files); a corpus's "group" is the file it came from (a YouTube video).
BUNDLED: dict[str, tuple[str, tuple[str, ...]]] = {
    "youtube": (
        "youtube-spam-collection",
        (
            "Youtube01-Psy.csv",
            "Youtube02-KatyPerry.csv",
            "Youtube03-LMFAO.csv",
            "Youtube04-Eminem.csv",
            "Youtube05-Shakira.csv",
        ),
    ),
    "instagram": ("instagram-scam-comments", ("instagram_comments.csv",)),
    "sms": ("sms-spam-collection", ("sms_spam.csv",)),
    "spamassassin": ("spamassassin-public-corpus", ("spamassassin.csv",)),
}

# Column names that mean a comment field, across the corpora's layouts.
_FIELD_ALIASES = {
    "content": "content",
    "comment_content": "content",
    "text": "content",
    "author": "author",
    "comment_author": "author",
    "author_email": "author_email",
    "comment_author_email": "author_email",
    "author_url": "author_url",
    "comment_author_url": "author_url",
    "user_ip": "user_ip",
    "sender_ip": "user_ip",
    "user_agent": "user_agent",
    "referrer": "referrer",
    "permalink": "permalink",
    "comment_type": "comment_type",
    "date": "created_at",
    "created_at": "created_at",
    "comment_date_gmt": "created_at",
    "blog": "blog",
    "site": "blog",
    "blog_lang": "blog_lang",
    "user_role": "user_role",
    "honeypot": "honeypot",
}
# Columns that are never features: ids, labels and bookkeeping of the source.
_NOT_EXTRA = {"id", "comment_id", "label", "class", "dup_content_of_earlier", "dup_of_earlier"}


@dataclass(slots=True)
class Example:
    """One labelled comment: 1 = spam, 0 = ham."""

    comment: Comment
    label: int
    corpus: str
    group: str
    id: str = ""


class CorpusError(ValueError):
    """A data file that cannot be read as labelled comments."""


def corpus_files(name: str) -> list[Path]:
    """The files of a bundled corpus."""
    folder, files = BUNDLED[name]
    return [CORPORA_DIR / folder / f for f in files]


def load_bundled(names: Iterable[str] | None = None) -> list[Example]:
    """Load bundled corpora (all by default), deduplicated."""
    examples: list[Example] = []
    for name in names or BUNDLED:
        if name not in BUNDLED:
            raise CorpusError(f"unknown corpus {name!r}; known: {', '.join(BUNDLED)}")
        for path in corpus_files(name):
            examples.extend(read_file(path, corpus=name))
    return deduplicate(examples)


def read_file(path: Path, corpus: str | None = None) -> list[Example]:
    """Read a CSV or JSONL file with `content,label` and optional comment fields."""
    corpus = corpus or path.stem
    if not path.is_file():
        raise CorpusError(f"{path}: no such file")
    rows = _read_jsonl(path) if path.suffix.lower() in (".jsonl", ".ndjson") else _read_csv(path)
    examples = []
    for number, row in enumerate(rows, start=2):
        example = _example(row, corpus=corpus, group=path.stem)
        if example is None:
            raise CorpusError(f"{path}:{number}: needs 'content' and a 0/1 or ham/spam 'label'")
        examples.append(example)
    return examples


def _read_csv(path: Path) -> Iterator[dict[str, Any]]:
    csv.field_size_limit(1 << 28)
    with path.open(encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusError(f"{path}:{number}: not JSON ({exc.msg})") from exc


def parse_label(value: Any) -> int | None:
    """1 for spam, 0 for ham, None for anything else."""
    text = str(value).strip().lower()
    if text in ("1", "spam", "true", "yes"):
        return 1
    if text in ("0", "ham", "false", "no"):
        return 0
    return None


def _example(row: dict[str, Any], corpus: str, group: str) -> Example | None:
    row = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    label = parse_label(row.get("label", row.get("class", "")))
    content = row.get("content", row.get("comment_content", row.get("text")))
    if label is None or content is None:
        return None
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in row.items():
        target = _FIELD_ALIASES.get(key)
        if target is not None:
            fields.setdefault(target, value)
        elif key not in _NOT_EXTRA and value not in (None, ""):
            extra[key] = value
    fields["extra"] = extra
    ident = str(row.get("id") or row.get("comment_id") or "")
    return Example(Comment.from_mapping(fields), label, corpus, group, ident)


def deduplicate(examples: list[Example]) -> list[Example]:
    """Keep the first of each normalised text; drop texts labelled both ways.

    Exact repeats across a split leak the answer into the evaluation, so this runs before any
    split. A text seen as both spam and ham teaches nothing but noise.
    """
    labels: dict[str, set[int]] = {}
    keys = []
    for example in examples:
        key = normalize_text(example.comment.content)
        keys.append(key)
        labels.setdefault(key, set()).add(example.label)
    seen: set[str] = set()
    kept = []
    for key, example in zip(keys, examples, strict=True):
        if not key or key in seen or len(labels[key]) > 1:
            continue
        seen.add(key)
        kept.append(example)
    return kept


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, for the artifact's record of the data it was trained on."""
    return sha256_of(path)


# The share of the corpora kept out of training, for the promotion gate to compare models on:
# the default model and every retrained one leave out the same comments.
GATE_VALIDATION_SHARE = 0.2


def in_validation(content: str, share: float) -> bool:
    """Whether a corpus comment belongs to the fixed validation split."""
    digest = hashlib.sha256(normalize_text(content).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < share * 10_000


def split_corpus(examples: Sequence[Example], share: float) -> tuple[list[Example], list[Example]]:
    """(training, validation) by hash of the normalised text."""
    train: list[Example] = []
    validation: list[Example] = []
    for example in examples:
        (validation if in_validation(example.comment.content, share) else train).append(example)
    return train, validation
