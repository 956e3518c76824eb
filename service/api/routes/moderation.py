"""Moderation: the queue of comments awaiting a person, labels, statistics and history.

Every route here takes a user token (a moderator or an admin), never a site's API key. A
moderator sees only the sites granted to them; a comment elsewhere is answered 404, as if it
did not exist.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.routing import APIRoute

from service import tables, users
from service.api import errors
from service.api.deps import AdminUser, CurrentUser, ServicesDep, SessionDep
from service.moderation import actions, labels, queries
from service.moderation.queries import DecisionFilter, Order
from service.schemas import (
    AppliedLabelOut,
    BulkLabelIn,
    BulkLabelOut,
    HistoryOut,
    LabelCallbackBody,
    LabelIn,
    MeOut,
    QueuePageOut,
    SiteThresholdsOut,
    StatsOut,
    ThresholdsIn,
    UserOut,
    UtcDateTime,
)

router = APIRouter(prefix="/v1", tags=["moderation"])

# The label callback, as the OpenAPI schema shows it (commentguard POSTs it; nothing serves it).
label_callbacks = APIRouter(route_class=APIRoute)


@label_callbacks.post("{$comment.callback_url}", status_code=200)
def label_callback(body: LabelCallbackBody) -> None:
    """Sent to the comment's callback_url, signed like the verdict callback, for each label."""


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    answers = errors.responses(*statuses)
    if 401 in answers:
        answers[401]["description"] = "Missing or unknown user token (API keys do not work here)"
    if 403 in answers:
        answers[403]["description"] = "Needs an admin"
    return answers


# --- the queue ---------------------------------------------------------------------------

SiteFilter = Annotated[
    int | None, Query(ge=1, le=tables.MAX_ROW_ID, description="Only this site (its id).")
]


@router.get(
    "/moderation/queue",
    response_model=QueuePageOut,
    responses=_responses(401, 404, 422, 503),
)
def moderation_queue(
    user: CurrentUser,
    session: SessionDep,
    site: SiteFilter = None,
    decision: Annotated[
        DecisionFilter, Query(description="The verdicts to list; `all` for every one.")
    ] = "unsure",
    order: Annotated[
        Order,
        Query(
            description="`review`: least sure first (|score − 0.5| ascending), one of each group "
            "of near-copies before a second; `uncertainty`: least sure first; `newest`."
        ),
    ] = "review",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=1000, description="`next_cursor` of the previous page.")
    ] = None,
    since: Annotated[UtcDateTime | None, Query(description="Received from then.")] = None,
    until: Annotated[UtcDateTime | None, Query(description="…and before then.")] = None,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Text in the content, author, e-mail, URL or IP."),
    ] = None,
) -> QueuePageOut:
    """Scored comments with no label yet, on the sites the user may see (keyset-paginated)."""
    queries.check_site(user, site)
    page = queries.queue_page(
        session,
        user,
        order=order,
        limit=limit,
        cursor=cursor,
        site=site,
        decision=decision,
        since=since,
        until=until,
        search=q,
    )
    session.commit()
    return page


# --- labels ------------------------------------------------------------------------------


def _out(applied: labels.AppliedLabel) -> AppliedLabelOut:
    return AppliedLabelOut(
        comment_id=applied.comment_id,
        site_id=applied.site_id,
        label_id=applied.label_id,
        label=applied.label,
        previous=applied.previous,
        kind=applied.kind,
        callback=applied.delivery_id is not None,
    )


@router.post(
    "/comments/{comment_id}/label",
    status_code=201,
    response_model=AppliedLabelOut,
    responses=_responses(401, 404, 422, 503),
    callbacks=label_callbacks.routes,
)
def label_comment(
    comment_id: uuid.UUID,
    body: LabelIn,
    user: CurrentUser,
    services: ServicesDep,
    session: SessionDep,
) -> AppliedLabelOut:
    """Label a comment spam or ham; the newest label wins and the platform is called back."""
    request = actions.LabelRequest(comment_id, body.label, body.note)
    return _out(actions.label_one(session, services, user, request))


@router.post(
    "/labels",
    status_code=201,
    response_model=BulkLabelOut,
    responses=_responses(401, 404, 422, 503),
)
def label_comments(
    body: BulkLabelIn, user: CurrentUser, services: ServicesDep, session: SessionDep
) -> BulkLabelOut:
    """Label many comments atomically (404 and none labelled if any is unknown); each calls back."""
    requests = [actions.LabelRequest(i.comment_id, i.label, i.note) for i in body.items]
    applied = actions.label_many(session, services, user, requests)
    return BulkLabelOut(applied=[_out(a) for a in applied])


# --- statistics --------------------------------------------------------------------------


@router.get("/moderation/stats", response_model=StatsOut, responses=_responses(401, 404, 503))
def moderation_stats(
    user: CurrentUser,
    session: SessionDep,
    services: ServicesDep,
    site: SiteFilter = None,
    since: Annotated[UtcDateTime | None, Query(description="Comments received from then.")] = None,
    until: Annotated[UtcDateTime | None, Query(description="…and before then.")] = None,
) -> StatsOut:
    """Per-site counts: checked, each decision, labels, missed spam and false positives."""
    queries.check_site(user, site)
    thresholds = actions.model_thresholds(services)
    result = queries.site_stats(session, user, site, since, until, thresholds)
    session.commit()
    return StatsOut(sites=result)


# --- per-site thresholds (admins) --------------------------------------------------------


@router.put(
    "/sites/{site_id}/thresholds",
    response_model=SiteThresholdsOut,
    responses=_responses(401, 403, 404, 422, 503),
)
def put_site_thresholds(
    site_id: Annotated[int, Path(ge=1, le=tables.MAX_ROW_ID)],
    body: ThresholdsIn,
    admin: AdminUser,
    services: ServicesDep,
    session: SessionDep,
) -> SiteThresholdsOut:
    """Set a site's own decision thresholds (admins); null or missing resets to the model's."""
    return actions.update_site_thresholds(session, services, admin, site_id, body)


# --- a comment's history -----------------------------------------------------------------


@router.get(
    "/moderation/comments/{comment_id}/history",
    response_model=HistoryOut,
    responses=_responses(401, 404, 503),
)
def comment_history(comment_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> HistoryOut:
    """A comment with its verdict, its label, every label event and every callback."""
    result = queries.comment_history(session, user, comment_id)
    session.commit()
    return result


# --- users -------------------------------------------------------------------------------


@router.get("/moderation/me", response_model=MeOut, responses=_responses(401, 503))
async def me(user: CurrentUser) -> MeOut:
    """The user the token belongs to, and the sites they see."""
    site_ids = sorted(user.site_ids) if user.site_ids is not None else None
    return MeOut(id=user.id, name=user.name, role=user.role, site_ids=site_ids)


@router.get("/users", response_model=list[UserOut], responses=_responses(401, 403, 503))
def list_users(_admin: AdminUser, session: SessionDep) -> list[UserOut]:
    """Every moderator and admin, with their granted sites (admins only)."""
    result = [
        UserOut(
            id=u.id,
            name=u.name,
            role=tables.UserRole(u.role),
            disabled=u.disabled,
            has_password=u.has_password,
            tokens=u.tokens,
            sites=u.sites,
        )
        for u in users.list_users(session)
    ]
    session.commit()
    return result
