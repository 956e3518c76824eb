"""Corpora, training, evaluation and the promotion gate. Imports `classifier`, never `service`."""
