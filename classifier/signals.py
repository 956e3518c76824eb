"""Metadata signals of a comment: links and domains, capitals, digits, emoji, disguised letters,
phone numbers, wallets, mentions, money words and the honeypot.

Character-class counts are computed for a whole batch at once over code points (numpy), the
rest with one regular expression each, so signals cost a few microseconds per comment.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

import numpy as np

URL_SHORTENERS = frozenset(
    [
        "bit.ly",
        "goo.gl",
        "tinyurl.com",
        "t.co",
        "ow.ly",
        "is.gd",
        "buff.ly",
        "adf.ly",
        "bit.do",
        "cutt.ly",
        "rebrand.ly",
        "shorte.st",
        "tiny.cc",
        "rb.gy",
        "t.me",
        "wa.me",
        "linktr.ee",
    ]
)

# (name, plain-words description with {} for the value); the order is the output's columns.
SIGNALS: tuple[tuple[str, str], ...] = (
    ("links", "{} link(s)"),
    ("link_domains", "links to {} different site(s)"),
    ("shortened_link", "a shortened link"),
    ("author_url", "the author gave a website"),
    ("author_url_linked", "the author's website is linked in the text"),
    ("email_in_text", "an e-mail address in the text"),
    ("capitals", "{:.0%} capital letters"),
    ("digits", "{:.0%} digits"),
    ("repeated_chars", "a character repeated {} times in a row"),
    ("length", "{} characters long"),
    ("words", "{} words"),
    ("emoji", "{} emoji"),
    ("mixed_scripts", "words mixing Latin and Cyrillic or Greek letters"),
    ("disguised_letters", "{:.0%} of letters disguised (look-alikes, accents)"),
    ("phone_number", "a phone number"),
    ("crypto_wallet", "a crypto-wallet address"),
    ("mentions", "{} @mention(s) or #hashtag(s)"),
    ("exclamations", "{} exclamation mark(s)"),
    ("money", "{} money word(s) or symbol(s)"),
    ("honeypot", "the honeypot field was filled in"),
)
SIGNAL_NAMES: tuple[str, ...] = tuple(name for name, _ in SIGNALS)
_COLUMN = {name: i for i, name in enumerate(SIGNAL_NAMES)}
_RATIOS = frozenset({"capitals", "digits", "disguised_letters"})
_FLAGS = frozenset(
    {
        "shortened_link",
        "author_url",
        "author_url_linked",
        "email_in_text",
        "mixed_scripts",
        "phone_number",
        "crypto_wallet",
        "honeypot",
    }
)

_PHONE = re.compile(r"(?:\+|\b)\d(?:[\s().-]{0,2}\d){8,14}\b")
# What a phone-number pattern also matches in honest comments, above all help requests: IP
# addresses, dates and times, version numbers, and numbers inside code or URLs.
_NOT_PHONE = re.compile(
    r"^\d{1,3}(?:\.\d{1,3}){3}"  # an IPv4 address (perhaps more digits after it)
    r"|\d{4}[-./]\d{1,2}[-./]\d{1,2}"  # a date, year first
    r"|\d{1,2}[-./]\d{1,2}[-./]\d{4}"  # a date, year last
    r"|^\d+(?:\.\d+){2,}$"  # a version or a dotted number
)
_CODE_NEIGHBOUR = frozenset("./:=_-#&?%$'\"[]{}<>\\")
# Length and word counts are capped: past a few hundred characters, length says more about
# where a comment was written (e-mail, a help forum, a review) than about whether it is spam.
LENGTH_CAP = 400
WORDS_CAP = 60
_WALLET = re.compile(
    r"\b(?:0x[a-fA-F0-9]{40}|(?:bc1|[13])[a-km-zA-HJ-NP-Z1-9]{25,39}|T[1-9A-HJ-NP-Za-km-z]{33})\b"
)
_MENTION = re.compile(r"(?:^|\s)[@#][\w.]{2,}")
_MONEY = re.compile(r"[$€£₿]|\b(?:usd|btc|eth|usdt|bitcoin|crypto|forex|profit)\b")
_MIXED_WORD = re.compile("\\b(?=\\w*[A-Za-z])(?=\\w*[\u0370-\u03ff\u0400-\u052f])\\w+\\b")


class PreparedLike(Protocol):
    @property
    def clean(self) -> str: ...
    @property
    def raw(self) -> str: ...
    @property
    def domains(self) -> tuple[str, ...]: ...
    @property
    def honeypot(self) -> str: ...
    @property
    def text(self) -> str: ...


@lru_cache(maxsize=1)
def _tables() -> dict[str, np.ndarray]:
    """Per-code-point classes for the Basic Multilingual Plane."""
    chars = [chr(c) for c in range(0x10000)]
    alpha = np.array([c.isalpha() for c in chars], dtype=bool)
    codes = np.arange(0x10000)
    native = ((codes >= 0x0590) & (codes <= 0x1DFF) & ~((codes >= 0x1D00) & (codes <= 0x1DBF))) | (
        (codes >= 0x2E80) & (codes <= 0xD7FF)
    )
    return {
        "alpha": alpha,
        "upper": np.array([c.isupper() for c in chars], dtype=bool),
        "digit": np.array([c.isdigit() for c in chars], dtype=bool),
        "latin": np.array([c.isascii() and c.isalpha() for c in chars], dtype=bool),
        # Non-ASCII letters that are not a language of their own: look-alikes and accents.
        "disguise": alpha & (codes > 127) & ~native,
        "emoji": ((codes >= 0x2600) & (codes <= 0x27BF))
        | ((codes >= 0x2B00) & (codes <= 0x2BFF))
        | (codes == 0xFE0F),
    }


def _points(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Code points of the texts joined by NUL, and each code point's document."""
    joined = "\x00".join(texts)
    points = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    doc = np.cumsum(points == 0)
    return points, doc


