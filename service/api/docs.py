"""`/docs` (Swagger UI) and `/redoc` served with their assets from the package, not a CDN.

A self-hosted service often runs where the browser reading its docs has no internet access;
FastAPI's default pages load their scripts from jsdelivr (and ReDoc its fonts from Google), so
they were blank there. The assets are vendored in `service/static/` (versions and licences in
its README).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

STATIC = Path(__file__).resolve().parent.parent / "static"
PREFIX = "/static/api-docs"


def install(app: FastAPI) -> None:
    """Serve `/docs` and `/redoc` from the vendored assets (create the app with
    `docs_url=None, redoc_url=None` so that FastAPI's CDN pages are not routed too)."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(PREFIX, StaticFiles(directory=STATIC), name="api-docs-static")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{PREFIX}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{PREFIX}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{PREFIX}/swagger-ui/favicon-32x32.png",
            # Swagger UI would otherwise send the schema to validator.swagger.io for a badge.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{PREFIX}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{PREFIX}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )
