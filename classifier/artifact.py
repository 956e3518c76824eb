"""Model artifacts: one folder per version in the models directory, verified before unpickling.

`models/<version>/model.joblib` holds the fitted pipeline; `metadata.json` beside it records
what it is (library versions, data, parameters, thresholds, metrics) and the SHA-256 of the
joblib file. Unpickling runs code, so nothing is unpickled until the checksum and the library
versions match, and only folders inside the models directory are ever read.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import secrets
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy
import sklearn

from classifier.scoring import LoadedModel, Thresholds

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
ACTIVE_FILE = "ACTIVE"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ArtifactError(RuntimeError):
    """An artifact that cannot be used: missing, tampered, or built by other libraries."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def library_versions() -> dict[str, str]:
    """The versions an artifact depends on, as recorded in its metadata."""
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "joblib": joblib.__version__,
    }


def new_version_id(now: datetime | None = None) -> str:
    """A sortable, unique version id such as `20261128-014700-3fa2c1`."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit() -> str:
    """The source tree's git commit ("unknown" outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def save_model(
    pipeline: Any,
    models_dir: Path,
    *,
    thresholds: Thresholds,
    metadata: dict[str, Any] | None = None,
    version: str | None = None,
) -> Path:
    """Write a new version folder; an existing version is never overwritten."""
    version = version or new_version_id()
    if not _VERSION.match(version):
        raise ValueError(f"invalid model version id {version!r}")
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=models_dir))
    try:
        model_path = staging / MODEL_FILE
        joblib.dump(pipeline, model_path, compress=3)
        record = {
            **(metadata or {}),
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "git_commit": git_commit(),
            "libraries": library_versions(),
            "thresholds": thresholds.to_dict(),
            **({"site_thresholds": thresholds.sites_to_dict()} if thresholds.sites else {}),
            "model_file": MODEL_FILE,
            "model_sha256": sha256_of(model_path),
            "model_bytes": model_path.stat().st_size,
        }
        (staging / METADATA_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        final = models_dir / version
        # rename() onto an existing folder fails, so a version is never replaced.
        os.rename(staging, final)
    except BaseException:
        for child in staging.glob("*"):
            child.unlink()
        staging.rmdir()
        raise
    return final


def version_dir(models_dir: Path, version: str) -> Path:
    """The folder of `version`, refusing anything that would leave the models directory."""
    root = models_dir.resolve()
    if not _VERSION.match(version):
        raise ArtifactError(root / version, "not a valid model version id")
    folder = (root / version).resolve()
    if folder.parent != root:
        raise ArtifactError(folder, "is outside the models directory")
    return folder


def read_metadata(models_dir: Path, version: str) -> dict[str, Any]:
    """The metadata of a version (not verified against the model file)."""
    path = version_dir(models_dir, version) / METADATA_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ArtifactError(path, "no such file") from exc
    except (OSError, ValueError) as exc:
        raise ArtifactError(path, f"unreadable metadata ({exc})") from exc
    if not isinstance(data, dict):
        raise ArtifactError(path, "metadata is not a JSON object")
    return data


def list_versions(models_dir: Path) -> list[str]:
    """Every version folder with metadata, oldest first."""
    if not models_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in models_dir.iterdir()
        if p.is_dir() and _VERSION.match(p.name) and (p / METADATA_FILE).is_file()
    )


def active_version(models_dir: Path) -> str | None:
    """The version named in `ACTIVE`, else the newest version, else None."""
    pointer = models_dir / ACTIVE_FILE
    if pointer.is_file():
        name = pointer.read_text().strip()
        if name:
            return name
    versions = list_versions(models_dir)
    return versions[-1] if versions else None


def set_active(models_dir: Path, version: str) -> None:
    """Point `ACTIVE` at a version (atomically), after verifying that it loads."""
    verify(models_dir, version)
    tmp = models_dir / f".{ACTIVE_FILE}.{secrets.token_hex(4)}"
    tmp.write_text(version + "\n")
    os.replace(tmp, models_dir / ACTIVE_FILE)


def verify(models_dir: Path, version: str) -> dict[str, Any]:
    """Check a version's checksum and library versions without unpickling it."""
    folder = version_dir(models_dir, version)
    metadata = read_metadata(models_dir, version)
    model_path = folder / MODEL_FILE
    if not model_path.is_file():
        raise ArtifactError(model_path, "no such file")
    expected = metadata.get("model_sha256")
    actual = sha256_of(model_path)
    if actual != expected:
        raise ArtifactError(
            model_path,
            f"checksum mismatch: metadata says {expected}, file is {actual}; "
            "the artifact was modified or corrupted and will not be loaded",
        )
    built = metadata.get("libraries", {})
    if built.get("scikit-learn") != sklearn.__version__:
        raise ArtifactError(
            model_path,
            f"built with scikit-learn {built.get('scikit-learn')}, this process runs "
            f"{sklearn.__version__}; retrain the model with this version",
        )
    if str(built.get("numpy", "")).split(".")[0] != numpy.__version__.split(".")[0]:
        raise ArtifactError(
            model_path,
            f"built with numpy {built.get('numpy')}, this process runs {numpy.__version__}",
        )
    return metadata


def load_model(models_dir: Path, version: str | None = None) -> LoadedModel:
    """Verify, then load, a version (the active one by default)."""
    models_dir = Path(models_dir)
    version = version or active_version(models_dir)
    if version is None:
        raise ArtifactError(models_dir, "no model has been trained yet (run `commentguard train`)")
    metadata = verify(models_dir, version)
    model_path = version_dir(models_dir, version) / MODEL_FILE
    try:
        pipeline = joblib.load(model_path)
    except Exception as exc:  # a verified file that still fails to unpickle
        raise ArtifactError(model_path, f"cannot be unpickled ({exc})") from exc
    return LoadedModel(
        version=version,
        pipeline=pipeline,
        thresholds=Thresholds.from_dict(
            metadata["thresholds"], metadata.get("site_thresholds") or {}
        ),
        metadata=metadata,
    )
