"""Per-site decision thresholds: a site may set its own unsure, spam and discard cut-offs.

A site's value that is unset (null) is the model's (itself possibly overridden for the whole
deployment by `COMMENTGUARD_THRESHOLD_*`). An admin's values are checked against the model in
use when they are set (unsure ≤ spam ≤ discard once merged); a model activated later may
disagree with them, so scoring merges leniently: the site's own values win and the model's
are clamped around them, which always gives valid thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from classifier import Thresholds
from service import tables

NAMES = ("unsure", "spam", "discard")


class InvalidThresholds(ValueError):
    """Thresholds out of order once merged; `details` are field errors as the API reports them."""

    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True, slots=True)
class SiteThresholds:
    """A site's own thresholds; None is "the model's"."""

    unsure: float | None = None
    spam: float | None = None
    discard: float | None = None
    # The site's key in the model (`Comment.site`: its database id): a model retrained on the
    # site's labels may carry thresholds learned for it, which stand in for the model's.
    key: str = field(default="", compare=False)
    # Thresholds the site's adapter learned from its labels (service/learning/adapters.py): they
    # stand in for the model's, and the site's own values still win over them.
    learned: Thresholds | None = field(default=None, compare=False)

    @classmethod
    def of(cls, site: tables.Site, learned: Thresholds | None = None) -> SiteThresholds:
        key = str(site.id) if site.id is not None else ""
        return cls(site.threshold_unsure, site.threshold_spam, site.threshold_discard, key, learned)

    @property
    def is_default(self) -> bool:
        return self.unsure is None and self.spam is None and self.discard is None

    def values(self) -> tuple[float | None, float | None, float | None]:
        return (self.unsure, self.spam, self.discard)

    def to_dict(self) -> dict[str, float | None]:
        return dict(zip(NAMES, self.values(), strict=True))

    def strict(self, model: Thresholds) -> Thresholds:
        """The merged thresholds, or InvalidThresholds naming the fields out of order."""
        own = self.values()
        model = model.for_site(self.key)
        merged = [
            value if value is not None else default
            for value, default in zip(own, _model_values(model), strict=True)
        ]
        details = []
        for i in range(2):
            if merged[i] <= merged[i + 1]:
                continue
            for j, k, relation in ((i, i + 1, "at most"), (i + 1, i, "at least")):
                if own[j] is None:
                    continue  # only the model gives it: nothing the admin can fix there
                whose = "" if own[k] is not None else ", the model's"
                details.append(
                    {
                        "loc": ["body", NAMES[j]],
                        "msg": f"must be {relation} {NAMES[k]} ({merged[k]:g}{whose})",
                        "type": "threshold_order",
                    }
                )
        if details:
            raise InvalidThresholds(
                "thresholds must satisfy unsure ≤ spam ≤ discard once merged with the model's "
                f"({', '.join(f'{n} {v:g}' for n, v in zip(NAMES, merged, strict=True))})",
                details,
            )
        return Thresholds(merged[0], merged[1], merged[2])

    def effective(self, model: Thresholds) -> Thresholds:
        """The thresholds to decide with: the site's values, the model's (those it learned for
        this site, if any) clamped around them."""
        model = self.learned if self.learned is not None else model.for_site(self.key)
        if self.is_default:
            return model
        own = self.values()
        merged: list[float] = []
        for i, (value, default) in enumerate(zip(own, _model_values(model), strict=True)):
            if value is not None:
                merged.append(value)
                continue
            below = [v for v in own[:i] if v is not None]
            above = [v for v in own[i + 1 :] if v is not None]
            low = max(below, default=0.0)
            high = min(above, default=1.0)
            merged.append(min(max(default, low), high))
        # The site's own values are in order among themselves (checked when set), so this holds.
        return Thresholds(merged[0], merged[1], merged[2])


def _model_values(model: Thresholds) -> tuple[float, float, float]:
    return (model.unsure, model.spam, model.discard)


def set_site_thresholds(
    site: tables.Site, values: SiteThresholds, model: Thresholds | None
) -> Thresholds | None:
    """Store a site's thresholds (the caller commits); InvalidThresholds if out of order.

    Checked against `model` (the model in use) when there is one; without a model only the
    site's own values are checked against each other. Returns the merged thresholds, if known.
    """
    merged = None
    if model is not None:
        merged = values.strict(model)
    else:
        values.strict(Thresholds(*(_own_bounds(values))))
    site.threshold_unsure, site.threshold_spam, site.threshold_discard = values.values()
    return merged


def _own_bounds(values: SiteThresholds) -> tuple[float, float, float]:
    """Stand-in model values that never disagree with a site's own (for a check without one)."""
    own = values.values()
    out = []
    for i, value in enumerate(own):
        if value is not None:
            out.append(value)
        else:
            below = [v for v in own[:i] if v is not None]
            out.append(max(below, default=0.0))
    return (out[0], out[1], out[2])
