"""Per-site thresholds in the console: admins edit and reset them, moderators only read them."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.console.conftest import Console, check, csrf_of, login_client, site_id_of
from tests.service.conftest import Account

pytestmark = pytest.mark.xdist_group("console")

TEXT = "I like this, check my new song"  # about 0.48 with the tiny model


def threshold_cells(page: str, site: int) -> dict[str, str]:
    """The effective thresholds the Sites page shows for a site."""
    row = re.search(rf'<tr id="thresholds-{site}">(.*?)</tr>', page, re.S)
    assert row, page
    cells = re.findall(r'data-threshold="(\w+)">([^<]*)', row.group(1))
    return {name: value.strip() for name, value in cells}


def decision_of(console: Console, account: Account, blog: str) -> str:
    response = httpx.post(
        f"{console.url}/v1/check",
        json={"content": TEXT, "blog": blog},
        headers=account.headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["verdict"]["decision"])


def test_edit_and_reset_site_thresholds_as_an_admin(
    console: Console, site: tuple[Account, str]
) -> None:
    account, blog = site
    check(console, account, blog, TEXT)
    site_id = site_id_of(console, account)
    assert decision_of(console, account, blog) == "unsure"  # the console's 0 / 1 / 1
    with login_client(console, "ada") as client:
        page = client.get("/console/sites")
        assert f'action="/console/sites/{site_id}/thresholds"' in page.text
        assert f'<label for="t-{site_id}-spam">Spam</label>' in page.text
        token = csrf_of(client, "/console/sites")
        saved = client.post(
            f"/console/sites/{site_id}/thresholds",
            data={"csrf_token": token, "unsure": "0.3", "spam": "0.35", "discard": ""},
        )
        assert saved.status_code == 303, saved.text
        assert saved.headers["location"].startswith("/console/sites?done=thresholds")
        page = client.get("/console/sites?done=thresholds")
        assert "Thresholds saved" in page.text
        assert threshold_cells(page.text, site_id) == {
            "unsure": "0.300",
            "spam": "0.350",
            "discard": "1.000",
        }
        assert f'id="t-{site_id}-spam" name="spam" type="number"' in page.text
        assert re.search(rf'id="t-{site_id}-spam"[^>]*value="0.35"', page.text)
        # Scoring uses them at once, without a restart.
        assert decision_of(console, account, blog) == "spam"

        reset = client.post(
            f"/console/sites/{site_id}/thresholds", data={"csrf_token": token, "reset": "1"}
        )
        assert reset.status_code == 303
        page = client.get("/console/sites")
        assert threshold_cells(page.text, site_id) == {
            "unsure": "0.000",
            "spam": "1.000",
            "discard": "1.000",
        }
    assert decision_of(console, account, blog) == "unsure"


def test_show_errors_for_invalid_thresholds(console: Console, site: tuple[Account, str]) -> None:
    account, blog = site
    check(console, account, blog, TEXT)
    site_id = site_id_of(console, account)
    with login_client(console, "ada") as client:
        token = csrf_of(client, "/console/sites")
        for data, message in (
            ({"unsure": "0.6", "spam": "0.5"}, "spam: must be at least unsure (0.6)"),
            ({"spam": "lots"}, "spam: &#39;lots&#39; is not a number"),
            ({"discard": "2"}, "discard: must be between 0 and 1"),
        ):
            refused = client.post(
                f"/console/sites/{site_id}/thresholds", data={"csrf_token": token, **data}
            )
            assert refused.status_code == 422, refused.text
            assert message in refused.text
            assert 'aria-invalid="true"' in refused.text
        page = client.get("/console/sites")
        assert threshold_cells(page.text, site_id)["spam"] == "1.000"


def test_refuse_a_thresholds_post_without_the_csrf_token(
    console: Console, site: tuple[Account, str]
) -> None:
    account, blog = site
    check(console, account, blog, TEXT)
    site_id = site_id_of(console, account)
    with login_client(console, "ada") as client:
        refused = client.post(f"/console/sites/{site_id}/thresholds", data={"spam": "0.5"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "csrf_failed"
        page = client.get("/console/sites")
        assert threshold_cells(page.text, site_id)["spam"] == "1.000"


def test_show_thresholds_read_only_to_a_moderator(
    console: Console, site: tuple[Account, str]
) -> None:
    account, blog = site
    check(console, account, blog, TEXT)
    site_id = site_id_of(console, account)
    console.grant(blog, account.id)
    with login_client(console, "mo") as client:
        page = client.get("/console/sites")
        assert threshold_cells(page.text, site_id) == {
            "unsure": "0.000",
            "spam": "1.000",
            "discard": "1.000",
        }
        assert "/thresholds" not in page.text
        token = csrf_of(client, "/console/sites")
        refused = client.post(
            f"/console/sites/{site_id}/thresholds", data={"csrf_token": token, "spam": "0.5"}
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
