"""The Akismet API (1.1 and 1.2): existing integrations switch by changing their base URL.

Every protocol answer is HTTP 200 with Akismet's exact body. `X-akismet-debug-help` comes only
with an `invalid` answer: some clients raise on it whatever the body says.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session

from classifier import LoadedModel
from service import akismet, tables
from service.akismet import AkismetRequest
from service.api.deps import ModelDep, ServicesDep, SessionDep
from service.moderation import labels
from service.privacy import protect
from service.ratelimit import Limited
from service.runtime import Services

router = APIRouter(tags=["akismet"])

DEBUG_HELP = "X-akismet-debug-help"
GUID = "X-akismet-guid"
PRO_TIP = "X-akismet-pro-tip"


ALERT_CODE = "X-akismet-alert-code"
ALERT_MSG = "X-akismet-alert-msg"
# In the range Akismet uses for a key over its usage limit; clients show it to the site owner.
RATE_LIMIT_ALERT_CODE = "10501"


class AkismetLimited(Exception):
    """An Akismet call over a rate limit: answered in the protocol, not with a 429."""

    def __init__(self, limited: Limited) -> None:
        super().__init__(limited.message)
        self.limited = limited


async def limited_answer(_request: Request, exc: Exception) -> Response:
    """`invalid` with the alert headers: clients hold the comment and check it again later."""
    assert isinstance(exc, AkismetLimited)
    limited = exc.limited
    return text(
        "invalid",
        {
            DEBUG_HELP: limited.message,
            ALERT_CODE: RATE_LIMIT_ALERT_CODE,
            ALERT_MSG: f"Rate limit reached: {limited.message}",
            "Retry-After": str(limited.retry_after),
        },
    )


class AkismetRefused(Exception):
    """A body that cannot be read (its charset is no text encoding): answered `invalid`."""


async def refused_answer(_request: Request, exc: Exception) -> Response:
    """`invalid` with the reason in the debug-help header, as for any other refused call."""
    return invalid(str(exc))


def _parse(request: Request, body: bytes, query: bytes = b"") -> AkismetRequest:
    try:
        return akismet.parse_request(
            body,
            request.headers.get("content-type"),
            query=query,
            host=request.headers.get("host", ""),
        )
    except akismet.UnsupportedCharset as exc:
        raise AkismetRefused(str(exc)) from exc


async def _check_limits(request: Request, services: Services, form: AkismetRequest) -> None:
    limiter = services.limiter
    if limiter is None or not limiter.enabled:
        return
    client = request.client
    limited = await limiter.check(form.api_key()[0] or None, client.host if client else None)
    if limited is not None:
        raise AkismetLimited(limited)


async def read_form(request: Request, services: ServicesDep) -> AkismetRequest:
    """A 1.1 call: the form-urlencoded body."""
    form = _parse(request, await request.body())
    await _check_limits(request, services, form)
    return form


async def read_form_and_query(request: Request, services: ServicesDep) -> AkismetRequest:
    """A 1.2 call: the query string and the body, either of which may carry the fields."""
    form = _parse(request, await request.body(), request.url.query.encode("latin-1", "replace"))
    await _check_limits(request, services, form)
    return form


Form = Annotated[AkismetRequest, Depends(read_form)]
FormAndQuery = Annotated[AkismetRequest, Depends(read_form_and_query)]


def text(body: str, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(body, headers=headers)


def invalid(why: str) -> Response:
    # A header value is one line of Latin-1; the reason may quote what the client sent.
    printable = "".join(c if " " <= c <= "~" else "?" for c in why)
    return text("invalid", {DEBUG_HELP: printable})


def _account(
    form: AkismetRequest, services: Services, session: Session, prefer_key: bool = False
) -> tuple[int | None, str, str]:
    """(account id or None, the key, why it was refused)."""
    key, source = form.api_key(prefer_key)
    if not key:
        return None, key, 'Empty "api_key" value: send your commentguard API key'
    account_id = akismet.authenticate(session, services.keys, services.settings.secret_key, key)
    if account_id is None:
        if source == "Host":
            return None, key, 'No "api_key", and the Host name does not start with a valid key'
        return None, key, f'Invalid "{source}": unknown or revoked API key'
    return account_id, key, ""


def _submission(form: AkismetRequest, services: Services) -> akismet.AkismetSubmission:
    """The call's comment as it may be stored: its addresses hashed unless configured
    otherwise (`user_ip`, and those among the other fields), no cookies (docs/privacy.md)."""
    settings = services.settings
    submission = akismet.to_submission(form, settings.max_content_bytes)
    comment = protect(submission.comment, settings)
    extra = akismet.private_extra(comment.extra, settings.secret_key, settings.store_raw_ip)
    return replace(submission, comment=comment.model_copy(update={"extra": extra}))


def _missing(form: AkismetRequest, *names: str) -> Response | None:
    name = akismet.missing_field(form, *names)
    return invalid(f'Empty "{name}" value: it is required') if name else None


TEXT_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {}}, "description": "Akismet's plain-text answer"}
}
REPORT_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/json": {}, "text/csv": {}, "text/plain": {}},
        "description": "Akismet's JSON (or CSV) report; `invalid` as plain text",
    }
}


@router.post("/1.1/verify-key", response_class=PlainTextResponse, responses=TEXT_ANSWER)
def verify_key(form: Form, services: ServicesDep, session: SessionDep) -> Response:
    """Akismet verify-key: `valid` or `invalid`."""
    account_id, _, why = _account(form, services, session, prefer_key=True)
    if account_id is None:
        return invalid(why)
    return _missing(form, "blog") or text("valid")


@router.post("/1.1/comment-check", response_class=PlainTextResponse, responses=TEXT_ANSWER)
def comment_check(
    form: Form, services: ServicesDep, session: SessionDep, model: ModelDep
) -> Response:
    """Akismet comment-check: score and store the comment; `true` is spam, `false` is not."""
    account_id, _, why = _account(form, services, session)
    if account_id is None:
        return invalid(why)
    if refused := _missing(form, "blog", "user_ip"):
        return refused
    submission = _submission(form, services)
    comment = akismet.check(session, services.sites, account_id, submission, model, services.memory)
    assert comment.verdict is not None
    decision = comment.verdict.decision
    headers = {GUID: str(comment.id)}
    if decision == "discard":
        headers[PRO_TIP] = "discard"
    return text("true" if akismet.answers_spam(decision) else "false", headers)


def _submit(
    form: AkismetRequest,
    services: Services,
    session: Session,
    model: LoadedModel,
    label: tables.LabelValue,
) -> Response:
    account_id, key, why = _account(form, services, session)
    if account_id is None:
        return invalid(why)
    if refused := _missing(form, "blog", "user_ip"):
        return refused
    submission = _submission(form, services)
    applied = akismet.record_feedback(
        session,
        services.sites,
        account_id,
        submission,
        label,
        form.value("guid"),
        akismet.actor(key, services.settings.secret_key),
        model,
        services.memory,
    )
    labels.after_commit([applied], services.queue, services.label_hooks)
    return text(akismet.SUBMISSION_THANKS)


@router.post("/1.1/submit-spam", response_class=PlainTextResponse, responses=TEXT_ANSWER)
def submit_spam(
    form: Form, services: ServicesDep, session: SessionDep, model: ModelDep
) -> Response:
    """Akismet submit-spam: the platform says this comment is spam (a label, source feedback)."""
    return _submit(form, services, session, model, tables.LabelValue.SPAM)


@router.post("/1.1/submit-ham", response_class=PlainTextResponse, responses=TEXT_ANSWER)
def submit_ham(form: Form, services: ServicesDep, session: SessionDep, model: ModelDep) -> Response:
    """Akismet submit-ham: the platform says this comment is not spam (a label, source feedback)."""
    return _submit(form, services, session, model, tables.LabelValue.HAM)


def _json(data: object) -> Response:
    return Response(json.dumps(data), media_type="application/json")


# --- what the WordPress plugin's settings page calls ---------------------------------------


@router.get("/1.1/test", response_class=PlainTextResponse, responses=TEXT_ANSWER)
@router.post(
    "/1.1/test",
    response_class=PlainTextResponse,
    responses=TEXT_ANSWER,
    operation_id="akismet_test_post",
)
def connectivity_test() -> Response:
    """Akismet's connectivity check: `connected`."""
    return text("connected")


