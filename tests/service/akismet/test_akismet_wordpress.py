"""A real WordPress blog with the real Akismet plugin, set up as docs/akismet.md says.

Debian's WordPress (6.1) and the Akismet plugin it ships (5.0.2), on a private MariaDB, served
by `php -S` on loopback (tests/service/akismet/wordpress.py); commentguard served by uvicorn in
this process. The blog owner and the visitors are HTTP clients doing what a browser does:
reading the page, filling in its form (nonces included), submitting it. Each step of the WordPress
section of docs/akismet.md is one of the steps below.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from service import akismet, db, tables, users
from service.cli import app as cli
from service.embedded import free_port
from service.settings import Settings
from tests.service.akismet.wordpress import WordPressSite, form, link, wordpress_site
from tests.service.conftest import (
    AKISMET_THRESHOLDS,
    TEST_SECRET,
    make_settings,
    serve_app,
    stored_text,
    wait_until,
)

pytestmark = [pytest.mark.xdist_group("wordpress"), pytest.mark.slow]

ADMIN = "blogowner"
ADMIN_PASSWORD = "correct horse battery staple"
# The tiny test model, at AKISMET_THRESHOLDS: the remark is ham, the link spam is discarded, and
# the short praise unsure.
REMARK = "I love this song, it reminds me of my childhood."
BLATANT_SPAM = "Check out my channel http://bit.ly/x subscribe!!!"
UNSURE = "I like this, check my new song"
# Headers a visitor's proxy chain adds: WordPress passes them on as HTTP_* fields.
FORWARDED_ADDRESSES = ("198.51.100.61", "198.51.100.62", "2001:db8::61")
KEY_SAVED_TEXT = "Akismet is now protecting your site from spam."
CONNECTION_ERROR = "can&#8217;t connect to the Akismet servers"


class Commentguard:
    """commentguard on a fixed loopback port, which the test stops and starts again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._running: contextlib.ExitStack | None = None

    def start(self) -> None:
        stack = contextlib.ExitStack()
        stack.enter_context(serve_app(self.settings, self.port))
        self._running = stack

    def stop(self) -> None:
        if self._running is not None:
            self._running.close()
            self._running = None


@dataclass
class Blog:
    """The WordPress site, its owner's logged-in browser, and what setting it up showed."""

    site: WordPressSite
    owner: httpx.Client
    commentguard: Commentguard
    sessions: db.SessionFactory
    key: str
    settings_page: str
    addresses: Iterator[int] = field(default_factory=lambda: itertools.count(10))
    visitor_addresses: list[str] = field(default_factory=list)

    def visitor(self) -> httpx.Client:
        """A visitor's browser, from an address of its own (WordPress refuses a second
        comment from one address within 15 seconds as a flood)."""
        address = f"127.0.0.{next(self.addresses)}"
        self.visitor_addresses.append(address)
        transport = httpx.HTTPTransport(local_address=address)
        return httpx.Client(base_url=self.site.url, transport=transport, timeout=60)

    def comment(
        self,
        author: str,
        text: str,
        headers: dict[str, str] | None = None,
        email: str | None = None,
    ) -> int:
        """A visitor reads the post, fills in its comment form and sends it; the comment's id
        (0 if WordPress kept no comment). Each visitor has an e-mail address of its own."""
        email = email or f"{author.lower().replace(' ', '.')}@example.org"
        with self.visitor() as browser:
            page = browser.get("/?p=1", follow_redirects=True)
            assert page.status_code == 200, page.text[-2000:]
            action, fields = form(page.text, comment_post_ID="1")
            fields.update(
                comment=text,
                author=author,
                email=email,
                url="",
            )
            sent = browser.post(action, data=fields, headers=headers or {})
            assert sent.status_code in (302, 303), sent.text[-2000:]
        found = self.site.sql(
            f"SELECT comment_ID FROM wp_comments WHERE comment_author_email = '{email}'"
        )
        return int(found) if found else 0

    def status(self, comment_id: int) -> str:
        """comment_approved: 1 published, 0 held for moderation, spam, trash."""
        return self.site.sql(
            f"SELECT comment_approved FROM wp_comments WHERE comment_ID = {comment_id}"
        )

    def option(self, name: str) -> str:
        return self.site.sql(f"SELECT option_value FROM wp_options WHERE option_name = '{name}'")

    def meta(self, comment_id: int, key: str) -> str:
        return self.site.sql(
            f"SELECT meta_value FROM wp_commentmeta WHERE comment_id = {comment_id} "
            f"AND meta_key = '{key}' ORDER BY meta_id DESC LIMIT 1"
        )

    def labels(self, text: str) -> list[tuple[str, str, str | None]]:
        """commentguard's labels on the comments with this text: (label, source, actor)."""
        with self.sessions() as session:
            rows = session.execute(
                select(tables.Label.label, tables.Label.source, tables.Label.actor)
                .join(tables.Comment, tables.Comment.id == tables.Label.comment_id)
                .where(tables.Comment.content == text)
                .order_by(tables.Label.id)
            ).all()
        return [(label, source, actor) for label, source, actor in rows]

    def decision(self, text: str) -> str:
        with self.sessions() as session:
            decisions = (
                session.execute(
                    select(tables.Verdict.decision)
                    .join(tables.Comment, tables.Comment.id == tables.Verdict.comment_id)
                    .where(tables.Comment.content == text)
                )
                .scalars()
                .all()
            )
        assert len(decisions) == 1, decisions
        return decisions[0]


