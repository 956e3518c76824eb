"""The Akismet protocol: parsing its requests (`requests`), comment-check with its test values
(`comment_check`), submit-spam/submit-ham (`feedback`) and what its reports count (`reports`).

The router (`service/api/routes/akismet.py`) only turns these results into Akismet's exact bodies.
A checked comment goes through the same functions as `POST /v1/check` (`intake` and `scoring`),
so it is stored and scored exactly like any other comment.
"""

from service.akismet.comment_check import AkismetSubmission, answers_spam, check, to_submission
from service.akismet.feedback import SUBMISSION_THANKS, record_feedback
from service.akismet.reports import key_sites, stats, subscription, usage_limit
from service.akismet.requests import (
    AkismetRequest,
    UnsupportedCharset,
    actor,
    authenticate,
    missing_field,
    parse_request,
    private_extra,
    public_name,
)

__all__ = [
    "SUBMISSION_THANKS",
    "AkismetRequest",
    "AkismetSubmission",
    "UnsupportedCharset",
    "actor",
    "answers_spam",
    "authenticate",
    "check",
    "key_sites",
    "missing_field",
    "parse_request",
    "private_extra",
    "public_name",
    "record_feedback",
    "stats",
    "subscription",
    "to_submission",
    "usage_limit",
]
