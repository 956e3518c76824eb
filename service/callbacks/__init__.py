"""Signed callbacks, in four parts: `urls` (is a callback URL safe to call, and where to
connect), `signing` (the signature header), `client` (the HTTP pools), `delivery` (claim, post,
record and schedule an attempt). The names below are the package's surface.
"""

from service.callbacks.client import USER_AGENT, CallbackClient, make_client, send
from service.callbacks.delivery import (
    DELIVERY_HEADER,
    Attempted,
    Claim,
    DeliveryOutcome,
    Render,
    attempt,
    backoff_seconds,
    claim_new,
    deliver,
    lease,
    post,
    record,
)
from service.callbacks.signing import SIGNATURE_HEADER, signature, verify_signature
from service.callbacks.urls import (
    Resolver,
    Target,
    UnsafeCallbackURL,
    check_callback_url,
    embedded_ipv4,
    is_public,
    needs_lookup,
    resolve,
)

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "USER_AGENT",
    "Attempted",
    "CallbackClient",
    "Claim",
    "DeliveryOutcome",
    "Render",
    "Resolver",
    "Target",
    "UnsafeCallbackURL",
    "attempt",
    "backoff_seconds",
    "check_callback_url",
    "claim_new",
    "deliver",
    "embedded_ipv4",
    "is_public",
    "lease",
    "make_client",
    "needs_lookup",
    "post",
    "record",
    "resolve",
    "send",
    "signature",
    "verify_signature",
]
