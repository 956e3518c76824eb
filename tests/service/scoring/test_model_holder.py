"""The model holder: loads the active version, applies threshold overrides, swaps on ACTIVE."""

from __future__ import annotations

import gc
import shutil
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest

from classifier.artifact import active_version, set_active
from service.intake.comments import new_comment
from service.schemas import CheckIn
from service.scoring.models import ModelHolder, ModelNotLoaded
from service.scoring.verdicts import compute_verdicts, score_ahead


def own_copy(models_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    """A models folder of the test's own, holding a copy of the active version."""
    folder = tmp_path / "models"
    version = active_version(models_dir)
    assert version is not None
    shutil.copytree(models_dir / version, folder / version)
    set_active(folder, version)
    return folder, version


def test_load_active_model_with_threshold_override(models_dir: Path) -> None:
    holder = ModelHolder(models_dir, {"discard": 1.0})
    model = holder.load()
    assert model.version == active_version(models_dir)
    assert holder.current.thresholds.discard == 1.0


def test_refuse_current_before_load(tmp_path: Path) -> None:
    holder = ModelHolder(tmp_path)
    assert not holder.loaded
    with pytest.raises(ModelNotLoaded):
        _ = holder.current


def test_reload_when_active_changes(models_dir: Path, tmp_path: Path) -> None:
    folder, version = own_copy(models_dir, tmp_path)
    holder = ModelHolder(folder, check_seconds=0.0)
    holder.load()
    assert not holder.reload_if_changed()
    shutil.copytree(folder / version, folder / f"{version}-b")
    set_active(folder, f"{version}-b")
    assert holder.reload_if_changed()
    assert holder.current.version == f"{version}-b"


def test_keep_current_model_when_new_version_is_broken(models_dir: Path, tmp_path: Path) -> None:
    folder, version = own_copy(models_dir, tmp_path)
    holder = ModelHolder(folder, check_seconds=0.0)
    holder.load()
    broken = folder / f"{version}-broken"
    shutil.copytree(folder / version, broken)
    (broken / "model.joblib").write_bytes(b"tampered")
    (folder / "ACTIVE").write_text(f"{version}-broken\n")
    assert not holder.reload_if_changed()
    assert holder.current.version == version


def test_a_loaded_model_is_out_of_the_collectors_way_and_a_replaced_one_is_freed(
    models_dir: Path, tmp_path: Path
) -> None:
    """Full collections skip the model's objects (frozen); a reload frees the old model."""
    folder, version = own_copy(models_dir, tmp_path)
    holder = ModelHolder(folder, check_seconds=0.0)
    model = holder.load()
    features = model.vectorizer
    in_generations = {id(o) for generation in range(3) for o in gc.get_objects(generation)}
    assert id(features) not in in_generations, "the model's objects are frozen"
    assert gc.get_freeze_count() > 0
    old = weakref.ref(features)
    del model, features
    shutil.copytree(folder / version, folder / f"{version}-b")
    set_active(folder, f"{version}-b")
    assert holder.reload_if_changed()
    assert old() is None, "the replaced model is freed, not kept frozen"


RELOADS = """
import shutil, sys, tempfile
from pathlib import Path
import psutil
from classifier.artifact import set_active
from classifier.record import Comment
from service.scoring.models import ModelHolder

source, version = Path(sys.argv[1]), sys.argv[2]
folder = Path(tempfile.mkdtemp())
for name in (version, version + "-b"):
    shutil.copytree(source / version, folder / name)
set_active(folder, version)
holder = ModelHolder(folder, check_seconds=0.0)
holder.load()
texts = [Comment(content=f"comment {i} http://x.example buy now") for i in range(64)]
holder.current.score_many(texts)
rss = [psutil.Process().memory_info().rss]
for i in range(4):
    set_active(folder, version + ("-b" if i % 2 == 0 else ""))
    assert holder.reload_if_changed()
    holder.current.score_many(texts)
    rss.append(psutil.Process().memory_info().rss)
print(max(rss) - rss[0])
"""


def test_reloads_give_the_old_models_memory_back(models_dir: Path) -> None:
    """Four reloads in a fresh process: resident memory stays where the first load left it
    (without giving freed memory back, each reload kept a model's worth, 17 MB here)."""
    version = active_version(models_dir)
    assert version is not None
    out = subprocess.run(
        [sys.executable, "-c", RELOADS, str(models_dir), version],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert int(out.stdout.strip()) < 6 * 2**20


def test_a_verdicts_duration_counts_the_scoring_once(models_dir: Path) -> None:
    """`duration_ms` is the time the batch took: scoring (done here, or ahead) plus the rest,
    never more than the call itself."""
    model = ModelHolder(models_dir).load()
    body = CheckIn(content="Cheap pills, best prices, click now http://spam.example " * 20)
    comments = [new_comment(1, body, None) for _ in range(32)]
    started = time.perf_counter()
    verdicts = compute_verdicts(comments, model, None, [None] * 32, [None] * 32)
    took_ms = (time.perf_counter() - started) * 1000
    assert 0 < verdicts[0].duration_ms <= took_ms + 0.001

    started = time.perf_counter()
    ahead = score_ahead(comments, model, None)
    verdicts = compute_verdicts(comments, model, None, [None] * 32, [None] * 32, ahead)
    took_ms = (time.perf_counter() - started) * 1000
    assert ahead.seconds * 1000 <= verdicts[0].duration_ms <= took_ms + 0.001
