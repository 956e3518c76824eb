"""The `commentguard` command."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from service.settings import Settings

app = typer.Typer(
    help="commentguard: self-hosted, Akismet-compatible comment moderation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)

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


def _reporter(progress: Progress, task: TaskID) -> Callable[[str, float], None]:
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
def _spinning(description: str) -> Iterator[None]:
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


def _working(description: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run a command under `_spinning(description)`: for the commands that take a second or
    more (imports, the migrations check, a model's checksum) and ask nothing."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with _spinning(description):
                return command(*args, **kwargs)

        return run

    return decorate


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

    folder = _models_dir(models_dir)
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
    with _progress() as progress:
        task = progress.add_task(f"training on {len(examples)} comments", total=1.0)
        report = _reporter(progress, task)

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


@app.command()
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
    with _spinning("loading the model"):
        from classifier.artifact import ArtifactError, load_model
        from classifier.record import Comment

        try:
            model = load_model(_models_dir(models_dir), version)
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
    with _progress() as progress:
        task = progress.add_task("evaluating", total=1.0)
        report = _reporter(progress, task)

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


# --- running the service -------------------------------------------------------------------

keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
memory_app = typer.Typer(
    help="The near-duplicate memory of labelled comments.", no_args_is_help=True
)
app.add_typer(memory_app, name="memory")


privacy_app = typer.Typer(help="Personal data: forget a person, purge old comments.")
app.add_typer(privacy_app, name="privacy")

QUEUE_NAMES = {
    "scoring": "commentguard.scoring",
    "callbacks": "commentguard.callbacks",
    "retraining": "commentguard.retraining",
}


def _settings() -> Settings:
    from service.settings import Settings

    try:
        return Settings()
    except ValueError as exc:
        console.print(f"[red]error:[/red] invalid settings: {exc}")
        raise typer.Exit(2) from exc


def _setup_logging(settings: Settings) -> None:
    from service.logs import configure_logging

    configure_logging(settings)


def _celery_logging(settings: Settings, loglevel: str | None = None) -> None:
    """Make Celery leave logging to us (JSON or text per settings, with the request id)."""
    from celery.signals import setup_logging

    from service.logs import configure_logging

    if loglevel:
        settings = settings.model_copy(update={"log_level": loglevel})

    def configure(**_kwargs: object) -> None:
        configure_logging(settings)

    setup_logging.connect(configure, weak=False, dispatch_uid="commentguard-logging")


def _ensure_model(settings: Settings) -> None:
    """Train and activate the default model if the models folder has none yet."""
    from classifier.artifact import active_version, set_active
    from training.train import train_default

    if active_version(settings.models_dir) is not None:
        return
    console.print(f"no model in {settings.models_dir}: training the default model once")
    with _progress() as progress:
        task = progress.add_task("training the default model", total=1.0)
        report = _reporter(progress, task)

        result = train_default(settings.models_dir, report=report)
    set_active(settings.models_dir, result.version)
    console.print(f"model [bold]{result.version}[/bold] trained and activated")


def _raise_on_sigterm() -> None:
    import signal

    def handler(signum: int, _frame: object) -> None:
        # An exception unwinds through every `finally`, so the children are stopped too.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers_concurrency: Annotated[
        int | None, typer.Option(help="Scoring worker processes (default: CPU count).")
    ] = None,
    api_workers: Annotated[int, typer.Option(help="API processes.")] = 1,
) -> None:
    """Run the API; without COMMENTGUARD_REDIS_URL, also Redis, the workers and beat."""
    import os
    import signal

    from service import db
    from service.embedded import child_env, embedded_stack

    settings = _settings()
    _setup_logging(settings)
    _raise_on_sigterm()
    _ensure_model(settings)
    db.upgrade(settings)
    concurrency = workers_concurrency or os.cpu_count() or 1
    if settings.redis_url:
        # Redis is managed elsewhere, and so are the workers and beat (`commentguard worker`).
        _run_api(settings, host, port, api_workers)
        return
    with embedded_stack(settings, concurrency) as (ready, supervisor):

        def child_exited(name: str, code: int, why: str) -> None:
            console.print(f"[red]error:[/red] {why}; stopping")
            os.kill(os.getpid(), signal.SIGTERM)

        def child_restarted(name: str, code: int, restarts: int) -> None:
            console.print(
                f"[yellow]warning:[/yellow] {name} exited with code {code}; started it again "
                f"({restarts} restarts in the last {supervisor.restart_window:.0f}s, "
                f"{supervisor.restart_limit} allowed)"
            )

        # Workers and beat are started again if they exit (kombu 5.7 can crash a worker when
        # Redis goes away); Redis exiting, or a child restarting too often, stops everything.
        supervisor.watch(child_exited, on_restart=child_restarted)
        os.environ.update(child_env(ready))
        _run_api(ready, host, port, api_workers)


def _run_api(settings: Settings, host: str, port: int, api_workers: int) -> None:
    import uvicorn

    from service import api_processes
    from service.api.app import create_app

    if api_workers > 1 and api_processes.supported():
        # Each API process builds its own app from the environment (set by the caller) and
        # serves the connections this process accepts and hands to each in turn.
        api_processes.run(host, port, api_workers, settings.log_level.lower())
    elif api_workers > 1:
        uvicorn.run(
            "service.api.app:create_logged_app",
            factory=True,
            host=host,
            port=port,
            workers=api_workers,
            log_level=settings.log_level.lower(),
            log_config=None,
            access_log=False,
        )
    else:
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            log_config=None,
            access_log=False,
        )


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated: scoring, callbacks, retraining.")
    ] = "scoring,callbacks",
    concurrency: Annotated[
        int | None, typer.Option(help="Processes or threads (default: CPU count).")
    ] = None,
    pool: Annotated[str, typer.Option(help="prefork (CPU-bound) or threads (I/O).")] = "prefork",
    loglevel: Annotated[
        str | None, typer.Option(help="Log level (default: COMMENTGUARD_LOG_LEVEL).")
    ] = None,
) -> None:
    """Run a Celery worker for the scoring and/or callback queues."""
    import os

    from classifier.artifact import ArtifactError, load_model
    from service import tasks
    from service.queue import BrokerNotConfigured, make_celery

    settings = _settings()
    try:
        names = [QUEUE_NAMES[q.strip()] for q in queues.split(",") if q.strip()]
    except KeyError as exc:
        console.print(
            f"[red]error:[/red] unknown queue {exc}; use scoring, callbacks and/or retraining"
        )
        raise typer.Exit(2) from exc
    try:
        load_model(settings.models_dir)  # fail now, not on the first task
        celery = make_celery(settings)
    except (ArtifactError, BrokerNotConfigured) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    _celery_logging(settings, loglevel)
    tasks.configure(settings)
    if pool != "prefork":
        tasks.context()  # no fork will follow: open the database and load the model now
    celery.set_current()
    celery.set_default()
    celery.finalize(auto=True)
    nodename = "+".join(n.rsplit(".", 1)[-1] for n in names)
    # A training run takes hundreds of MB that a Python process keeps once it has them: a
    # worker that only retrains replaces its process after each task, which gives them back.
    only_retraining = names == [QUEUE_NAMES["retraining"]] and pool == "prefork"
    celery.worker_main(
        [
            "worker",
            *(["--max-tasks-per-child=1"] if only_retraining else []),
            f"--queues={','.join(names)}",
            f"--concurrency={concurrency or os.cpu_count() or 1}",
            f"--pool={pool}",
            f"--loglevel={loglevel or settings.log_level}",
            f"--hostname={nodename}-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


@app.command()
def beat(
    loglevel: Annotated[
        str | None, typer.Option(help="Log level (default: COMMENTGUARD_LOG_LEVEL).")
    ] = None,
) -> None:
    """Run the scheduler that queues the pending sweep."""
    from service.queue import BrokerNotConfigured, make_celery

    settings = _settings()
    try:
        celery = make_celery(settings)
    except BrokerNotConfigured as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _celery_logging(settings, loglevel)
    celery.Beat(
        loglevel=loglevel or settings.log_level,
        schedule=str(settings.data_dir / "celerybeat-schedule"),
        quiet=settings.json_logs,  # the banner is not a log line
    ).run()


@keys_app.command("create")
@_working("creating the key")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="Who the key is for.")],
    akismet: Annotated[
        bool,
        typer.Option(
            "--akismet",
            help="An Akismet-shaped key (12 hex digits), as the WordPress Akismet plugin "
            "requires; it works only on the Akismet endpoints.",
        ),
    ] = False,
) -> None:
    """Create an account and its API key; the key is printed once and never stored."""
    from service import db
    from service.security import create_account_with_key

    settings = _settings()
    db.upgrade(settings)
    engine = db.make_engine(settings)
    try:
        with db.make_session_factory(engine)() as session:
            new = create_account_with_key(session, name, settings.secret_key, akismet)
            session.commit()
    finally:
        engine.dispose()
    console.print(
        f"account {new.account_id} created with key {new.key_id}; "
        "this is the only time the key is shown:"
    )
    typer.echo(new.plaintext)


@keys_app.command("list")
@_working("reading the keys")
def keys_list(
    account: Annotated[int | None, typer.Option("--account", help="Only this account.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the API keys (revoked ones too) with their accounts; never their secrets."""
    from dataclasses import asdict

    from service import security

    settings = _settings()
    engine, session = _user_session(settings)
    try:
        with session:
            found = security.list_keys(session, account)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps([asdict(k) for k in found], indent=2, default=str))
        return
    table = Table(title="API keys")
    for column in ("id", "account", "name", "prefix", "created", "revoked"):
        table.add_column(column)
    for k in found:
        table.add_row(
            str(k.id),
            f"{k.account_id} ({k.account})",
            k.name,
            k.prefix,
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-",
        )
    Console().print(table)


