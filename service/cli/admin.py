"""Accounts and people, for the service's admin: API keys, moderators and admins, personal
data."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from service.cli.common import console, database, load_settings, spinning, working

keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
privacy_app = typer.Typer(help="Personal data: forget a person, purge old comments.")


@keys_app.command("create")
@working("creating the key")
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
    from service.security import create_account_with_key

    settings = load_settings()
    with database(settings) as sessions, sessions() as session:
        new = create_account_with_key(session, name, settings.secret_key, akismet)
        session.commit()
    console.print(
        f"account {new.account_id} created with key {new.key_id}; "
        "this is the only time the key is shown:"
    )
    typer.echo(new.plaintext)


@keys_app.command("list")
@working("reading the keys")
def keys_list(
    account: Annotated[int | None, typer.Option("--account", help="Only this account.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the API keys (revoked ones too) with their accounts; never their secrets."""
    from dataclasses import asdict

    from service import security

    settings = load_settings()
    with database(settings) as sessions, sessions() as session:
        found = security.list_keys(session, account)
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
@working("revoking the key")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="The key's id (`keys list`).")]) -> None:
    """Revoke an API key: every API process refuses it within COMMENTGUARD_SITE_CACHE_SECONDS."""
    from service import audit, security

    settings = load_settings()
    try:
        with database(settings) as sessions, sessions() as session:
            key, changed = security.revoke_key(session, key_id, audit.Actor.cli())
            session.commit()
    except security.UnknownKey as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    state = "revoked" if changed else "was already revoked"
    console.print(f"key {key.id} ({key.prefix}…) of account {key.account_id} {state}")


users_app = typer.Typer(help="Manage moderators and admins.", no_args_is_help=True)

NEW_USER_PASSWORD_ENV = "COMMENTGUARD_NEW_USER_PASSWORD"


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
    settings = load_settings()
    with spinning("creating the user"):
        try:
            with database(settings) as sessions, sessions() as session:
                new = users.create_user(session, name, chosen, settings.secret_key, password)
                session.commit()
        except users.UserError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
    console.print(
        f"{chosen.value} {name!r} created (user {new.user_id}"
        f"{', with a password' if password else ''}); "
        "this is the only time the token is shown:"
    )
    typer.echo(new.plaintext)


@users_app.command("token")
@working("issuing a token")
def users_token(name: Annotated[str, typer.Argument(help="The user's name.")]) -> None:
    """Issue another token for a user; it is printed once, never stored."""
    from service import users

    settings = load_settings()
    try:
        with database(settings) as sessions, sessions() as session:
            user = users.user_by_name(session, name)
            new = users.create_token(session, user.id, settings.secret_key)
            session.commit()
    except users.UserError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"token {new.token_id} for {name!r}; this is the only time it is shown:")
    typer.echo(new.plaintext)


@users_app.command("grant")
@working("granting the site")
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

    settings = load_settings()
    try:
        with database(settings) as sessions, sessions() as session:
            site = users.grant_site(session, name, site_url, account)
            session.commit()
            site_id, url, account_id = site.id, site.url, site.account_id
    except users.UserError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"{name!r} may now moderate site {site_id} ({url!r}, account {account_id})")


@users_app.command("ungrant")
@working("taking the site back")
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

    settings = load_settings()
    try:
        with database(settings) as sessions, sessions() as session:
            site, removed = users.ungrant_site(session, name, site_url, account, audit.Actor.cli())
            session.commit()
            site_id, url = site.id, site.url
    except users.UserError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if not removed:
        console.print(f"[red]error:[/red] {name!r} had no grant of site {site_id} ({url!r})")
        raise typer.Exit(1)
    console.print(f"{name!r} may no longer moderate site {site_id} ({url!r})")


def _change_user(name: str, change: str) -> str:
    """Disable, enable or revoke the tokens of user `name` (audited); what was done."""
    from service import audit, users

    settings = load_settings()
    actor = audit.Actor.cli()
    try:
        with database(settings) as sessions, sessions() as session:
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
    return done


@users_app.command("disable")
@working("disabling the user")
def users_disable(name: Annotated[str, typer.Argument(help="The user's name.")]) -> None:
    """Disable a user: their tokens and console sessions stop working at once."""
    console.print(f"{name!r}: {_change_user(name, 'disable')}")


@users_app.command("enable")
@working("enabling the user")
def users_enable(name: Annotated[str, typer.Argument(help="The user's name.")]) -> None:
    """Enable a disabled user again."""
    console.print(f"{name!r}: {_change_user(name, 'enable')}")


@users_app.command("revoke-tokens")
@working("revoking the tokens")
def users_revoke_tokens(name: Annotated[str, typer.Argument(help="The user's name.")]) -> None:
    """Revoke every token of a user and end their console sessions, at once."""
    console.print(f"{name!r}: {_change_user(name, 'revoke-tokens')}")


@users_app.command("list")
@working("reading the users")
def users_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the moderators and admins, with their sites."""
    from dataclasses import asdict

    from service import users

    settings = load_settings()
    with database(settings) as sessions, sessions() as session:
        found = users.list_users(session)
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


@privacy_app.command("forget")
@working("erasing the comments")
def privacy_forget(
    email: Annotated[str, typer.Option("--email", help="The commenter's e-mail address.")],
) -> None:
    """Erase the content and personal data of every comment sent with this e-mail address."""
    from service.privacy import forget_email

    settings = load_settings()
    if not email.strip():
        console.print("[red]error:[/red] --email must not be empty")
        raise typer.Exit(2)
    with database(settings) as sessions:
        result = forget_email(sessions, email)
    console.print(
        f"{result.comments} comments purged (content and personal fields erased), "
        f"{result.verdicts} verdicts' word reasons removed; verdicts and labels are kept"
    )
    typer.echo(f"comments={result.comments} verdicts={result.verdicts}")


@privacy_app.command("purge")
@working("purging old comments")
def privacy_purge() -> None:
    """Purge now the comments older than COMMENTGUARD_RETENTION_DAYS (beat does it hourly)."""
    from service.privacy import purge_expired

    settings = load_settings()
    if settings.retention_days <= 0:
        console.print("COMMENTGUARD_RETENTION_DAYS is 0: comments are kept forever")
        typer.echo("comments=0 verdicts=0")
        return
    with database(settings) as sessions:
        result = purge_expired(sessions, settings)
    console.print(f"{result.comments} comments older than {settings.retention_days} days purged")
    typer.echo(f"comments={result.comments} verdicts={result.verdicts}")
