"""The train / score / evaluate commands, run as a user would (in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from classifier.artifact import active_version


def _run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COMMENTGUARD_MODELS_DIR": str(cwd / "models"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    data = folder / "tiny.csv"
    from training.corpora import corpus_files

    data.write_text(corpus_files("youtube")[0].read_text(encoding="utf-8"), encoding="utf-8")
    done = _run("train", "--data", str(data), cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder


def test_train_writes_and_activates_a_version(trained: Path) -> None:
    version = active_version(trained / "models")
    assert version and (trained / "models" / version / "model.joblib").is_file()


def test_score_prints_json_verdict(trained: Path) -> None:
    done = _run("score", "check out my channel http://bit.ly/x", "--json", cwd=trained)
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["decision"] in ("unsure", "spam", "discard")
    assert verdict["model_version"] == active_version(trained / "models")
    assert verdict["reasons"] and {"feature", "description", "weight"} <= set(verdict["reasons"][0])


def test_score_reads_one_comment_a_line_from_stdin(trained: Path) -> None:
    texts = ["check out my channel http://bit.ly/x", "I love this song", "third one"]
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "score", "-"],
        input="\n".join(texts) + "\n",
        cwd=trained,
        env={**os.environ, "COMMENTGUARD_MODELS_DIR": str(trained / "models")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    verdicts = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(verdicts) == 3
    one = json.loads(_run("score", texts[0], "--json", cwd=trained).stdout)
    assert verdicts[0]["score"] == one["score"] and verdicts[0]["decision"] == one["decision"]


# What `score` must not import: scikit-learn's import alone costs more than a second of CPU,
# and the training code, the service and its frameworks have no part in scoring one comment.
NOT_ON_THE_SCORING_PATH = (
    "sklearn",
    "scipy",
    "joblib",
    "training",
    "service.api",
    "fastapi",
    "starlette",
    "sqlalchemy",
    "alembic",
    "celery",
    "redis",
    "httpx",
    "uvicorn",
)


@pytest.mark.parametrize("args", [("hello",), ("hello", "--json"), ("-",)])
def test_score_imports_nothing_of_training_nor_the_service(
    trained: Path, args: tuple[str, ...]
) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "service.cli", "score", *args],
        input="check out my channel\n",
        cwd=trained,
        env={**os.environ, "COMMENTGUARD_MODELS_DIR": str(trained / "models")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "classifier.scoring" in imported
    forbidden = sorted(
        name
        for name in imported
        if any(name == top or name.startswith(top + ".") for top in NOT_ON_THE_SCORING_PATH)
    )
    assert not forbidden, f"`score {' '.join(args)}` imported {forbidden}"


def test_score_without_a_model_fails_clearly(tmp_path: Path) -> None:
    done = _run("score", "hello", cwd=tmp_path)
    assert done.returncode == 2
    assert "no model has been trained" in done.stderr
    assert "Traceback" not in done.stderr


def test_evaluate_needs_exactly_one_protocol(tmp_path: Path) -> None:
    done = _run("evaluate", "--json", cwd=tmp_path)
    assert done.returncode == 2
    assert "exactly one of" in done.stderr


def test_evaluate_cv_prints_metrics_json(tmp_path: Path) -> None:
    done = _run("evaluate", "--cv", "2", "--corpus", "youtube", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["metrics"]) >= {"precision", "recall", "f1", "mcc", "roc_auc", "fpr", "n"}
    assert len(result["folds"]) == 2
    assert result["metrics"]["mcc"] > 0.8
    # Not on a terminal (no bar drawn): each step on a line of its own, as it happens.
    steps = [line for line in done.stderr.splitlines() if "fold" in line]
    assert len(steps) >= 2, done.stderr


def test_models_list_shows_whole_versions_and_names_the_mcc_set(trained: Path) -> None:
    version = active_version(trained / "models")
    assert version is not None
    done = _run("models", "list", cwd=trained, env={"COLUMNS": "30"})
    assert done.returncode == 0, done.stderr
    assert version in done.stdout
    # One file: no corpus to leave out, so three folds (the default model: leave-one-domain-out).
    assert "(unseen rows, 3-fold, n=" in done.stdout
    listed = json.loads(_run("models", "list", "--json", cwd=trained).stdout)
    assert [row["version"] for row in listed] == [version]
    assert listed[0]["status"] == "active" and "validation" in listed[0]["metrics"]


def test_train_rejects_a_bad_data_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("content,label\nhello,perhaps\n")
    done = _run("train", "--data", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert "bad.csv:2" in done.stderr and "Traceback" not in done.stderr


def test_retrain_after_train_can_be_promoted(tmp_path: Path) -> None:
    """`commentguard train` leaves out the gate's validation split, as serve's first run does:
    a model trained on it would score it perfectly and the gate would refuse every retrain."""
    env = {
        "COMMENTGUARD_RETRAIN_CORPORA": "youtube",
        "COMMENTGUARD_DATA_DIR": str(tmp_path / "var"),
        "COMMENTGUARD_LOG_LEVEL": "WARNING",
    }
    trained = _run("train", "--corpus", "youtube", cwd=tmp_path, env=env)
    assert trained.returncode == 0, trained.stderr
    assert _run("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    done = _run("retrain", "--json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["promoted"], record["gate"]
    assert record["active_before"] == trained.stdout.strip().splitlines()[-1]
