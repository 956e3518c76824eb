"""The promotion gate: a retrained candidate replaces the active model only if it is no worse.

Both models are measured on the same data sets, each at its own `spam` threshold (the decision
it would actually take): the newest moderator and feedback labels (a time-based holdout the
candidate never trained on) and a fixed validation split of the bundled corpora. On each set:

* MCC: the candidate's may not be lower than the active model's by more than `mcc_tolerance`
  (default 0.02: retraining reshuffles borderline comments, and a gate that refuses any dip at
  all would refuse most runs on noise);
* ham false-positive rate: the candidate's may not exceed the larger of the active model's and
  `target_fpr` (default 0.01, the rate the `spam` threshold is chosen for), the target counted
  in whole comments rounded up (on a set of 15 ham, one false positive is within target: a
  single comment is no evidence of a worse model).

Edge cases: with no active model the candidate is promoted; a set with fewer than
`min_per_class` spam or ham comments is not judged on MCC (too few to tell), only on the ham
false-positive rate if it has ham; if no set can be judged at all the candidate is rejected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from training.train import SPAM_FPR

# A rate compared at the float's last digits is equal.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class GateParams:
    mcc_tolerance: float = 0.02
    target_fpr: float = SPAM_FPR
    min_per_class: int = 5


@dataclass(frozen=True, slots=True)
class GateDecision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    candidate: Mapping[str, Mapping[str, Any]],
    active: Mapping[str, Mapping[str, Any]] | None,
    params: GateParams | None = None,
) -> GateDecision:
    """Promote or not, from each model's metrics per data set (`training.metrics` dicts, as
    `{"labels": {...}, "corpus": {...}}`, measured at the model's spam threshold)."""
    p = params or GateParams()
    if active is None:
        return GateDecision(True, ["no active model: the candidate is the first"], [])
    checks: list[dict[str, Any]] = []
    reasons: list[str] = []
    judged = False
    for name, cand in candidate.items():
        act = active.get(name)
        if act is None:
            continue
        n_spam = int(cand.get("spam", 0))
        n_ham = int(cand.get("n", 0)) - n_spam
        if min(n_spam, n_ham) >= p.min_per_class:
            judged = True
            floor = float(act["mcc"]) - p.mcc_tolerance
            ok = float(cand["mcc"]) >= floor - _EPSILON
            checks.append(
                {
                    "set": name,
                    "metric": "mcc",
                    "candidate": cand["mcc"],
                    "active": act["mcc"],
                    "limit": floor,
                    "passed": ok,
                }
            )
            if not ok:
                reasons.append(
                    f"{name}: MCC {cand['mcc']:.4f} is below the active model's "
                    f"{act['mcc']:.4f} minus the tolerance {p.mcc_tolerance}"
                )
        else:
            reasons.append(
                f"{name}: {n_spam} spam and {n_ham} ham, fewer than {p.min_per_class} of a "
                "class, so MCC is not compared"
            )
        if n_ham > 0:
            judged = True
            # The target in whole comments, rounded up: on a holdout of 15 ham one false
            # positive is 6.7%, and a 1% target would otherwise reject on a single comment.
            ceiling = max(float(act["fpr"]), math.ceil(p.target_fpr * n_ham - 1e-9) / n_ham)
            ok = float(cand["fpr"]) <= ceiling + _EPSILON
            checks.append(
                {
                    "set": name,
                    "metric": "fpr",
                    "candidate": cand["fpr"],
                    "active": act["fpr"],
                    "limit": ceiling,
                    "passed": ok,
                }
            )
            if not ok:
                reasons.append(
                    f"{name}: ham false-positive rate {cand['fpr']:.4f} is above "
                    f"max(active {act['fpr']:.4f}, target {p.target_fpr} in whole comments: "
                    f"{ceiling:.4f})"
                )
    if not judged:
        return GateDecision(False, [*reasons, "no data set large enough to judge on"], checks)
    promote = all(check["passed"] for check in checks)
    if promote:
        reasons.append("no worse than the active model on every judged set")
    return GateDecision(promote, reasons, checks)
