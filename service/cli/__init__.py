"""The `commentguard` command: the Typer app, its commands gathered from one module per
audience (`serve`: the service's processes; `admin`: keys, users, personal data; `models`:
training and the registry; `tools`: one-offs such as `score`).

Every module imports only typer and rich at the top; a command imports what it needs when it
runs, so that `commentguard score` loads the model without the training code or the service.
"""

from __future__ import annotations

import typer

from service.cli import admin, models, serve, tools

app = typer.Typer(
    help="commentguard: self-hosted, Akismet-compatible comment moderation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# In the order `commentguard --help` lists them.
app.command()(models.train)
app.command()(tools.score)
app.command()(models.evaluate)
app.add_typer(admin.keys_app, name="keys")
app.add_typer(tools.db_app, name="db")
app.add_typer(tools.memory_app, name="memory")
app.add_typer(admin.privacy_app, name="privacy")
app.command()(serve.serve)
app.command()(serve.worker)
app.command()(serve.beat)
app.add_typer(admin.users_app, name="users")
app.add_typer(models.models_app, name="models")
app.command()(models.retrain)

__all__ = ["app"]
