"""Settings: read from COMMENTGUARD_* at runtime, and no placeholder secret in production."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import PLACEHOLDER_SECRET, Settings


def test_read_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMENTGUARD_MODELS_DIR", "/srv/models")
    monkeypatch.setenv("COMMENTGUARD_CALLBACK_ALLOWED_HOSTS", "localhost:9000, Hooks.Internal")
    monkeypatch.setenv("COMMENTGUARD_THRESHOLD_SPAM", "0.8")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.models_dir == Path("/srv/models")
    assert settings.callback_allowed_hosts == ["localhost:9000", "hooks.internal"]
    assert settings.threshold_spam == 0.8
    assert settings.redis_url is None  # unset: `serve` embeds Redis
    assert settings.database_url == "sqlite:///./var/commentguard.db"
    assert settings.max_content_bytes == 65536


def test_refuse_placeholder_secret_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMENTGUARD_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(_env_file=None, secret_key="short")  # type: ignore[call-arg]
    assert Settings(_env_file=None, secret_key="x" * 32).environment == "production"  # type: ignore[call-arg]


def test_accept_placeholder_secret_locally() -> None:
    settings = Settings(_env_file=None, environment="local")  # type: ignore[call-arg]
    assert settings.secret_key == PLACEHOLDER_SECRET


def test_refuse_soft_time_limit_above_hard_limit() -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, task_soft_time_limit_seconds=60, task_time_limit_seconds=30)  # type: ignore[call-arg]


def test_import_service_without_reading_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import service.api.app
    import service.worker.tasks

    # A broken environment only matters once settings are built, not when modules load.
    monkeypatch.setenv("COMMENTGUARD_MAX_CONTENT_BYTES", "not a number")
    importlib.reload(service.worker.tasks)
    importlib.reload(service.api.app)
    with pytest.raises(ValidationError):
        Settings(_env_file=None)  # type: ignore[call-arg]
