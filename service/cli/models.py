"""The model's commands, for whoever trains and chooses models: train, evaluate, retrain, and
the registry (`models list`, `activate`, `rollback`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from service.cli.common import (
    ModelsDir,
    configure_logs,
    console,
    database,
    load_settings,
    models_folder,
    progress_bar,
    reporter,
    working,
)

models_app = typer.Typer(
    help="The model registry: list, activate, roll back.", no_args_is_help=True
)


def train(
    models_dir: ModelsDir = None,
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data", help="CSV or JSONL files with content,label (default: bundled corpora)."
        ),
    ] = None,
    corpus: Annotated[
        list[str] | None,
        typer.Option("--corpus", help="Bundled corpora to train on (default: the default mix)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed for the validation split.")] = 0,
    activate: Annotated[bool, typer.Option(help="Make the new version the active one.")] = True,
) -> None:
    """Train a new model version from the bundled corpora or your own data."""
    from classifier.registry import activate as activate_version
    from training.corpora import (
        GATE_VALIDATION_SHARE,
        CorpusError,
        deduplicate,
        file_sha256,
        load_bundled,
        read_file,
        split_corpus,
    )
    from training.train import DEFAULT_CORPORA, bundled_data_record
    from training.train import train as run_training

    folder = models_folder(models_dir)
    try:
        if data:
            examples = deduplicate([e for path in data for e in read_file(path)])
            record = {"files": {str(p): file_sha256(p) for p in data}}
        else:
            names = tuple(corpus or DEFAULT_CORPORA)
            # As serve's first run trains (training.train.train_default): the promotion gate
            # compares models on this split, so no model it judges may have trained on it.
            examples, _ = split_corpus(load_bundled(names), GATE_VALIDATION_SHARE)
            record = bundled_data_record(names)
    except (CorpusError, KeyError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    with progress_bar() as progress:
        task = progress.add_task(f"training on {len(examples)} comments", total=1.0)
        report = reporter(progress, task)

        result = run_training(examples, folder, data=record, seed=seed, report=report)
    if activate:
        activate_version(folder, result.version, reason="trained by `commentguard train`")
    val = result.validation["at_spam_threshold"]
    console.print(
        f"model [bold]{result.version}[/bold] written to {result.path} in {result.seconds:.1f}s; "
        f"on comments from corpora it had not seen ({result.validation['protocol']}), at the "
        f"spam threshold: precision {val['precision']:.3f}, recall {val['recall']:.3f}, "
        f"MCC {val['mcc']:.3f}, ham FPR {val['fpr']:.3%}"
    )
    typer.echo(result.version)


def evaluate(
    lovo: Annotated[bool, typer.Option("--lovo", help="Leave one YouTube video out.")] = False,
    cv: Annotated[int | None, typer.Option("--cv", help="K-fold cross-validation.")] = None,
    test: Annotated[
        Path | None,
        typer.Option(
            "--test",
            help="Test on FILE (a bundled corpus file or your own CSV/JSONL), training on the "
            "bundled corpora without FILE's corpus.",
        ),
    ] = None,
    corpus: Annotated[
        list[str] | None,
        typer.Option("--corpus", help="Bundled corpora to use (default: the default mix)."),
    ] = None,
    baseline: Annotated[
        bool, typer.Option("--baseline", help="Evaluate the plain TF-IDF + LR baseline instead.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed for fold assignment.")] = 0,
) -> None:
    """Measure the classifier under an evaluation protocol."""
    from training import evaluate as protocols
    from training.corpora import CorpusError

    chosen = [flag for flag, on in (("--lovo", lovo), ("--cv", cv), ("--test", test)) if on]
    if len(chosen) != 1:
        console.print("[red]error:[/red] choose exactly one of --lovo, --cv K, --test FILE")
        raise typer.Exit(2)
    with progress_bar() as progress:
        task = progress.add_task("evaluating", total=1.0)
        report = reporter(progress, task)

        try:
            if lovo:
                result = protocols.leave_one_video_out(baseline=baseline, report=report)
            elif cv:
                result = protocols.cross_validate(
                    cv, corpora=corpus, seed=seed, baseline=baseline, report=report
                )
            else:
                assert test is not None
                result = protocols.held_out_file(
                    test, corpora=corpus, baseline=baseline, report=report
                )
        except (CorpusError, ValueError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    metrics = result["metrics"]
    mix = result.get("train_corpora") or result.get("corpora") or []
    table = Table(
        title=result["protocol"],
        caption=f"trained as `commentguard train` trains, on: {', '.join(mix)}" if mix else None,
    )
    for key in ("n", "precision", "recall", "f1", "mcc", "roc_auc", "fpr"):
        table.add_column(key, justify="right")
    table.add_row(
        *(_fmt(metrics[k]) for k in ("n", "precision", "recall", "f1", "mcc", "roc_auc", "fpr"))
    )
    Console().print(table)


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def retrain(
    seed: Annotated[
        int | None, typer.Option(help="Seed (default: COMMENTGUARD_RETRAIN_SEED).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run's record as JSON.")
    ] = False,
) -> None:
    """Retrain now from the corpora and the database's labels; the gate decides promotion."""
    from service.learning.retraining import run_retrain

    settings = load_settings()
    configure_logs(settings.model_copy(update={"log_level": "WARNING"}))
    if seed is not None:
        settings = settings.model_copy(update={"retrain_seed": seed})
    try:
        with database(settings, migrate=False) as sessions, progress_bar() as progress:
            task = progress.add_task("retraining", total=1.0)
            report = reporter(progress, task)

            result = run_retrain(settings, sessions, trigger="cli", report=report)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if result is None:
        console.print("[yellow]another retrain is running; nothing done[/yellow]")
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(result.record, indent=2, default=str))
        return
    table = Table(title=f"retrain {result.run_id}: candidate {result.version}")
    table.add_column("set")
    table.add_column("metric")
    table.add_column("candidate", justify="right")
    table.add_column("active", justify="right")
    table.add_column("limit", justify="right")
    table.add_column("passed")
    for check in result.decision.checks:
        table.add_row(
            check["set"],
            check["metric"],
            _fmt(check["candidate"]),
            _fmt(check["active"]),
            _fmt(check["limit"]),
            "yes" if check["passed"] else "[red]no[/red]",
        )
    console.print(table)
    for reason in result.decision.reasons:
        console.print(f"  {reason}")
    state = (
        "promoted and activated"
        if result.activated
        else ("promoted" if result.promoted else "rejected")
    )
    console.print(
        f"candidate [bold]{result.version}[/bold] {state} in {result.seconds:.1f}s "
        f"(sites learned: {', '.join(result.record['sites']) or 'none'})"
    )
    typer.echo(result.version)


