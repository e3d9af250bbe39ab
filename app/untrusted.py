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
# Only a fence at the line's very start is surely a top-level code block: an indented one may
# sit in a list item, whose end ends the block too. Indented ones are treated as prose.
_FENCE = re.compile(r"^(`{3,}|~{3,})")
_CLOSING_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*\r?\n?$")
_BACKTICKS = re.compile(r"`+")
# What is wrapped never holds a backtick (it could pair with one outside), a pipe (a table
# cell would split it) or a line break.
_IMAGE = re.compile(
    r"!\[(?:[^\[\]\n`|]|\[[^\[\]\n`|]*\])*\]"
    r"\(\s*(?:<[^>\n`|]*>|[^\s()`|]*(?:\([^\s()`|]*\)[^\s()`|]*)*)"
    r"(?:\s+(?:\"[^\"\n`|]*\"|'[^'\n`|]*'|\([^()\n`|]*\)))?\s*\)"
)
# The one image kept as written: plain alt text and a plain URL, nothing to misread.
_PLAIN_IMAGE = re.compile(
    r"!\[[^\[\]\n`|<>\\]*\]\((?P<dest>https?://[^\s()<>\[\]`|\\\"']+|[A-Za-z0-9_.~/-]+)\)"
)
_DANGER = re.compile(
    r"(?P<image>!\[)"
    r"|(?P<tag><[A-Za-z/!?@#][^>\n`|]*>?)"  # HTML, comments, Slack's <!channel> and <@U123>
    r"|(?P<entity>&#?[A-Za-z0-9]+;)"  # &#64;team is a mention once GitHub decodes it
    # A mention, and whatever it runs into (`@a@b`: after the code span, `@b` would be one).
    # `_` may be emphasis (`_@team_`): only a letter or digit before `@` makes it no mention.
    r"|(?P<mention>(?<![A-Za-z0-9])@[A-Za-z0-9](?:[\w.@/-]*\w)?)"
)


def clean_untrusted(text: str | None) -> str:
    """`text` as a maintainer saw it on GitHub: without invisible and bidi control characters,
    HTML comments and link reference definitions, which GitHub renders as nothing."""
    text = INVISIBLE.sub("", text or "")
    text = _HTML_COMMENT.sub("", text)
    return _REFERENCE_DEFINITION.sub("", text)