@keys_app.command("revoke")
@_working("revoking the key")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="The key's id (`keys list`).")]) -> None:
    """Revoke an API key: every API process refuses it within COMMENTGUARD_SITE_CACHE_SECONDS."""
    from service import audit, security

    settings = _settings()
    engine, session = _user_session(settings)
    try:
        with session:
            key, changed = security.revoke_key(session, key_id, audit.Actor.cli())
            session.commit()
    except security.UnknownKey as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    state = "revoked" if changed else "was already revoked"
    console.print(f"key {key.id} ({key.prefix}…) of account {key.account_id} {state}")


@db_app.command("upgrade")
@_working("upgrading the database")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply the database migrations."""
    from service import db

    settings = _settings()
    _setup_logging(settings)
    db.upgrade(settings, revision)
    console.print("database is up to date")


# --- moderators and admins ----------------------------------------------------------------

users_app = typer.Typer(help="Manage moderators and admins.", no_args_is_help=True)
app.add_typer(users_app, name="users")

NEW_USER_PASSWORD_ENV = "COMMENTGUARD_NEW_USER_PASSWORD"


def _user_session(settings: Settings) -> tuple[Engine, Session]:
    """A session on the migrated database, and the engine to dispose of afterwards."""
    from service import db

    db.upgrade(settings)
    engine = db.make_engine(settings)
    return engine, db.make_session_factory(engine)()


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="The user's login name.")],
    role: Annotated[str, typer.Option("--role", help="moderator or admin.")],
    password_prompt: Annotated[
        bool,
        typer.Option(
            "--password-prompt",
            help="Ask for a password for the web console (else read from "
            f"{NEW_USER_PASSWORD_ENV} if set; without either, token login only).",
        ),
    ] = False,
) -> None:
    """Create a moderator or admin and their token; the token is printed once, never stored."""
    import os

    from service import tables, users

    try:
        chosen = tables.UserRole(role.strip().lower())
    except ValueError as exc:
        console.print("[red]error:[/red] --role must be moderator or admin")
        raise typer.Exit(2) from exc
    password = os.environ.get(NEW_USER_PASSWORD_ENV) or None
    if password_prompt:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    settings = _settings()
    with _spinning("creating the user"):
        engine, session = _user_session(settings)
        try:
            with session:
                new = users.create_user(session, name, chosen, settings.secret_key, password)
                session.commit()
        except users.UserError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
        finally:
            engine.dispose()
    console.print(
        f"{chosen.value} {name!r} created (user {new.user_id}"
        f"{', with a password' if password else ''}); "
        "this is the only time the token is shown:"
    )
    typer.echo(new.plaintext)


@users_app.command("token")
@_working("issuing a token")
def users_token(name: Annotated[str, typer.Argument(help="The user's name.")]) -> None:
    """Issue another token for a user; it is printed once, never stored."""
    from service import users

    settings = _settings()
    engine, session = _user_session(settings)
    try:
        with session:
            user = users.user_by_name(session, name)
            new = users.create_token(session, user.id, settings.secret_key)
            session.commit()
    except users.UserError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    console.print(f"token {new.token_id} for {name!r}; this is the only time it is shown:")
    typer.echo(new.plaintext)


@users_app.command("grant")
@_working("granting the site")
def users_grant(
    name: Annotated[str, typer.Argument(help="The moderator's name.")],
    site_url: Annotated[str, typer.Argument(help="The site's URL (as its comments name it).")],
    account: Annotated[
        int | None,
        typer.Option(
            "--account",
            help="The site's account id: needed when several accounts have the site; "
            "creates the site if it has had no comment yet.",
        ),
    ] = None,
) -> None:
    """Let a moderator see and label a site's comments."""
    from service import users

    settings = _settings()
    engine, session = _user_session(settings)
    try:
        with session:
            site = users.grant_site(session, name, site_url, account)
            session.commit()
            site_id, url, account_id = site.id, site.url, site.account_id
    except users.UserError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    console.print(f"{name!r} may now moderate site {site_id} ({url!r}, account {account_id})")


