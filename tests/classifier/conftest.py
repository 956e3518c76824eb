"""A tiny model trained once per test session (never committed)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from classifier.artifact import load_model, set_active
from classifier.scoring import LoadedModel
from training.corpora import load_bundled
from training.train import bundled_data_record, train

_MODELS: list[Path] = []


def shared_models_dir() -> Path:
    """Train the session's model on first use (also reachable outside fixtures, for
    hypothesis strategies that sample from what the model flags)."""
    if not _MODELS:
        folder = Path(tempfile.mkdtemp(prefix="commentguard-test-models-"))
        examples = load_bundled(["youtube", "instagram"])
        result = train(
            examples,
            folder,
            params={"calibration_folds": 3},
            data=bundled_data_record(["youtube", "instagram"]),
            seed=0,
        )
        set_active(folder, result.version)
        _MODELS.append(folder)
    return _MODELS[0]


@pytest.fixture(scope="session")
def models_dir() -> Iterator[Path]:
    yield shared_models_dir()
    shutil.rmtree(_MODELS.pop(), ignore_errors=True)


@pytest.fixture(scope="session")
def model(models_dir: Path) -> LoadedModel:
    return load_model(models_dir)
