"""The `commentguard` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    help="commentguard: self-hosted, Akismet-compatible comment moderation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ModelsDir = Annotated[
    Path | None,
    typer.Option(
        "--models-dir",
        help="The model registry folder (default: COMMENTGUARD_MODELS_DIR or ./models).",
    ),
]


def _models_dir(value: Path | None) -> Path:
    if value is not None:
        return value
    from service.settings import Settings

    return Settings().models_dir


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
    )


@app.command()
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
    from classifier.artifact import set_active
    from training.corpora import CorpusError, deduplicate, file_sha256, load_bundled, read_file
    from training.train import DEFAULT_CORPORA, bundled_data_record
    from training.train import train as run_training

    folder = _models_dir(models_dir)
    try:
        if data:
            examples = deduplicate([e for path in data for e in read_file(path)])
            record = {"files": {str(p): file_sha256(p) for p in data}}
        else:
            names = tuple(corpus or DEFAULT_CORPORA)
            examples = load_bundled(names)
            record = bundled_data_record(names)
    except (CorpusError, KeyError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    with _progress() as progress:
        task = progress.add_task(f"training on {len(examples)} comments", total=1.0)

        def report(message: str, fraction: float) -> None:
            progress.update(task, completed=fraction, description=message)

        result = run_training(examples, folder, data=record, seed=seed, report=report)
    if activate:
        set_active(folder, result.version)
    val = result.validation["at_spam_threshold"]
    console.print(
        f"model [bold]{result.version}[/bold] written to {result.path} in {result.seconds:.1f}s; "
        f"validation at the spam threshold: precision {val['precision']:.3f}, "
        f"recall {val['recall']:.3f}, MCC {val['mcc']:.3f}, ham FPR {val['fpr']:.3%}"
    )
    typer.echo(result.version)


@app.command()
def score(
    text: Annotated[str, typer.Argument(help="The comment's text.")],
    author: Annotated[str, typer.Option(help="The author's name.")] = "",
    author_email: Annotated[str, typer.Option(help="The author's e-mail.")] = "",
    author_url: Annotated[str, typer.Option(help="The author's website.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    models_dir: ModelsDir = None,
    version: Annotated[str | None, typer.Option(help="Model version (default: active).")] = None,
) -> None:
    """Score one comment with the active model and show the reasons."""
    from classifier.artifact import ArtifactError, load_model
    from classifier.record import Comment

    try:
        model = load_model(_models_dir(models_dir), version)
    except ArtifactError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    verdict = model.score(
        Comment(content=text, author=author, author_email=author_email, author_url=author_url)
    )
    if as_json:
        typer.echo(json.dumps(verdict.to_dict(), indent=2))
        return
    table = Table(title=f"{verdict.decision.value}  (score {verdict.score:.4f})")
    table.add_column("reason")
    table.add_column("weight", justify="right")
    for reason in verdict.reasons:
        table.add_row(reason.description, f"{reason.weight:+.3f}")
    Console().print(table)
    typer.echo(f"model_version: {verdict.model_version}")


@app.command()
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
    with _progress() as progress:
        task = progress.add_task("evaluating", total=1.0)

        def report(message: str, fraction: float) -> None:
            progress.update(task, completed=fraction, description=message)

        try:
            if lovo:
                result = protocols.leave_one_video_out(report=report)
            elif cv:
                result = protocols.cross_validate(cv, corpora=corpus, seed=seed, report=report)
            else:
                assert test is not None
                result = protocols.held_out_file(test, corpora=corpus, report=report)
        except (CorpusError, ValueError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    metrics = result["metrics"]
    table = Table(title=result["protocol"])
    for key in ("n", "precision", "recall", "f1", "mcc", "roc_auc", "fpr"):
        table.add_column(key, justify="right")
    table.add_row(*(_fmt(metrics[k]) for k in ("n", "precision", "recall", "f1", "mcc", "roc_auc", "fpr")))
    Console().print(table)


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    app()
