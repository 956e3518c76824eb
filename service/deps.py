"""FastAPI dependencies, used in routes as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from classifier import LoadedModel
from service import security
from service.db import SessionFactory
from service.engine import ModelHolder
from service.errors import unauthorized
from service.queue import TaskQueue
from service.settings import Settings


@dataclass
class Services:
    """What the lifespan builds once per process and the routes share."""

    settings: Settings
    engine: Engine
    sessions: SessionFactory
    models: ModelHolder
    queue: TaskQueue | None


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    with services.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_model(services: ServicesDep) -> LoadedModel:
    services.models.reload_if_changed()
    return services.models.current


ModelDep = Annotated[LoadedModel, Depends(get_model)]


def get_queue(services: ServicesDep) -> TaskQueue | None:
    return services.queue


QueueDep = Annotated[TaskQueue | None, Depends(get_queue)]


def get_account_id(request: Request, session: SessionDep, settings: SettingsDep) -> int:
    """The account of the request's `Authorization: Bearer <key>`, else 401."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise unauthorized("send your API key as `Authorization: Bearer <key>`")
    account_id = security.authenticate(session, key.strip(), settings.secret_key)
    if account_id is None:
        raise unauthorized("unknown or revoked API key")
    return account_id


AccountId = Annotated[int, Depends(get_account_id)]
