"""Model artifacts: one folder per version in the models directory, verified before unpickling.

`models/<version>/model.joblib` holds the fitted pipeline; `scoring.npz` beside it, the same
model as the plain arrays scoring reads (`classifier.scoring.scoring_arrays`); `metadata.json`
records what it is (library versions, data, parameters, thresholds, metrics) and the SHA-256 of
both files. Unpickling runs code, so nothing is unpickled until the checksum and the library
versions match, and only folders inside the models directory are ever read.

Loading reads the arrays (numpy alone, no objects, nothing unpickled) and unpickles the
pipeline only if something asks for it: scoring, in the command line above all, never imports
scikit-learn, whose import alone costs more than a second of CPU. A version written before
`scoring.npz` existed loads from its pipeline.
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
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import numpy

from classifier.scoring import LoadedModel, Thresholds, scoring_arrays

MODEL_FILE = "model.joblib"
SCORING_FILE = "scoring.npz"
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
    """The versions an artifact depends on, as recorded in its metadata (read from the
    installed distributions, so that checking them imports neither scikit-learn nor joblib)."""
    return {
        "python": platform.python_version(),
        "scikit-learn": installed_version("scikit-learn"),
        "numpy": numpy.__version__,
        "joblib": installed_version("joblib"),
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
    import joblib

    version = version or new_version_id()
    if not _VERSION.match(version):
        raise ValueError(f"invalid model version id {version!r}")
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=models_dir))
    try:
        model_path = staging / MODEL_FILE
        joblib.dump(pipeline, model_path, compress=3)
        scoring_path = staging / SCORING_FILE
        arrays: dict[str, Any] = scoring_arrays(pipeline)
        with scoring_path.open("wb") as handle:
            # Uncompressed: loading is then a read. The arrays are a few MB.
            numpy.savez(handle, **arrays)
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
            "scoring_file": SCORING_FILE,
            "scoring_sha256": sha256_of(scoring_path),
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
    """Check a version's checksums and library versions without unpickling it."""
    folder = version_dir(models_dir, version)
    metadata = read_metadata(models_dir, version)
    _check_file(folder / MODEL_FILE, metadata.get("model_sha256"))
    if metadata.get("scoring_file"):
        _check_file(folder / SCORING_FILE, metadata.get("scoring_sha256"))
    model_path = folder / MODEL_FILE
    built = metadata.get("libraries", {})
    sklearn_version = installed_version("scikit-learn")
    if built.get("scikit-learn") != sklearn_version:
        raise ArtifactError(
            model_path,
            f"built with scikit-learn {built.get('scikit-learn')}, this process runs "
            f"{sklearn_version}; retrain the model with this version",
        )
    if str(built.get("numpy", "")).split(".")[0] != numpy.__version__.split(".")[0]:
        raise ArtifactError(
            model_path,
            f"built with numpy {built.get('numpy')}, this process runs {numpy.__version__}",
        )
    return metadata


def _check_file(path: Path, expected: object) -> None:
    if not path.is_file():
        raise ArtifactError(path, "no such file")
    actual = sha256_of(path)
    if actual != expected:
        raise ArtifactError(
            path,
            f"checksum mismatch: metadata says {expected}, file is {actual}; "
            "the artifact was modified or corrupted and will not be loaded",
        )


def load_model(models_dir: Path, version: str | None = None) -> LoadedModel:
    """Verify, then load, a version (the active one by default): from its scoring arrays,
    the pipeline unpickled only when asked for; from its pipeline if it has no arrays."""
    models_dir = Path(models_dir)
    version = version or active_version(models_dir)
    if version is None:
        raise ArtifactError(models_dir, "no model has been trained yet (run `commentguard train`)")
    metadata = verify(models_dir, version)
    folder = version_dir(models_dir, version)
    thresholds = Thresholds.from_dict(metadata["thresholds"], metadata.get("site_thresholds") or {})
    expected = metadata["model_sha256"]

    def load_pipeline() -> Any:
        import joblib

        model_path = folder / MODEL_FILE
        # Verified again: the pipeline may be asked for long after the version was loaded.
        _check_file(model_path, expected)
        try:
            return joblib.load(model_path)
        except Exception as exc:  # a verified file that still fails to unpickle
            raise ArtifactError(model_path, f"cannot be unpickled ({exc})") from exc

    if not metadata.get("scoring_file"):
        return LoadedModel(version, load_pipeline(), thresholds, metadata)
    scoring_path = folder / SCORING_FILE
    try:
        # No objects: allow_pickle=False refuses any array that would need unpickling.
        with numpy.load(scoring_path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        return LoadedModel.from_arrays(version, arrays, thresholds, metadata, load_pipeline)
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(scoring_path, f"unreadable scoring arrays ({exc})") from exc
