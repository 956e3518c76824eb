"""Signing a callback's body, and checking a signature as a receiving platform would."""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Commentguard-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Commentguard-Signature` value: HMAC-SHA256 of "<t>.<body>" with the site's secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(secret: str, header: str, body: bytes, tolerance: float = 300.0) -> bool:
    """Check a signature header as a receiving platform would (also used by the tests)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)
