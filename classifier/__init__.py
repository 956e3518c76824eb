"""The comment classifier: normalisation, features, pipeline, artifacts and scoring with reasons.

This package is pure ML: it imports no web, queue or database code. Its names are imported on
first use, so that importing one module (the scoring path's, say) does not import them all:
`build_pipeline` alone imports scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from classifier.artifact import ArtifactError, load_model, save_model
    from classifier.normalize import normalize_text
    from classifier.pipeline import build_pipeline
    from classifier.record import Comment
    from classifier.scoring import Decision, LoadedModel, Reason, Thresholds, Verdict

_WHERE = {
    "ArtifactError": "classifier.artifact",
    "load_model": "classifier.artifact",
    "save_model": "classifier.artifact",
    "normalize_text": "classifier.normalize",
    "build_pipeline": "classifier.pipeline",
    "Comment": "classifier.record",
    "Decision": "classifier.scoring",
    "LoadedModel": "classifier.scoring",
    "Reason": "classifier.scoring",
    "Thresholds": "classifier.scoring",
    "Verdict": "classifier.scoring",
}

__all__ = [
    "ArtifactError",
    "Comment",
    "Decision",
    "LoadedModel",
    "Reason",
    "Thresholds",
    "Verdict",
    "build_pipeline",
    "load_model",
    "normalize_text",
    "save_model",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'classifier' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
