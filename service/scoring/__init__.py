"""Scoring, shared by the API and the worker: the model a process serves (`models`), verdicts
(`verdicts`) and storing them with their callbacks (`store`)."""
