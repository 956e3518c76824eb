"""One-off commands: score a comment, upgrade the database, rebuild the near-duplicate
memory."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from service.cli.common import (
    ModelsDir,
    configure_logs,
    console,
    database,
    load_settings,
    models_folder,
    spinning,
    working,
)

db_app = typer.Typer(help="Manage the database.", no_args_is_help=True)
memory_app = typer.Typer(
    help="The near-duplicate memory of labelled comments.", no_args_is_help=True
)


def score(
    text: Annotated[
        str, typer.Argument(help='The comment\'s text; "-" reads one comment a line from stdin.')
    ],
    author: Annotated[str, typer.Option(help="The author's name.")] = "",
    author_email: Annotated[str, typer.Option(help="The author's e-mail.")] = "",
    author_url: Annotated[str, typer.Option(help="The author's website.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    models_dir: ModelsDir = None,
    version: Annotated[str | None, typer.Option(help="Model version (default: active).")] = None,
) -> None:
    """Score one comment with the active model and show the reasons.

    With "-", every line of stdin is a comment, and each verdict a line of JSON: the model is
    loaded once, where a shell loop calling `score` would load it for every comment.
    """
    # Only what scoring needs is imported here (not the training code nor the service's).
    with spinning("loading the model"):
        from classifier.artifact import ArtifactError, load_model
        from classifier.record import Comment

        try:
            model = load_model(models_folder(models_dir), version)
        except ArtifactError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
    if text == "-":
        for line in sys.stdin:
            comment = Comment(
                content=line.rstrip("\n"),
                author=author,
                author_email=author_email,
                author_url=author_url,
            )
            typer.echo(json.dumps(model.score(comment).to_dict()))
        return
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


@db_app.command("upgrade")
@working("upgrading the database")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply the database migrations."""
    from service import db

    settings = load_settings()
    configure_logs(settings)
    db.upgrade(settings, revision)
    console.print("database is up to date")


@memory_app.command("rebuild")
@working("remembering the labelled comments")
def memory_rebuild() -> None:
    """Put every comment's current label into the near-duplicate memory again (in Redis)."""
    from service.neardup.labels import rebuild
    from service.neardup.store import NearDuplicateMemory

    settings = load_settings()
    configure_logs(settings)
    memory = NearDuplicateMemory.from_settings(settings)
    if memory is None:
        console.print(
            "[red]error:[/red] the memory needs COMMENTGUARD_REDIS_URL and "
            "COMMENTGUARD_NEAR_DUPLICATE_ENABLED=true"
        )
        raise typer.Exit(2)
    try:
        with database(settings, migrate=False) as sessions:
            count = rebuild(sessions, memory)
    finally:
        memory.close()
    console.print(f"{count} labelled comments remembered")
