"""The numbers commentguard reports: never accuracy alone (13% of SMS is spam)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    f1_score,
    matthews_corrcoef,
    precision_score,
    recall_score,
    roc_auc_score,
)


def classification_metrics(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """precision, recall, f1, mcc, roc_auc and fpr (share of ham flagged) at `threshold`."""
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    flagged = (s >= threshold).astype(int)
    return flagged_metrics(y, flagged, s)


def flagged_metrics(
    labels: Sequence[int] | np.ndarray,
    flagged: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray | None = None,
) -> dict[str, Any]:
    """The same metrics for decisions already taken (1 = flagged as spam)."""
    y = np.asarray(labels, dtype=int)
    f = np.asarray(flagged, dtype=int)
    ham = y == 0
    both_classes = len(set(y.tolist())) == 2
    result: dict[str, Any] = {
        "n": len(y),
        "spam": int(y.sum()),
        "precision": float(precision_score(y, f, zero_division=0.0)),
        "recall": float(recall_score(y, f, zero_division=0.0)),
        "f1": float(f1_score(y, f, zero_division=0.0)),
        "mcc": float(matthews_corrcoef(y, f)) if len(y) else 0.0,
        "fpr": float(f[ham].mean()) if ham.any() else 0.0,
        "roc_auc": None,
    }
    if scores is not None and both_classes:
        result["roc_auc"] = float(roc_auc_score(y, np.asarray(scores, dtype=float)))
    return result


def threshold_for_fpr(labels: np.ndarray, scores: np.ndarray, target_fpr: float) -> float:
    """The lowest score threshold whose false-positive rate on ham is at most `target_fpr`."""
    ham = np.sort(np.asarray(scores, dtype=float)[np.asarray(labels) == 0])
    if len(ham) == 0:
        return 0.5
    allowed = int(np.floor(target_fpr * len(ham)))  # ham comments allowed at or above
    if allowed >= len(ham):
        return 0.0
    # Flag scores strictly above the (allowed+1)-th highest ham score.
    boundary = ham[len(ham) - allowed - 1]
    return float(np.nextafter(boundary, np.inf))
