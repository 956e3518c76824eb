"""The console's pages and actions under /console: server-rendered HTML, htmx for the rest.

Every state-changing request is a POST carrying the session's CSRF token; every page needs a
login. The moderation itself (queue, labels, statistics, history) is the moderation API's own
functions, called in-process, so the console and the API behave the same.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, Signer

from classifier import registry
from classifier.artifact import ArtifactError
from service import tables
from service.api.deps import ServicesDep, SessionDep
from service.console import auth, views
from service.console.auth import ConsoleUser
from service.console.web import PREFIX
from service.learning.retraining import activate_version, queue_retrain
from service.problems import ApiError
from service.settings import Settings

router = APIRouter(prefix=PREFIX, include_in_schema=False)

LOGIN_COOKIE = "cg_console_login"
_LOGIN_SALT = "commentguard.console.login"


class LoginRequired(Exception):
    """The request needs a console login (answered with a redirect to the login page)."""


# --- dependencies --------------------------------------------------------------------------


def get_console_user(request: Request, services: ServicesDep, session: SessionDep) -> ConsoleUser:
    """The logged-in user of the request's session cookie, else LoginRequired."""
    user = auth.current_user(session, request.cookies.get(auth.COOKIE_NAME), services.settings)
    session.commit()
    if user is None:
        raise LoginRequired()
    return user


ConsoleUserDep = Annotated[ConsoleUser, Depends(get_console_user)]


async def require_csrf(request: Request, user: ConsoleUserDep) -> ConsoleUser:
    """The user, if the request carries their session's CSRF token (header or form), else 403."""
    sent = request.headers.get(auth.CSRF_HEADER)
    if not sent and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(auth.CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not auth.csrf_ok(user, sent):
        raise ApiError(
            403, "csrf_failed", "the request lacks this session's CSRF token; reload the page"
        )
    return user


CsrfUser = Annotated[ConsoleUser, Depends(require_csrf)]


async def require_admin(user: CsrfUser) -> ConsoleUser:
    """The user, if an admin (and the request carries the CSRF token), else 403."""
    if not user.is_admin:
        raise ApiError(403, "forbidden", "this needs an admin")
    return user


AdminDep = Annotated[ConsoleUser, Depends(require_admin)]


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _safe_next(value: str | None) -> str:
    """Only a path of the console itself (never another site, never `//host`)."""
    if (
        value
        and value.startswith(PREFIX + "/")
        and not value.startswith("//")
        and ("\\" not in value)
    ):
        return value
    return f"{PREFIX}/queue"


def _login_signer(settings: Settings) -> Signer:
    return Signer(settings.secret_key, salt=_LOGIN_SALT)


def _set_cookie(
    response: Response, name: str, value: str, max_age: int, settings: Settings
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=settings.console_cookie_secure,
    )


# --- login and logout ----------------------------------------------------------------------


@router.get("", response_class=RedirectResponse)
async def console_root() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/queue", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request, services: ServicesDep, session: SessionDep, next: str | None = None
) -> Response:
    """The login form (with a pre-session CSRF token: logging in changes state too)."""
    settings = services.settings
    user = auth.current_user(session, request.cookies.get(auth.COOKIE_NAME), settings)
    session.commit()
    if user is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_page(request, settings, next=_safe_next(next))