@users_app.command("ungrant")
@_working("taking the site back")
def users_ungrant(
    name: Annotated[str, typer.Argument(help="The moderator's name.")],
    site_url: Annotated[str, typer.Argument(help="The site's URL.")],
    account: Annotated[
        int | None,
        typer.Option("--account", help="The site's account id, when several accounts have it."),
    ] = None,
) -> None:
    """Take back a moderator's grant of a site (effective on their next request)."""
    from service import audit, users

    settings = _settings()
    engine, session = _user_session(settings)
    try:
        with session:
            site, removed = users.ungrant_site(session, name, site_url, account, audit.Actor.cli())
            session.commit()
            site_id, url = site.id, site.url
    except users.UserError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    if not removed:
        console.print(f"[red]error:[/red] {name!r} had no grant of site {site_id} ({url!r})")
        raise typer.Exit(1)
    console.print(f"{name!r} may no longer moderate site {site_id} ({url!r})")


def _change_user(name: str, change: str) -> str:
    """Disable, enable or revoke the tokens of user `name` (audited); what was done."""
    from service import audit, users

    settings = _settings()
    engine, session = _user_session(settings)
    actor = audit.Actor.cli()
    try:
        with session:
            user = users.user_by_name(session, name)
            if change == "revoke-tokens":
                tokens, ended = users.revoke_tokens(session, user, actor)
                done = f"{tokens} tokens revoked and {ended} console sessions ended"
            else:
                changed = users.set_disabled(session, user, change == "disable", actor)
                done = f"{change}d" if changed else f"already {change}d"
            session.commit()
    except users.UserError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    return done


