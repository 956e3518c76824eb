"""The model registry: each version's status, kept beside the versions in the models directory.

`ACTIVE` stays the pointer every process reads; `registry.json` records what became of each
version (candidate, active, retired, rejected) and the history of activations, so that a
rollback knows what was active before. Changes are made under a file lock, since the models
directory is shared by the API, the workers and the command line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from classifier.artifact import (
    ArtifactError,
    active_version,
    list_versions,
    read_metadata,
    set_active,
    version_dir,
)

REGISTRY_FILE = "registry.json"
_LOCK_FILE = ".registry.lock"


class Status(StrEnum):
    CANDIDATE = "candidate"  # trained, not (yet) served
    ACTIVE = "active"  # the version ACTIVE names
    RETIRED = "retired"  # was active, replaced by another
    REJECTED = "rejected"  # the promotion gate refused it


@contextlib.contextmanager
def locked(models_dir: Path) -> Iterator[None]:
    """Hold the registry's lock (across processes on this machine)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with (models_dir / _LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_registry(models_dir: Path) -> dict[str, Any]:
    """The registry file's content (empty if there is none yet)."""
    path = models_dir / REGISTRY_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError) as exc:
        raise ArtifactError(path, f"unreadable registry ({exc})") from exc
    if not isinstance(data, dict):
        raise ArtifactError(path, "the registry is not a JSON object")
    data.setdefault("versions", {})
    data.setdefault("activations", [])
    return data


def _write_registry(models_dir: Path, data: dict[str, Any]) -> None:
    tmp = models_dir / f".{REGISTRY_FILE}.{secrets.token_hex(4)}"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, models_dir / REGISTRY_FILE)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def mark(models_dir: Path, version: str, status: Status, reason: str = "") -> None:
    """Record a version's status (not `active`: use `activate`)."""
    if status is Status.ACTIVE:
        raise ValueError("use activate() to make a version active")
    version_dir(models_dir, version)
    with locked(models_dir):
        data = read_registry(models_dir)
        data["versions"][version] = {"status": status.value, "at": _now(), "reason": reason}
        _write_registry(models_dir, data)


def status_of(models_dir: Path, version: str, data: dict[str, Any] | None = None) -> Status:
    """A version's status: `active` if ACTIVE names it, else what the registry recorded
    (a version trained outside the registry, e.g. by an older `commentguard train`, is a
    candidate until activated, or retired if it was active once)."""
    data = data if data is not None else read_registry(models_dir)
    if version == active_version(models_dir):
        return Status.ACTIVE
    recorded = data["versions"].get(version, {}).get("status")
    if recorded in (Status.REJECTED, Status.CANDIDATE):
        return Status(recorded)
    if recorded == Status.ACTIVE or recorded == Status.RETIRED:
        return Status.RETIRED
    if any(a.get("version") == version for a in data["activations"]):
        return Status.RETIRED
    return Status.CANDIDATE


def versions(models_dir: Path) -> list[dict[str, Any]]:
    """Every version, oldest first, with its status, metrics and (for a retrained one) its
    gate numbers."""
    data = read_registry(models_dir)
    rows = []
    for version in list_versions(models_dir):
        try:
            metadata = read_metadata(models_dir, version)
        except ArtifactError:
            continue
        entry = data["versions"].get(version, {})
        rows.append(
            {
                "version": version,
                "status": status_of(models_dir, version, data).value,
                "created_at": metadata.get("created_at"),
                "n_examples": metadata.get("n_examples"),
                "thresholds": metadata.get("thresholds"),
                "metrics": metadata.get("metrics", {}),
                "gate": metadata.get("gate"),
                "sites": list(metadata.get("params", {}).get("sites") or []),
                "run_id": metadata.get("run_id"),
                "reason": entry.get("reason", ""),
            }
        )
    return rows


def activate(models_dir: Path, version: str, reason: str = "") -> str | None:
    """Verify `version` (checksum, library versions) and point ACTIVE at it; the version it
    replaces is retired. Returns that previous version. Raises ArtifactError, leaving ACTIVE
    as it was, if the artifact fails verification."""
    with locked(models_dir):
        previous = active_version(models_dir)
        set_active(models_dir, version)  # verifies before it writes the pointer
        data = read_registry(models_dir)
        now = _now()
        if previous is not None and previous != version:
            data["versions"][previous] = {"status": Status.RETIRED.value, "at": now, "reason": ""}
        data["versions"][version] = {"status": Status.ACTIVE.value, "at": now, "reason": reason}
        data["activations"].append(
            {"version": version, "previous": previous, "at": now, "reason": reason}
        )
        _write_registry(models_dir, data)
    return previous


def last_activated(models_dir: Path) -> str | None:
    """The version the registry last activated (verified then), whatever ACTIVE says now."""
    try:
        activations = read_registry(models_dir)["activations"]
    except ArtifactError:
        return None
    return str(activations[-1]["version"]) if activations else None


def previous_active(models_dir: Path) -> str | None:
    """The version that was active before the current one (what a rollback goes back to)."""
    current = active_version(models_dir)
    data = read_registry(models_dir)
    for entry in reversed(data["activations"]):
        if entry.get("version") == current and entry.get("previous") not in (None, current):
            return str(entry["previous"])
    return None


def rollback(models_dir: Path) -> str:
    """Activate the previously active version; returns it. Raises LookupError if there is
    none, ArtifactError if it no longer verifies."""
    previous = previous_active(models_dir)
    if previous is None:
        raise LookupError("no previously active version to roll back to")
    activate(models_dir, previous, reason="rollback")
    return previous
