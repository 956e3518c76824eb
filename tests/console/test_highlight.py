"""Reasons highlighting: the comment's text is always escaped, whatever the reasons say."""

from __future__ import annotations

import html
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from service.console.highlight import Span, highlight, reason_spans, render_spans

MARK = re.compile(r'<mark class="why" title="[^"<>]*">|</mark>')

ALPHABET = st.characters(codec="utf-8", exclude_categories=("Cs",))
HOSTILE = st.sampled_from(
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        '"><svg onload=alert(1)>',
        "</mark><script>x</script>",
        "&lt;b&gt;",
        "javascript:alert(1)",
        "' onmouseover='alert(1)",
    ]
)
TEXT = st.lists(st.one_of(st.text(ALPHABET, max_size=30), HOSTILE), max_size=6).map("".join)


@st.composite
def reasons_for(draw: st.DrawFn, text: str) -> list[dict[str, object]]:
    """Reasons whose terms are pieces of the text itself, or hostile strings, or anything."""
    pieces = [text[i:j] for i in range(len(text)) for j in range(i + 1, min(len(text), i + 8))]
    term = st.one_of(
        st.sampled_from(pieces) if pieces else st.just("x"), HOSTILE, st.text(max_size=8)
    )
    family = st.sampled_from(["word", "chars", "domain:link", "signal", "rule", ""])
    signal = st.sampled_from(["links", "money", "exclamations", "mentions", "repeated_chars"])
    reasons = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(family)
        name = draw(signal) if kind == "signal" else draw(term)
        reasons.append(
            {
                "feature": f"{kind}:{name}",
                "description": draw(st.one_of(term, HOSTILE)),
                "weight": draw(st.floats(-5, 5, allow_nan=False)),
            }
        )
    return reasons


@settings(max_examples=250, deadline=None)
@given(data=st.data(), text=TEXT)
def test_highlight_escapes_every_character_of_the_text(data: st.DataObject, text: str) -> None:
    reasons = data.draw(reasons_for(text))
    out = str(highlight(text, reasons))
    bare = MARK.sub("", out)
    # No markup of the comment's survives: every "<" left is one of our own mark tags.
    assert "<" not in bare and ">" not in bare
    # And nothing is lost or altered: unescaping what remains gives the text back.
    assert html.unescape(bare) == text


def test_highlight_marks_words_and_signals_that_pushed_toward_spam() -> None:
    text = "Check OUT my channel http://bit.ly/x now!!!"
    reasons = [
        {"feature": "word:check out", "description": 'the words "check out"', "weight": 1.2},
        {"feature": "signal:shortened_link", "description": "a shortened link", "weight": 4.1},
        {"feature": "signal:exclamations", "description": "3 exclamation mark(s)", "weight": 0.4},
        {"feature": "word:now", "description": 'the word "now"', "weight": -0.7},
    ]
    out = str(highlight(text, reasons))
    assert '<mark class="why" title="the words &quot;check out&quot;">Check OUT</mark>' in out
    assert ">http://bit.ly/x</mark>" in out
    assert ">!!!</mark>" in out
    assert "now" in out and ">now</mark>" not in out  # pushed toward ham: not marked


def test_highlight_escapes_a_script_in_a_marked_span() -> None:
    text = "buy <script>alert(1)</script> now"
    reasons = [{"feature": "word:script", "description": "<b>x</b>", "weight": 1.0}]
    out = str(highlight(text, reasons))
    assert "<script>" not in out
    assert '<mark class="why" title="&lt;b&gt;x&lt;/b&gt;">script</mark>' in out


def test_reason_spans_merge_overlaps() -> None:
    spans = reason_spans(
        "free money",
        [
            {"feature": "word:free money", "description": "a", "weight": 1.0},
            {"feature": "word:money", "description": "b", "weight": 1.0},
        ],
    )
    assert spans == [Span(0, 10, ("a", "b"))]


def test_render_spans_refuses_overlapping_spans() -> None:
    import pytest

    with pytest.raises(ValueError):
        render_spans("abcdef", [Span(0, 3, ("a",)), Span(2, 4, ("b",))])
