from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from classifier.features import CommentVectorizer, prepare, to_frame
from classifier.record import Comment
from classifier.signals import SIGNAL_NAMES, signal_matrix


@parametrize_with_checks([CommentVectorizer(word_bits=12, char_bits=12, min_df=1)])
def test_comment_vectorizer_passes_sklearn_checks(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


def _signals(comment: Comment) -> dict[str, float]:
    row = signal_matrix([prepare(to_frame([comment])[0])])[0]
    return dict(zip(SIGNAL_NAMES, row.tolist(), strict=True))


def test_signal_matrix_counts_links_domains_and_shorteners() -> None:
    s = _signals(Comment("go http://bit.ly/x and http://bit.ly/y or www.example.com"))
    assert s["links"] == pytest.approx(np.log1p(3))
    assert s["link_domains"] == pytest.approx(np.log1p(2))
    assert s["shortened_link"] == 1.0


def test_signal_matrix_reads_author_url_and_honeypot() -> None:
    s = _signals(Comment("visit shop.com today", author_url="https://www.shop.com/", honeypot="x"))
    assert s["author_url"] == 1.0
    assert s["author_url_linked"] == 1.0
    assert s["honeypot"] == 1.0


def test_signal_matrix_measures_text_shape() -> None:
    s = _signals(Comment("FREE MONEY!!!! call +44 7935 454150 now 😀😀"))
    assert s["capitals"] > 0.5
    assert s["exclamations"] == pytest.approx(np.log1p(4))
    assert s["repeated_chars"] == pytest.approx(np.log1p(4))
    assert s["phone_number"] == 1.0
    assert s["emoji"] == pytest.approx(np.log1p(2))


def test_signal_matrix_flags_disguise_but_not_foreign_scripts() -> None:
    assert _signals(Comment("привет login"))["mixed_scripts"] == 0.0  # whole words Cyrillic
    assert _signals(Comment("pаypal login"))["mixed_scripts"] == 1.0  # one Cyrillic а
    assert _signals(Comment("#hāźeł_mcẹ̀wǝṅ"))["disguised_letters"] > 0.3
    assert _signals(Comment("강남스타일 최고"))["disguised_letters"] == 0.0


def test_signal_matrix_finds_crypto_wallets() -> None:
    s = _signals(Comment("send to 0x52908400098527886E0F7030069857D2E4169EE7 today"))
    assert s["crypto_wallet"] == 1.0


def test_transform_matches_between_batch_and_single() -> None:
    texts = ["check out my channel", "I love this song", "free iphone at bit.ly/x"]
    vectorizer = CommentVectorizer(min_df=1).fit(to_frame(texts * 2))
    batch = vectorizer.transform(to_frame(texts)).toarray()
    single = np.vstack([vectorizer.transform(to_frame([t])).toarray() for t in texts])
    np.testing.assert_allclose(batch, single)


def test_site_features_only_for_learned_sites() -> None:
    texts = ["buy cheap pills now", "buy cheap pills today", "nice song", "nice video"]
    rows = [Comment(t, site=s) for t in texts for s in ("a", "b")]
    vectorizer = CommentVectorizer(word_bits=12, char_bits=12, min_df=2, sites=("a",)).fit(
        to_frame(rows)
    )
    first, last = vectorizer.offsets["site"], vectorizer.offsets["signal"]
    assert last > first  # site a's word copies
    names = vectorizer.get_feature_names_out()
    assert all(n.startswith("site:a:word:#") for n in names[first:last])
    matrix = vectorizer.transform(to_frame([Comment("buy cheap pills", site=s) for s in "abc"]))
    site_block = matrix[:, first:last].toarray()
    assert site_block[0].any() and not site_block[1].any() and not site_block[2].any()
    # Outside the site block, every site's comment has the same features.
    shared = matrix[:, :first].toarray()
    assert (shared[0] == shared[1]).all() and (shared[1] == shared[2]).all()


def test_fit_without_sites_adds_no_site_columns() -> None:
    rows = [Comment("hello world", site="a"), Comment("hello there", site="a")]
    vectorizer = CommentVectorizer(word_bits=12, char_bits=12, min_df=1).fit(to_frame(rows))
    assert vectorizer.offsets["site"] == vectorizer.offsets["signal"]


@pytest.mark.parametrize(
    "text",
    [
        "My server at 192.168.100.200 refuses connections since the update",
        "It broke on 2024-01-15 10:30:00 and again on 15/01/2024",
        "pip says version 1.2.3.4567.8 is installed",
        "set timeout=123456789012; then retry",
        "the log is at http://example.com/build/12345678901/console",
    ],
)
def test_signal_matrix_finds_no_phone_number_in_help_requests(text: str) -> None:
    assert _signals(Comment(text))["phone_number"] == 0.0


@pytest.mark.parametrize(
    "text", ["call +1 (555) 123-4567 now", "text 07700900123 to win", "Call 0800 123 4567"]
)
def test_signal_matrix_finds_phone_numbers_in_prose(text: str) -> None:
    assert _signals(Comment(text))["phone_number"] == 1.0


def test_signals_are_centred_not_scaled_by_their_spread() -> None:
    """A rare flag must not stand dozens of spreads from the mean: the corpora's rarities are
    not a new site's, and a modest weight would then decide alone."""
    texts = ["a plain remark about the song"] * 99 + ["go to http://bit.ly/x now"]
    vectorizer = CommentVectorizer(word_bits=12, char_bits=12).fit(to_frame(texts))
    signals = vectorizer.transform_parts([prepare(row) for row in to_frame(texts)]).signals
    column = SIGNAL_NAMES.index("shortened_link")
    assert signals[-1, column] == pytest.approx(0.99)


def test_signal_matrix_caps_length_and_words() -> None:
    long = _signals(Comment("word " * 2000))
    assert long["length"] == pytest.approx(np.log1p(400))
    assert long["words"] == pytest.approx(np.log1p(60))
