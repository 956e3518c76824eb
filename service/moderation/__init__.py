"""Moderation: labels (the one path every label takes, and its undo), the queries the API and
the console share, and what a moderator does."""
