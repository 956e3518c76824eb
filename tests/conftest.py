"""Shared test set-up."""

from __future__ import annotations

import os

# scikit-learn's estimator checks include an array-API check that only runs when SciPy is
# imported with this set; set it before anything imports SciPy so the check runs, not skips.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
