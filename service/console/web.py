"""The console's HTML plumbing: templates (autoescaped), security headers, static files."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
PREFIX = "/console"
HTMX_FILE = "htmx-2.0.11.min.js"

# Scripts only from this origin (the vendored htmx and console.js): no inline script, no
# `javascript:` URL, no eval. Styles only from the stylesheet (htmx's own inline indicator
# style is switched off in base.html). No framing, no plugins, forms post only here.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


def make_templates() -> Environment:
    """The console's Jinja2 environment: every template autoescaped, whatever its name."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters["when"] = _when
    env.filters["pct"] = _pct
    env.globals["htmx_file"] = HTMX_FILE
    env.globals["scorebar"] = scorebar
    env.globals["count_cap"] = 1000  # views.COUNT_CAP
    return env


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "—"


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def scorebar(score: float, decision: str, thresholds: dict[str, float] | None) -> Markup:
    """A score as a bar with the decision thresholds ticked on it (SVG attributes, no styles)."""
    width = max(0.0, min(1.0, float(score))) * 100
    parts = [
        f'<svg class="scorebar" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" '
        f'aria-label="score {score:.3f}">',
        '<rect class="track" x="0" y="1" width="100" height="8"/>',
        f'<rect class="fill {Markup.escape(decision)}" x="0" y="1" '
        f'width="{width:.1f}" height="8"/>',
    ]
    for name in ("unsure", "spam", "discard"):
        cut = (thresholds or {}).get(name)
        if cut is not None:
            x = max(0.0, min(1.0, float(cut))) * 100
            parts.append(
                f'<line class="cut" x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="10">'
                f"<title>{name} from {float(cut):.3f}</title></line>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


class SecurityHeaders:
    """Adds the CSP and its companions to every response under /console (pages, fragments,
    errors and static files alike); pages and fragments are also never cached. A
    `Server-Timing: app;dur=<ms>` header tells how long the server took (bench/console.py
    reads it)."""

    def __init__(self, app: ASGIApp, prefix: str = PREFIX) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == self.prefix or path.startswith(self.prefix + "/")):
            await self.app(scope, receive, send)
            return
        static = path.startswith(self.prefix + "/static/")
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if not static:
                    headers["cache-control"] = "no-store"
                elapsed = (time.perf_counter() - started) * 1000
                headers["server-timing"] = f"app;dur={elapsed:.1f}"
            await send(message)

        await self.app(scope, receive, send_with_headers)
