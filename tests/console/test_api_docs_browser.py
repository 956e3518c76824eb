"""/docs and /redoc in Debian's chromium with every request off this server refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.settings import Settings
from tests.service.conftest import make_settings, serve_app

# The console's group: one Playwright (the `browser` fixture) per process.
pytestmark = [pytest.mark.xdist_group("console"), pytest.mark.slow]


@pytest.fixture(scope="module")
def docs_url(
    database_url: str, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    settings: Settings = make_settings(
        database_url=database_url, models_dir=models_dir, data_dir=tmp_path_factory.mktemp("var")
    )
    with serve_app(settings) as url:
        yield url


def offline_page(browser: Any, base_url: str) -> tuple[Any, list[str]]:
    """A page whose requests anywhere but `base_url` are aborted (and listed)."""
    context = browser.new_context()
    refused: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith(base_url + "/") or url.startswith("data:") or url.startswith("blob:"):
            request_route.continue_()
        else:
            refused.append(url)
            request_route.abort("internetdisconnected")

    context.route("**/*", route)
    page = context.new_page()
    # Rendering the whole schema takes chromium seconds of CPU: minutes on a machine shared
    # by twenty processes, where 30 s timed out.
    page.set_default_timeout(180_000)
    return page, refused


def test_render_swagger_ui_operations_offline(browser: Any, docs_url: str) -> None:
    page, refused = offline_page(browser, docs_url)
    page.goto(f"{docs_url}/docs")
    page.locator(".opblock-summary-path", has_text="/v1/check").first.wait_for()
    assert page.locator(".opblock").count() > 20
    assert refused == []
    page.context.close()


def test_render_redoc_operations_offline(browser: Any, docs_url: str) -> None:
    page, refused = offline_page(browser, docs_url)
    page.goto(f"{docs_url}/redoc")
    page.get_by_text("Score a comment now, store it with its verdict, and return the verdict.")
    page.locator("h2", has_text="Check Comment").first.wait_for()
    assert refused == []
    page.context.close()


def test_serve_docs_pages_without_cdn_links(docs_url: str) -> None:
    for path in ("/docs", "/redoc"):
        page = httpx.get(docs_url + path, timeout=10)
        assert page.status_code == 200
        assert "https://" not in page.text, page.text
    script = httpx.get(f"{docs_url}/static/api-docs/swagger-ui/swagger-ui-bundle.js", timeout=10)
    assert script.status_code == 200 and "SwaggerUI" in script.text
