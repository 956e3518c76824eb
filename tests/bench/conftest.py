"""Fixtures for the bench tests: the service's real Redis, databases, tiny model and workers."""

from __future__ import annotations

from tests.service.conftest import (  # noqa: F401  (fixtures, used by name)
    database_url,
    models_dir,
    redis_server_url,
    redis_url,
    settings,
    settings_for,
    workers,
)
