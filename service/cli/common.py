"""What the `commentguard` command's modules share: the console, the settings, the database,
the models folder option, progress bars and spinners."""

from __future__ import annotations

import contextlib
import functools
import io
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from service.db import SessionFactory
    from service.settings import Settings

console = Console(stderr=True, soft_wrap=True)

ModelsDir = Annotated[
    Path | None,
    typer.Option(
        "--models-dir",
        help="The model registry folder (default: COMMENTGUARD_MODELS_DIR or ./models).",
    ),
]


def models_folder(value: Path | None) -> Path:
    if value is not None:
        return value
    from service.settings import Settings

    return Settings().models_dir


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
    )


def reporter(progress: Progress, task: TaskID) -> Callable[[str, float], None]:
    """A `report(message, fraction)` for training code: the bar on a terminal; elsewhere (a
    log, a pipe), where rich draws no bar, each new step on a line of its own."""
    last = [""]

    def report(message: str, fraction: float) -> None:
        progress.update(task, completed=fraction, description=message)
        if not console.is_terminal and message != last[0]:
            last[0] = message
            console.print(f"{fraction:4.0%} {message}", highlight=False)

    return report


P = ParamSpec("P")
R = TypeVar("R")


@contextlib.contextmanager
def spinning(description: str) -> Iterator[None]:
    """A spinner saying `description` while the block runs, on a terminal (nothing elsewhere).

    What the block prints to stdout is held until the spinner is gone when stdout is that
    terminal too (the spinner would draw over it, and take it away when it goes: a key shown
    once must stay), and goes straight to stdout otherwise, as `KEY=$(… | tail -1)` needs.
    """
    if not console.is_terminal:
        yield
        return
    from rich.live import Live
    from rich.spinner import Spinner

    held = io.StringIO() if sys.stdout.isatty() else None
    try:
        with contextlib.ExitStack() as stack:
            if held is not None:
                stack.enter_context(contextlib.redirect_stdout(held))
            stack.enter_context(
                Live(
                    Spinner("dots", text=description),
                    console=console,
                    transient=True,
                    redirect_stdout=False,
                    redirect_stderr=False,
                )
            )
            yield
    finally:
        if held is not None and held.getvalue():
            sys.stdout.write(held.getvalue())
            sys.stdout.flush()


def working(description: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run a command under `spinning(description)`: for the commands that take a second or
    more (imports, the migrations check, a model's checksum) and ask nothing."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with spinning(description):
                return command(*args, **kwargs)

        return run

    return decorate


def load_settings() -> Settings:
    from service.settings import Settings

    try:
        return Settings()
    except ValueError as exc:
        console.print(f"[red]error:[/red] invalid settings: {exc}")
        raise typer.Exit(2) from exc


def configure_logs(settings: Settings) -> None:
    from service.logs import configure_logging

    configure_logging(settings)


@contextlib.contextmanager
def database(settings: Settings, *, migrate: bool = True) -> Iterator[SessionFactory]:
    """Sessions on the database of `settings` for the block, migrated first unless `migrate`
    is False; the engine is disposed of when the block ends, however it ends."""
    from service import db

    if migrate:
        db.upgrade(settings)
    engine = db.make_engine(settings)
    try:
        yield db.make_session_factory(engine)
    finally:
        engine.dispose()
