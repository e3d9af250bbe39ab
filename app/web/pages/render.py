"""Server-rendered HTML: Jinja2 templates with autoescape on, the two static assets, headers."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader
from markupsafe import Markup
from pygments.formatters import HtmlFormatter

from app.web.pages.run_summary import plural, when
from app.web.pages.view import Entry

# Every value is escaped unless it is Markup made by Pygments (which escapes it itself).
ENV = Environment(
    loader=PackageLoader("app.web", "templates"),
    autoescape=True,
    trim_blocks=False,
    lstrip_blocks=False,
)
ENV.filters["plural"] = plural  # {{ n | plural("request") }}: "1 request", "2 requests"
ENV.filters["when"] = when  # a time with its date and zone
_TEMPLATES = files("app.web") / "templates"
ASSETS = {
    "honk.css": (
        _TEMPLATES.joinpath("honk.css").read_text()
        + HtmlFormatter(classprefix="hl-").get_style_defs(".hl"),
        "text/css",
    ),
    "run.js": (_TEMPLATES.joinpath("run.js").read_text(), "text/javascript"),
    "fleet.js": (_TEMPLATES.joinpath("fleet.js").read_text(), "text/javascript"),
}
# No inline script or style runs: transcript text is untrusted, and escaping has a backstop.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def page(template: str, **context: Any) -> str:
    """A whole page. Blocking (Pygments on a big diff): call it in a thread."""
    return ENV.get_template(template).render(**context)


def entry_html(entry: Entry) -> str:
    return str(ENV.get_template("entries.html").module.entry(entry))  # type: ignore[attr-defined]


def fragment(template: str, **context: Any) -> Markup:
    return Markup(ENV.get_template(template).render(**context))


def html(text: str, *, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=HEADERS)


async def asset(request: web.Request) -> web.Response:
    found = ASSETS.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    body, content_type = found
    return web.Response(
        text=body,
        content_type=content_type,
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )
