"""Scoring, shared by the API and the worker: the model a process serves (`models`), verdicts
(`verdicts`), storing them with their callbacks (`store`) and the thresholds a site's comments
are decided with (`thresholds`: the site's own, set by its admin, merged with the model's)."""
