"""Learning from labels in the service: a site's labels refit its adapter within seconds
(`adapters`), and enough labels retrain the shared model (`retraining`: the labels from the
database into `training/retrain.py`, and the one way to queue a retrain)."""
