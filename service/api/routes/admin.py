"""Credentials for admins: list and revoke API keys, disable users, revoke their tokens, take
back a site grant, and read the audit of all of it. Every route takes an admin's user token."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from service import audit, security, tables, users
from service.api import errors
from service.api.deps import AdminUser, ServicesDep, SessionDep, UserPrincipal
from service.problems import ApiError
from service.schemas import AdminAuditOut, ApiKeyOut, TokensRevokedOut, UserOut
from service.tables import MAX_ROW_ID

router = APIRouter(prefix="/v1", tags=["admin"])

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    answers = errors.responses(*statuses)
    answers[401]["description"] = "Missing or unknown user token (API keys do not work here)"
    answers[403]["description"] = "Needs an admin"
    return answers


def _actor(admin: UserPrincipal) -> audit.Actor:
    return audit.Actor(admin.name, "api", admin.id)


@router.get("/keys", response_model=list[ApiKeyOut], responses=_responses(401, 403, 503))
def list_keys(
    _admin: AdminUser,
    session: SessionDep,
    account: Annotated[
        int | None, Query(ge=1, le=MAX_ROW_ID, description="Only this account.")
    ] = None,
) -> list[ApiKeyOut]:
    """Every API key (revoked ones too) with its account, never its secret (admins only)."""
    keys = security.list_keys(session, account)
    session.commit()
    return [ApiKeyOut(**asdict(k)) for k in keys]


@router.post(
    "/keys/{key_id}/revoke", response_model=ApiKeyOut, responses=_responses(401, 403, 404, 503)
)
def revoke_key(
    key_id: RowId, admin: AdminUser, services: ServicesDep, session: SessionDep
) -> ApiKeyOut:
    """Revoke an API key: refused by every API process within the site cache interval."""
    try:
        key, _ = security.revoke_key(session, key_id, _actor(admin))
    except security.UnknownKey as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    session.commit()
    services.keys.clear()  # at once here; other processes within their cache's TTL
    return ApiKeyOut(**asdict(key))


def _user_out(session: SessionDep, user_id: int) -> UserOut:
    found = next(u for u in users.list_users(session) if u.id == user_id)
    return UserOut(**{**asdict(found), "role": tables.UserRole(found.role)})


def _user(session: SessionDep, user_id: int) -> tables.User:
    try:
        return users.user_by_id(session, user_id)
    except users.UserError as exc:
        raise ApiError(404, "not_found", str(exc)) from exc


@router.post(
    "/users/{user_id}/disable",
    response_model=UserOut,
    responses=_responses(401, 403, 404, 409, 503),
)
def disable_user(user_id: RowId, admin: AdminUser, session: SessionDep) -> UserOut:
    """Disable a user: their tokens and console sessions stop working at once."""
    if user_id == admin.id:
        raise ApiError(409, "own_account", "an admin cannot disable themselves")
    users.set_disabled(session, _user(session, user_id), True, _actor(admin))
    session.commit()
    return _user_out(session, user_id)


@router.post(
    "/users/{user_id}/enable", response_model=UserOut, responses=_responses(401, 403, 404, 503)
)
def enable_user(user_id: RowId, admin: AdminUser, session: SessionDep) -> UserOut:
    """Enable a disabled user again (their tokens not revoked meanwhile work again)."""
    users.set_disabled(session, _user(session, user_id), False, _actor(admin))
    session.commit()
    return _user_out(session, user_id)


@router.post(
    "/users/{user_id}/revoke-tokens",
    response_model=TokensRevokedOut,
    responses=_responses(401, 403, 404, 503),
)
def revoke_user_tokens(user_id: RowId, admin: AdminUser, session: SessionDep) -> TokensRevokedOut:
    """Revoke every token of a user and end their console sessions, at once."""
    tokens, sessions = users.revoke_tokens(session, _user(session, user_id), _actor(admin))
    session.commit()
    return TokensRevokedOut(user_id=user_id, tokens=tokens, console_sessions=sessions)


@router.delete(
    "/users/{user_id}/sites/{site_id}",
    status_code=204,
    response_class=Response,
    responses=_responses(401, 403, 404, 503),
)
def ungrant_site(user_id: RowId, site_id: RowId, admin: AdminUser, session: SessionDep) -> Response:
    """Take back a moderator's grant of a site (404 if they had none)."""
    if not users.ungrant_site_id(session, _user(session, user_id), site_id, _actor(admin)):
        raise ApiError(404, "not_found", f"user {user_id} has no grant of site {site_id}")
    session.commit()
    return Response(status_code=204)


@router.get("/audit", response_model=list[AdminAuditOut], responses=_responses(401, 403, 503))
def admin_audit(
    _admin: AdminUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ROW_ID, description="Entries older than this id.")
    ] = None,
) -> list[AdminAuditOut]:
    """Changes to keys, users, grants and thresholds, newest first (admins only)."""
    found = audit.entries(session, limit, before)
    session.commit()
    return [AdminAuditOut(**{**asdict(e), "action": tables.AdminAction(e.action)}) for e in found]
