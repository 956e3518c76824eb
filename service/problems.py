"""The refusals a request can meet, as plain exceptions: the domain raises them, the HTTP layer
(service/api/errors.py) answers each in the one error shape. No web framework here.
"""

from __future__ import annotations

from typing import Any

RETRY_AFTER_SECONDS = "5"


class ApiError(Exception):
    """An error the API answers with on purpose."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def unavailable_error(message: str) -> ApiError:
    """503 with a Retry-After: a dependency (queue, database, model) is not there right now."""
    return ApiError(503, "unavailable", message, headers={"Retry-After": RETRY_AFTER_SECONDS})
