"""Fixtures for the console tests: the app on a real uvicorn server, real users, a real browser.

The browser is Debian's chromium (installed by `make test` when missing), driven by Playwright
with flags that keep it off the network: without them it waits on connections this machine
cannot make.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import db, tables, users
from service.settings import Settings
from tests.service.conftest import (  # noqa: F401  (fixtures, used by name)
    Account,
    create_account,
    database_url,
    make_settings,
    models_dir,
    serve_app,
    wait_until,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"
# Everything the tiny test model is not certain of (score below 1.0) is held for review, so that
# ordinary texts fill the queue; the least sure (closest to 0.5) come first.
CONSOLE_THRESHOLDS = {"threshold_unsure": 0.0, "threshold_spam": 1.0, "threshold_discard": 1.0}
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DOCS_IMG = ROOT / "docs" / "img"
UPDATE_DOCS_ENV = "COMMENTGUARD_TEST_UPDATE_DOCS"


@dataclass
class Console:
    """The app served by uvicorn, with an admin and a moderator who can log in."""

    url: str
    settings: Settings
    sessions: db.SessionFactory
    admin: str = "ada"
    moderator: str = "mo"

    def grant(self, site_url: str, account_id: int) -> None:
        with self.sessions() as session:
            users.grant_site(session, self.moderator, site_url, account_id)
            session.commit()


@pytest.fixture(scope="module")
def console_settings(
    database_url: str,  # noqa: F811
    models_dir: Path,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    """No Redis: checks are scored synchronously, labels call nothing back."""
    return make_settings(
        database_url=database_url,
        models_dir=models_dir,
        data_dir=tmp_path_factory.mktemp("var"),
        console_login_max_failures=3,
        console_login_lockout_seconds=60,
        # Every test logs in from 127.0.0.1; the limit per address has a test of its own.
        console_login_attempts_per_ip=10_000,
        **CONSOLE_THRESHOLDS,
    )


@pytest.fixture(scope="module")
def console(console_settings: Settings) -> Iterator[Console]:

    engine = db.make_engine(console_settings)
    sessions = db.make_session_factory(engine)
    with sessions() as session:
        users.create_user(
            session, "ada", tables.UserRole.ADMIN, console_settings.secret_key, PASSWORD
        )
        users.create_user(
            session, "mo", tables.UserRole.MODERATOR, console_settings.secret_key, PASSWORD
        )
        session.commit()
    try:
        with serve_app(console_settings) as url:
            yield Console(url, console_settings, sessions)
    finally:
        engine.dispose()


@pytest.fixture
def site(console: Console) -> tuple[Account, str]:
    """A fresh account and blog URL per test, granted to the moderator once it exists."""
    account = create_account(console.settings, "console")
    return account, f"https://blog-{account.id}.example"


def check(console: Console, account: Account, blog: str, content: str, **fields: Any) -> str:
    """Send a comment through `POST /v1/check` (stored and scored); returns its id."""
    body = {"content": content, "blog": blog, "user_ip": "203.0.113.9", **fields}
    response = httpx.post(f"{console.url}/v1/check", json=body, headers=account.headers, timeout=30)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def site_id_of(console: Console, account: Account) -> int:
    from sqlalchemy import select

    with console.sessions() as session:
        return int(
            session.execute(
                select(tables.Site.id).where(tables.Site.account_id == account.id)
            ).scalar_one()
        )


# --- HTTP clients ----------------------------------------------------------------------------

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@contextlib.contextmanager
def login_client(console: Console, name: str, password: str = PASSWORD) -> Iterator[httpx.Client]:
    """An httpx client logged in as `name` through the login form."""
    with httpx.Client(base_url=console.url, timeout=30) as client:
        form = client.get("/console/login")
        token = _CSRF.search(form.text)
        assert token, form.text
        response = client.post(
            "/console/login",
            data={"username": name, "password": password, "csrf_token": token.group(1)},
        )
        assert response.status_code == 303, response.text
        yield client


def csrf_of(client: httpx.Client, path: str = "/console/queue") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    token = _CSRF.search(page.text)
    assert token
    return token.group(1)


# --- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run `make browser` (as root) or `make test`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def browser_login(browser: Any, console: Console, name: str, **context: Any) -> Any:
    """A new page in a fresh browser context, logged in as `name` through the form."""
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{console.url}/console/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/console/queue.*"))
    return page