@router.post("/1.1/get-subscription", responses=REPORT_ANSWER)
def get_subscription(form: Form, services: ServicesDep, session: SessionDep) -> Response:
    """Akismet get-subscription: the key's account, `active` (JSON); `invalid` for a bad key."""
    # `key` is the key being checked; `api_key` is the one the plugin had saved before.
    account_id, _, why = _account(form, services, session, prefer_key=True)
    if account_id is None:
        return invalid(why)
    return _json(akismet.subscription(session, account_id))


@router.post("/1.1/get-stats", responses=REPORT_ANSWER)
def get_stats(form: Form, services: ServicesDep, session: SessionDep) -> Response:
    """Akismet get-stats: the site's spam, ham, missed spam and false positives (JSON)."""
    account_id, _, why = _account(form, services, session, prefer_key=True)
    if account_id is None:
        return invalid(why)
    if refused := _missing(form, "blog"):
        return refused
    try:
        report = akismet.stats(
            session, account_id, form.value("blog"), form.value("from").strip() or "all"
        )
    except ValueError as exc:
        return invalid(str(exc))
    return _json(report)


@router.post("/1.1/deactivate", response_class=PlainTextResponse, responses=TEXT_ANSWER)
def deactivate(form: Form, services: ServicesDep, session: SessionDep) -> Response:
    """Akismet deactivate, sent when the plugin is deactivated: `deactivated` (the key stays)."""
    account_id, _, why = _account(form, services, session, prefer_key=True)
    if account_id is None:
        return invalid(why)
    return text("deactivated")


