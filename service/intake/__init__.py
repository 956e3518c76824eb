"""A comment arrives: its site (`sites.py`) and its row (`comments.py`), submitted by webhook
(`submissions.py`) or checked at once (`checks.py`), gathered in batches (`batching.py`) and
written with one INSERT per batch (`writes.py`)."""
