"""Which package may import what, read from the import statements of every module (no import is
executed): the arrows of docs/architecture.md, held by a test."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ("fastapi", "starlette")
# What the classifier must work without: it is pure ML (scikit-learn, numpy, scipy).
NOT_IN_CLASSIFIER = ("service", "training", *WEB, "sqlalchemy", "celery", "redis", "alembic")
# The HTTP layers of the service: the API and the console. Nothing else speaks HTTP frameworks.
HTTP_PACKAGES = ("service/api/", "service/console/")


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in the file, wherever it stands (functions, TYPE_CHECKING
    blocks included): a lazy import is an arrow all the same."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            # `from service import api` names a package as much as `import service.api` does.
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def offences(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in paths:
        for line, module in imported(path):
            if any(module == name or module.startswith(f"{name}.") for name in forbidden):
                found.append(f"{_shown(path)}:{line} imports {module}")
    return sorted(set(found))


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _shown(path: Path) -> str:
    return _relative(path) if path.is_relative_to(ROOT) else str(path)


def test_read_imports_wherever_they_stand(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from fastapi import Request\n"
        "def f():\n    import starlette.types\nfrom service import api\n"
    )
    found = {module for _, module in imported(sample)}
    assert {"os", "fastapi", "starlette.types", "service.api"} <= found
    assert offences([sample], WEB) != []


def test_keep_the_classifier_free_of_the_service_training_web_and_storage() -> None:
    assert modules("classifier"), "no modules found under classifier/"
    assert offences(modules("classifier"), NOT_IN_CLASSIFIER) == []


def test_keep_training_free_of_the_service() -> None:
    assert offences(modules("training"), ("service", *WEB)) == []


def test_import_web_frameworks_only_in_the_api_and_the_console() -> None:
    domain = [p for p in modules("service") if not _relative(p).startswith(HTTP_PACKAGES)]
    assert len(domain) > 20, "the walk should see the service's domain modules"
    assert offences(domain, WEB) == []


def test_depend_on_the_api_only_to_serve_it() -> None:
    """The domain never reaches into the HTTP layer: only the CLI imports the app, to serve it."""
    domain = [
        p
        for p in modules("service")
        if not _relative(p).startswith(HTTP_PACKAGES) and _relative(p) != "service/cli/serve.py"
    ]
    assert offences(domain, ("service.api",)) == []
    assert offences(modules("service/console"), ("service.api.routes", "service.api.app")) == []


def test_name_only_files_that_exist_in_docs_architecture() -> None:
    """docs/architecture.md's path of a comment stays true of the tree: every file and folder it
    names exists."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:classifier|training|service|tests)/[\w/.]*)`", text))
    assert len(named) > 30
    assert sorted(p for p in named if not (ROOT / p).exists()) == []
