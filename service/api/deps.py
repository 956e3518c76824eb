"""FastAPI dependencies, used in routes as `Annotated` aliases.

The cheap ones are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread
pool, and a hop there per dependency costs more than what most of them do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from classifier import LoadedModel
from service import security, users
from service.api.errors import unauthorized
from service.problems import ApiError
from service.runtime import Services
from service.settings import Settings
from service.worker.queue import TaskQueue


def services_of(request: Request) -> Services:
    """The app's services. The hot `/v1` paths call this themselves rather than ask for
    `ServicesDep`: FastAPI solving a dependency costs more than the work of most of them."""
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(services: ServicesDep) -> AsyncIterator[Session]:
    session = services.sessions()
    try:
        yield session
    finally:
        # A committed session holds no connection, so closing it does no I/O; one still in a
        # transaction rolls back over the wire, which belongs in the thread pool.
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


SessionDep = Annotated[Session, Depends(get_session)]


async def get_model(services: ServicesDep) -> LoadedModel:
    services.models.reload_if_changed()  # a stat() at most once per check interval
    return services.models.current


ModelDep = Annotated[LoadedModel, Depends(get_model)]


async def get_queue(services: ServicesDep) -> TaskQueue | None:
    return services.queue


QueueDep = Annotated[TaskQueue | None, Depends(get_queue)]


# --- the bearer schemes, as the OpenAPI schema declares them --------------------------------
# Declared only: with auto_error=False they never answer themselves, and the dependencies below
# still read the header and answer 401 with our own error body.

site_key_scheme = HTTPBearer(
    scheme_name="SiteApiKey",
    description="A site's API key (`cg…`), as `Authorization: Bearer <key>`.",
    auto_error=False,
)
user_token_scheme = HTTPBearer(
    scheme_name="UserToken",
    description="A moderator's or admin's user token (`cgu_…`): `Authorization: Bearer <token>`.",
    auto_error=False,
)
SiteKeyScheme = Annotated[HTTPAuthorizationCredentials | None, Depends(site_key_scheme)]
UserTokenScheme = Annotated[HTTPAuthorizationCredentials | None, Depends(user_token_scheme)]


async def get_account_id(request: Request, _scheme: SiteKeyScheme) -> int:
    """The account of the request's `Authorization: Bearer <key>`, else 401 (every request to
    `/v1` comes through here)."""
    services = services_of(request)
    key = api_key_of(request.headers.get("authorization", ""))
    account_id = services.keys.get(key, services.settings.secret_key)
    if account_id is None:
        account_id = await run_in_threadpool(_authenticate, services, key)
    if account_id is None:
        raise unauthorized("unknown or revoked API key")
    return account_id


def api_key_of(authorization: str) -> str:
    """The API key an `Authorization` header's value carries, else the 401 saying why."""
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise unauthorized("send your API key as `Authorization: Bearer <key>`")
    if users.is_user_token(key):
        raise unauthorized("a user token does not work here: send the site's API key")
    if security.is_akismet_key(key.lower()):
        # Refused before the key cache, which also holds the keys the Akismet calls used.
        raise unauthorized("an Akismet-shaped key works only on the Akismet endpoints")
    return key


def _authenticate(services: Services, key: str) -> int | None:
    with services.sessions() as session:
        account_id = security.authenticate(session, key, services.settings.secret_key)
    if account_id is not None:
        services.keys.put(key, services.settings.secret_key, account_id)
    return account_id


AccountId = Annotated[int, Depends(get_account_id)]


# --- moderators and admins ---------------------------------------------------------------

UserPrincipal = users.UserPrincipal


async def get_current_user(
    request: Request, services: ServicesDep, _scheme: UserTokenScheme
) -> UserPrincipal:
    """The moderator or admin of the request's `Authorization: Bearer <user token>`, else 401.

    Not cached: a revoked token, a disabled user or a new grant takes effect at once.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("send your user token as `Authorization: Bearer <token>`")
    if not users.is_user_token(token):
        raise unauthorized("an API key does not work here: send a user token (cgu_…)")
    user = await run_in_threadpool(_authenticate_user, services, token)
    if user is None:
        raise unauthorized("unknown or revoked user token")
    return user


def _authenticate_user(services: Services, token: str) -> UserPrincipal | None:
    with services.sessions() as session:
        return users.authenticate_token(session, token, services.settings.secret_key)


CurrentUser = Annotated[UserPrincipal, Depends(get_current_user)]


async def get_admin_user(user: CurrentUser) -> UserPrincipal:
    """The current user if an admin, else 403."""
    if not user.is_admin:
        raise ApiError(403, "forbidden", "this needs an admin")
    return user


AdminUser = Annotated[UserPrincipal, Depends(get_admin_user)]
