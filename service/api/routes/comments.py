"""Comments: submit by webhook (scored in the background), check now, and read back."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from service import tables
from service.api import errors
from service.api.deps import AccountId, SessionDep, services_of
from service.callbacks import UnsafeCallbackURL, check_callback_url, needs_lookup
from service.intake.checks import CheckRequest
from service.intake.sites import normalise_site_url, resolve_site
from service.intake.submissions import Accepted, Submission
from service.privacy import protect
from service.problems import ApiError
from service.runtime import Services
from service.schemas import CheckIn, CommentIn, CommentOut, WebhookCommentIn
from service.settings import Settings

router = APIRouter(prefix="/v1", tags=["comments"])


def _check_size(body: CommentIn, settings: Settings) -> None:
    size = len(body.content.encode("utf-8", errors="surrogatepass"))
    if size > settings.max_content_bytes:
        raise ApiError(
            413,
            "content_too_large",
            f"content is {size} bytes of UTF-8; the limit is {settings.max_content_bytes}",
        )


async def _ensure_site(services: Services, account_id: int, blog: str) -> None:
    """Find or create the comment's site before it joins a batch, so that a site the account
    may not create (SiteLimitReached: 422) fails this request alone, not its batch."""
    if services.sites.get(account_id, normalise_site_url(blog)) is None:
        await run_in_threadpool(_resolve_site, services, account_id, blog)


def _resolve_site(services: Services, account_id: int, blog: str) -> None:
    with services.sessions() as session:
        resolve_site(session, services.sites, account_id, blog)


def _check_callback(url: str, settings: Settings) -> None:
    try:
        check_callback_url(url, settings.callback_allowed_hosts)
    except UnsafeCallbackURL as exc:
        raise ApiError(
            422,
            "invalid_callback_url",
            str(exc),
            details=[{"loc": ["body", "callback_url"], "msg": str(exc), "type": "unsafe_url"}],
        ) from exc


@router.post(
    "/comments",
    status_code=202,
    response_model=CommentOut,
    responses={
        200: {"model": CommentOut, "description": "Already submitted: the existing comment"},
        **errors.responses(401, 429, 409, 413, 422, 503),
    },
)
async def submit_comment(
    body: WebhookCommentIn, account_id: AccountId, request: Request
) -> Response:
    """Accept a comment for scoring; its verdict is POSTed, signed, to callback_url."""
    return await run_submit(services_of(request), account_id, body)


async def run_submit(services: Services, account_id: int, body: WebhookCommentIn) -> Response:
    """The work of `POST /v1/comments` once the request is authenticated and valid (also done
    by service.api.fastpath): 202 with the new comment, or 200 with the one submitted before."""
    settings = services.settings
    _check_size(body, settings)
    if body.callback_url:
        if needs_lookup(body.callback_url, settings.callback_allowed_hosts):
            await run_in_threadpool(_check_callback, body.callback_url, settings)  # DNS
        else:
            _check_callback(body.callback_url, settings)
    await _ensure_site(services, account_id, body.blog)
    assert services.submissions is not None, "build_services starts the batcher"
    accepted: Accepted = await services.submissions.submit(
        Submission(account_id, protect(body, settings))
    )
    # Serialised once, as run_check's answer is.
    return Response(
        accepted.comment.model_dump_json(),
        status_code=202 if accepted.created else 200,
        media_type="application/json",
    )


@router.get(
    "/comments/{comment_id}",
    response_model=CommentOut,
    responses=errors.responses(401, 429, 404, 503),
)
def get_comment(comment_id: uuid.UUID, account_id: AccountId, session: SessionDep) -> CommentOut:
    """A comment's state, with its verdict once scored."""
    comment = session.get(tables.Comment, comment_id)
    site = session.get(tables.Site, comment.site_id) if comment is not None else None
    if comment is None or site is None or site.account_id != account_id:
        raise ApiError(404, "not_found", f"no comment {comment_id}")
    return CommentOut.from_row(comment, site.url)


@router.post(
    "/check",
    response_model=CommentOut,
    responses=errors.responses(401, 429, 409, 413, 422, 503),
)
async def check_comment(body: CheckIn, account_id: AccountId, request: Request) -> Response:
    """Score a comment now, store it with its verdict, and return the verdict."""
    return await run_check(services_of(request), account_id, body)


async def run_check(services: Services, account_id: int, body: CheckIn) -> Response:
    """The work of `POST /v1/check` once the request is authenticated and valid (also done by
    service.api.fastpath, which answers the common case without the router)."""
    _check_size(body, services.settings)
    await _ensure_site(services, account_id, body.blog)
    check = CheckRequest(account_id, protect(body, services.settings))
    assert services.checks is not None, "build_services starts the batcher"
    answer: CommentOut = await services.checks.submit(check)
    # Serialised here, once: returned as a CommentOut, FastAPI would dump it, validate the
    # dump against the response model and dump it again.
    return Response(answer.model_dump_json(), media_type="application/json")