# GET and POST as two routes, so that each has an OpenAPI operation id of its own.
@router.get("/1.2/usage-limit", responses=REPORT_ANSWER, operation_id="akismet_usage_limit_get")
@router.post("/1.2/usage-limit", responses=REPORT_ANSWER, operation_id="akismet_usage_limit_post")
def usage_limit(form: FormAndQuery, services: ServicesDep, session: SessionDep) -> Response:
    """Akismet usage-limit: this month's comment checks against the account's limit."""
    account_id, _, why = _account(form, services, session)
    if account_id is None:
        return invalid(why)
    return _json(akismet.usage_limit(session, account_id))


@router.get("/1.2/key-sites", responses=REPORT_ANSWER, operation_id="akismet_key_sites_get")
@router.post("/1.2/key-sites", responses=REPORT_ANSWER, operation_id="akismet_key_sites_post")
def key_sites(form: FormAndQuery, services: ServicesDep, session: SessionDep) -> Response:
    """Akismet key-sites: each site's calls, spam, ham, missed spam and false positives."""
    account_id, key, why = _account(form, services, session)
    if account_id is None:
        return invalid(why)
    result_format = form.value("format").strip().lower() or "json"
    if result_format not in ("json", "csv"):
        return invalid('"format" must be json or csv')
    try:
        report = akismet.key_sites(
            session,
            account_id,
            month=form.value("month"),
            url_filter=form.value("filter"),
            order=form.value("order").strip().lower() or "total",
            limit=form.value("limit"),
            offset=form.value("offset"),
        )
    except ValueError as exc:
        return invalid(str(exc))
    if result_format == "csv":
        return Response(
            report.to_csv(akismet.public_name(key, services.settings.secret_key)),
            media_type="text/csv",
        )
    return _json(report.to_json())