def _login_page(
    request: Request,
    settings: Settings,
    *,
    next: str,
    error: str | None = None,
    username: str = "",
    status: int = 200,
) -> Response:
    token = uuid.uuid4().hex
    response = views.render(
        request,
        "login.html",
        {"user": None, "login_csrf": token, "next": next, "error": error, "username": username},
        status=status,
    )
    signed = _login_signer(settings).sign(token).decode()
    _set_cookie(response, LOGIN_COOKIE, signed, 3600, settings)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    services: ServicesDep,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Log in with a user name and password; limited per address, locked after failures."""
    settings = services.settings
    target = _safe_next(next)
    try:
        expected = _login_signer(settings).unsign(request.cookies.get(LOGIN_COOKIE, "")).decode()
    except BadSignature:
        expected = ""
    if not expected or not csrf_token or expected != csrf_token:
        raise ApiError(403, "csrf_failed", "the login form expired or was not ours; reload it")
    client = request.client.host if request.client else ""
    assert services.login_guard is not None, "build_services makes it"
    result = await services.login_guard.login(services.sessions, username, password, client)
    if result.cookie is None:
        if result.too_many_from_address:
            error = "Too many login attempts from this address: wait a minute."
            status = 429
        elif result.locked_until is not None:
            error = (
                "Too many failed logins for this user name: try again after "
                f"{result.locked_until:%H:%M} UTC."
            )
            status = 429
        else:
            error = "Wrong user name or password."
            status = 401
        return _login_page(
            request, settings, next=target, error=error, username=username[:100], status=status
        )
    response = RedirectResponse(target, status_code=303)
    _set_cookie(
        response, auth.COOKIE_NAME, result.cookie, settings.console_session_seconds, settings
    )
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
def logout(user: CsrfUser, services: ServicesDep, session: SessionDep) -> Response:
    """End the session."""
    auth.logout(session, user)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(
        auth.COOKIE_NAME,
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=services.settings.console_cookie_secure,
    )
    return response


# --- the queue -----------------------------------------------------------------------------


@router.get("/queue", response_class=HTMLResponse)
def queue_page(
    request: Request, user: ConsoleUserDep, services: ServicesDep, session: SessionDep
) -> Response:
    """Comments awaiting review, least sure first, with their reasons in place."""
    filters = views.QueueFilters.parse(request.query_params)
    context = views.queue_context(session, services, user, filters, request.query_params)
    return views.render(request, "queue.html", context)


@router.post("/comments/{comment_id}/label", response_class=HTMLResponse)
def label_comment(
    comment_id: uuid.UUID,
    request: Request,
    user: CsrfUser,
    services: ServicesDep,
    session: SessionDep,
    label: Annotated[tables.LabelValue, Form()],
) -> Response:
    """Label one comment; answers its decided row and the new queue count (htmx)."""
    applied = views.label_one(session, services, user, comment_id, label)
    filters = views.QueueFilters.parse(request.query_params)
    total = views.queue_total(session, user, filters)
    context = {
        "comment_id": applied.comment_id,
        "label": applied.label.value,
        "kind": applied.kind.value,
        "total": total,
        "count_oob": True,
    }
    return views.render(request, "_decided.html", context)


@router.post("/labels")
def label_many(
    request: Request,
    user: CsrfUser,
    services: ServicesDep,
    session: SessionDep,
    label: Annotated[tables.LabelValue, Form()],
    ids: Annotated[list[uuid.UUID], Form(max_length=500)] = [],  # noqa: B006
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Label the selected comments at once, then back to the queue."""
    if ids:
        views.label_many(session, services, user, ids, label)
    return RedirectResponse(f"{PREFIX}/queue?{views.clean_query(back)}", status_code=303)


@router.post("/undo", response_class=HTMLResponse)
def undo(request: Request, user: CsrfUser, services: ServicesDep, session: SessionDep) -> Response:
    """Undo the user's last decision still in effect (this session's only)."""
    undone = views.undo_last(session, services, user)
    if undone is None:
        raise ApiError(409, "nothing_to_undo", "no decision of yours in this session to undo")
    filters = views.QueueFilters.parse(request.query_params)
    context = views.undone_context(session, services, user, undone, filters)
    return views.render(request, "_undone.html", context)


# --- a comment -----------------------------------------------------------------------------


@router.get("/comments/{comment_id}", response_class=HTMLResponse)
def comment_page(
    comment_id: uuid.UUID,
    request: Request,
    user: ConsoleUserDep,
    services: ServicesDep,
    session: SessionDep,
) -> Response:
    """A comment with its whole history: verdict, labels and audit, callbacks."""
    context = views.comment_context(session, services, user, comment_id)
    return views.render(request, "comment.html", context)


