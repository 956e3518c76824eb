"""The moderator web console: server-rendered pages under /console (Jinja2 + vendored htmx)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Serve the console from `app`: its routes, static files, headers and login redirects."""
    from fastapi.staticfiles import StaticFiles

    from service.console import routes
    from service.console.web import PREFIX, STATIC, SecurityHeaders

    app.include_router(routes.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")
    routes.install_handlers(app)
    app.add_middleware(SecurityHeaders)
