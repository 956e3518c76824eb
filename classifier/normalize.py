"""Text normalisation that spammers cannot step around.

HTML entities and tags, compatibility forms (NFKC), invisible format characters (zero-width
spaces, BOM, bidi controls), combining diacritics (zalgo, "hāźeł") and confusable homoglyphs
(Cyrillic "раураl", small capitals, mathematical letters) all fold to one plain form, so
that an obfuscated spam and its plain original look the same to the features.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache
from urllib.parse import urlsplit

from confusable_homoglyphs import confusables

_MAX_PASSES = 8

_TAG = re.compile(r"<[^<>]*>")
_HREF = re.compile(r"""<a\s[^>]*?href\s*=\s*["']?([^"'\s>]+)[^>]*>""", re.IGNORECASE)
# Combining diacritical marks (the blocks zalgo and fake accents use); scripts' own vowel signs
# live in their own blocks and are kept.
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
_SPACE = re.compile(r"\s+")
_SPACE_TO_FOLD = re.compile(r"^\s|\s$|\s\s|[^\S ]")

_TLDS = (
    "com|net|org|info|biz|ru|co|uk|io|ly|gl|me|tk|xyz|top|site|online|club|us|de|fr|in|tv|cc|"
    "ws|be|to|link|click|live|shop|store|app|dev|ng|pk|br|es|it|nl|pl|cn|jp|au|ca"
)
_URL = re.compile(
    r"(?:https?://|www\.)[^\s<>\"'\]\[)(]+"
    rf"|\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:{_TLDS})\b(?:/[^\s<>\"'\]\[)(]*)?",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b", re.IGNORECASE)


def _format_characters() -> dict[int, None]:
    """Every invisible format character (category Cf: zero-width, BOM, bidi, soft hyphen)."""
    drop: dict[int, None] = {}
    for code in range(0x110000):
        if unicodedata.category(chr(code)) == "Cf":
            drop[code] = None
    return drop


# Look-alikes the Unicode confusables table maps to more than one character, or not at all.
_EXTRA_FOLDS = dict(
    zip(
        "ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡʏᴢłŁøØđĐħĦŧŦɇǝəɛƀɨʉ",
        "abcdefghijklmnoprstuvwyzlLoOdDhHtTeeeebiu",
        strict=True,
    )
)


@lru_cache(maxsize=1)
def _fold_table() -> dict[int, str | None]:
    """Translation table: invisible characters removed, homoglyphs mapped to ASCII."""
    table: dict[int, str | None] = dict(_format_characters())
    data = confusables.confusables_data
    # Letters first, so a glyph like Cyrillic "о" folds to "o" rather than to the digit "0".
    targets = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    targets += [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    targets += [chr(c) for c in range(ord("0"), ord("9") + 1)]
    for target in targets:
        for entry in data.get(target, ()):
            glyph = entry["c"].strip("\u200e")
            if len(glyph) == 1 and ord(glyph) > 127 and ord(glyph) not in table:
                table[ord(glyph)] = target
    for glyph, target in _EXTRA_FOLDS.items():
        table.setdefault(ord(glyph), target)
    return table


def _is_plain(text: str) -> bool:
    """True when a pass would leave `text` unchanged (the common case, checked cheaply)."""
    return (
        text.isascii()
        and "&" not in text
        and "<" not in text
        and _SPACE_TO_FOLD.search(text) is None
    )


def _one_pass(text: str) -> str:
    if _is_plain(text):
        return text
    if "&" in text:
        text = html.unescape(text)
    if "<" in text:
        text = _HREF.sub(r" \1 ", text)
        text = _TAG.sub(" ", text)
    text = unicodedata.normalize("NFKC", text)
    text = unicodedata.normalize("NFD", text)
    text = _COMBINING.sub("", text)
    text = unicodedata.normalize("NFC", text)
    text = text.translate(_fold_table())
    return _SPACE.sub(" ", text).strip()


def clean_text(text: str) -> str:
    """Normalise `text` but keep its letter case (for signals such as the share of capitals)."""
    for _ in range(_MAX_PASSES):
        again = _one_pass(text)
        if again == text:
            break
        text = again
    return text


def normalize_text(text: str) -> str:
    """The canonical form of a comment's text: cleaned, folded and lower-cased.

    Idempotent: `normalize_text(normalize_text(x)) == normalize_text(x)`.
    """
    return lower_clean_text(clean_text(text))


def lower_clean_text(clean: str) -> str:
    """`normalize_text` for text that `clean_text` already returned (saves a pass)."""
    text = clean.lower()
    for _ in range(_MAX_PASSES):
        again = _one_pass(text).lower()
        if again == text:
            break
        text = again
    return text


def extract_urls(text: str) -> list[str]:
    """The URLs in `text`, including bare domains such as `example.com/offer`."""
    return [match.rstrip(".,;:!?") for match in _URL.findall(text)]


def url_domain(url: str) -> str:
    """The host of a URL without `www.`, lower-cased ("" if it has none)."""
    if "://" not in url:
        url = "http://" + url
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    host = host.lower()
    return host[4:] if host.startswith("www.") else host


def extract_emails(text: str) -> list[str]:
    """The e-mail addresses in `text`."""
    return _EMAIL.findall(text) if "@" in text else []


def email_domain(address: str) -> str:
    """The domain of an e-mail address, lower-cased ("" if it has none)."""
    _, at, domain = address.rpartition("@")
    return domain.lower().strip() if at else ""
