"""Generated requests against a live server: never a 5xx, and every answer within its schema.

The OpenAPI operations are read from the app when the test runs, so an endpoint added later is
fuzzed without touching this file. Generation is derandomized (the same cases on every run).
"""

from __future__ import annotations

import math
import shutil
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from classifier.artifact import active_version
from service.app import create_app
from service.settings import Settings
from tests.service.conftest import Account, LiveServer
from training.retrain import list_runs

pytestmark = [pytest.mark.xdist_group("reliability_fuzz"), pytest.mark.slow]

SCHEMA_CASES = 1000
AKISMET_CASES = 400


@pytest.fixture(scope="module")
def akismet_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """`live_server` serves these: the private PostgreSQL database and Redis of this module,
    and a copy of the models folder (the admin's calls queue retrains and try activations)."""
    models = tmp_path_factory.mktemp("fuzz-models") / "models"
    shutil.copytree(settings.models_dir, models)
    return settings.model_copy(update={"models_dir": models})


@pytest.fixture(scope="module")
def fuzz_account(settings: Settings) -> Account:
    from tests.service.conftest import create_account

    return create_account(settings, "fuzz")


@pytest.fixture(scope="module")
def fuzz_admin(settings: Settings) -> Account:
    """An admin user (its `key` is the user token): the user endpoints are fuzzed with it, so
    that their cases get past authentication."""
    from tests.service.conftest import create_admin

    return create_admin(settings, "fuzz-admin")


@dataclass(frozen=True)
class Credentials:
    """The bearer credential for each scheme an operation's OpenAPI `security` names."""

    site_key: Account
    user_token: Account

    def headers(self, operation: APIOperation) -> dict[str, str]:
        schemes = {name for entry in operation.definition.raw.get("security", []) for name in entry}
        if "UserToken" in schemes:
            return self.user_token.headers
        # The site endpoints, and the public ones (the header is ignored there).
        return self.site_key.headers


def _hypothesis(max_examples: int) -> Any:
    return hypothesis_settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


