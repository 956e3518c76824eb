"""The console in a real browser (Debian's chromium through Playwright): keyboard moderation,
undo, untrusted comments, a phone-sized screen."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from service import tables
from tests.console.conftest import Console, browser_login, check, site_id_of
from tests.service.conftest import Account

pytestmark = [pytest.mark.xdist_group("console"), pytest.mark.slow]

QUEUE_TEXTS = [
    "Great post, I learned a lot from this one.",
    "please check my video",
    "Who is watching this in 2026?",
    "Nice post, thanks for sharing it.",
    "This song never gets old, love it.",
]


def newest_labels(console: Console, ids: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    with console.sessions() as session:
        for comment_id in ids:
            out[comment_id] = session.execute(
                select(tables.Label.label)
                .where(tables.Label.comment_id == uuid.UUID(comment_id))
                .order_by(tables.Label.id.desc())
                .limit(1)
            ).scalar_one_or_none()
    return out


def count_text(page: Any) -> str:
    return str(page.locator("#queue-count").inner_text())


def site_count(page: Any, site_id: int, name: str) -> int:
    return int(page.locator(f'#site-{site_id} [data-count="{name}"]').inner_text())


def test_label_three_comments_with_the_keyboard_then_undo(
    console: Console, site: tuple[Account, str], browser: Any
) -> None:
    account, blog = site
    ids = [check(console, account, blog, text) for text in QUEUE_TEXTS]
    console.grant(blog, account.id)
    site_id = site_id_of(console, account)
    page = browser_login(browser, console, console.moderator)
    page.goto(f"{console.url}/console/sites")
    assert site_count(page, site_id, "awaiting") == 5
    page.goto(f"{console.url}/console/queue?site={site_id}")
    assert count_text(page) == "5 awaiting review"
    order = page.locator("#queue-items .item").evaluate_all("els => els.map(e => e.dataset.id)")
    assert sorted(order) == sorted(ids)
    # The first comment is selected and focused: the keys act on it at once.
    expect(page.locator(".item.current")).to_be_focused()

    page.keyboard.press("s")
    page.locator(f"#c-{order[0]}.decided").wait_for()
    page.keyboard.press("h")
    page.locator(f"#c-{order[1]}.decided").wait_for()
    page.keyboard.press("j")  # skip the third
    page.keyboard.press("s")
    page.locator(f"#c-{order[3]}.decided").wait_for()
    expect(page.locator("#queue-count")).to_have_text("2 awaiting review")
    assert page.locator(".item.current").get_attribute("data-id") == order[4]
    assert newest_labels(console, order) == {
        order[0]: "spam",
        order[1]: "ham",
        order[2]: None,
        order[3]: "spam",
        order[4]: None,
    }

    page.goto(f"{console.url}/console/sites")
    assert site_count(page, site_id, "awaiting") == 2
    assert site_count(page, site_id, "labelled_spam") == 2
    assert site_count(page, site_id, "labelled_ham") == 1

    # Undo: the last decision (spam on the fourth) is taken back and it is in the queue again.
    page.goto(f"{console.url}/console/queue?site={site_id}")
    assert count_text(page) == "2 awaiting review"
    expect(page.locator(".item.current")).to_be_focused()
    page.keyboard.press("u")
    expect(page.locator("#queue-count")).to_have_text("3 awaiting review")
    page.locator(f"#c-{order[3]}:not(.decided)").wait_for()
    assert newest_labels(console, [order[3]]) == {order[3]: None}
    page.keyboard.press("u")  # then the ham on the second
    expect(page.locator("#queue-count")).to_have_text("4 awaiting review")
    assert newest_labels(console, [order[1], order[0]]) == {order[1]: None, order[0]: "spam"}
    page.context.close()


def test_untrusted_comments_render_as_text_and_run_nothing(
    console: Console, site: tuple[Account, str], browser: Any
) -> None:
    account, blog = site
    hostile = [
        "<script>window.__pwned = 'script'</script> please read",
        "<img src=x onerror=\"window.__pwned = 'img'\"> nice pictures",
        "<svg onload=\"window.__pwned = 'svg'\"></svg>"
        "<a href=\"javascript:window.__pwned='a'\">x</a>",
    ]
    ids = [
        check(
            console,
            account,
            blog,
            text,
            author="<i onmouseover=\"window.__pwned='author'\">Mal</i>",
        )
        for text in hostile
    ]
    site_id = site_id_of(console, account)
    page = browser_login(browser, console, console.admin)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text))
    page.goto(f"{console.url}/console/queue?site={site_id}")
    contents = page.locator("#queue-items .content").all_inner_texts()
    for text in hostile:
        assert any(text.split(">")[0] in shown for shown in contents), text
    inside = ", ".join(f"#queue-items .content {tag}" for tag in ("img", "script", "svg", "a"))
    assert page.locator(inside).count() == 0
    page.locator("#queue-items .item .head a").first.hover()
    for comment_id in ids:
        page.goto(f"{console.url}/console/comments/{comment_id}")
        assert page.locator(".content img, .content script, .content svg").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []
    page.context.close()


def test_queue_fits_a_phone_screen(
    console: Console, site: tuple[Account, str], browser: Any
) -> None:
    account, blog = site
    check(
        console,
        account,
        blog,
        "A very long comment " + "word " * 200 + "http://example.com/" + "x" * 300,
    )
    site_id = site_id_of(console, account)
    page = browser_login(browser, console, console.admin, viewport={"width": 375, "height": 740})
    for path in (f"/console/queue?site={site_id}", "/console/sites", "/console/models"):
        page.goto(f"{console.url}{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        wide = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                 .filter(el => el.getBoundingClientRect().right > 376)
                 .filter(el => !el.closest('.table-wrap') || el.matches('.table-wrap'))
                 .slice(0, 5).map(el => el.tagName + '.' + el.className + ':' +
                                  Math.round(el.getBoundingClientRect().right))"""
        )
        assert width <= 375, f"{path} is {width}px wide: {wide}"
    # Every form control has a label, and focus shows.
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
             .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
             .map(el => el.name)"""
    )
    assert unlabelled == []
    page.goto(f"{console.url}/console/queue?site={site_id}")
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.context.close()
