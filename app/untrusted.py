"""Text across a trust boundary: what people wrote, cut to what GitHub shows before the model
reads it; what the model wrote, made inert before GitHub or Slack shows it. Pure functions."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Characters that render as nothing or reorder what is shown: control characters (tab and
# line breaks aside), zero-width and joiner characters, bidi embeddings, overrides and
# isolates, invisible operators, fillers, variation selectors and Unicode tag characters.
INVISIBLE = re.compile(
    "["
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164"
    "\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb"
    "\U0001d173-\U0001d17a\U000e0000-\U000e007f\U000e0100-\U000e01ef"
    "]"
)
# An HTML comment hides its text on GitHub; one never closed hides the rest of the text.
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
# A Markdown link reference definition renders as nothing: `[//]: # (hidden text)`.
_REFERENCE_DEFINITION = re.compile(
    r"^ {0,3}\[(?!\^)[^\]\n]{1,999}\]:[ \t]*(?:<[^>\n]*>|\S+)"
    r"(?:[ \t\n]+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?[ \t]*$\n?",
    re.MULTILINE,
)

# Hosts whose images GitHub's own pages may show from model-written text: fetching them
# tells no one outside GitHub anything.
GITHUB_IMAGE_HOSTS = ("github.com", "githubusercontent.com")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_BACKTICKS = re.compile(r"`+")
_IMAGE = re.compile(
    r"!\[(?:[^\[\]\n]|\[[^\[\]\n]*\])*\]"
    r"\(\s*(?P<dest><[^>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)"
    r"(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^()\n]*\)))?\s*\)"
)
_PROSE = re.compile(
    r"(?P<url>https?://[^\s<>()\[\]`]+)"  # a mention inside a URL is not a mention
    r"|(?P<image>!\[)"
    r"|(?P<tag><[A-Za-z/!?@#][^>\n]*>?)"  # HTML, comments, Slack's <!channel> and <@U123>
    r"|(?P<entity>&#?[A-Za-z0-9]+;)"  # &#64;team is a mention once GitHub decodes it
    r"|(?P<mention>(?<![A-Za-z0-9_])@[A-Za-z0-9][A-Za-z0-9-]*(?:/[A-Za-z0-9][\w.-]*)?)"
)


def clean_untrusted(text: str | None) -> str:
    """`text` as a maintainer saw it on GitHub: without invisible and bidi control characters,
    HTML comments and link reference definitions, which GitHub renders as nothing."""
    text = INVISIBLE.sub("", text or "")
    text = _HTML_COMMENT.sub("", text)
    return _REFERENCE_DEFINITION.sub("", text)


def inert(text: str | None) -> str:
    """Model-written Markdown made safe to publish on GitHub or Slack.

    Images from hosts other than GitHub's (GitHub's image proxy would fetch them: a way out
    for an offline agent), HTML and Slack's control sequences (`<!channel>`, `<@U…>`),
    character references and @-mentions of people or teams are shown as inline code.
    Code the model wrote (fenced blocks, code spans) is left as it is: nothing in it renders.
    """
    text = INVISIBLE.sub("", text or "")
    # Longer than any backtick run in the text: these code spans pair only with each other.
    fence = "`" * (max((len(m) for m in _BACKTICKS.findall(text)), default=0) + 1)
    lines, block = [], ""
    for line in text.splitlines(keepends=True):
        opened = _FENCE.match(line)
        if block:
            if opened and opened.group(1)[0] == block[0] and len(opened.group(1)) >= len(block):
                block = ""
            lines.append(line)
        elif opened and not (opened.group(1)[0] == "`" and "`" in line[opened.end() :]):
            block = opened.group(1)
            lines.append(line)
        else:
            lines.append(_inert_line(line, fence))
    return "".join(lines)


def _inert_line(line: str, fence: str) -> str:
    """One line outside code blocks: its code spans kept, the prose between them made inert."""
    out, prose_start, pos = [], 0, 0
    while (run := _BACKTICKS.search(line, pos)) is not None:
        start = run.start()
        if _escaped(line, start):  # \` is a literal backtick; the run opens one shorter
            start += 1
        closing = _closing_run(line, run.end(), run.end() - start) if start < run.end() else None
        if closing is None:
            pos = run.end()
            continue
        out.append(_inert_prose(line[prose_start:start], fence))
        out.append(line[start:closing])
        prose_start = pos = closing
    out.append(_inert_prose(line[prose_start:], fence))
    return "".join(out)


def _escaped(line: str, index: int) -> bool:
    backslashes = len(line[:index]) - len(line[:index].rstrip("\\"))
    return backslashes % 2 == 1


def _closing_run(line: str, start: int, length: int) -> int | None:
    """Where the code span opened by a run of `length` backticks ends, or None."""
    for run in _BACKTICKS.finditer(line, start):
        if len(run.group()) == length:
            return run.end()
    return None


def _inert_prose(prose: str, fence: str) -> str:
    out, pos = [], 0
    while (found := _PROSE.search(prose, pos)) is not None:
        out.append(prose[pos : found.start()])
        kind, end = found.lastgroup, found.end()
        if kind == "url":
            out.append(found.group())
        elif kind == "image":
            image = _IMAGE.match(prose, found.start())
            # An image that does not parse is still broken up: `![` alone becomes code.
            end = image.end() if image is not None else end
            if image is not None and _github_hosted(image.group("dest")):
                out.append(image.group())
            else:
                out.append(_code(prose[found.start() : end], fence))
        else:
            out.append(_code(found.group(), fence))
        pos = end
    out.append(prose[pos:])
    return "".join(out)


def _code(text: str, fence: str) -> str:
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _github_hosted(destination: str) -> bool:
    """A relative image (the repository's own, on GitHub) or one from GitHub's hosts."""
    url = destination.strip("<>").strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.scheme and not parts.netloc:
        return bool(url) and not url.startswith("\\")
    host = (parts.hostname or "").lower()
    return parts.scheme in ("http", "https") and any(
        host == allowed or host.endswith("." + allowed) for allowed in GITHUB_IMAGE_HOSTS
    )
