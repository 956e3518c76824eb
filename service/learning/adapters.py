"""Per-site learning in the service: a site's labels fit that site's adapter, within seconds.

Every applied label queues `adapt_site(site_id)` (service/worker/tasks.py) through the label hook
below. The task reads the site's labels (the newest label of each comment, test traffic
excluded), has the active model analyse them, and fits the site's adapter and, once it has
enough labels, its own thresholds (training/site_learning.py). The result replaces the site's
`site_adapters` row, its `version` one higher. Scoring processes find it through
`AdapterCache`, which reads a site's version at most every `ttl_seconds`.

What one site teaches reaches that site only: the adapter is keyed by the site, fitted on that
site's labels alone, and the shared model is never trained on any site's labels
(docs/learning.md has the threat model).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from classifier import LoadedModel, Thresholds
from classifier.adapter import AdapterParams, SiteAdapter, rows
from service import tables
from service.moderation.labels import newest_labels
from service.scoring.verdicts import to_record
from service.settings import Settings
from training.site_learning import learn_site

if TYPE_CHECKING:
    from service.moderation.labels import AppliedLabel

log = logging.getLogger("service.learning")  # the name log readers know


@dataclass(frozen=True, slots=True)
class Learned:
    """What a site has learned: its adapter and, once it has labels enough, its thresholds."""

    version: int
    adapter: SiteAdapter
    thresholds: Thresholds | None


def published_unlabelled(session: Session, site_id: int) -> int:
    """The site's comments published (decided `ham`) that nobody labelled, test traffic
    excluded: with its ham labels, its ham as far as anyone knows it."""
    labelled = select(tables.Label.comment_id)
    return int(
        session.execute(
            select(func.count(tables.Comment.id))
            .join(tables.Verdict, tables.Verdict.comment_id == tables.Comment.id)
            .where(
                tables.Comment.site_id == site_id,
                tables.Comment.is_test.is_(False),
                tables.Verdict.decision == "ham",
                tables.Comment.id.not_in(labelled),
            )
        ).scalar_one()
    )


def fit_site(
    session: Session,
    model: LoadedModel,
    site_id: int,
    params: AdapterParams | None = None,
    min_per_class: int = 20,
) -> tables.SiteAdapter | None:
    """Fit the site's adapter on its labels and store it (committed). Returns the row, or
    None when there was nothing new to learn (the same labels and the same shared model as
    the stored adapter): safe to run twice."""
    p = params or AdapterParams()
    found = session.execute(newest_labels(site_id)).all()
    found = found[-p.max_labels :]
    newest_id = max((label.id for label, _ in found), default=0)
    fingerprint = f"{len(found)}:{newest_id}"
    stored = session.get(tables.SiteAdapter, site_id)
    if (
        stored is not None
        and stored.labels_seen == fingerprint
        and stored.base_version == model.version
    ):
        return None
    y = np.array([1 if label.label == tables.LabelValue.SPAM else 0 for label, _ in found])
    prepared, parts, log_odds = model.analyse([to_record(comment) for _, comment in found])
    learned = learn_site(
        rows(prepared, parts, log_odds),
        y,
        published=published_unlabelled(session, site_id) if len(found) else 0,
        params=p,
        min_per_class=min_per_class,
        base_version=model.version,
        previous=(
            SiteAdapter.from_bytes(stored.payload)
            if stored is not None and stored.base_version == model.version
            else None
        ),
    )
    values = {
        "base_version": model.version,
        "payload": learned.adapter.to_bytes(),
        "n_spam": learned.adapter.n_spam,
        "n_ham": learned.adapter.n_ham,
        "labels_seen": fingerprint,
        "thresholds": learned.thresholds.to_dict() if learned.thresholds else None,
        "fitted_at": tables.utcnow(),
    }
    if stored is None:
        stored = tables.SiteAdapter(site_id=site_id, version=1, **values)
        session.add(stored)
    else:
        for name, value in values.items():
            setattr(stored, name, value)
        stored.version = stored.version + 1
    try:
        session.commit()
    except IntegrityError:  # another worker stored the site's first adapter meanwhile
        session.rollback()
        return None
    log.info(
        "site %s adapter v%s: %d spam, %d ham labels, thresholds %s",
        site_id, stored.version, stored.n_spam, stored.n_ham, values["thresholds"],
    )  # fmt: skip
    return stored


def adapter_params(settings: Settings) -> AdapterParams:
    return AdapterParams(
        l2=settings.adapt_l2,
        prior=settings.adapt_prior,
        prior_labels=settings.adapt_prior_labels,
        prior_min=settings.adapt_prior_min,
    )


def load_learned(row: tables.SiteAdapter) -> Learned:
    thresholds = Thresholds.from_dict(row.thresholds) if row.thresholds else None
    return Learned(row.version, SiteAdapter.from_bytes(row.payload), thresholds)


class AdapterCache:
    """Sites' learned adapters in this process: a site's stored version is read at most every
    `ttl_seconds`, its adapter only when that version changed."""

    def __init__(self, ttl_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: dict[int, tuple[float, Learned | None]] = {}

    def peek(self, site_id: int) -> tuple[bool, Learned | None]:
        """(fresh, learned) without touching the database."""
        entry = self._entries.get(site_id)
        if entry is None:
            return False, None
        return entry[0] > self._clock(), entry[1]

    def get(self, session: Session, site_id: int) -> Learned | None:
        fresh, learned = self.peek(site_id)
        if fresh:
            return learned
        version = session.execute(
            select(tables.SiteAdapter.version).where(tables.SiteAdapter.site_id == site_id)
        ).scalar_one_or_none()
        if version is None:
            learned = None
        elif learned is None or learned.version != version:
            row = session.get(tables.SiteAdapter, site_id, populate_existing=True)
            learned = load_learned(row) if row is not None else None
        if len(self._entries) >= 100_000:
            self._entries.clear()
        self._entries[site_id] = (self._clock() + self.ttl_seconds, learned)
        return learned

    def forget(self, site_id: int) -> None:
        self._entries.pop(site_id, None)


def adapt_hook(queue_adapt: Callable[[int], object]) -> Callable[[Sequence[AppliedLabel]], None]:
    """A label hook: each site that got a label has its adapter refitted (queued)."""

    def hook(applied: Sequence[AppliedLabel]) -> None:
        for site_id in sorted({label.site_id for label in applied}):
            queue_adapt(site_id)

    return hook
