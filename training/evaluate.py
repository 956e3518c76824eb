"""Evaluation protocols: leave one YouTube video out, K-fold, and a held-out file or corpus.

Every protocol deduplicates before splitting (training/corpora.py) and reports the metrics of
training/metrics.py, pooled over folds, with each fold's own figures beside them. A comment
counts as flagged when its calibrated probability of spam is at least 0.5.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from classifier.features import to_frame
from classifier.normalize import normalize_text
from classifier.pipeline import DEFAULT_PARAMS
from training.baseline import build_baseline
from training.corpora import (
    BUNDLED,
    CORPORA_DIR,
    CorpusError,
    Example,
    deduplicate,
    load_bundled,
    read_file,
)
from training.metrics import classification_metrics
from training.train import DEFAULT_CORPORA, domains_of, fit_unseen

Report = Callable[[str, float], None]
THRESHOLD = 0.5


def _quiet(_message: str, _fraction: float) -> None:
    return None


def _fit_predict(train: Sequence[Example], test: Sequence[Example], baseline: bool) -> np.ndarray:
    """Scores of `test` by a model fitted on `train` as `commentguard train` fits one."""
    X_test = to_frame([e.comment for e in test])
    y = np.array([e.label for e in train])
    if baseline:
        model = build_baseline().fit(to_frame([e.comment for e in train]), y)
        return np.asarray(model.predict_proba(X_test)[:, 1])
    fitted = fit_unseen(to_frame([e.comment for e in train]), y, domains_of(train), DEFAULT_PARAMS)
    return np.asarray(fitted.pipeline.predict_proba(X_test)[:, 1])


def _run_folds(
    protocol: str,
    folds: Sequence[tuple[str, Sequence[Example], Sequence[Example]]],
    baseline: bool,
    report: Report,
) -> dict[str, Any]:
    labels: list[int] = []
    scores: list[float] = []
    details = []
    for k, (name, train, test) in enumerate(folds):
        report(f"{protocol}: fold {name} ({len(train)} train / {len(test)} test)", k / len(folds))
        fold_scores = _fit_predict(train, test, baseline)
        fold_labels = [e.label for e in test]
        details.append(
            {
                "fold": name,
                "n_train": len(train),
                **classification_metrics(fold_labels, fold_scores, THRESHOLD),
            }
        )
        labels += fold_labels
        scores += fold_scores.tolist()
    report(f"{protocol}: done", 1.0)
    return {
        "protocol": protocol,
        "model": "baseline (TF-IDF words + logistic regression)" if baseline else "commentguard",
        "params": {} if baseline else DEFAULT_PARAMS,
        "threshold": THRESHOLD,
        "metrics": classification_metrics(labels, scores, THRESHOLD),
        "folds": details,
    }


def leave_one_video_out(baseline: bool = False, report: Report = _quiet) -> dict[str, Any]:
    """Train on four YouTube videos, test on the fifth, for each video."""
    examples = load_bundled(["youtube"])
    videos = sorted({e.group for e in examples})
    folds = [
        (
            video,
            [e for e in examples if e.group != video],
            [e for e in examples if e.group == video],
        )
        for video in videos
    ]
    result = _run_folds("leave-one-video-out", folds, baseline, report)
    result["train_corpora"] = ["youtube (the other four videos)"]
    return result


def cross_validate(
    k: int,
    corpora: Sequence[str] | None = None,
    seed: int = 0,
    baseline: bool = False,
    report: Report = _quiet,
) -> dict[str, Any]:
    """Stratified K-fold cross-validation over bundled corpora (the default mix by default)."""
    if k < 2:
        raise ValueError("--cv needs K ≥ 2")
    names = list(corpora or DEFAULT_CORPORA)
    examples = load_bundled(names)
    labels = np.array([e.label for e in examples])
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [
        (
            str(i + 1),
            [examples[j] for j in train_idx],
            [examples[j] for j in test_idx],
        )
        for i, (train_idx, test_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels))
    ]
    result = _run_folds(f"{k}-fold cross-validation", folds, baseline, report)
    result["corpora"] = names
    return result


def bundled_corpus_of(path: Path) -> str | None:
    """The bundled corpus a file belongs to, if it is one of the project's own files."""
    resolved = path.resolve()
    for name, (folder, _files) in BUNDLED.items():
        if resolved.parent == (CORPORA_DIR / folder).resolve():
            return name
    return None


def held_out_file(
    path: Path,
    corpora: Sequence[str] | None = None,
    baseline: bool = False,
    report: Report = _quiet,
) -> dict[str, Any]:
    """Test on FILE, training on bundled corpora without FILE's corpus.

    `path` may be a bundled corpus's name ("sms") or folder, a bundled file, or any CSV/JSONL.
    Test comments whose normalised text also appears in the training data are dropped, so the
    figure measures generalisation, not recall of memorised texts.
    """
    held_out: str | None
    if str(path) in BUNDLED:
        held_out = str(path)
        test = load_bundled([held_out])
    elif path.is_dir():
        held_out = bundled_corpus_of(path / "x")
        if held_out is None:
            raise CorpusError(f"{path}: not a bundled corpus folder")
        test = load_bundled([held_out])
    else:
        held_out = bundled_corpus_of(path)
        test = deduplicate(read_file(path, corpus=held_out))
    # What `commentguard train` serves (the default mix), less the held-out corpus.
    names = [n for n in (corpora or DEFAULT_CORPORA) if n != held_out]
    if not names:
        raise CorpusError("no training corpora left after holding out the test corpus")
    train = load_bundled(names)
    seen = {normalize_text(e.comment.content) for e in train}
    test = [e for e in test if normalize_text(e.comment.content) not in seen]
    if len({e.label for e in test}) < 2:
        raise CorpusError(f"{path}: the test data needs both spam and ham")
    result = _run_folds(
        f"held out: {held_out or path.name}",
        [(held_out or path.name, train, test)],
        baseline,
        report,
    )
    result["train_corpora"] = names
    return result
