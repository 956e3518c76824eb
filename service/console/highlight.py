"""Reasons shown in place: the parts of a comment's text that pushed its score toward spam.

Safe by construction: the spans are found as character offsets into the raw text, then the
text is cut at those offsets and every piece is HTML-escaped on its own; the only markup added
is `<mark>` elements whose single attribute is escaped too. No piece of the comment is ever
emitted unescaped, whatever its reasons say.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from markupsafe import Markup

from classifier.signals import URL_SHORTENERS

# At most this many marks per reason: a short fragment can match all over a long comment.
MAX_MATCHES_PER_REASON = 50

# The same patterns as classifier.normalize and classifier.signals use (their own are private),
# applied to the raw text the moderator reads rather than the normalised one the model reads.
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"'\]\[)(]+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b", re.IGNORECASE)
_SIGNAL_PATTERNS: dict[str, re.Pattern[str]] = {
    "links": _URL,
    "author_url_linked": _URL,
    "email_in_text": _EMAIL,
    "phone_number": re.compile(r"(?:\+|\b)\d(?:[\s().-]{0,2}\d){8,14}\b"),
    "crypto_wallet": re.compile(
        r"\b(?:0x[a-fA-F0-9]{40}|(?:bc1|[13])[a-km-zA-HJ-NP-Z1-9]{25,39}"
        r"|T[1-9A-HJ-NP-Za-km-z]{33})\b"
    ),
    "mentions": re.compile(r"(?<!\S)[@#][\w.]{2,}"),
    "money": re.compile(
        r"[$€£₿]|\b(?:usd|btc|eth|usdt|bitcoin|crypto|forex|profit)\b", re.IGNORECASE
    ),
    "exclamations": re.compile(r"!+"),
    "repeated_chars": re.compile(r"(.)\1{3,}"),
    "mixed_scripts": re.compile("\\b(?=\\w*[A-Za-z])(?=\\w*[\u0370-\u03ff\u0400-\u052f])\\w+\\b"),
}


@dataclass(frozen=True, slots=True)
class Span:
    """Characters `start:stop` of the text, marked for the reasons named in `why`."""

    start: int
    stop: int
    why: tuple[str, ...]


def reason_spans(text: str, reasons: Iterable[Mapping[str, Any]]) -> list[Span]:
    """Non-overlapping, sorted spans of `text` behind the reasons that pushed toward spam."""
    raw: list[tuple[int, int, str]] = []
    for reason in reasons:
        try:
            weight = float(reason.get("weight", 0.0))
        except (TypeError, ValueError):
            continue
        feature = reason.get("feature")
        if weight <= 0 or not isinstance(feature, str):
            continue
        pattern = _pattern_for(feature)
        if pattern is None:
            continue
        description = str(reason.get("description") or feature)
        for count, match in enumerate(pattern.finditer(text)):
            if count >= MAX_MATCHES_PER_REASON:
                break
            if match.end() > match.start():
                raw.append((match.start(), match.end(), description))
    return _merge(raw)


def highlight(text: str, reasons: Iterable[Mapping[str, Any]]) -> Markup:
    """`text` as escaped HTML, with the spans behind spam-ward reasons in `<mark>` elements."""
    return render_spans(text, reason_spans(text, reasons))


def render_spans(text: str, spans: Sequence[Span]) -> Markup:
    """Escape `text` piece by piece, wrapping each span (sorted, disjoint) in a `<mark>`.

    Every piece of `text`, and every title, goes through `html.escape` (quotes included);
    the only unescaped strings are the two literal tags below.
    """
    out: list[str] = []
    at = 0
    for span in spans:
        if span.start < at or span.stop > len(text) or span.stop <= span.start:
            raise ValueError(f"spans must be sorted, disjoint and inside the text: {span}")
        out.append(html.escape(text[at : span.start]))
        out.append('<mark class="why" title="')
        out.append(html.escape("; ".join(span.why)))
        out.append('">')
        out.append(html.escape(text[span.start : span.stop]))
        out.append("</mark>")
        at = span.stop
    out.append(html.escape(text[at:]))
    return Markup("".join(out))


def _merge(raw: list[tuple[int, int, str]]) -> list[Span]:
    raw.sort()
    spans: list[Span] = []
    for start, stop, why in raw:
        if spans and start < spans[-1].stop:
            last = spans[-1]
            reasons = last.why if why in last.why else (*last.why, why)
            spans[-1] = Span(last.start, max(last.stop, stop), reasons)
        else:
            spans.append(Span(start, stop, (why,)))
    return spans


@lru_cache(maxsize=4096)
def _pattern_for(feature: str) -> re.Pattern[str] | None:
    """Where a reason shows in the raw text; None for reasons that are not in it."""
    family, _, term = feature.partition(":")
    if family == "word":
        words = term.split()
        if not words:
            return None
        # The model's words are normalised (lower case, folded); match them case-insensitively
        # with anything but letters between them, as the tokenizer splits.
        body = r"\W+".join(re.escape(word) for word in words)
        return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)
    if family == "chars":
        fragment = term.strip()
        return re.compile(re.escape(fragment), re.IGNORECASE) if len(fragment) >= 2 else None
    if family == "domain":
        _kind, _, domain = term.partition(":")
        return (
            re.compile(rf"(?<![\w.-]){re.escape(domain)}(?![\w-])", re.IGNORECASE)
            if (domain)
            else None
        )
    if family == "signal":
        if term == "shortened_link":
            hosts = "|".join(re.escape(host) for host in sorted(URL_SHORTENERS))
            return re.compile(rf"(?:https?://)?(?:{hosts})/[^\s<>\"']*", re.IGNORECASE)
        return _SIGNAL_PATTERNS.get(term)
    return None
