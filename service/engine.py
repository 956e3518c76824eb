"""The scoring engine shared by the API and the worker: a comment row in, a stored verdict out."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from classifier import Comment, LoadedModel, Thresholds, Verdict, load_model
from classifier.artifact import ACTIVE_FILE, active_version
from classifier.registry import last_activated
from service import tables
from service.callbacks import Claim
from service.db import SessionFactory
from service.neardup.policy import overrule
from service.neardup.signing import Signature
from service.neardup.store import Match, NearDuplicateMemory
from service.settings import Settings
from service.site_thresholds import SiteThresholds
from service.writes import insert_all, insert_row, table_of, transient

if TYPE_CHECKING:
    from classifier.adapter import SiteAdapter
    from service.learning import AdapterCache

log = logging.getLogger(__name__)


class ModelNotLoaded(RuntimeError):
    """No model could be loaded (none trained, or the artifact failed verification)."""


def settle_heap(replaced: bool) -> None:
    """Move what is alive now, a freshly loaded model above all, out of the garbage
    collector's way.

    A model is some hundred thousand long-lived Python objects, and each full collection walks
    every object in the process: about 75 ms here, holding the GIL, so a stall of every request
    the process is serving, several times a minute under load. Frozen (`gc.freeze`), they are
    skipped. After a swap the old model's objects are unfrozen and collected once (what a
    reload costs), so reloads do not pile up cyclic garbage that would never be collected,
    and the memory it freed is given back to the system.
    """
    if not gc.isenabled():
        return
    if replaced:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    if replaced:
        _return_free_memory()


def _return_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc's malloc_trim).

    The old model's many small allocations are freed in the middle of the heap, where malloc
    keeps them: without this, each reload left a process about 17 MB larger (a model's worth),
    measured on this service's model.
    """
    # The process's own symbols, the C library's among them; no malloc_trim: not glibc.
    with contextlib.suppress(AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


class ModelHolder:
    """The model in use, behind one object so that it can be swapped while serving.

    `reload_if_changed` looks at `models_dir/ACTIVE` at most once per `check_seconds` and
    loads the version it names if that differs from the current one; a version that fails to
    load is logged and the current model stays.
    """

    def __init__(
        self,
        models_dir: Path,
        thresholds: dict[str, float] | None = None,
        check_seconds: float = 1.0,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.threshold_overrides = dict(thresholds or {})
        self.check_seconds = check_seconds
        self._model: LoadedModel | None = None
        self._lock = threading.Lock()
        self._next_check = 0.0
        self._active_stamp: tuple[float, int] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelHolder:
        overrides = {
            name: value
            for name, value in (
                ("unsure", settings.threshold_unsure),
                ("spam", settings.threshold_spam),
                ("discard", settings.threshold_discard),
            )
            if value is not None
        }
        return cls(settings.models_dir, overrides, settings.model_reload_check_seconds)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def current(self) -> LoadedModel:
        model = self._model
        if model is None:
            raise ModelNotLoaded(f"no model loaded from {self.models_dir}")
        return model

    def load(self, version: str | None = None) -> LoadedModel:
        """Load `version` (the active one by default) and make it current; raises ArtifactError."""
        model = load_model(self.models_dir, version)
        if self.threshold_overrides:
            merged = {**model.thresholds.to_dict(), **self.threshold_overrides}
            model.thresholds = Thresholds.from_dict(merged)
        with self._lock:
            replaced = self._model is not None
            self._active_stamp = self._stamp()
            self._model = model
        settle_heap(replaced)
        log.info("model %s loaded, thresholds %s", model.version, model.thresholds.to_dict())
        return model

    def reload_if_changed(self) -> bool:
        """Swap in the version `ACTIVE` names if it changed; True if a new model was loaded."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.check_seconds
        stamp = self._stamp()
        if stamp == self._active_stamp and self._model is not None:
            return False
        version = active_version(self.models_dir)
        if version is None or (self._model is not None and version == self._model.version):
            self._active_stamp = stamp
            return False
        try:
            self.load(version)
        except Exception:
            log.exception("model %s failed to load; keeping the current model", version)
            self._active_stamp = stamp
            return self._load_last_activated()
        return True

    def _load_last_activated(self) -> bool:
        """After ACTIVE named a model that fails to load: serve the version the registry last
        activated (verified), if this process holds another one (it missed that activation
        while idle); True if it was loaded."""
        stamp = self._active_stamp
        fallback = last_activated(self.models_dir)
        if fallback is None or (self._model is not None and self._model.version == fallback):
            return False
        try:
            self.load(fallback)
        except Exception:
            log.exception("the last activated model %s failed to load too", fallback)
            return False
        finally:
            self._active_stamp = stamp  # still watching ACTIVE for the next change
        return True

    def _stamp(self) -> tuple[float, int] | None:
        try:
            info = (self.models_dir / ACTIVE_FILE).stat()
        except OSError:
            return None
        return (info.st_mtime, info.st_ino)


def to_record(row: tables.Comment) -> Comment:
    """The classifier's view of a stored comment."""
    return Comment(
        content=row.content,
        author=row.author,
        author_email=row.author_email,
        author_url=row.author_url,
        user_ip=row.user_ip,
        user_agent=row.user_agent,
        referrer=row.referrer,
        permalink=row.permalink,
        comment_type=row.comment_type,
        created_at=row.created_at,
        blog=row.blog,
        blog_lang=row.blog_lang,
        user_role=row.user_role,
        honeypot=row.honeypot,
        extra=dict(row.extra or {}),
        site=str(row.site_id) if row.site_id is not None else "",
    )


def compute_verdict(
    comment: tables.Comment,
    model: LoadedModel,
    memory: NearDuplicateMemory | None = None,
    account_id: int | None = None,
    thresholds: Thresholds | None = None,
    adapter: SiteAdapter | None = None,
) -> tables.Verdict:
    """Score a comment (its `id` set) into a verdict row, touching no database.

    `thresholds` are the comment's site's (see `site_thresholds`; None: the model's), and
    `adapter` what its site's labels taught (service/learning.py; None: the model alone). With
    a `memory` (and the comment's `account_id`), a near-duplicate of a comment labelled in that
    account takes the label's side, its reason first (see `service.neardup.policy.overrule`).
    """
    return compute_verdicts(
        [comment], model, memory, [account_id], [thresholds], adapters=[adapter]
    )[0]


@dataclass(frozen=True, slots=True)
class Scored:
    """What the model (and the memory's signer) made of a batch of comments: the CPU part of
    `compute_verdicts`, done ahead (on the API's event loop: service/batching.py)."""

    verdicts: list[Verdict]
    signatures: list[Signature | None] | None  # None: no memory to sign for
    seconds: float


def score_ahead(
    comments: Sequence[tables.Comment],
    model: LoadedModel,
    memory: NearDuplicateMemory | None,
    adapters: Sequence[SiteAdapter | None] | None = None,
) -> Scored:
    """Score comments (each with its site's adapter, if any) and sign them for the memory,
    touching no database and no network."""
    started = time.perf_counter()
    verdicts = model.score_many([to_record(comment) for comment in comments], adapters=adapters)
    signatures = None if memory is None else [memory.signer.sign(c.content) for c in comments]
    return Scored(verdicts, signatures, time.perf_counter() - started)


def compute_verdicts(
    comments: Sequence[tables.Comment],
    model: LoadedModel,
    memory: NearDuplicateMemory | None,
    account_ids: Sequence[int | None],
    thresholds: Sequence[Thresholds | None],
    ahead: Scored | None = None,
    adapters: Sequence[SiteAdapter | None] | None = None,
) -> list[tables.Verdict]:
    """`compute_verdict` for several comments at once: one call into the model, one round
    trip to the memory. Each verdict's `duration_ms` is the time the batch took. With
    `ahead` (`score_ahead` of these comments by this model), the scores are not computed
    again."""
    if ahead is None:
        ahead = score_ahead(comments, model, memory, adapters)
    started = time.perf_counter()  # the time scoring took is ahead.seconds
    scored = ahead.verdicts
    matches = _recall(memory, account_ids, comments, ahead.signatures)
    duration_ms = round((time.perf_counter() - started + ahead.seconds) * 1000, 3)
    scored_at = tables.utcnow()
    verdicts = []
    for comment, verdict, match, own in zip(comments, scored, matches, thresholds, strict=True):
        limits = own or model.thresholds
        score = verdict.score
        decision = limits.decide(score)
        reasons = [reason.to_dict() for reason in verdict.reasons]
        if match is not None:
            score, decision, reason = overrule(match, score, decision, limits)
            reasons = [reason, *reasons]
        verdicts.append(
            transient(
                tables.Verdict,
                comment_id=comment.id,
                score=score,
                decision=decision.value,
                reasons=reasons,
                model_version=verdict.model_version,
                duration_ms=duration_ms,
                scored_at=scored_at,
            )
        )
    return verdicts


def _recall(
    memory: NearDuplicateMemory | None,
    account_ids: Sequence[int | None],
    comments: Sequence[tables.Comment],
    signatures: Sequence[Signature | None] | None,
) -> list[Match | None]:
    wanted = [
        (i, account_id, comment.content)
        for i, (account_id, comment) in enumerate(zip(account_ids, comments, strict=True))
        if account_id is not None
    ]
    found: list[Match | None] = [None] * len(comments)
    if memory is None or not wanted:
        return found
    signed = None if signatures is None else [signatures[i] for i, _, _ in wanted]
    try:
        matches = memory.match_many([(a, text) for _, a, text in wanted], signed)
    except Exception:  # the memory helps the model; it must never stop a comment being scored
        log.exception("near-duplicate memory failed; scoring with the model alone")
        return found
    for (i, _, _), match in zip(wanted, matches, strict=True):
        found[i] = match
    return found


def attach(session: Session, comment: tables.Comment, verdict: tables.Verdict) -> None:
    """Add a verdict to the session and mark its comment scored (the caller commits)."""
    session.add(verdict)
    comment.status = tables.CommentStatus.SCORED
    comment.verdict = verdict


def score_into(
    session: Session,
    comment: tables.Comment,
    model: LoadedModel,
    memory: NearDuplicateMemory | None = None,
    account_id: int | None = None,
    thresholds: Thresholds | None = None,
    adapter: SiteAdapter | None = None,
) -> tables.Verdict:
    """Score a comment and add its verdict to the session (the caller commits)."""
    verdict = compute_verdict(comment, model, memory, account_id, thresholds, adapter)
    attach(session, comment, verdict)
    return verdict


@dataclass(frozen=True, slots=True)
class ScoreOutcome:
    """What scoring a stored comment did, and which callback delivery (if any) is due.

    `claim` is the delivery's first attempt when it was claimed in the scoring transaction.
    """

    found: bool
    scored_now: bool
    delivery_id: uuid.UUID | None
    claim: Claim | None = None


ClaimFirst = Callable[[tables.Comment, tables.Site, tables.CallbackDelivery], Claim]


def score_stored_comment(
    sessions: SessionFactory,
    comment_id: uuid.UUID,
    model: LoadedModel,
    claim_first: ClaimFirst | None = None,
    memory: NearDuplicateMemory | None = None,
    adapters: AdapterCache | None = None,
) -> ScoreOutcome:
    """Score a stored comment once, and make sure its callback delivery exists.

    Safe to run any number of times, concurrently too: the verdict is unique per comment, so a
    second run finds it (or loses the insert race) and only ensures the delivery is scheduled.
    The verdict and the delivery are committed together, so neither exists without the other.
    With `claim_first`, a new delivery is stored with its first attempt already claimed, which
    spares the attempt a transaction of its own. With `memory`, near-duplicates of labelled
    comments take their label (see `compute_verdict`).
    """
    with sessions() as session:
        comment = session.execute(
            select(tables.Comment)
            .options(joinedload(tables.Comment.verdict), joinedload(tables.Comment.site))
            .where(tables.Comment.id == comment_id)
        ).scalar_one_or_none()
        if comment is None:
            log.warning("comment %s not found; nothing to score", comment_id)
            return ScoreOutcome(found=False, scored_now=False, delivery_id=None)
        if comment.verdict is None:
            site = comment.site
            learned = adapters.get(session, site.id) if adapters is not None else None
            thresholds = SiteThresholds.of(site, learned.thresholds if learned else None).effective(
                model.thresholds
            )
            verdict = compute_verdict(
                comment,
                model,
                memory,
                site.account_id,
                thresholds,
                learned.adapter if learned else None,
            )
            delivery = _new_delivery(comment)
            claim = None
            if delivery is not None and claim_first is not None:
                # The callback shows the comment as it is once this transaction commits.
                set_committed_value(comment, "status", tables.CommentStatus.SCORED)
                set_committed_value(comment, "verdict", verdict)
                claim = claim_first(comment, comment.site, delivery)
            try:
                _store_verdict(session, verdict, delivery)
            except IntegrityError:
                session.rollback()  # another run scored it first: fall through to the delivery
            else:
                delivery_id = delivery.id if delivery is not None else None
                return ScoreOutcome(True, True, delivery_id, claim)
        return ScoreOutcome(True, False, _ensure_delivery(session, comment_id))


def score_stored_comments(
    sessions: SessionFactory,
    comment_ids: Sequence[uuid.UUID],
    model: LoadedModel,
    claim_first: ClaimFirst | None = None,
    memory: NearDuplicateMemory | None = None,
    adapters: AdapterCache | None = None,
) -> list[ScoreOutcome]:
    """`score_stored_comment` for comments queued together: one read, one call into the
    model and the memory, one transaction for all the verdicts and deliveries.

    If any of them was scored meanwhile (a second run of the same message, or the sweep), the
    batch's transaction fails on the unique verdict and each comment is scored on its own.
    """

    def one_by_one() -> list[ScoreOutcome]:
        return [
            score_stored_comment(sessions, i, model, claim_first, memory, adapters)
            for i in comment_ids
        ]

    if len(comment_ids) == 1:
        return one_by_one()
    with sessions() as session:
        rows = (
            session.execute(
                select(tables.Comment)
                .options(joinedload(tables.Comment.verdict), joinedload(tables.Comment.site))
                .where(tables.Comment.id.in_(comment_ids))
            )
            .scalars()
            .all()
        )
        found = {row.id: row for row in rows}
        todo = [
            found[i] for i in dict.fromkeys(comment_ids) if i in found and found[i].verdict is None
        ]
        if len(todo) < len(comment_ids):  # missing, repeated or scored already: one by one
            session.rollback()
            return one_by_one()
        learned = [
            adapters.get(session, row.site_id) if adapters is not None else None for row in todo
        ]
        limits = [
            SiteThresholds.of(row.site, own.thresholds if own else None).effective(model.thresholds)
            for row, own in zip(todo, learned, strict=True)
        ]
        verdicts = compute_verdicts(
            todo,
            model,
            memory,
            [row.site.account_id for row in todo],
            limits,
            adapters=[own.adapter if own else None for own in learned],
        )
        deliveries = [_new_delivery(row) for row in todo]
        claims: list[Claim | None] = []
        for row, verdict, delivery in zip(todo, verdicts, deliveries, strict=True):
            claim = None
            if delivery is not None and claim_first is not None:
                set_committed_value(row, "status", tables.CommentStatus.SCORED)
                set_committed_value(row, "verdict", verdict)
                claim = claim_first(row, row.site, delivery)
            claims.append(claim)
        comments = table_of(tables.Comment)
        try:
            insert_all(session, verdicts)
            session.execute(
                update(comments)
                .where(comments.c.id.in_([row.id for row in todo]))
                .values(status=tables.CommentStatus.SCORED)
            )
            insert_all(session, [delivery for delivery in deliveries if delivery is not None])
            session.commit()
        except IntegrityError:
            session.rollback()
            return one_by_one()
    return [
        ScoreOutcome(True, True, delivery.id if delivery is not None else None, claim)
        for delivery, claim in zip(deliveries, claims, strict=True)
    ]


def _store_verdict(
    session: Session, verdict: tables.Verdict, delivery: tables.CallbackDelivery | None
) -> None:
    # Core statements, not the unit of work: this runs once per webhook comment.
    insert_row(session, verdict)
    comments = table_of(tables.Comment)
    session.execute(
        update(comments)
        .where(comments.c.id == verdict.comment_id)
        .values(status=tables.CommentStatus.SCORED)
    )
    if delivery is not None:
        insert_row(session, delivery)
    session.commit()


def _new_delivery(comment: tables.Comment) -> tables.CallbackDelivery | None:
    if not comment.callback_url:
        return None
    return tables.CallbackDelivery(
        id=uuid.uuid4(), comment_id=comment.id, event="verdict", url=comment.callback_url
    )


def _ensure_delivery(session: Session, comment_id: uuid.UUID) -> uuid.UUID | None:
    """The pending delivery of a scored comment, created if it is missing."""
    delivery = session.execute(
        select(tables.CallbackDelivery).where(
            tables.CallbackDelivery.comment_id == comment_id,
            tables.CallbackDelivery.event == "verdict",
        )
    ).scalar_one_or_none()
    if delivery is None:
        comment = session.get(tables.Comment, comment_id)
        new = _new_delivery(comment) if comment is not None else None
        if new is None:
            session.commit()
            return None
        session.add(new)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return _ensure_delivery(session, comment_id)
        return new.id
    session.commit()
    return delivery.id if delivery.status == tables.DeliveryStatus.PENDING else None
