"""docker-compose.yml and the Dockerfile, checked against the code (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from service.cli import app
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = [name for name, spec in SERVICES.items() if spec.get("build")]


def _cli() -> Any:
    """The click group behind the Typer app (its `commands` and their option parsers)."""
    return typer.main.get_command(app)


def test_compose_has_the_six_services() -> None:
    assert set(SERVICES) == {"api", "worker", "retrainer", "beat", "redis", "postgres"}
    assert sorted(OURS) == ["api", "beat", "retrainer", "worker"]
    # One image: api, worker and beat differ only by their command.
    assert len({(SERVICES[n]["build"], SERVICES[n]["image"]) for n in OURS}) == 1


@pytest.mark.parametrize("name", ["api", "worker", "retrainer", "beat"])
def test_compose_command_is_a_valid_cli_invocation(name: str) -> None:
    command = SERVICES[name]["command"]
    assert command[0] == "commentguard"
    cli = _cli()
    assert command[1] in cli.commands, f"{name}: no `commentguard {command[1]}` command"
    # Parsing the arguments with the real command's options rejects unknown ones.
    sub = cli.commands[command[1]]
    with sub.make_context(command[1], list(command[2:]), resilient_parsing=False):
        pass


def test_dockerfile_default_command_is_a_valid_cli_invocation() -> None:
    text = (ROOT / "Dockerfile").read_text()
    match = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert match
    command = yaml.safe_load(match.group(1))
    sub = _cli().commands[command[1]]
    with sub.make_context(command[1], list(command[2:])):
        pass


def test_compose_environment_names_are_settings_fields() -> None:
    fields = {f"COMMENTGUARD_{name.upper()}" for name in Settings.model_fields}
    for name in OURS:
        env = SERVICES[name]["environment"]
        unknown = {k for k in env if k.startswith("COMMENTGUARD_")} - fields
        assert not unknown, f"{name}: not settings: {unknown}"
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*(COMMENTGUARD_[A-Z0-9_]+)=", example, re.M))
    assert documented <= fields, documented - fields
    assert fields - {"COMMENTGUARD_SECRET_KEY"} <= documented | {"COMMENTGUARD_SECRET_KEY"}


def test_compose_environment_values_parse_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = dict(SERVICES["api"]["environment"])
    env["COMMENTGUARD_SECRET_KEY"] = "a-long-random-production-secret"
    for key, value in env.items():
        monkeypatch.setenv(key, re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", str(value)))
    settings = Settings(_env_file=None)
    assert settings.environment == "production"
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.redis_url == "redis://redis:6379/0"


def test_compose_ports_match_the_api_command() -> None:
    command = SERVICES["api"]["command"]
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    published = [p.split(":")[-1] for p in SERVICES["api"]["ports"]]
    assert published == [port]
    assert f"urlopen('http://127.0.0.1:{port}/readyz'" in " ".join(
        SERVICES["api"]["healthcheck"]["test"]
    )
    assert f"EXPOSE {port}" in (ROOT / "Dockerfile").read_text()


def test_compose_volumes_are_declared_and_models_are_shared() -> None:
    declared = set(COMPOSE["volumes"])
    for name, spec in SERVICES.items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            assert source in declared, f"{name}: volume {source} is not declared"
    models_dir = SERVICES["api"]["environment"]["COMMENTGUARD_MODELS_DIR"]
    for name in ("api", "worker", "retrainer"):
        assert f"models:{models_dir}" in SERVICES[name]["volumes"]
    assert "postgres:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]


def test_compose_services_wait_on_healthy_dependencies() -> None:
    for spec in SERVICES.values():
        for dependency, condition in spec.get("depends_on", {}).items():
            assert dependency in SERVICES
            assert condition["condition"] == "service_healthy"
            assert "healthcheck" in SERVICES[dependency], f"{dependency} has no health check"
    for store in ("redis", "postgres"):
        assert "healthcheck" in SERVICES[store]
