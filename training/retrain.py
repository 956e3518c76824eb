"""Retraining: the bundled corpora plus the moderators' and platforms' labels make a candidate,
the gate (training/gate.py) decides whether it replaces the active model, and every run is
recorded.

`retrain()` is a plain function (the Celery task, the command line and the replay call it).
For a given seed and the same data it makes the same split, the same model and the same
decision.

Data:
* corpora: the bundled examples minus a fixed validation split, chosen by a hash of each
  comment's normalised text (so it is the same on every run and every machine);
* labels: the newest label of each comment (the caller passes them so), minus a time-based
  holdout of the newest `holdout_share` of them, which the gate measures both models on.
  Labels weigh `label_weight` times a corpus row: they are this deployment's own traffic.

Fit (`fit_candidate`): the Platt sigmoid is fitted on a stratified `calibration_share` of the
training rows, scored by a logistic regression fitted on the rest; the model saved is refitted
on every training row with that sigmoid. The thresholds are then chosen on the corpus
validation split, as for the default model.

Per-site learning: a site with at least `min_site_labels_per_class` spam AND ham labels in the
training labels gets site-specific copies of the word features (classifier/features.py), so
its moderators' labels count most for it while every other site keeps the shared model. The
default, 20 per class, is Rspamd's and SpamAssassin's minimum of 200 learned messages per class
before a Bayes classifier is used, scaled down to comment traffic: below it a site's copies
would learn its few examples by heart.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from classifier.artifact import (
    ArtifactError,
    active_version,
    load_model,
    save_model,
)
from classifier.features import to_frame
from classifier.pipeline import (
    DEFAULT_PARAMS,
    build_classifier,
    build_features,
    calibrated_pipeline,
    with_estimator,
)
from classifier.record import Comment
from classifier.registry import Status, activate, mark
from classifier.scoring import LoadedModel, Thresholds
from training.corpora import GATE_VALIDATION_SHARE, Example, split_corpus
from training.gate import GateDecision, GateParams, decide
from training.metrics import classification_metrics
from training.runs import new_run_id, record_done
from training.site_thresholds import learn_all
from training.train import choose_thresholds, domains_of, fit_unseen

log = logging.getLogger(__name__)

Report = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class LabelRecord:
    """One labelled comment of this deployment: its fields (with `comment.site`, the site
    key), 1 = spam / 0 = ham, and when the label was given."""

    comment: Comment
    label: int
    created_at: datetime
    comment_id: str = ""

    @property
    def site(self) -> str:
        return self.comment.site


@dataclass(frozen=True, slots=True)
class RetrainParams:
    """Defaults are documented in the module docstring and training/gate.py."""

    seed: int = 0
    # Of the corpora, by hash of the normalised text; the default model leaves out the same.
    validation_share: float = GATE_VALIDATION_SHARE
    holdout_share: float = 0.2  # newest labels held out for the gate
    min_holdout_labels: int = 10  # fewer labels than this: no holdout, all are trained on
    label_weight: float = 10.0  # service/settings.py says why
    # Of the training rows (stratified, seeded), held out to fit the Platt sigmoid on; as one
    # of `build_pipeline`'s three calibration folds.
    calibration_share: float = 1 / 3
    min_site_labels_per_class: int = 20
    # Per-site thresholds (training/site_thresholds.py): a site with this many spam AND ham
    # labels among the scores its thresholds are chosen on gets its own; 0 turns them off.
    min_site_threshold_labels: int = 20
    # Whether the labels are trained on at all. Off by default: the shared model serves every
    # site, and one account's labels must not move another's verdicts; each site learns from
    # its own labels through its adapter (training/site_learning.py). Off, every label is
    # unseen, so all of them are the gate's label set.
    train_on_labels: bool = False
    model: dict[str, Any] = field(default_factory=dict)  # classifier.pipeline parameters
    gate: GateParams = field(default_factory=GateParams)
    activate: bool = True  # activate a promoted candidate


@dataclass(frozen=True, slots=True)
class RetrainResult:
    run_id: str
    version: str
    promoted: bool
    activated: bool
    previous_active: str | None
    decision: GateDecision
    record: dict[str, Any]
    seconds: float


def split_labels(
    labels: Sequence[LabelRecord], share: float, minimum: int
) -> tuple[list[LabelRecord], list[LabelRecord]]:
    """(training, holdout): the holdout is the newest `share` of the labels."""
    ordered = sorted(labels, key=lambda r: (r.created_at, r.comment_id))
    if len(ordered) < minimum:
        return ordered, []
    k = max(1, math.floor(len(ordered) * share))
    return ordered[:-k], ordered[-k:]


def learned_sites(labels: Sequence[LabelRecord], minimum: int) -> list[str]:
    """Sites with at least `minimum` spam and `minimum` ham labels, sorted."""
    counts: Counter[tuple[str, int]] = Counter((r.site, r.label) for r in labels if r.site)
    sites = {site for site, _ in counts}
    return sorted(s for s in sites if counts[(s, 0)] >= minimum and counts[(s, 1)] >= minimum)


def evaluate_model(
    model: LoadedModel, comments: Sequence[Comment], labels: Sequence[int]
) -> dict[str, Any]:
    """The metrics of a model at its own `spam` threshold (the decision it takes)."""
    scores = model.probabilities(comments) if comments else np.zeros(0)
    return _metrics_at(labels, scores, model.thresholds.spam)


def _metrics_at(labels: Sequence[int], scores: np.ndarray, threshold: float) -> dict[str, Any]:
    if not len(labels):
        return {"n": 0, "spam": 0, "precision": None, "recall": None, "f1": None, "mcc": None,
                "fpr": None, "roc_auc": None}  # fmt: skip
    return classification_metrics(list(labels), scores, threshold)


def fit_candidate(
    frame: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    model_params: dict[str, Any],
    p: RetrainParams,
) -> Pipeline:
    """The candidate pipeline (see `fit_candidate_scored`)."""
    return fit_candidate_scored(frame, y, weights, model_params, p)[0]


def fit_candidate_scored(
    frame: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    model_params: dict[str, Any],
    p: RetrainParams,
) -> tuple[Pipeline, np.ndarray, np.ndarray]:
    """The candidate pipeline, the calibration slice's rows and their scores by the model
    fitted without them. The pipeline: features fitted once on every training row; a logistic
    regression fitted on all but a stratified `calibration_share` of them, whose scores on that
    held-out slice fit the Platt sigmoid; then the logistic regression refitted on every row,
    with that sigmoid.

    This is `build_pipeline`'s calibration (`ensemble=False`: a sigmoid from held-out scores,
    paired with the model refitted on everything) with one held-out fold instead of three: two
    fits instead of four, and the features computed once rather than for every fit, which is
    what keeps retraining on 50,000 labels within its time budget (docs/benchmarks.md,
    "Retraining"). The slice comes from the training rows, never from the corpus validation
    split or the label holdout: a sigmoid fitted on the sets the gate judges could flip a
    candidate's scores (a negative slope) and pass a model trained on flipped labels.
    """
    features = build_features(model_params)
    X = features.fit_transform(frame)
    fit_rows, calibration_rows = train_test_split(
        np.arange(len(y)), test_size=p.calibration_share, stratify=y, random_state=p.seed
    )
    held_out = build_classifier(model_params).fit(
        X[fit_rows], y[fit_rows], sample_weight=weights[fit_rows]
    )
    pipeline = calibrated_pipeline(
        features,
        held_out,
        X[calibration_rows],
        y[calibration_rows],
        sample_weight=weights[calibration_rows],
    )
    # The calibration slice's scores by the model fitted without it: what per-site thresholds
    # are chosen on (training/site_thresholds.py).
    unseen = pipeline.named_steps["classifier"].predict_proba(X[calibration_rows])[:, 1]
    final = build_classifier(model_params).fit(X, y, sample_weight=weights)
    return with_estimator(pipeline, final), np.asarray(calibration_rows), unseen


def retrain(
    corpus: Sequence[Example],
    labels: Sequence[LabelRecord],
    models_dir: Path,
    *,
    active: str | None = None,
    params: RetrainParams | None = None,
    now: datetime | None = None,
    run_id: str | None = None,
    data: dict[str, Any] | None = None,
    report: Report | None = None,
    published: Mapping[str, int] | None = None,
) -> RetrainResult:
    """Train a candidate, gate it against the active model, save and record it, and activate
    it if it passed. `active` defaults to the version `models_dir/ACTIVE` names.

    `published`: per site key, its published comments that nobody labelled (the denominator of
    its learned thresholds' false-positive rates; training/site_thresholds.py)."""
    started = time.perf_counter()
    p = params or RetrainParams()
    now = now or datetime.now(UTC)
    run_id = run_id or new_run_id(now)
    step = report or (lambda _m, _f: None)
    models_dir = Path(models_dir)
    active = active or active_version(models_dir)

    corpus_train, corpus_val = split_corpus(corpus, p.validation_share)
    if p.train_on_labels:
        label_train, holdout = split_labels(labels, p.holdout_share, p.min_holdout_labels)
    else:
        label_train, holdout = [], sorted(labels, key=lambda r: (r.created_at, r.comment_id))
    sites = learned_sites(label_train, p.min_site_labels_per_class)
    train_comments = [e.comment for e in corpus_train] + [r.comment for r in label_train]
    y = np.array([e.label for e in corpus_train] + [r.label for r in label_train])
    weights = np.concatenate(
        (np.ones(len(corpus_train)), np.full(len(label_train), float(p.label_weight)))
    )
    if len(set(y.tolist())) < 2:
        raise ValueError("retraining needs both spam and ham examples")
    model_params = {**DEFAULT_PARAMS, **p.model, "seed": p.seed, "sites": tuple(sites)}
    step(f"fitting on {len(y)} comments ({len(label_train)} labels, {len(sites)} sites)", 0.05)
    val_comments = [e.comment for e in corpus_val]
    val_labels = [e.label for e in corpus_val]
    if p.train_on_labels:
        pipeline, calibration_rows, unseen = fit_candidate_scored(
            to_frame(train_comments), y, weights, model_params, p
        )
        provisional = LoadedModel(
            run_id, pipeline, choose_thresholds(np.array([0, 1]), np.zeros(2))
        )
        val_scores = provisional.probabilities(val_comments)
        step("choosing thresholds on the corpus validation split", 0.7)
        thresholds = choose_thresholds(np.array(val_labels), val_scores)
    else:
        # As `commentguard train` does: calibrated and thresholded on each corpus's comments
        # as scored by a model that never saw that corpus.
        fitted = fit_unseen(
            to_frame(train_comments),
            y,
            domains_of(corpus_train),
            model_params,
            report=lambda message, fraction: step(message, 0.05 + 0.6 * fraction),
        )
        pipeline, calibration_rows, unseen = fitted.pipeline, np.zeros(0, np.int64), np.zeros(0)
        thresholds = choose_thresholds(fitted.labels, fitted.unseen_scores, domains=fitted.domains)
        provisional = LoadedModel(run_id, pipeline, thresholds)
        val_scores = provisional.probabilities(val_comments)
    fitted_at = time.perf_counter()
    holdout_comments = [r.comment for r in holdout]
    holdout_labels = [r.label for r in holdout]
    holdout_scores = provisional.probabilities(holdout_comments) if holdout else np.zeros(0)
    site_thresholds: dict[str, Thresholds] = {}
    if p.train_on_labels and p.min_site_threshold_labels > 0:
        site_thresholds = _learn_site_thresholds(
            label_train, holdout, calibration_rows - len(corpus_train), unseen, holdout_scores,
            labels, published or {}, p.min_site_threshold_labels,
        )  # fmt: skip
        thresholds = Thresholds(
            thresholds.unsure, thresholds.spam, thresholds.discard, site_thresholds
        )

    step("measuring the candidate and the active model", 0.8)
    sets = {"labels": (holdout_comments, holdout_labels), "corpus": (val_comments, val_labels)}
    cand_metrics = {
        # Scored once, above (the same pipeline): the gate's decision is the model's spam cut.
        "labels": _metrics_at(holdout_labels, holdout_scores, thresholds.spam),
        # The validation split's scores are those the thresholds were chosen on.
        "corpus": _metrics_at(val_labels, val_scores, thresholds.spam),
    }
    active_metrics: dict[str, dict[str, Any]] | None = None
    active_error = None
    if active is not None:
        try:
            current = load_model(models_dir, active)
        except ArtifactError as exc:
            # An active model that no longer loads is no benchmark: the candidate stands alone.
            active_error = str(exc)
            log.error("retrain %s: the active model %s does not load: %s", run_id, active, exc)
        else:
            active_metrics = {
                name: evaluate_model(current, c, y_) for name, (c, y_) in sets.items()
            }
    decision = decide(cand_metrics, active_metrics, p.gate)
    if active_error is not None:
        decision.reasons.append(f"the active model {active} does not load: {active_error}")

    step("saving the candidate", 0.9)
    record: dict[str, Any] = {
        "run_id": run_id,
        "started_at": now.isoformat(),
        "active_before": active,
        "params": _params_record(p),
        "data": {
            **(data or {}),
            "corpus_train": len(corpus_train),
            "corpus_validation": len(corpus_val),
            "labels": len(labels),
            "labels_train": len(label_train),
            "labels_holdout": len(holdout),
            "published_unlabelled": dict(sorted((published or {}).items())),
            "holdout_from": holdout[0].created_at.isoformat() if holdout else None,
            "label_classes": {
                "spam": sum(r.label for r in labels),
                "ham": sum(1 - r.label for r in labels),
            },
        },
        "sites": sites,
        "candidate": {
            "thresholds": thresholds.to_dict(),
            "site_thresholds": thresholds.sites_to_dict(),
            "metrics": cand_metrics,
        },
        "active": {"metrics": active_metrics},
        "gate": decision.to_dict(),
        "promoted": decision.promote,
        "fit_seconds": round(fitted_at - started, 3),
    }
    metadata = {
        "params": {**model_params, "sites": list(sites)},
        "seed": p.seed,
        "data": record["data"],
        "n_examples": len(y),
        "n_spam": int(y.sum()),
        "metrics": {"validation": {"at_spam_threshold": cand_metrics["corpus"]}, **cand_metrics},
        "gate": decision.to_dict(),
        "run_id": run_id,
    }
    path = save_model(pipeline, models_dir, thresholds=thresholds, metadata=metadata)
    version = path.name
    record["version"] = version

    activated = False
    if decision.promote and p.activate:
        try:
            activate(models_dir, version, reason=f"promoted by {run_id}")
            activated = True
        except ArtifactError as exc:
            decision.reasons.append(f"activation refused: {exc.reason}")
            mark(models_dir, version, Status.REJECTED, f"activation refused: {exc.reason}")
    elif decision.promote:
        mark(models_dir, version, Status.CANDIDATE, "promoted by the gate, not activated")
    else:
        mark(models_dir, version, Status.REJECTED, "; ".join(decision.reasons))
    for reason in decision.reasons:
        log.info("retrain %s (%s): %s", run_id, version, reason)
    seconds = time.perf_counter() - started
    record.update({"activated": activated, "seconds": round(seconds, 3)})
    record = record_done(models_dir, run_id, path, record)
    step("done", 1.0)
    return RetrainResult(
        run_id, version, decision.promote, activated, active, decision, record, seconds
    )


def _learn_site_thresholds(
    label_train: Sequence[LabelRecord],
    holdout: Sequence[LabelRecord],
    calibration_labels: np.ndarray,
    unseen: np.ndarray,
    holdout_scores: np.ndarray,
    labels: Sequence[LabelRecord],
    published: Mapping[str, int],
    minimum: int,
) -> dict[str, Thresholds]:
    """Each site's thresholds, from its labels' scores by models that had not seen them: those
    in the calibration slice (`calibration_labels`: their indices in `label_train`, negative
    for corpus rows) and the holdout."""
    by_site: dict[str, tuple[list[int], list[float]]] = {}
    for index, score in zip(calibration_labels.tolist(), unseen.tolist(), strict=True):
        if index >= 0:
            record = label_train[index]
            ys, ss = by_site.setdefault(record.site, ([], []))
            ys.append(record.label)
            ss.append(score)
    for record, score in zip(holdout, holdout_scores.tolist(), strict=True):
        ys, ss = by_site.setdefault(record.site, ([], []))
        ys.append(record.label)
        ss.append(score)
    by_site.pop("", None)
    ham_labels = Counter(r.site for r in labels if r.label == 0)
    return learn_all(by_site, ham_labels, published, minimum)


def _params_record(p: RetrainParams) -> dict[str, Any]:
    data = asdict(p)
    data["gate"] = asdict(p.gate)
    return data
