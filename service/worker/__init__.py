"""The Celery side: the app and the producer that queues tasks (`queue.py`), the thin tasks a
worker runs (`tasks.py`), and the sweep of what was left pending (`sweep.py`)."""
