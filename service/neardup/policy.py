"""What a near-duplicate match does to a verdict: the index's override policy."""

from __future__ import annotations

import math
from typing import Any

from classifier import Decision, Thresholds
from service.neardup.store import Match


def overrule(
    match: Match, score: float, decision: Decision, thresholds: Thresholds
) -> tuple[float, Decision, dict[str, Any]]:
    """The verdict a near-duplicate match gives: (score, decision, its reason as stored).

    A spam match makes the comment `match.spam_decision` with a score of at least that
    decision's threshold: `spam` (a model already at `discard` keeps `discard`, its score
    unchanged) or `discard`. A ham match makes it `ham` with a score just under the unsure
    threshold at most. Either way `thresholds.decide(score)` still gives the decision, so the
    score and the decision never disagree.
    """
    if match.label == "spam":
        if match.spam_decision == "discard":
            new_score = max(score, thresholds.discard)
            new_decision = Decision.DISCARD
        else:
            new_score = max(score, thresholds.spam)
            new_decision = Decision.DISCARD if decision == Decision.DISCARD else Decision.SPAM
        weight = 1.0  # the match decides; the weight only gives its direction, as a rule's does
    else:
        new_score = min(score, max(0.0, math.nextafter(thresholds.unsure, 0.0)))
        new_decision = Decision.HAM
        weight = -1.0
    percent = f"{match.similarity:.0%}"
    reason = {
        "feature": f"near_duplicate:{match.label}",
        "description": (
            f"a near-duplicate ({percent} similar) of comment {match.comment_id}, "
            f"labelled {match.label}"
        ),
        "weight": weight,
        "kind": "near_duplicate",
        "comment_id": match.comment_id,
        "label": match.label,
        "similarity": match.similarity,
    }
    return new_score, new_decision, reason
