"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from classifier import ArtifactError
from service import errors
from service.db import make_engine, make_session_factory
from service.deps import Services
from service.engine import ModelHolder
from service.queue import TaskQueue
from service.routers import comments, health, sites
from service.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for `settings` (read from the environment when not given)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings)
        app.state.services = services
        try:
            yield
        finally:
            if services.queue is not None:
                services.queue.close()
            services.engine.dispose()

    app = FastAPI(
        title="commentguard",
        version="1",
        summary="Self-hosted comment moderation: is this comment spam, why, and how sure?",
        lifespan=lifespan,
        responses=errors.responses(422),
        # Requests over this are refused with 413 before their body is read whole.
        max_body_size=settings.max_body_bytes,
    )
    errors.install(app)
    app.include_router(comments.router)
    app.include_router(sites.router)
    app.include_router(health.router)
    return app


def build_services(settings: Settings) -> Services:
    """Open the database, load the model and connect the queue for one process."""
    engine = make_engine(settings)
    models = ModelHolder.from_settings(settings)
    try:
        models.load()
    except ArtifactError as exc:
        # Serve anyway: /readyz says why, and the model is picked up once ACTIVE names one.
        log.error("no usable model: %s", exc)
    queue = TaskQueue(settings) if settings.redis_url else None
    if queue is None:
        log.warning("COMMENTGUARD_REDIS_URL is not set: comments are queued by the sweep only")
    return Services(settings, engine, make_session_factory(engine), models, queue)