def notices(page: str) -> list[str]:
    """The Akismet settings page's notices, for failure messages."""
    return re.findall(r'class="akismet-key-status[^"]*">(.*?)</h3>', page, re.S)


@contextlib.contextmanager
def console_login(blog: Blog) -> Iterator[httpx.Client]:
    """A moderator (an admin) logged in to commentguard's console through its login form."""
    with blog.sessions() as session:
        users.create_user(session, "moderator", tables.UserRole.ADMIN, TEST_SECRET, ADMIN_PASSWORD)
        session.commit()
    with httpx.Client(base_url=blog.commentguard.url, timeout=30) as client:
        page = client.get("/console/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token is not None, page
        response = client.post(
            "/console/login",
            data={"username": "moderator", "password": ADMIN_PASSWORD, "csrf_token": token[1]},
        )
        assert response.status_code == 303, response.text
        yield client


def install_wordpress(site: WordPressSite, owner: httpx.Client) -> None:
    """The famous five-minute install, submitted as its form is, then the owner logs in."""
    page = owner.get("/wp-admin/install.php?step=1")
    assert page.status_code == 200, page.text[-2000:]
    installed = owner.post(
        "/wp-admin/install.php?step=2",
        data={"weblog_title": "A commentguard blog", "user_name": ADMIN,
              "admin_password": ADMIN_PASSWORD, "admin_password2": ADMIN_PASSWORD,
              "pw_weak": "on", "admin_email": "owner@example.org", "blog_public": "0",
              "language": "", "Submit": "Install WordPress"},
    )  # fmt: skip
    assert "Success!" in installed.text, installed.text[-2000:]
    owner.get("/wp-login.php")  # sets the test cookie the login form checks for
    logged_in = owner.post(
        "/wp-login.php",
        data={"log": ADMIN, "pwd": ADMIN_PASSWORD, "wp-submit": "Log In",
              "redirect_to": f"{site.url}/wp-admin/", "testcookie": "1"},
    )  # fmt: skip
    assert logged_in.status_code == 302, logged_in.text[-2000:]


def activate_akismet(owner: httpx.Client) -> None:
    """Plugins → Akismet Anti-Spam → Activate."""
    plugins = owner.get("/wp-admin/plugins.php")
    activate = link(plugins.text, r"action=activate&plugin=akismet%2Fakismet\.php")
    activated = owner.get(f"/wp-admin/{activate}", follow_redirects=True)
    assert activated.status_code == 200
    assert "Akismet" in activated.text


def create_key(settings: Settings) -> str:
    """`commentguard keys create --name my-blog --akismet`, on the commentguard server."""
    result = CliRunner().invoke(
        cli,
        ["keys", "create", "--name", "my-blog", "--akismet"],
        env={
            "COMMENTGUARD_DATABASE_URL": settings.database_url,
            "COMMENTGUARD_SECRET_KEY": settings.secret_key,
        },
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{12}", key), result.output
    return key


def enter_key(owner: httpx.Client, key: str) -> str:
    """Settings → Akismet Anti-Spam → "Manually enter an API key" → "Connect with API key"."""
    start = owner.get("/wp-admin/options-general.php?page=akismet-key-config")
    assert start.status_code == 200
    action, fields = form(start.text, action="enter-key")
    assert fields.get("_wpnonce"), "the form carries its nonce"
    fields["key"] = key
    saved = owner.post(action, data=fields)
    assert saved.status_code == 200, saved.text[-2000:]
    return saved.text


@pytest.fixture(scope="module")
def blog(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Blog]:
    folder = tmp_path_factory.mktemp("wordpress")
    settings = make_settings(
        database_url=f"sqlite:///{folder / 'commentguard.db'}",
        models_dir=models_dir,
        data_dir=folder / "var",
        secret_key=TEST_SECRET,
        **AKISMET_THRESHOLDS,
    )
    key = create_key(settings)  # migrates the database, as every commentguard command does
    commentguard = Commentguard(settings)
    engine = db.make_engine(settings)
    with contextlib.ExitStack() as stack:
        stack.callback(engine.dispose)
        stack.callback(commentguard.stop)
        commentguard.start()
        site = stack.enter_context(wordpress_site(folder, commentguard.url))
        owner = stack.enter_context(
            httpx.Client(base_url=site.url, timeout=60, follow_redirects=False)
        )
        install_wordpress(site, owner)
        activate_akismet(owner)
        site.configure_commentguard()
        page = enter_key(owner, key)
        yield Blog(site, owner, commentguard, db.make_session_factory(engine), key, page)


# The tests share one blog per test process, in this order, and each stands on its own (pytest-xdist
# may hand them to two processes). A label refits the site's own part of the model (its
# adapter): the tests that label comments come last, with texts unlike the others'.


# --- the blog owner sets it up -----------------------------------------------------------------


def test_save_the_key_typed_into_the_akismet_settings_form(blog: Blog) -> None:
    assert KEY_SAVED_TEXT in blog.settings_page, notices(blog.settings_page)
    assert CONNECTION_ERROR not in blog.settings_page
    assert blog.option("wordpress_api_key") == blog.key
    # The settings page as the owner finds it later: the key, the account, no connection error.
    page = blog.owner.get("/wp-admin/options-general.php?page=akismet-key-config").text
    assert f'value="{blog.key}"' in page
    assert "commentguard (my-blog)" in page
    assert CONNECTION_ERROR not in page
    # Entering the key there keeps every spam in the Spam folder (the other choice discards
    # the worst of it unseen).
    assert blog.option("akismet_strictness") == "0"


# --- visitors comment ----------------------------------------------------------------------------


def test_put_blatant_spam_in_the_spam_folder(blog: Blog) -> None:
    comment = blog.comment("Spammy McSpam", BLATANT_SPAM)
    assert comment and blog.status(comment) == "spam"
    assert blog.meta(comment, "akismet_result") == "true"
    assert blog.decision(BLATANT_SPAM) == "discard"


def test_publish_or_hold_an_ordinary_remark_but_never_call_it_spam(blog: Blog) -> None:
    text = f"{REMARK} Thanks for sharing."
    comment = blog.comment("Ann Reader", text)
    # Answered false, then WordPress's own rules: a new author's first comment is held.
    assert comment and blog.status(comment) == "0"
    assert blog.meta(comment, "akismet_result") == "false"
    assert blog.decision(text) in ("ham", "unsure")


def test_put_the_guaranteed_spam_author_in_spam(blog: Blog) -> None:
    text = "A perfectly nice remark about the song."
    comment = blog.comment("akismet-guaranteed-spam", text)
    assert comment and blog.status(comment) == "spam"
    assert blog.decision(text) == "spam"


# --- commentguard is down, and back -------------------------------------------------------------


def test_recheck_comments_held_while_commentguard_was_down(blog: Blog) -> None:
    spam = "Check out my channel http://bit.ly/z subscribe!!! Free followers"
    remark = f"{REMARK} Posted while the filter was down."
    blog.commentguard.stop()
    try:
        spam_id = blog.comment("Dora Spammer", spam)
        remark_id = blog.comment("Eve Reader", remark)
    finally:
        blog.commentguard.start()
    for comment in (spam_id, remark_id):
        assert blog.status(comment) == "0"  # held for moderation, not published, not spam
        assert blog.meta(comment, "akismet_error")
    scheduled = blog.site.php("echo wp_next_scheduled( 'akismet_schedule_cron_recheck' ) - time();")
    assert 0 < int(scheduled) <= 20 * 60, "the Akismet plugin scheduled its re-check"
    # Twenty minutes later, WP-Cron runs the re-check: the test moves the event to now and
    # requests wp-cron.php, as a visitor's page load or a system cron would.
    blog.site.php(
        "$when = wp_next_scheduled( 'akismet_schedule_cron_recheck' );"
        "wp_unschedule_event( $when, 'akismet_schedule_cron_recheck' );"
        "wp_schedule_single_event( time() - 1, 'akismet_schedule_cron_recheck' );"
    )
    ran = httpx.get(f"{blog.site.url}/wp-cron.php", timeout=60)
    assert ran.status_code == 200
    wait_until(lambda: blog.status(spam_id) == "spam", 30, "the re-check to move the spam")
    assert blog.meta(spam_id, "akismet_result") == "true"
    assert blog.meta(remark_id, "akismet_result") == "false"
    assert not blog.meta(remark_id, "akismet_error")
    assert blog.status(remark_id) in ("0", "1")
    assert blog.decision(spam) == "discard" and blog.decision(remark) in ("ham", "unsure")


# --- the owner chooses to discard the worst spam ------------------------------------------------


def test_discard_blatant_spam_when_the_owner_chooses_to(blog: Blog) -> None:
    def strictness(value: str) -> None:
        # Settings → Akismet Anti-Spam → Strictness → Save Changes.
        page = blog.owner.get("/wp-admin/options-general.php?page=akismet-key-config").text
        action, fields = form(page, action="enter-key", key=blog.key)
        fields["akismet_strictness"] = value
        saved = blog.owner.post(action, data=fields)
        assert saved.status_code == 200 and CONNECTION_ERROR not in saved.text
        assert blog.option("akismet_strictness") == value

    strictness("1")
    try:
        text = "Check out my channel http://bit.ly/v subscribe!!! Discard me"
        assert blog.comment("Ivan Discarded", text) == 0  # dropped unseen: no comment at all
        assert blog.decision(text) == "discard"  # commentguard keeps it, for its counts
    finally:
        strictness("0")


# --- the blog owner moderates -------------------------------------------------------------------


def test_send_the_owner_spam_and_not_spam_to_commentguard_as_labels(blog: Blog) -> None:
    missed = "Such a lovely melody, my whole family sings along."
    caught = "A kind word about the video from a real fan."
    missed_id = blog.comment("Bob Sneaky", missed)
    # Spam by Akismet's test value, whatever the text: the owner knows better.
    caught_id = blog.comment("akismet-guaranteed-spam", caught, email="carol@example.org")
    assert blog.status(missed_id) in ("0", "1") and blog.status(caught_id) == "spam"
    # Comments → the comment's "Spam" link.
    comments = blog.owner.get("/wp-admin/edit-comments.php").text
    spam = link(comments, rf"comment\.php\?c={missed_id}&action=spamcomment&_wpnonce=")
    blog.owner.get(f"/wp-admin/{spam}")
    # Comments → Spam → the comment's "Not Spam" link.
    spam_folder = blog.owner.get("/wp-admin/edit-comments.php?comment_status=spam").text
    not_spam = link(spam_folder, rf"comment\.php\?c={caught_id}&action=unspamcomment&_wpnonce=")
    blog.owner.get(f"/wp-admin/{not_spam}")
    assert blog.status(missed_id) == "spam" and blog.status(caught_id) in ("0", "1")
    reported = blog.labels(missed) + blog.labels(caught)
    assert [(label, source) for label, source, _ in reported] == [
        ("spam", "feedback"),
        ("ham", "feedback"),
    ]
    for _, _, actor in reported:
        assert actor is not None and actor.startswith("akismet:akismet-")
        assert blog.key not in actor


# --- an unsure comment -------------------------------------------------------------------------


def test_show_an_unsure_comment_on_the_blog_while_commentguard_queues_it(blog: Blog) -> None:
    comment = blog.comment("Hal Unsure", UNSURE)
    before = blog.status(comment)
    assert before in ("0", "1")  # answered false: published, or held by WordPress's own rules
    assert blog.meta(comment, "akismet_result") == "false"
    assert blog.decision(UNSURE) == "unsure"
    # In the console's queue, the comment says what the blog did and what a decision does.
    with blog.sessions() as session:
        comment_id = session.execute(
            select(tables.Comment.id).where(tables.Comment.content == UNSURE)
        ).scalar_one()
    with console_login(blog) as console:
        queue = console.get("/console/queue").text
        item = re.search(rf'id="c-{comment_id}".*?class="actions"', queue, re.S)
        assert item is not None, "the unsure comment waits in the queue"
        assert "WordPress published it, or holds it if the blog moderates comments" in item[0]
        token = re.search(r'name="csrf_token" value="([^"]+)"', queue)
        assert token is not None
        labelled = console.post(
            "/console/labels",
            data={"csrf_token": token[1], "label": "spam", "ids": [str(comment_id)]},
        )
        assert labelled.status_code == 303
    assert [label for label, _, _ in blog.labels(UNSURE)] == ["spam"]
    # As the console said: the decision stays in commentguard, the blog keeps the comment.
    assert blog.status(comment) == before


# --- the settings page counts what commentguard counted --------------------------------------


def test_show_commentguard_counts_on_the_akismet_settings_page(blog: Blog) -> None:
    blog.comment("Gina Spammer", "Check out my channel http://bit.ly/w subscribe!!! Now")
    page = blog.owner.get("/wp-admin/options-general.php?page=akismet-key-config").text
    shown = {
        period: re.search(rf"{heading}</h3>\s*<span>([\d,]+)</span>", page)
        for period, heading in (("6-months", "Past six months"), ("all", "All time"))
    }
    account_id = blog_account(blog)
    with blog.sessions() as session:
        counted = {
            period: akismet.stats(session, account_id, blog.site.url, period) for period in shown
        }
    for period, match in shown.items():
        assert match is not None, notices(page)
        assert int(match[1].replace(",", "")) == counted[period]["spam"] >= 1
    # Accuracy, missed spam and false positives (the owner's Not Spam makes one).
    total = counted["all"]
    assert f"<span>{total['accuracy']:g}%</span>" in page
    assert f"{total['false_positives']} false positive" in page
    assert f"{total['missed_spam']} missed spam" in page
    assert CONNECTION_ERROR not in page


def blog_account(blog: Blog) -> int:
    with blog.sessions() as session:
        return int(
            session.execute(
                select(tables.Site.account_id).where(tables.Site.url == blog.site.url)
            ).scalar_one()
        )


# --- privacy --------------------------------------------------------------------------------------


def test_store_no_commenter_address_in_commentguard(blog: Blog) -> None:
    forwarded_for, real_ip, client_ip = FORWARDED_ADDRESSES
    text = f"{REMARK} Sent through two proxies."
    comment = blog.comment(
        "Frank Proxied",
        text,
        headers={
            "X-Forwarded-For": f"{forwarded_for}, {real_ip}",
            "X-Real-IP": real_ip,
            "Client-IP": client_ip,
        },
    )
    assert comment
    # The owner reports it, so that WordPress sends its stored copy (comment_author_IP) too.
    comments = blog.owner.get("/wp-admin/edit-comments.php").text
    spam = link(comments, rf"comment\.php\?c={comment}&action=spamcomment&_wpnonce=")
    blog.owner.get(f"/wp-admin/{spam}")
    assert blog.labels(text)
    everything = stored_text(blog.sessions)
    assert blog.visitor_addresses
    for address in (*blog.visitor_addresses, *FORWARDED_ADDRESSES):
        assert re.search(rf"(?<![\d.]){re.escape(address)}(?![\d])", everything) is None, address
    with blog.sessions() as session:
        extra = session.execute(
            select(tables.Comment.extra).where(tables.Comment.content == text)
        ).scalar_one()
    assert extra["REMOTE_ADDR"].startswith("hmac:")
    assert extra["HTTP_X_FORWARDED_FOR"].count("hmac:") == 2
