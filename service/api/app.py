"""The FastAPI application factory."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from classifier import ArtifactError
from service import console, logs, ratelimit
from service.api import docs as api_docs
from service.api import errors
from service.api.fastpath import FastPath
from service.api.middleware import BodySizeLimit, RateLimitMiddleware, RequestIdMiddleware
from service.api.routes import admin, akismet, comments, health, metrics, moderation, sites
from service.api.routes import models as models_router
from service.console.auth import LoginGuard
from service.db import make_engine, make_session_factory
from service.intake.batching import Batcher
from service.intake.checks import check_batch, prepare_checks
from service.intake.sites import SiteCache
from service.intake.submissions import submission_batch
from service.learning.adapters import adapt_hook, adapter_params, fit_site
from service.learning.retraining import retrain_hook, retrain_outcomes
from service.metrics import ServiceCollector
from service.neardup.labels import remember_applied
from service.neardup.store import NearDuplicateMemory
from service.ratelimit import RateLimiter
from service.runtime import Services
from service.scoring.models import ModelHolder
from service.security import KeyCache
from service.settings import Settings
from service.worker.queue import TaskQueue

log = logging.getLogger(__name__)

API_SWITCH_INTERVAL_SECONDS = 0.001


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for `settings` (read from the environment when not given)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The event loop shares the GIL with the batch threads (service/intake/batching.py), which
        # build and send each batch's inserts: at Python's default of 5 ms, reading a request
        # or sending an answer could wait that long behind one. A shorter interval hands the
        # loop the GIL sooner (docs/benchmarks.md, "Service", has the 5 ms vs 1 ms figures).
        sys.setswitchinterval(API_SWITCH_INTERVAL_SECONDS)
        services = build_services(settings)
        app.state.services = services
        try:
            yield
        finally:
            for batcher in (services.checks, services.submissions):
                if batcher is not None:
                    batcher.close()
            if services.queue is not None:
                services.queue.close()
            if services.memory is not None:
                services.memory.close()
            if services.limiter is not None:
                await services.limiter.close()
            if services.metrics is not None:
                services.metrics.close()
            services.engine.dispose()

    app = FastAPI(
        title="commentguard",
        version="1",
        summary="Self-hosted comment moderation: is this comment spam, why, and how sure?",
        lifespan=lifespan,
        responses=errors.responses(422),
        docs_url=None,  # served by api_docs from the package's own assets
        redoc_url=None,
    )
    errors.install(app)
    app.include_router(comments.router)
    app.include_router(sites.router)
    app.include_router(health.router)
    app.include_router(akismet.router)
    app.include_router(moderation.router)
    app.include_router(admin.router)
    app.include_router(models_router.router)
    app.include_router(metrics.router)
    app.add_exception_handler(akismet.AkismetLimited, akismet.limited_answer)
    app.add_exception_handler(akismet.AkismetRefused, akismet.refused_answer)
    console.install(app)  # the moderator web console under /console
    api_docs.install(app)
    # Inside the limits below, which the hot routes still pass (service/api/fastpath.py).
    app.add_middleware(FastPath)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimitMiddleware)
    # Outermost: every answer, a refusal by the limits above included, carries the request id.
    app.add_middleware(RequestIdMiddleware)
    logs.install_celery_propagation()
    return app


def create_logged_app() -> FastAPI:
    """`create_app` for API processes that uvicorn starts itself: logging configured first."""
    settings = Settings()
    logs.configure_logging(settings)
    return create_app(settings)


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
    sessions = make_session_factory(engine)
    services = Services(settings, engine, sessions, models, queue)
    services.limiter = RateLimiter(settings)
    services.login_guard = LoginGuard(settings, services.limiter.counters)
    # Sites are re-read after a few seconds: an admin's threshold change reaches every process.
    services.sites = SiteCache(
        ttl_seconds=settings.site_cache_seconds, max_sites=settings.max_sites_per_account
    )
    # ... and so does a key's revocation: a key is authenticated again as often.
    services.keys = KeyCache(ttl=settings.site_cache_seconds)
    log.info("%s", ratelimit.describe(settings))
    services.metrics = ServiceCollector(
        settings, sessions, retrain_runs=partial(retrain_outcomes, settings)
    )
    services.memory = NearDuplicateMemory.from_settings(settings)
    # A committed label protects its near-copies at once (service/neardup/labels.py).
    services.label_hooks.append(partial(remember_applied, services.memory))
    # A label refits its site's adapter within seconds (service/learning/adapters.py).
    services.label_hooks.append(adapt_hook(partial(_adapt_site_now, services)))
    if settings.retrain_shared_labels:
        # Enough new labels queue a retrain of the shared model (service/learning/retraining.py).
        services.label_hooks.append(retrain_hook(settings, sessions, queue))
    # Requests that arrive together are handled together (checks scored on the event loop),
    # each kind stored by threads of its own.
    size, threads = settings.batch_max_size, settings.batch_threads
    services.checks = Batcher(
        partial(check_batch, services),
        "checks",
        size,
        threads,
        prepare=partial(prepare_checks, services),
    )
    services.submissions = Batcher(
        partial(submission_batch, services), "submissions", size, threads
    )
    return services


def _adapt_site_now(services: Services, site_id: int) -> None:
    """Refit a site's adapter: queued for a worker, or here and now without a queue."""
    if services.queue is not None:
        services.queue.adapt(site_id)
        return
    with services.sessions() as session:
        fit_site(
            session,
            services.models.current,
            site_id,
            adapter_params(services.settings),
            services.settings.adapt_min_site_threshold_labels,
        )
    services.sites.adapters.forget(site_id)
