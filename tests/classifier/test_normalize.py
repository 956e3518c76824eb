from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from classifier.normalize import (
    clean_text,
    email_domain,
    extract_emails,
    extract_urls,
    normalize_text,
    url_domain,
)


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_normalize_text_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8")))
def test_clean_text_is_idempotent(text: str) -> None:
    once = clean_text(text)
    assert clean_text(once) == once


def test_normalize_text_removes_zero_width_and_bom() -> None:
    assert normalize_text("fr\u200bee\ufeff mo\u200dney\u2060") == "free money"


def test_normalize_text_folds_homoglyphs() -> None:
    # Cyrillic р, а, у and small capitals and mathematical bold letters.
    assert normalize_text("раураl") == "paypal"
    assert normalize_text("ᴄʜᴇᴄᴋ 𝐟𝐫𝐞𝐞") == "check free"


def test_normalize_text_strips_fake_accents_and_zalgo() -> None:
    assert normalize_text("#hāźeł_mcẹ̀wǝṅ") == "#hazel_mcewen"
    assert normalize_text("ẑ̷̛a̴l̸g̷o̶") == "zalgo"


def test_normalize_text_decodes_entities_and_drops_tags() -> None:
    assert normalize_text("Tom &amp;amp; Jerry <b>bold</b>&nbsp;text") == "tom & jerry bold text"


def test_normalize_text_keeps_link_targets() -> None:
    text = normalize_text('<a href="http://spam.example/offer">click</a>')
    assert "http://spam.example/offer" in text and "click" in text


def test_normalize_text_keeps_other_scripts() -> None:
    assert normalize_text("강남스타일 हिन्दी") == "강남스타일 हिन्दी"


def test_extract_urls_finds_schemes_www_and_bare_domains() -> None:
    urls = extract_urls("see http://a.example/x, www.b.com and myleadergate.com/moretraffic.")
    assert urls == ["http://a.example/x", "www.b.com", "myleadergate.com/moretraffic"]
    assert [url_domain(u) for u in urls] == ["a.example", "b.com", "myleadergate.com"]


def test_extract_emails_and_domain() -> None:
    assert extract_emails("write to Joe.Bloggs+x@Mail.Example.org now") == [
        "Joe.Bloggs+x@Mail.Example.org"
    ]
    assert email_domain("Joe@Mail.Example.org") == "mail.example.org"
    assert email_domain("no-at-sign") == ""
