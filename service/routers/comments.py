"""Comments: submit by webhook (scored in the background), check now, and read back."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from sqlalchemy.exc import IntegrityError

from service import errors, tables
from service.callbacks import UnsafeCallbackURL, check_callback_url
from service.deps import AccountId, ModelDep, QueueDep, ServicesDep, SessionDep
from service.engine import attach, compute_verdict, score_into
from service.errors import ApiError
from service.intake import new_comment, resolve_site, store_comment
from service.privacy import protect
from service.schemas import CheckIn, CommentIn, CommentOut, WebhookCommentIn
from service.settings import Settings
from service.writes import insert_rows

router = APIRouter(prefix="/v1", tags=["comments"])


def _check_size(body: CommentIn, settings: Settings) -> None:
    size = len(body.content.encode("utf-8", errors="surrogatepass"))
    if size > settings.max_content_bytes:
        raise ApiError(
            413,
            "content_too_large",
            f"content is {size} bytes of UTF-8; the limit is {settings.max_content_bytes}",
        )


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
        **errors.responses(401, 429, 413, 422, 503),
    },
)
def submit_comment(
    body: WebhookCommentIn,
    account_id: AccountId,
    services: ServicesDep,
    session: SessionDep,
    queue: QueueDep,
    response: Response,
) -> CommentOut:
    """Accept a comment for scoring; its verdict is POSTed, signed, to callback_url."""
    settings = services.settings
    _check_size(body, settings)
    if body.callback_url:
        _check_callback(body.callback_url, settings)
    body = protect(body, settings)
    site = resolve_site(session, services.sites, account_id, body.blog)
    comment = new_comment(site.id, body, body.external_id, body.callback_url)
    # Committed before it is queued: a task can never look for a comment that is not there,
    # and if Redis is down the comment is safe and the pending sweep will queue it.
    created = insert_rows(session, comment)
    if not created:
        comment, created = store_comment(session, comment)
        session.commit()
    if not created:
        response.status_code = 200
    elif queue is not None:
        queue.score(comment.id)
    return CommentOut.from_row(comment, site.url)


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
    "/check", response_model=CommentOut, responses=errors.responses(401, 429, 413, 422, 503)
)
def check_comment(
    body: CheckIn,
    account_id: AccountId,
    services: ServicesDep,
    session: SessionDep,
    model: ModelDep,
) -> CommentOut:
    """Score a comment now, store it with its verdict, and return the verdict."""
    _check_size(body, services.settings)
    memory = services.memory
    body = protect(body, services.settings)
    site = resolve_site(session, services.sites, account_id, body.blog)
    fresh = new_comment(site.id, body, body.external_id)
    # Scored before any write: on SQLite a write transaction holds the database's only write
    # lock, so it should last for the inserts alone.
    thresholds = site.thresholds.effective(model.thresholds)
    verdict = compute_verdict(fresh, model, memory, account_id, thresholds)
    fresh.status = tables.CommentStatus.SCORED
    if insert_rows(session, fresh, verdict):
        fresh.verdict = verdict
        return CommentOut.from_row(fresh, site.url)
    # The external_id was submitted before: answer from the stored comment, as before.
    fresh.status = tables.CommentStatus.PENDING
    comment, created = store_comment(session, fresh)
    if created:
        attach(session, comment, verdict)
    elif comment.verdict is None:
        score_into(session, comment, model, memory, account_id, thresholds)
    try:
        session.commit()
    except IntegrityError:
        # A worker scored this (webhook-submitted) comment in the meantime: use its verdict.
        session.rollback()
        stored = session.get(tables.Comment, comment.id, populate_existing=True)
        if stored is None or stored.verdict is None:
            raise
        comment = stored
    return CommentOut.from_row(comment, site.url)
