"""The learning loop without the service: the same replay, in one process, in a minute.

`bench/replay_service.py` plays a corpus through a whole running service, which takes tens of
minutes a corpus. This plays the same rows in the same order, with the same moderators
(`Moderators`: they review what was queued, report half of the published spam, never see a
discard), and the same learning: after every batch whose moderators acted, the site's adapter
and thresholds are fitted on every label so far (`training.site_learning.learn_site`, as the
service's `adapt_site` task does), and the next batch is scored with them. What it leaves out:
the near-duplicate memory and the rate limits, so its figures are a little below the service's.
It is the tool for choosing the learner's settings; `bench/replay.py` is the proof.

    .venv/bin/python bench/replay_offline.py youtube --seeds 0 1 2
    .venv/bin/python bench/replay_offline.py instagram --prior 3 --l2 0.3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.replay import CORPORA, WARMUP, WINDOW  # noqa: E402
from bench.replay_service import (  # noqa: E402
    Moderators,
    Outcome,
    Row,
    corpora_without,
    load_rows,
    summarise,
    train_first_model,
)
from classifier import LoadedModel, Thresholds, load_model  # noqa: E402
from classifier.adapter import AdapterParams, Rows, SiteAdapter, rows, select  # noqa: E402
from service.settings import Settings  # noqa: E402
from training.corpora import corpus_files  # noqa: E402
from training.site_learning import learn_site  # noqa: E402

FLAGGED = frozenset({"spam", "discard"})


def base_model(name: str, models: Path) -> LoadedModel:
    """The replay's first model: trained without corpus `name` (cached in `models`)."""
    paths = corpus_files(name)
    return load_model(models, train_first_model(corpora_without(paths), models))


def replay_offline(
    table: list[Row],
    model: LoadedModel,
    seed: int,
    params: AdapterParams,
    batch: int = 10,
    min_per_class: int = Settings.model_fields["adapt_min_site_threshold_labels"].default,
    limit: int | None = None,
) -> tuple[dict[str, Any], list[Outcome]]:
    """Play `table` as the service would; the report (`summarise`'s) and the outcomes."""
    if limit is not None:
        table = table[:limit]
    prepared, parts, log_odds = model.analyse([row.fields for row in table])
    everything: Rows = rows(prepared, parts, log_odds)
    moderators = Moderators(seed)
    labelled: dict[int, int] = {}  # row index: label (a comment's newest)
    adapter: SiteAdapter | None = None
    thresholds: Thresholds | None = None
    outcomes: list[Outcome] = []
    for start in range(0, len(table), batch):
        index = np.arange(start, min(start + batch, len(table)))
        sub = select(everything, index)
        shared = 1.0 / (1.0 + np.exp(-sub.base))
        scores = shared if adapter is None else adapter.probabilities(sub)
        decide = thresholds or model.thresholds
        acted = False
        for k, i in enumerate(index):
            row = table[int(i)]
            decision = decide.decide(float(scores[k])).value
            reviewed, reported = moderators.act(decision, row.label)
            if reviewed or reported:
                labelled[int(i)] = row.label
                acted = True
            outcomes.append(
                Outcome(row.number, row.id, row.label, decision, float(scores[k]), "", reviewed,
                        reported)
            )  # fmt: skip
        if acted:
            which = np.array(sorted(labelled))
            y = np.array([labelled[int(i)] for i in which])
            # Outcome k is row k: rows are numbered in play order.
            published = sum(
                1 for k, o in enumerate(outcomes) if o.decision == "ham" and k not in labelled
            )
            learned = learn_site(
                select(everything, which), y, published=published, params=params,
                min_per_class=min_per_class, previous=adapter,
            )  # fmt: skip
            adapter, thresholds = learned.adapter, learned.thresholds
    report = summarise(outcomes, [], [], WARMUP, WINDOW)
    return report.to_dict(), outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpora", nargs="+", choices=sorted(CORPORA))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--l2", type=float, default=AdapterParams().l2)
    parser.add_argument("--prior", type=float, default=AdapterParams().prior)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--models", type=Path, default=ROOT / "var" / "replay-offline")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    params = AdapterParams(l2=args.l2, prior=args.prior)
    results = []
    for name in args.corpora:
        model = base_model(name, args.models / name)
        paths = corpus_files(name)
        for seed in args.seeds:
            report, _ = replay_offline(
                load_rows(paths, seed), model, seed, params, limit=args.limit
            )
            after = report["after_warmup"]
            results.append({"corpus": name, "seed": seed, **after})
            print(
                f"{name} seed {seed}: F1 {after['f1']:.3f} ham FPR {after['fpr']:.2%} "
                f"reviewed {after['reviewed_share']:.1%} (n {after['n']})",
                flush=True,
            )
        mine = [r for r in results if r["corpus"] == name]
        print(
            f"{name} mean: F1 {statistics.mean(r['f1'] for r in mine):.3f} "
            f"ham FPR {statistics.mean(r['fpr'] for r in mine):.2%} "
            f"reviewed {statistics.mean(r['reviewed_share'] for r in mine):.1%}",
            flush=True,
        )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