def code(text: str) -> str:
    """`text` (a file name, say) as one inline code span that pairs only with itself.

    Its backtick run is longer than any inside, and it is padded where the text itself
    begins or ends with a backtick; line breaks become spaces. Inside a code span GitHub
    renders no mention, image or HTML.
    """
    flat = " ".join(text.splitlines()) or " "
    fence = "`" * (max((len(m) for m in _BACKTICKS.findall(flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def code_block(text: str) -> str:
    """`text` (a command's output, say) as one fenced code block that nothing inside closes:
    its fence is longer than any backtick run in it. Inside, GitHub renders no mention, image
    or HTML; invisible and bidi control characters are dropped."""
    body = INVISIBLE.sub("", text).rstrip("\n")
    fence = "`" * max(3, max((len(m) for m in _BACKTICKS.findall(body)), default=0) + 1)
    return f"{fence}text\n{body}\n{fence}"


def inert(text: str | None) -> str:
    """Model-written Markdown made safe to publish on GitHub or Slack.

    Images from hosts other than GitHub's (GitHub's image proxy would fetch them: a way out
    for an offline agent), HTML and Slack's control sequences (`<!channel>`, `<@U…>`),
    character references and @-mentions of people or teams are shown as inline code. Only
    top-level fenced code blocks are left as they are: whether a backtick pair is a code
    span depends on the whole paragraph (and on cmark's quirks), so inline code is not
    trusted, and what it holds is wrapped too.

    Each code span added has its own run length, longer than any backtick run in the text,
    and never touches another backtick, a backslash or a URL: it pairs only with itself.
    """
    text = INVISIBLE.sub("", text or "")
    spans = _Spans(max((len(m) for m in _BACKTICKS.findall(text)), default=0) + 1)
    lines: list[str] = []
    block = ""  # the fence of the top-level code block the line is in
    trust_fences = True
    for line in text.splitlines(keepends=True):
        if block:
            closing = _CLOSING_FENCE.match(line)
            if closing and closing.group(1)[0] == block[0] and len(closing.group(1)) >= len(block):
                block = ""
            lines.append(line)
            continue
        opened = _FENCE.match(line)
        # A backtick fence's info string holds no backtick: "```x`" is inline code instead.
        if opened and opened.group(1)[0] == "`" and "`" in line[opened.end() :]:
            opened = None
        if trust_fences and opened:
            block = opened.group(1)
            lines.append(line)
            continue
        if "```" in line or "~~~" in line:
            # A fence that is not at the line's start may sit in a list or a quote, and end
            # with it: from here on, no line is taken for code.
            trust_fences = False
        lines.append(spans.join(_split_prose(line)))
    return "".join(lines)


class _Spans:
    """Code spans for one text, each with a backtick run of its own length (cmark forgets a
    closer of a length it has seen once, after an unmatched run: no two spans share one)."""

    # Past this many spans the runs would grow long (a PR body holds 65,536 characters):
    # character references and a full-width @ instead, which nothing turns into markup.
    MAX_SPANS = 50

    def __init__(self, first_length: int) -> None:
        self.length = first_length
        self.made = 0

    def join(self, pieces: list[tuple[bool, str]]) -> str:
        out: list[str] = []
        word = ""  # what was written since the last white space or `<`: a URL, maybe
        index = 0
        while index < len(pieces):
            dangerous, text = pieces[index]
            if dangerous:
                while index + 1 < len(pieces) and pieces[index + 1][0]:
                    index += 1
                    text += pieces[index][1]
                after = pieces[index + 1][1][:1] if index + 1 < len(pieces) else ""
                parted = " " if _must_part(out[-1][-1:] if out else "", word) else ""
                text = parted + self._code(text) + (" " if after == "`" else "")
            out.append(text)
            word = _last_word(word, text)
            index += 1
        return "".join(out)

    def _code(self, text: str) -> str:
        if self.made >= self.MAX_SPANS:
            for markup, plain in (("&", "&amp;"), ("<", "&lt;"), ("@", "\uff20"), ("[", "&#91;")):
                text = text.replace(markup, plain)
            return text
        fence = "`" * self.length
        self.length += 1
        self.made += 1
        return fence + text + fence


def _split_prose(prose: str) -> list[tuple[bool, str]]:
    """`prose` as (dangerous, text) pieces; a dangerous piece holds no backtick or pipe."""
    pieces: list[tuple[bool, str]] = []
    pos = 0
    while (found := _DANGER.search(prose, pos)) is not None:
        pieces.append((False, prose[pos : found.start()]))
        end = found.end()
        if found.lastgroup == "image":
            plain = _PLAIN_IMAGE.match(prose, found.start())
            if plain is not None and _github_hosted(plain.group("dest")):
                pieces.append((False, plain.group()))
                pos = plain.end()
                continue
            image = _IMAGE.match(prose, found.start())
            # An image that does not parse is still broken up: `![` alone becomes code.
            end = image.end() if image is not None else end
        pieces.append((True, prose[found.start() : end]))
        pos = end
    pieces.append((False, prose[pos:]))
    return [piece for piece in pieces if piece[1]]


def _must_part(last: str, word: str) -> bool:
    """Whether a code span may not start after the character `last`, in the middle of `word`:
    a backtick or backslash would change its run of backticks, and GitHub's autolinks
    (`https://…`, `www.…`, e-mail addresses) run on over anything but white space and `<`."""
    if last in ("`", "\\"):
        return True
    return ":" in word or "www." in word.lower() or "@" in word


def _last_word(word: str, text: str) -> str:
    """The word being written once `text` follows `word`."""
    parts = re.split(r"[\s<]", text)
    return parts[-1] if len(parts) > 1 else word + text


def _github_hosted(url: str) -> bool:
    """A relative image (the repository's own, on GitHub) or one from GitHub's hosts."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.scheme and not parts.netloc:
        return True
    host = (parts.hostname or "").lower()
    return parts.scheme in ("http", "https") and any(
        host == allowed or host.endswith("." + allowed) for allowed in GITHUB_IMAGE_HOSTS
    )
