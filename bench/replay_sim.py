"""An offline replay: the service's decision rules and retrain cadence in plain Python.

`commentguard replay` runs the real service (intake, queue, worker, Redis, SQLite) and takes tens
of minutes per corpus; this plays the same rows, in the same batches, with the same moderators
(review `unsure`/`spam` with the true label, report a published spam as missed with
probability 0.5, seeded, never see `discard`), the same near-duplicate memory (datasketch
MinHash with the service's `Signer`, an in-process index instead of Redis) and the same
`training.retrain.retrain` (gate included) on the same label-count trigger, in a few minutes.
It is for iterating on the learning loop's settings; the figures in docs/benchmarks.md come from
the real replay (`bench/replay.py`).

    .venv/bin/python bench/replay_sim.py youtube --out /tmp/sim/youtube
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from classifier import Decision, Thresholds  # noqa: E402
from classifier.artifact import load_model  # noqa: E402
from classifier.record import Comment  # noqa: E402
from classifier.registry import activate  # noqa: E402
from service.memory import Match, Signer, overrule  # noqa: E402
from service.replay import (  # noqa: E402
    FLAGGED,
    REVIEWED,
    Outcome,
    Row,
    corpora_without,
    load_rows,
    summarise,
)
from service.settings import Settings  # noqa: E402
from training.corpora import GATE_VALIDATION_SHARE, load_bundled, split_corpus  # noqa: E402
from training.retrain import LabelRecord, RetrainParams, retrain  # noqa: E402
from training.train import train  # noqa: E402

CORPORA = {
    "youtube": "data/corpora/youtube-spam-collection",
    "instagram": "data/corpora/instagram-scam-comments",
}
SITE = "1"


class SimMemory:
    """The near-duplicate memory of one account, in process: same signer, same matching."""

    def __init__(
        self, threshold: float, num_perm: int, min_shingles: int, spam_decision: str
    ) -> None:
        self.threshold = threshold
        self.spam_decision = spam_decision
        self.signer = Signer(threshold, num_perm, min_shingles)
        self.entries: dict[str, tuple[np.ndarray, str, float]] = {}
        self.bands: dict[str, set[str]] = {}

    def remember(self, key: str, text: str, label: str, at: float) -> None:
        signature = self.signer.sign(text)
        if signature is None:
            self.entries.pop(key, None)
            return
        self.entries[key] = (signature.values, label, at)
        for band in signature.bands:
            self.bands.setdefault(band, set()).add(key)

    def match(self, text: str) -> Match | None:
        signature = self.signer.sign(text)
        if signature is None:
            return None
        seen: set[str] = set()
        best: tuple[float, float, str, str] | None = None
        for band in signature.bands:
            for key in self.bands.get(band, ()):
                if key in seen or key not in self.entries:
                    continue
                seen.add(key)
                values, label, at = self.entries[key]
                similarity = float(np.count_nonzero(values == signature.values)) / len(values)
                if similarity < self.threshold:
                    continue
                if best is None or (similarity, at) > best[:2]:
                    best = (similarity, at, key, label)
        if best is None:
            return None
        return Match(best[2], best[3], round(best[0], 4), self.spam_decision)


def comment_of(row: Row) -> Comment:
    return replace(Comment.from_mapping(dict(row.fields)), site=SITE)


def simulate(
    name: str,
    out: Path,
    settings: Settings,
    seed: int = 0,
    batch: int = 10,
    warmup: int = 300,
    window: int = 200,
    missed_report_rate: float = 0.5,
    first_model: Path | None = None,
) -> dict[str, Any]:
    files = sorted((ROOT / CORPORA[name]).glob("*.csv"))
    rows = load_rows(files)
    corpora = corpora_without(files)
    corpus = load_bundled(corpora)
    out.mkdir(parents=True, exist_ok=True)
    models = Path(tempfile.mkdtemp(prefix=f"sim-{name}-"))
    if first_model is not None and (first_model / "ACTIVE").exists():
        import shutil

        shutil.rmtree(models)
        shutil.copytree(first_model, models)
    else:
        examples, _ = split_corpus(corpus, GATE_VALIDATION_SHARE)
        result = train(examples, models)
        activate(models, result.version, reason="the simulation's first model")
        if first_model is not None:
            import shutil

            shutil.copytree(models, first_model, dirs_exist_ok=True)
    model = load_model(models)
    memory = (
        SimMemory(
            settings.near_duplicate_threshold,
            settings.near_duplicate_num_perm,
            settings.near_duplicate_min_shingles,
            settings.near_duplicate_spam_decision,
        )
        if settings.near_duplicate_enabled
        else None
    )
    from service.retraining import params_from

    params: RetrainParams = params_from(settings)
    overrides = _params_from_environment()
    if overrides:
        params = replace(params, **overrides)
    rng = random.Random(seed)
    clock = datetime(2030, 1, 1, tzinfo=UTC)
    labels: list[LabelRecord] = []
    since_run = 0
    published = 0
    outcomes: list[Outcome] = []
    retrains: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    started = time.monotonic()
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        comments = [comment_of(row) for row in chunk]
        scores = model.probabilities(comments)
        thresholds = _global_discard_from_environment(model.thresholds).for_site(SITE)
        for row, comment, raw in zip(chunk, comments, scores, strict=True):
            score = float(raw)
            decision = thresholds.decide(score)
            match = memory.match(comment.content) if memory is not None else None
            if match is not None:
                score, decision, _ = overrule(match, score, decision, thresholds)
            if not versions or versions[-1]["version"] != model.version:
                versions.append({"version": model.version, "first_comment": row.number})
            reviewed = decision.value in REVIEWED
            draw = rng.random()
            reported = decision == Decision.HAM and row.label == 1 and draw < missed_report_rate
            if decision == Decision.HAM and not reported:
                published += 1
            if reviewed or reported:
                clock += timedelta(seconds=1)
                label = row.label if reviewed else 1
                labels.append(LabelRecord(comment, label, clock, f"c{row.number:06d}"))
                since_run += 1
                if memory is not None:
                    memory.remember(
                        row.id + str(row.number),
                        comment.content,
                        "spam" if label else "ham",
                        clock.timestamp(),
                    )
            outcomes.append(
                Outcome(
                    row.number,
                    row.id,
                    row.label,
                    decision.value,
                    score,
                    model.version,
                    reviewed,
                    reported,
                )
            )
        if since_run >= settings.retrain_label_count:
            since_run = 0
            clock += timedelta(seconds=1)
            result = retrain(
                corpus, labels, models, params=params, now=clock, published={SITE: published}
            )
            retrains.append(
                {
                    "after_comment": chunk[-1].number,
                    "version": result.version,
                    "promoted": result.promoted,
                    "activated": result.activated,
                    "gate_reasons": result.decision.reasons,
                    "seconds": round(result.seconds, 1),
                    "labels": len(labels),
                    "site_thresholds": result.record["candidate"]["site_thresholds"],
                }
            )
            print(
                f"  retrain after {chunk[-1].number + 1}: promoted={result.promoted} "
                f"({result.seconds:.0f}s) {result.decision.reasons[-1][:60]} "
                f"{result.record['candidate']['site_thresholds']}",
                flush=True,
            )
            if result.activated:
                model = load_model(models, result.version)
    report = summarise(outcomes, retrains, versions, warmup, window)
    report.settings = {"seed": seed, "batch": batch, "simulated": True}
    data = report.to_dict()
    data["seconds"] = round(time.monotonic() - started, 1)
    (out / "replay.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    with (out / "outcomes.jsonl").open("w") as handle:
        for o in outcomes:
            handle.write(json.dumps(o.__dict__ if hasattr(o, "__dict__") else _asdict(o)) + "\n")
    return data


def _asdict(o: Outcome) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(o)


def _rates_from_environment() -> None:
    """SIM_SITE_{SPAM,DISCARD,UNSURE}_FPR: try other per-site targets (exploration only)."""
    import functools
    import os

    import training.retrain
    from training.site_thresholds import learn_all

    rates = {
        f"{name}_fpr": float(os.environ[f"SIM_SITE_{name.upper()}_FPR"])
        for name in ("spam", "discard", "unsure")
        if f"SIM_SITE_{name.upper()}_FPR" in os.environ
    }
    if rates:
        training.retrain.learn_all = functools.partial(learn_all, **rates)  # type: ignore[assignment]
        print(f"per-site targets {rates}")


def _global_discard_from_environment(thresholds: Thresholds) -> Thresholds:
    """SIM_GLOBAL_DISCARD: another model-wide `discard` (exploration only; a site's own
    learned thresholds are kept)."""
    import os

    if "SIM_GLOBAL_DISCARD" not in os.environ:
        return thresholds
    discard = max(thresholds.spam, float(os.environ["SIM_GLOBAL_DISCARD"]))
    return Thresholds(thresholds.unsure, thresholds.spam, discard, thresholds.sites)


def _params_from_environment() -> dict[str, Any]:
    """SIM_CALIBRATION_SHARE: try another RetrainParams value (exploration only)."""
    import os

    if "SIM_CALIBRATION_SHARE" in os.environ:
        return {"calibration_share": float(os.environ["SIM_CALIBRATION_SHARE"])}
    return {}


def main() -> None:
    _rates_from_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", choices=sorted(CORPORA))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first-model", type=Path, help="Cache of the first model (a folder).")
    args = parser.parse_args()
    settings = Settings(_env_file=None)
    data = simulate(args.corpus, args.out, settings, seed=args.seed, first_model=args.first_model)
    after = data["after_warmup"]
    flagged = ", ".join(sorted(FLAGGED))
    print(
        f"{args.corpus}: after warm-up F1 {after['f1']:.3f} FPR {after['fpr']:.2%} "
        f"reviewed(all) {data['reviewed_share']:.1%} reviewed(after) {after['reviewed_share']:.1%} "
        f"retrains {len(data['retrains'])} "
        f"({sum(r['activated'] for r in data['retrains'])} promoted) [{flagged}] "
        f"{data['seconds']:.0f}s"
    )


if __name__ == "__main__":
    main()
