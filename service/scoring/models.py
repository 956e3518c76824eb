"""The model a process serves: loaded once, reloaded when ACTIVE names another version, and
the old model's memory given back to the system."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from classifier import LoadedModel, Thresholds, load_model
from classifier.artifact import ACTIVE_FILE, active_version
from classifier.registry import last_activated
from service.settings import Settings

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


class ModelNotLoaded(RuntimeError):
    """No model could be loaded (none trained, or the artifact failed verification)."""


def settle_heap(replaced: bool) -> None:
    """Move what is alive now, a freshly loaded model above all, out of the garbage
    collector's way.

    A model is some hundred thousand long-lived Python objects, and each full collection walks
    every object in the process: about 75 ms here, holding the GIL, so a stall of every request
    the process is serving, several times a minute under load. Frozen (`gc.freeze`), they are
    skipped. After a swap the old model's objects are unfrozen and collected once (what a
    reload costs), so reloads do not pile up cyclic garbage that would never be collected,
    and the memory it freed is given back to the system.
    """
    if not gc.isenabled():
        return
    if replaced:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    if replaced:
        _return_free_memory()


def _return_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc's malloc_trim).

    The old model's many small allocations are freed in the middle of the heap, where malloc
    keeps them: without this, each reload left a process about 17 MB larger (a model's worth),
    measured on this service's model.
    """
    # The process's own symbols, the C library's among them; no malloc_trim: not glibc.
    with contextlib.suppress(AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


class ModelHolder:
    """The model in use, behind one object so that it can be swapped while serving.

    `reload_if_changed` looks at `models_dir/ACTIVE` at most once per `check_seconds` and
    loads the version it names if that differs from the current one; a version that fails to
    load is logged and the current model stays.
    """

    def __init__(
        self,
        models_dir: Path,
        thresholds: dict[str, float] | None = None,
        check_seconds: float = 1.0,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.threshold_overrides = dict(thresholds or {})
        self.check_seconds = check_seconds
        self._model: LoadedModel | None = None
        self._lock = threading.Lock()
        self._next_check = 0.0
        self._active_stamp: tuple[float, int] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelHolder:
        overrides = {
            name: value
            for name, value in (
                ("unsure", settings.threshold_unsure),
                ("spam", settings.threshold_spam),
                ("discard", settings.threshold_discard),
            )
            if value is not None
        }
        return cls(settings.models_dir, overrides, settings.model_reload_check_seconds)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def current(self) -> LoadedModel:
        model = self._model
        if model is None:
            raise ModelNotLoaded(f"no model loaded from {self.models_dir}")
        return model

    def load(self, version: str | None = None) -> LoadedModel:
        """Load `version` (the active one by default) and make it current; raises ArtifactError."""
        model = load_model(self.models_dir, version)
        if self.threshold_overrides:
            merged = {**model.thresholds.to_dict(), **self.threshold_overrides}
            model.thresholds = Thresholds.from_dict(merged)
        with self._lock:
            replaced = self._model is not None
            self._active_stamp = self._stamp()
            self._model = model
        settle_heap(replaced)
        log.info("model %s loaded, thresholds %s", model.version, model.thresholds.to_dict())
        return model

    def reload_if_changed(self) -> bool:
        """Swap in the version `ACTIVE` names if it changed; True if a new model was loaded."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.check_seconds
        stamp = self._stamp()
        if stamp == self._active_stamp and self._model is not None:
            return False
        version = active_version(self.models_dir)
        if version is None or (self._model is not None and version == self._model.version):
            self._active_stamp = stamp
            return False
        try:
            self.load(version)
        except Exception:
            log.exception("model %s failed to load; keeping the current model", version)
            self._active_stamp = stamp
            return self._load_last_activated()
        return True

    def _load_last_activated(self) -> bool:
        """After ACTIVE named a model that fails to load: serve the version the registry last
        activated (verified), if this process holds another one (it missed that activation
        while idle); True if it was loaded."""
        stamp = self._active_stamp
        fallback = last_activated(self.models_dir)
        if fallback is None or (self._model is not None and self._model.version == fallback):
            return False
        try:
            self.load(fallback)
        except Exception:
            log.exception("the last activated model %s failed to load too", fallback)
            return False
        finally:
            self._active_stamp = stamp  # still watching ACTIVE for the next change
        return True

    def _stamp(self) -> tuple[float, int] | None:
        try:
            info = (self.models_dir / ACTIVE_FILE).stat()
        except OSError:
            return None
        return (info.st_mtime, info.st_ino)
