"""The services a process builds once and shares: the domain modules' view of the runtime.

The lifespan (service/api/app.py) builds one `Services`; the HTTP layer reaches it through its
dependencies, the domain modules take it as an argument. It imports no web framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from service import security
from service.intake.sites import SiteCache

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from service.console.auth import LoginGuard
    from service.db import SessionFactory
    from service.intake.batching import Batcher
    from service.metrics import ServiceCollector
    from service.moderation.labels import LabelHook
    from service.neardup.store import NearDuplicateMemory
    from service.ratelimit import RateLimiter
    from service.scoring.models import ModelHolder
    from service.settings import Settings
    from service.worker.queue import TaskQueue


@dataclass
class Services:
    """What the lifespan builds once per process and the routes share."""

    settings: Settings
    engine: Engine
    sessions: SessionFactory
    models: ModelHolder
    queue: TaskQueue | None
    keys: security.KeyCache = field(default_factory=security.KeyCache)
    sites: SiteCache = field(default_factory=SiteCache)
    # Called with the labels of each request once they are committed (service/moderation/labels.py).
    label_hooks: list[LabelHook] = field(default_factory=list)
    # The near-duplicate memory (service/neardup/); None without Redis or when disabled.
    memory: NearDuplicateMemory | None = None
    limiter: RateLimiter | None = None
    metrics: ServiceCollector | None = None
    # Batch `POST /v1/check` (service/intake/checks.py) and `POST /v1/comments`
    # (service/intake/submissions.py).
    checks: Batcher[Any, Any] | None = None
    submissions: Batcher[Any, Any] | None = None
    # The console's password checks, counted by `limiter`'s counters (service/console/auth.py).
    login_guard: LoginGuard | None = None
