"""Screenshots of the queue and the models page for docs/console.md, in a real browser, on a
realistic set-up: the model's own thresholds, moderators' labels, and a real retrain whose
candidate the promotion gate judged."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from service.settings import Settings
from tests.console.conftest import (
    ARTIFACTS,
    DOCS_IMG,
    UPDATE_DOCS_ENV,
    Console,
    browser_login,
    check,
    site_id_of,
)
from tests.service.conftest import Account, make_settings

pytestmark = [pytest.mark.xdist_group("console_screenshots"), pytest.mark.slow]


@pytest.fixture(scope="module")
def console_settings(
    database_url: str, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """This module retrains, so it works on a copy of the shared model registry."""
    own = tmp_path_factory.mktemp("models") / "registry"
    shutil.copytree(models_dir, own, ignore=shutil.ignore_patterns(".*"))
    return make_settings(
        database_url=database_url,
        models_dir=own,
        data_dir=tmp_path_factory.mktemp("var"),
        retrain_corpora=["youtube"],
    )


def test_save_screenshots_of_the_queue_and_models_pages(
    console: Console, site: tuple[Account, str], browser: Any
) -> None:
    """Saved under test-artifacts/; copied to docs/img/ with COMMENTGUARD_TEST_UPDATE_DOCS=1."""
    from service.learning.retraining import run_retrain
    from training.corpora import load_bundled

    account, blog = site
    examples = load_bundled(["youtube"])[400:700]
    page = browser_login(browser, console, console.admin, viewport={"width": 1200, "height": 900})
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")

    def moderate(batch: list[Any], labelled: int) -> None:
        """Comments arrive and are scored; moderators label the first `labelled` truly."""
        ids = [
            check(
                console,
                account,
                blog,
                example.comment.content,
                author=example.comment.author or "",
                author_email=f"reader{i}@mail.example",
            )
            for i, example in enumerate(batch)
        ]
        for comment_id, example in list(zip(ids, batch, strict=True))[:labelled]:
            response = page.request.post(
                f"{console.url}/console/comments/{comment_id}/label",
                form={"label": "spam" if example.label else "ham"},
                headers={"X-CSRF-Token": token or ""},
            )
            assert response.status == 200

    moderate(examples[:160], 140)
    # A real retrain on those labels: the gate judges the candidate against the active model.
    result = run_retrain(console.settings, console.sessions, trigger="test")
    assert result is not None
    # Then life goes on with whichever model the gate left active.
    moderate(examples[160:], 110)
    site_id = site_id_of(console, account)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{console.url}/console/queue?site={site_id}&decision=all")
    page.locator("#queue-items .item").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "console-queue.png"))
    page.goto(f"{console.url}/console/models")
    assert page.locator(f"#model-{result.version}").count() == 1
    assert re.search(r"on the \d+ labelled comments this model scored", page.content())
    page.screenshot(path=str(ARTIFACTS / "console-models.png"), full_page=True)
    page.context.close()
    if os.environ.get(UPDATE_DOCS_ENV):
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        for name in ("console-queue.png", "console-models.png"):
            shutil.copyfile(ARTIFACTS / name, DOCS_IMG / name)
