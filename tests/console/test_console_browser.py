"""The console in a real browser (Debian's chromium through Playwright): keyboard moderation,
undo, untrusted comments, a phone-sized screen; screenshots for the docs."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from service import tables
from tests.console.conftest import (
    ARTIFACTS,
    DOCS_IMG,
    UPDATE_DOCS_ENV,
    Console,
    browser_login,
    check,
    site_id_of,
)
from tests.service.conftest import Account

pytestmark = pytest.mark.xdist_group("console")

QUEUE_TEXTS = [
    "Great post, I learned a lot from this one.",
    "Check out my channel for more videos like this http://bit.ly/abc",
    "Who is watching this in 2026?",
    "Subscribe to me and I will subscribe back!!!",
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
    page.wait_for_function(
        "document.activeElement && document.activeElement.matches('.item.current')"
    )

    page.keyboard.press("s")
    page.locator(f"#c-{order[0]}.decided").wait_for()
    page.keyboard.press("h")
    page.locator(f"#c-{order[1]}.decided").wait_for()
    page.keyboard.press("j")  # skip the third
    page.keyboard.press("s")
    page.locator(f"#c-{order[3]}.decided").wait_for()
    page.wait_for_function(
        "document.querySelector('#queue-count').innerText === '2 awaiting review'"
    )
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
    page.wait_for_function(
        "document.activeElement && document.activeElement.matches('.item.current')"
    )
    page.keyboard.press("u")
    page.wait_for_function(
        "document.querySelector('#queue-count').innerText === '3 awaiting review'"
    )
    page.locator(f"#c-{order[3]}:not(.decided)").wait_for()
    assert newest_labels(console, [order[3]]) == {order[3]: None}
    page.keyboard.press("u")  # then the ham on the second
    page.wait_for_function(
        "document.querySelector('#queue-count').innerText === '4 awaiting review'"
    )
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
        assert width <= 375, f"{path} is {width}px wide"
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


def test_save_screenshots_of_the_queue_and_models_pages(
    console: Console, site: tuple[Account, str], browser: Any
) -> None:
    """The pictures of docs/console.md, taken on a realistic small queue: saved under
    test-artifacts/, and copied to docs/img/ with COMMENTGUARD_TEST_UPDATE_DOCS=1."""
    from training.corpora import load_bundled

    account, blog = site
    examples = load_bundled(["youtube"])[400:520]
    ids = [
        check(
            console,
            account,
            blog,
            example.comment.content,
            author=example.comment.author or "",
            author_email=f"user{i}@mail.example",
        )
        for i, example in enumerate(examples)
    ]
    site_id = site_id_of(console, account)
    page = browser_login(browser, console, console.admin, viewport={"width": 1200, "height": 900})
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    # Label most of them with their true labels, as moderators would have.
    for comment_id, example in list(zip(ids, examples, strict=True))[:100]:
        response = page.request.post(
            f"{console.url}/console/comments/{comment_id}/label",
            form={"label": "spam" if example.label else "ham"},
            headers={"X-CSRF-Token": token or ""},
        )
        assert response.status == 200
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{console.url}/console/queue?site={site_id}&decision=all")
    page.locator("#queue-items .item").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "console-queue.png"), full_page=False)
    page.goto(f"{console.url}/console/models")
    page.locator("svg.chart").first.wait_for()
    assert re.search(r"on the \d+ labelled comments this model scored", page.content())
    page.screenshot(path=str(ARTIFACTS / "console-models.png"), full_page=True)
    page.context.close()
    if os.environ.get(UPDATE_DOCS_ENV):
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        for name in ("console-queue.png", "console-models.png"):
            shutil.copyfile(ARTIFACTS / name, DOCS_IMG / name)
