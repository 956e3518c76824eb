"""The service's processes, for whoever runs them: serve (the API, and without Redis the
whole stack), worker, beat."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from service.cli.common import configure_logs, console, load_settings, progress_bar, reporter

if TYPE_CHECKING:
    from service.settings import Settings


QUEUE_NAMES = {
    "scoring": "commentguard.scoring",
    "callbacks": "commentguard.callbacks",
    "retraining": "commentguard.retraining",
}


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
    with progress_bar() as progress:
        task = progress.add_task("training the default model", total=1.0)
        report = reporter(progress, task)

        result = train_default(settings.models_dir, report=report)
    set_active(settings.models_dir, result.version)
    console.print(f"model [bold]{result.version}[/bold] trained and activated")


def _raise_on_sigterm() -> None:
    import signal

    def handler(signum: int, _frame: object) -> None:
        # An exception unwinds through every `finally`, so the children are stopped too.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


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

    settings = load_settings()
    configure_logs(settings)
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
    from service.worker import tasks
    from service.worker.queue import BrokerNotConfigured, make_celery

    settings = load_settings()
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


def beat(
    loglevel: Annotated[
        str | None, typer.Option(help="Log level (default: COMMENTGUARD_LOG_LEVEL).")
    ] = None,
) -> None:
    """Run the scheduler that queues the pending sweep."""
    from service.worker.queue import BrokerNotConfigured, make_celery

    settings = load_settings()
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