def _operations(settings: Settings) -> list[APIOperation]:
    schema = schemathesis.openapi.from_dict(create_app(settings).openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    # Operations with fewer inputs exhaust their cases early; run them first, so that what
    # they leave of the budget goes to the operations with bodies and parameters.
    return sorted(operations, key=lambda op: (len(list(op.iter_parameters())), op.label))


class RealIds:
    """Ids that exist on the server: every other positive case gets one in its path, so that
    the routes go past their 404 and their full answers are checked against the schema."""

    def __init__(self, url: str, account: Account, models_dir: Path) -> None:
        self.models_dir = models_dir
        response = httpx.post(
            f"{url}/v1/check",
            json={"content": "a lovely song", "blog": "https://fuzz.example", "external_id": "x"},
            headers=account.headers,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        self.comment_id = str(response.json()["id"])

    def get(self, name: str) -> str | None:
        if name == "comment_id":
            return self.comment_id
        if name == "version":
            return active_version(self.models_dir)  # activating it again is harmless
        if name == "run_id":
            runs = list_runs(self.models_dir)  # the retrain cases (run earlier) queued some
            return str(runs[-1]["run_id"]) if runs else None
        return None

    def fill(self, case: schemathesis.Case, n: int) -> None:
        for name in case.path_parameters or {}:
            value = self.get(name)
            if value is not None and n % 2 == 0:
                case.path_parameters[name] = value  # type: ignore[index]


def fuzz_operation(
    operation: APIOperation,
    generation: GenerationMode,
    budget: int,
    url: str,
    credentials: Credentials,
    statuses: Counter[int],
    real: RealIds | None = None,
) -> int:
    """Call one operation with up to `budget` generated cases; returns how many ran."""
    calls = 0
    headers = credentials.headers(operation)

    @_hypothesis(budget)
    @given(case=operation.as_strategy(generation))
    def call(case: schemathesis.Case) -> None:
        nonlocal calls
        calls += 1
        if real is not None and generation is GenerationMode.POSITIVE:
            real.fill(case, calls)
        response = case.call(base_url=url, headers=headers)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    try:
        call()
    except Unsatisfiable:
        if generation is not GenerationMode.NEGATIVE:
            raise  # only an operation without inputs may have no invalid case
    return calls


def test_every_operation_answers_within_its_schema_and_never_5xx(
    live_server: LiveServer, fuzz_account: Account, fuzz_admin: Account
) -> None:
    operations = _operations(live_server.settings)
    assert len(operations) >= 14
    credentials = Credentials(site_key=fuzz_account, user_token=fuzz_admin)
    real = RealIds(live_server.url, fuzz_account, live_server.settings.models_dir)
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    plan = [(op, mode) for op in operations for mode in modes]
    cases: dict[str, int] = {}
    statuses: dict[str, Counter[int]] = {}
    for index, (operation, generation) in enumerate(plan):
        done = sum(cases.values())
        budget = max(5, math.ceil((SCHEMA_CASES - done) / (len(plan) - index)))
        label = f"{operation.label} ({generation.value})"
        statuses[label] = Counter()
        cases[label] = fuzz_operation(
            operation, generation, budget, live_server.url, credentials, statuses[label], real
        )
    total = sum(cases.values())
    print(f"schemathesis: {total} cases over {len(operations)} operations: {cases}")
    print(f"schemathesis statuses: { {k: dict(v) for k, v in statuses.items()} }")
    assert total >= SCHEMA_CASES, cases
    # The user endpoints were really exercised with the admin's token: their positive cases
    # got past authentication (a 401 on every case would mean the wrong credential was sent).
    user_ops = [op for op in operations if "UserToken" in str(op.definition.raw.get("security"))]
    assert len(user_ops) >= 10
    for op in user_ops:
        answered = statuses[f"{op.label} ({GenerationMode.POSITIVE.value})"]
        assert set(answered) - {401, 403}, (op.label, dict(answered))
        if "{" in op.path:  # with a real id, past the 404 too
            assert any(200 <= status < 300 for status in answered), (op.label, dict(answered))


# --- the Akismet endpoints: whatever the form, never a 5xx ---------------------------------

AKISMET_FIELDS = [
    "api_key", "key", "blog", "user_ip", "user_agent", "referrer", "permalink", "comment_type",
    "comment_author", "comment_author_email", "comment_author_url", "comment_content",
    "comment_date_gmt", "comment_post_modified_gmt", "blog_lang", "blog_charset", "user_role",
    "is_test", "guid", "honeypot_field_name", "hidden_honeypot_field", "recheck_reason",
    "month", "filter", "order", "limit", "offset", "format", "url", "other",
]  # fmt: skip
CONTENT_TYPES = [
    None,
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=UTF-8",
    "application/x-www-form-urlencoded; charset=iso-8859-1",
    "application/x-www-form-urlencoded; charset=utf-16",
    "application/x-www-form-urlencoded; charset=x-no-such-charset",
    "application/x-www-form-urlencoded; charset=",
    'application/x-www-form-urlencoded; charset="utf-8',
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    "application/json",
    "text/plain; charset=utf-7",
    "\u00e9/\u00e9",
]
ENCODINGS = ["utf-8", "latin-1", "utf-16", "cp1252", "raw"]


@st.composite
def akismet_requests(draw: st.DrawFn, key: str, paths: list[str]) -> dict[str, Any]:
    """A method, path, headers and body: form fields, known and not, in odd encodings."""
    path = draw(st.sampled_from(paths))
    names = st.one_of(st.sampled_from(AKISMET_FIELDS), st.text(max_size=20))
    values = st.one_of(
        st.text(max_size=200),
        st.sampled_from(["", key, "127.0.0.1", "::1", "2026-13", "-1", "9" * 40, "x@y"]),
        st.integers(min_value=0, max_value=400_000).map(lambda n: "x" * n),
    )
    fields = draw(st.lists(st.tuples(names, values), max_size=12))
    if draw(st.booleans()):
        fields += [("api_key", key), ("blog", "https://fuzz.example"), ("user_ip", "10.1.2.3")]
    encoding = draw(st.sampled_from(ENCODINGS))
    if encoding == "raw":
        body = draw(st.binary(max_size=2000))
    else:
        body = urllib.parse.urlencode(fields, encoding=encoding, errors="replace").encode("ascii")
        if draw(st.booleans()):
            body += b"&" + draw(st.binary(max_size=50))  # a stray invalid UTF-8 tail
    headers: dict[str, bytes] = {}
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type is not None:
        headers["Content-Type"] = content_type.encode("utf-8")  # raw bytes, non-ASCII too
    if draw(st.booleans()):
        host = draw(st.sampled_from([f"{key}.rest.example", "x.rest.example", "-"]))
        headers["Host"] = host.encode("ascii")
    query = urllib.parse.urlencode(draw(st.lists(st.tuples(names, values), max_size=3)))
    method = "POST" if path.startswith("/1.1/") else draw(st.sampled_from(["GET", "POST"]))
    return {"method": method, "path": path, "query": query[:4000], "headers": headers, "body": body}


def _akismet_paths(settings: Settings) -> list[str]:
    paths = create_app(settings).openapi()["paths"]
    return sorted(p for p in paths if p.startswith(("/1.1/", "/1.2/")))


@pytest.fixture(scope="module")
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


def test_akismet_endpoints_never_answer_5xx_whatever_the_form(
    live_server: LiveServer, fuzz_account: Account, http: httpx.Client
) -> None:
    paths = _akismet_paths(live_server.settings)
    assert len(paths) >= 6
    statuses: dict[int, int] = {}

    @_hypothesis(AKISMET_CASES)
    @given(request=akismet_requests(fuzz_account.key, paths))
    def call(request: dict[str, Any]) -> None:
        url = request["path"] + (f"?{request['query']}" if request["query"] else "")
        response = http.request(
            request["method"], url, headers=request["headers"], content=request["body"]
        )
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (request, response.text)

    call()
    print(f"akismet fuzz: statuses {statuses}")
    assert sum(statuses.values()) >= AKISMET_CASES