@models_app.command("list")
@working("reading the model registry")
def models_list(
    models_dir: ModelsDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every model version with its status and validation figures."""
    from classifier.registry import versions

    rows = versions(models_folder(models_dir))
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    # A version is pasted into `models activate`: never cut nor folded.
    table = Table(title="model versions")
    table.add_column("version", no_wrap=True)
    for column in ("status", "created", "examples", "MCC (measured on)", "ham FPR", "sites"):
        table.add_column(column)
    for row in rows:
        measured = _headline_metrics(row["metrics"] or {})
        style = "bold green" if row["status"] == "active" else None
        table.add_row(
            row["version"],
            row["status"],
            str(row["created_at"] or ""),
            str(row["n_examples"] or ""),
            f"{_fmt(measured['mcc'])} ({measured['set']})" if measured else "",
            _fmt(measured["fpr"]) if measured else "",
            ", ".join(row["sites"]),
            style=style,
        )
    out = Console()
    # As wide as the table wants, past the terminal's (or a pipe's 80) columns: the terminal
    # wraps a long line, where rich would cut the cells.
    natural = Measurement.get(out, out.options.update(width=10_000), table).maximum
    Console(width=max(out.width, natural)).print(table)


# What the sets a model's metadata measures it on are (training/train.py, training/retrain.py).
METRIC_SETS = {
    "validation": "validation split",
    "corpus": "corpus validation split",
    "labels": "label holdout",
}


def _headline_metrics(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """One set's figures at the model's spam threshold, with the set named: the validation
    split the model was trained beside (a retrain's gate figures are in `--json`)."""
    for name, described in METRIC_SETS.items():
        found = metrics.get(name) or {}
        figures = found.get("at_spam_threshold", found)
        if isinstance(figures, dict) and "mcc" in figures:
            n = figures.get("n")
            protocol = found.get("protocol")
            if protocol:  # training/train.py: every row scored by a fit that never saw it
                described = f"unseen rows, {protocol}"
            return {**figures, "set": described + (f", n={n}" if n is not None else "")}
    return None


@models_app.command("activate")
@working("verifying the model")
def models_activate(
    version: Annotated[str, typer.Argument(help="The version to serve.")],
    models_dir: ModelsDir = None,
) -> None:
    """Verify a version and make it the active one (every process picks it up)."""
    from classifier.artifact import ArtifactError, list_versions
    from classifier.registry import activate

    folder = models_folder(models_dir)
    if version not in list_versions(folder):
        console.print(f"[red]error:[/red] no model version {version} in {folder}")
        raise typer.Exit(2)
    try:
        previous = activate(folder, version, reason="activated by `commentguard models activate`")
    except ArtifactError as exc:
        console.print(f"[red]error:[/red] not activated: {exc}")
        raise typer.Exit(1) from exc
    console.print(f"model [bold]{version}[/bold] is active (was {previous})")


@models_app.command("rollback")
@working("verifying the model")
def models_rollback(models_dir: ModelsDir = None) -> None:
    """Activate the version that was active before the current one."""
    from classifier.artifact import ArtifactError
    from classifier.registry import rollback

    folder = models_folder(models_dir)
    try:
        version = rollback(folder)
    except LookupError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    except ArtifactError as exc:
        console.print(f"[red]error:[/red] not rolled back: {exc}")
        raise typer.Exit(1) from exc
    console.print(f"rolled back: model [bold]{version}[/bold] is active")