# --- sites ---------------------------------------------------------------------------------


@router.get("/sites", response_class=HTMLResponse)
def sites_page(
    request: Request, user: ConsoleUserDep, services: ServicesDep, session: SessionDep
) -> Response:
    """Per-site counts, and (admins) the thresholds."""
    context = views.sites_context(session, services, user)
    if request.query_params.get("done") == "thresholds":
        context["flashes"] = [("Thresholds saved: every process uses them within seconds.", "")]
    return views.render(request, "sites.html", context)


@router.post("/sites/{site_id}/thresholds", response_class=HTMLResponse)
def save_site_thresholds(
    site_id: Annotated[int, Path(ge=1, le=tables.MAX_ROW_ID)],
    request: Request,
    user: AdminDep,
    services: ServicesDep,
    session: SessionDep,
    unsure: Annotated[str, Form(max_length=64)] = "",
    spam: Annotated[str, Form(max_length=64)] = "",
    discard: Annotated[str, Form(max_length=64)] = "",
    reset: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Set a site's thresholds (admins; blank: the model's), or reset them all."""
    form = views.ThresholdForm() if reset else views.ThresholdForm(unsure, spam, discard)
    errors = views.save_thresholds(session, services, user, site_id, form)
    if not errors:
        return RedirectResponse(f"{PREFIX}/sites?done=thresholds#site-{site_id}", status_code=303)
    context = views.sites_context(session, services, user)
    context["threshold_errors"] = {site_id: errors}
    context["threshold_values"] = {site_id: form.values()}
    return views.render(request, "sites.html", context, status=422)


# --- models --------------------------------------------------------------------------------

MODEL_MESSAGES = {
    "retrain": ("Retrain queued: its run appears below.", ""),
    "activated": ("Version activated: every process serves it within seconds.", ""),
    "rolled-back": ("Rolled back to the previously active version.", ""),
}


@router.get("/models", response_class=HTMLResponse)
def models_page(
    request: Request, user: ConsoleUserDep, services: ServicesDep, session: SessionDep
) -> Response:
    """Every model version with its status, metrics and gate; the active model's pictures."""
    context = views.models_context(session, services, user)
    message = MODEL_MESSAGES.get(request.query_params.get("done", ""))
    context["flashes"] = [message] if message else []
    return views.render(request, "models.html", context)


@router.post("/models/retrain")
def retrain_model(user: AdminDep, services: ServicesDep) -> Response:
    """Queue a retrain (admins), as `POST /v1/models/retrain` does."""
    queue_retrain(services.settings, services.queue, "console")
    return RedirectResponse(f"{PREFIX}/models?done=retrain", status_code=303)


@router.post("/models/rollback")
def rollback_model(user: AdminDep, services: ServicesDep) -> Response:
    """Activate the previously active version again (admins)."""
    try:
        registry.rollback(services.settings.models_dir)
    except LookupError as exc:
        raise ApiError(409, "no_previous_version", str(exc)) from exc
    except ArtifactError as exc:
        raise ApiError(409, "invalid_artifact", f"rollback refused: {exc.reason}") from exc
    return RedirectResponse(f"{PREFIX}/models?done=rolled-back", status_code=303)


@router.post("/models/{version}/activate")
def activate_model(version: str, user: AdminDep, services: ServicesDep) -> Response:
    """Verify a version and serve it (admins), as `POST /v1/models/{version}/activate` does."""
    activate_version(services.settings, version, reason="activated in the console")
    return RedirectResponse(f"{PREFIX}/models?done=activated", status_code=303)


# --- errors --------------------------------------------------------------------------------


def install_handlers(app: Any) -> None:
    """Answer a missing login with a redirect to the login form (htmx: HX-Redirect)."""

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _exc: LoginRequired) -> Response:
        if _is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": f"{PREFIX}/login"})
        if request.method == "GET":
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(
                f"{PREFIX}/login?{urlencode({'next': here}, quote_via=quote)}", status_code=303
            )
        return RedirectResponse(f"{PREFIX}/login", status_code=303)