@users_app.command("disable")
@_working("disabling the user")
def users_disable(name: Annotated[str, typer.Argument(help="The user's name.")]) -> None:
    """Disable a user: their tokens and console sessions stop working at once."""
    console.print(f"{name!r}: {_change_user(name, 'disable')}")


@users_app.command("enable")
@_working("enabling the user")
def users_enable(name: Annotated[str, typer.Argument(help="The user's name.")]) -> None:
    """Enable a disabled user again."""
    console.print(f"{name!r}: {_change_user(name, 'enable')}")


@users_app.command("revoke-tokens")
@_working("revoking the tokens")
def users_revoke_tokens(name: Annotated[str, typer.Argument(help="The user's name.")]) -> None:
    """Revoke every token of a user and end their console sessions, at once."""
    console.print(f"{name!r}: {_change_user(name, 'revoke-tokens')}")


@users_app.command("list")
@_working("reading the users")
def users_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the moderators and admins, with their sites."""
    from dataclasses import asdict

    from service import users

    settings = _settings()
    engine, session = _user_session(settings)
    try:
        with session:
            found = users.list_users(session)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps([asdict(u) for u in found], indent=2))
        return
    table = Table(title="users")
    for column in ("name", "role", "tokens", "password", "sites"):
        table.add_column(column)
    for u in found:
        table.add_row(
            u.name + (" (disabled)" if u.disabled else ""),
            u.role,
            str(u.tokens),
            "yes" if u.has_password else "no",
            "all" if u.role == "admin" else ", ".join(u.sites) or "-",
        )
    Console().print(table)


# --- retraining and the model registry ------------------------------------------------------

models_app = typer.Typer(
    help="The model registry: list, activate, roll back.", no_args_is_help=True
)
app.add_typer(models_app, name="models")


@app.command()
def retrain(
    seed: Annotated[
        int | None, typer.Option(help="Seed (default: COMMENTGUARD_RETRAIN_SEED).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run's record as JSON.")
    ] = False,
) -> None:
    """Retrain now from the corpora and the database's labels; the gate decides promotion."""
    from service import db
    from service.retraining import run_retrain

    settings = _settings()
    _setup_logging(settings.model_copy(update={"log_level": "WARNING"}))
    if seed is not None:
        settings = settings.model_copy(update={"retrain_seed": seed})
    engine = db.make_engine(settings)
    try:
        with _progress() as progress:
            task = progress.add_task("retraining", total=1.0)
            report = _reporter(progress, task)

            result = run_retrain(
                settings, db.make_session_factory(engine), trigger="cli", report=report
            )
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
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
@_working("reading the model registry")
def models_list(
    models_dir: ModelsDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every model version with its status and validation figures."""
    from classifier.registry import versions

    rows = versions(_models_dir(models_dir))
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
            return {**figures, "set": described + (f", n={n}" if n is not None else "")}
    return None


@models_app.command("activate")
@_working("verifying the model")
def models_activate(
    version: Annotated[str, typer.Argument(help="The version to serve.")],
    models_dir: ModelsDir = None,
) -> None:
    """Verify a version and make it the active one (every process picks it up)."""
    from classifier.artifact import ArtifactError, list_versions
    from classifier.registry import activate

    folder = _models_dir(models_dir)
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
@_working("verifying the model")
def models_rollback(models_dir: ModelsDir = None) -> None:
    """Activate the version that was active before the current one."""
    from classifier.artifact import ArtifactError
    from classifier.registry import rollback

    folder = _models_dir(models_dir)
    try:
        version = rollback(folder)
    except LookupError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    except ArtifactError as exc:
        console.print(f"[red]error:[/red] not rolled back: {exc}")
        raise typer.Exit(1) from exc
    console.print(f"rolled back: model [bold]{version}[/bold] is active")


@memory_app.command("rebuild")
@_working("remembering the labelled comments")
def memory_rebuild() -> None:
    """Put every comment's current label into the near-duplicate memory again (in Redis)."""
    from service import db
    from service.neardup.labels import rebuild
    from service.neardup.store import NearDuplicateMemory

    settings = _settings()
    _setup_logging(settings)
    memory = NearDuplicateMemory.from_settings(settings)
    if memory is None:
        console.print(
            "[red]error:[/red] the memory needs COMMENTGUARD_REDIS_URL and "
            "COMMENTGUARD_NEAR_DUPLICATE_ENABLED=true"
        )
        raise typer.Exit(2)
    engine = db.make_engine(settings)
    try:
        count = rebuild(db.make_session_factory(engine), memory)
    finally:
        engine.dispose()
        memory.close()
    console.print(f"{count} labelled comments remembered")


@privacy_app.command("forget")
@_working("erasing the comments")
def privacy_forget(
    email: Annotated[str, typer.Option("--email", help="The commenter's e-mail address.")],
) -> None:
    """Erase the content and personal data of every comment sent with this e-mail address."""
    from service import db
    from service.privacy import forget_email

    settings = _settings()
    if not email.strip():
        console.print("[red]error:[/red] --email must not be empty")
        raise typer.Exit(2)
    db.upgrade(settings)
    engine = db.make_engine(settings)
    try:
        result = forget_email(db.make_session_factory(engine), email)
    finally:
        engine.dispose()
    console.print(
        f"{result.comments} comments purged (content and personal fields erased), "
        f"{result.verdicts} verdicts' word reasons removed; verdicts and labels are kept"
    )
    typer.echo(f"comments={result.comments} verdicts={result.verdicts}")


@privacy_app.command("purge")
@_working("purging old comments")
def privacy_purge() -> None:
    """Purge now the comments older than COMMENTGUARD_RETENTION_DAYS (beat does it hourly)."""
    from service import db
    from service.privacy import purge_expired

    settings = _settings()
    if settings.retention_days <= 0:
        console.print("COMMENTGUARD_RETENTION_DAYS is 0: comments are kept forever")
        typer.echo("comments=0 verdicts=0")
        return
    db.upgrade(settings)
    engine = db.make_engine(settings)
    try:
        result = purge_expired(db.make_session_factory(engine), settings)
    finally:
        engine.dispose()
    console.print(f"{result.comments} comments older than {settings.retention_days} days purged")
    typer.echo(f"comments={result.comments} verdicts={result.verdicts}")


if __name__ == "__main__":
    app()
