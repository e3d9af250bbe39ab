"""Model-written Markdown as HTML for the run page: inert first (app/untrusted.py), then
rendered with raw HTML off, no images and only web or mail links (pure).

`inert` already shows HTML, images from outside GitHub and mentions as code; the renderer is
the backstop: raw HTML is escaped whatever `inert` missed, an image is never fetched (the
page's CSP would refuse it too), and a link goes only to http(s) or mailto, marked nofollow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

from app.untrusted import inert

SAFE_SCHEMES = ("http://", "https://", "mailto:")
HEAD_CHARS = 700  # a summary shows about this much at the top; the rest opens on request


def _safe_link(url: str) -> bool:
    """Only absolute web and mail links: a relative one would point into Honk itself."""
    return url.strip().lower().startswith(SAFE_SCHEMES)


def _link_open(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    tokens[idx].attrSet("rel", "nofollow noopener noreferrer")
    return str(renderer.renderToken(tokens, idx, options, env))


def _renderer() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"]).disable("image")
    md.validateLink = _safe_link  # type: ignore[method-assign]
    md.add_render_rule("link_open", _link_open)
    return md


_MD = _renderer()


def render(text: str | None) -> Markup:
    """Model text (made inert) as block HTML."""
    return Markup(_MD.render(inert(text or "")))  # escaped by the renderer (html off)


def render_inline(text: str | None) -> Markup:
    """One line of model text (a reason, say) as inline HTML: no paragraph around it."""
    return Markup(_MD.renderInline(inert(text or "")))


def render_ours(text: str | None) -> Markup:
    """Honk's own Markdown (a finding, whose file name is already a code span) inline; not
    made inert again, which would wrap its code spans a second time."""
    return Markup(_MD.renderInline(text or ""))


def render_split(text: str | None, head_chars: int = HEAD_CHARS) -> tuple[Markup, Markup]:
    """Model text as (the first top-level blocks up to about `head_chars`, the rest), so the
    top of a page stays short however long the text is. The head holds one block at least."""
    env: dict[str, Any] = {}
    tokens = _MD.parse(inert(text or ""), env)
    blocks: list[list[Token]] = []
    current: list[Token] = []
    for token in tokens:
        current.append(token)
        if token.level == 0 and token.nesting <= 0:  # a top-level block closes here
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    used = 0
    cut = len(blocks)
    for index, block in enumerate(blocks):
        used += sum(len(token.content) for token in block)  # inline and code text
        if index > 0 and used > head_chars:
            cut = index
            break
    head = _MD.renderer.render([t for b in blocks[:cut] for t in b], _MD.options, env)
    rest = _MD.renderer.render([t for b in blocks[cut:] for t in b], _MD.options, env)
    return Markup(head), Markup(rest)  # escaped by the renderer (html off)
