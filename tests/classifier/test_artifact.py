from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from classifier.artifact import (
    ACTIVE_FILE,
    METADATA_FILE,
    MODEL_FILE,
    SCORING_FILE,
    ArtifactError,
    active_version,
    list_versions,
    load_model,
    save_model,
    set_active,
)
from classifier.features import to_frame
from classifier.scoring import LoadedModel, Thresholds
from training.corpora import load_bundled


@pytest.fixture
def copy_of_models(models_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(models_dir, target)
    return target


def test_load_model_reads_active_version_with_metadata(models_dir: Path) -> None:
    model = load_model(models_dir)
    assert model.version == active_version(models_dir)
    meta = model.metadata
    for key in (
        "created_at",
        "git_commit",
        "libraries",
        "data",
        "params",
        "thresholds",
        "metrics",
        "model_sha256",
    ):
        assert key in meta
    assert set(meta["libraries"]) >= {"python", "scikit-learn", "numpy"}
    corpora = meta["data"]["corpora"]
    assert set(corpora) == {"youtube", "instagram"}
    assert all(len(sha) == 64 for files in corpora.values() for sha in files.values())
    assert sum(len(files) for files in corpora.values()) == 6  # five videos + one file


def test_load_model_refuses_a_one_byte_change(copy_of_models: Path) -> None:
    version = active_version(copy_of_models)
    assert version
    path = copy_of_models / version / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch") as info:
        load_model(copy_of_models)
    assert str(path.resolve()) in str(info.value)


def test_load_model_refuses_another_sklearn_version(copy_of_models: Path) -> None:
    version = active_version(copy_of_models)
    assert version
    meta_path = copy_of_models / version / METADATA_FILE
    meta = json.loads(meta_path.read_text())
    meta["libraries"]["scikit-learn"] = "0.24.2"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"scikit-learn 0\.24\.2"):
        load_model(copy_of_models)


@pytest.mark.parametrize("version", ["../etc", "a/b", "..", "/abs", ""])
def test_load_model_refuses_paths_outside_the_models_dir(models_dir: Path, version: str) -> None:
    with pytest.raises(ArtifactError):
        load_model(models_dir, version or "bad version")


def test_load_model_without_any_model_says_so(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no model has been trained"):
        load_model(tmp_path)


def test_save_model_never_overwrites_a_version(model: LoadedModel, tmp_path: Path) -> None:
    thresholds = Thresholds(0.2, 0.6, 0.95)
    save_model(model.pipeline, tmp_path, thresholds=thresholds, version="v1")
    with pytest.raises(OSError):
        save_model(model.pipeline, tmp_path, thresholds=thresholds, version="v1")
    assert list_versions(tmp_path) == ["v1"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_set_active_refuses_a_tampered_version(copy_of_models: Path, model: LoadedModel) -> None:
    saved = save_model(model.pipeline, copy_of_models, thresholds=model.thresholds, version="zz")
    (saved / MODEL_FILE).write_bytes(b"not a model")
    before = (copy_of_models / ACTIVE_FILE).read_text()
    with pytest.raises(ArtifactError):
        set_active(copy_of_models, "zz")
    assert (copy_of_models / ACTIVE_FILE).read_text() == before


def test_load_model_scores_from_its_arrays_as_the_sklearn_pipeline_does(
    models_dir: Path,
) -> None:
    """The arrays `score` and the service load give the pipeline's own probabilities, and
    the same verdicts and reasons as a model built from the unpickled pipeline."""
    model = load_model(models_dir)
    assert model._pipeline is None, "loaded from its arrays, the pipeline not unpickled"
    sample = [
        e.comment
        for name in ("youtube", "instagram", "sms", "spamassassin")
        for e in load_bundled([name])[::25]
    ]
    assert len(sample) > 400
    from_arrays = model.probabilities(sample)
    reference = model.pipeline.predict_proba(to_frame(sample))[:, 1]
    np.testing.assert_allclose(from_arrays, reference, rtol=0, atol=1e-9)
    from_pipeline = LoadedModel(model.version, model.pipeline, model.thresholds)
    assert [v.to_dict() for v in model.score_many(sample[:100])] == [
        v.to_dict() for v in from_pipeline.score_many(sample[:100])
    ]


def test_load_model_refuses_a_changed_scoring_file(copy_of_models: Path) -> None:
    version = active_version(copy_of_models)
    assert version
    path = copy_of_models / version / SCORING_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_model(copy_of_models)


def test_load_model_without_scoring_arrays_loads_its_pipeline(copy_of_models: Path) -> None:
    """A version saved before the arrays existed still loads, from its pipeline."""
    version = active_version(copy_of_models)
    assert version
    reference = load_model(copy_of_models).probabilities(["check out my channel"])
    (copy_of_models / version / SCORING_FILE).unlink()
    meta_path = copy_of_models / version / METADATA_FILE
    meta = json.loads(meta_path.read_text())
    del meta["scoring_file"], meta["scoring_sha256"]
    meta_path.write_text(json.dumps(meta))
    model = load_model(copy_of_models)
    assert model._pipeline is not None
    assert model.probabilities(["check out my channel"]) == pytest.approx(reference, abs=1e-12)
