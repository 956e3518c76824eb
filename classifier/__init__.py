"""The comment classifier: normalisation, features, pipeline, artifacts and scoring with reasons.

This package is pure ML: it imports no web, queue or database code.
"""

from classifier.artifact import ArtifactError, load_model, save_model
from classifier.normalize import normalize_text
from classifier.pipeline import build_pipeline
from classifier.record import Comment
from classifier.scoring import Decision, LoadedModel, Reason, Thresholds, Verdict

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