def _count(doc: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(doc[mask], minlength=n).astype(np.float64)


def signal_matrix(prepared: Sequence[PreparedLike]) -> np.ndarray:
    """The signals of each prepared comment, one row each, in `SIGNALS` order.

    Counts are log1p-scaled, ratios in [0, 1], flags 0/1.
    """
    n = len(prepared)
    out = np.zeros((n, len(SIGNALS)), dtype=np.float64)
    if n == 0:
        return out
    tables = _tables()
    clean_texts = [p.clean for p in prepared]
    points, doc = _points(clean_texts)
    bmp = points < 0x10000
    index = np.where(bmp, points, 0)
    letters = _count(doc, tables["alpha"][index] & bmp, n)
    upper = _count(doc, tables["upper"][index] & bmp, n)
    digits = _count(doc, tables["digit"][index] & bmp, n)
    lengths = np.fromiter((len(t) for t in clean_texts), dtype=np.float64, count=n)
    # Longest run of one repeated character (runs of 4 or more count).
    longest = np.zeros(n, dtype=np.int64)
    if len(points):
        run_start = np.flatnonzero(np.concatenate(([True], points[1:] != points[:-1])))
        run_length = np.diff(np.append(run_start, len(points)))
        np.maximum.at(longest, doc[run_start], np.where(points[run_start] == 0, 0, run_length))
    longest[longest < 4] = 0

    raw_points, raw_doc = _points([p.raw for p in prepared])
    raw_bmp = raw_points < 0x10000
    raw_index = np.where(raw_bmp, raw_points, 0)
    emoji = _count(
        raw_doc,
        (tables["emoji"][raw_index] & raw_bmp)
        | ((raw_points >= 0x1F000) & (raw_points <= 0x1FAFF)),
        n,
    )
    latin = _count(raw_doc, tables["latin"][raw_index] & raw_bmp, n)
    disguised = _count(
        raw_doc,
        (tables["disguise"][raw_index] & raw_bmp)
        | ((raw_points >= 0x1D400) & (raw_points <= 0x1D7FF)),
        n,
    )
    disguised[latin == 0] = 0.0  # a text with no Latin letters is a language, not a disguise
    exclamations = _count(doc, points == ord("!"), n)

    safe_letters = np.maximum(letters, 1.0)
    out[:, _COLUMN["capitals"]] = upper / safe_letters
    out[:, _COLUMN["digits"]] = digits / np.maximum(lengths, 1.0)
    out[:, _COLUMN["repeated_chars"]] = np.log1p(longest)
    out[:, _COLUMN["length"]] = np.log1p(np.minimum(lengths, LENGTH_CAP))
    out[:, _COLUMN["emoji"]] = np.log1p(emoji)
    out[:, _COLUMN["disguised_letters"]] = np.minimum(1.0, disguised / safe_letters)
    out[:, _COLUMN["exclamations"]] = np.log1p(exclamations)

    # Per-comment work in plain Python lists (assigning numpy elements one by one is slower).
    links_n, domains_n, shortened, author_given, author_linked, mail = ([0.0] * n for _ in range(6))
    words, mixed, phone, wallet, mentions, money, honeypot = ([0.0] * n for _ in range(7))
    for i, p in enumerate(prepared):
        clean = p.clean
        if p.domains:
            links = [t[5:] for t in p.domains if t.startswith("link:")]
            author = next((t[7:] for t in p.domains if t.startswith("author:")), "")
            links_n[i] = math.log1p(len(links))
            domains_n[i] = math.log1p(len(set(links)))
            shortened[i] = float(any(d in URL_SHORTENERS for d in links))
            author_given[i] = float(bool(author))
            author_linked[i] = float(bool(author) and author in links)
            mail[i] = float(any(t.startswith("mail:") for t in p.domains))
        words[i] = math.log1p(min(clean.count(" ") + 1, WORDS_CAP) if clean else 0)
        if not p.raw.isascii():
            mixed[i] = float(_MIXED_WORD.search(p.raw) is not None)
        if digits[i] >= 9:
            phone[i] = float(_has_phone(clean))
        if digits[i] >= 4 and lengths[i] >= 26:  # every wallet format has digits
            wallet[i] = float(_WALLET.search(clean) is not None)
        if "@" in clean or "#" in clean:
            mentions[i] = math.log1p(len(_MENTION.findall(clean)))
        money[i] = math.log1p(len(_MONEY.findall(p.text)))
        if p.honeypot:
            honeypot[i] = float(bool(p.honeypot.strip()))
    for name, column in (
        ("links", links_n),
        ("link_domains", domains_n),
        ("shortened_link", shortened),
        ("author_url", author_given),
        ("author_url_linked", author_linked),
        ("email_in_text", mail),
        ("words", words),
        ("mixed_scripts", mixed),
        ("phone_number", phone),
        ("crypto_wallet", wallet),
        ("mentions", mentions),
        ("money", money),
        ("honeypot", honeypot),
    ):
        out[:, _COLUMN[name]] = column
    return out


def _has_phone(text: str) -> bool:
    """Whether `text` holds a phone number: a long run of digits in phone shapes, standing
    free in prose (not glued to code or URL punctuation) and not an IP address, a date or a
    version number."""
    for match in _PHONE.finditer(text):
        start, end = match.span()
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if before in _CODE_NEIGHBOUR or after in _CODE_NEIGHBOUR or before.isalnum():
            continue
        if _NOT_PHONE.search(match.group(0)):
            continue
        return True
    return False


def describe_signal(name: str, value: float) -> str:
    """Plain words for a signal and its (unstandardised) value, for a verdict's reasons."""
    template = dict(SIGNALS)[name]
    if name in _RATIOS:
        return template.format(value)
    if name in _FLAGS:
        return (
            template if value >= 0.5 else f"no {template.removeprefix('a ').removeprefix('the ')}"
        )
    return template.format(round(math.expm1(value)))
