"""Which repositories a fleet change goes to: the `repositories:` block read (`Selection`),
the `Plan` it resolves to, and the plan told to people.

The block holds one criterion a line; blank lines, `- ` (or `* `, `+ `, `1. `) bullets,
code fences, a pair of backticks around a line and `#` comments are ignored, and keys are
read in any case:

    owner/name           that repository (a web address of it works too)
    owner/*              every repository of `owner` that Honk is installed on
    topic:NAME           repositories with that topic
    language:NAME        repositories whose language (GitHub's `language`) is NAME, in any case
    search:QUERY         repositories in which GitHub's code search finds QUERY
    include:archived     archived repositories are not left out
    include:forks        forks are not left out

They are resolved against GitHub by `resolving.resolve`; `describe_plan` tells people the plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import HonkError
from app.fleet_models import FleetTarget

MAX_SEARCH_TEXT = 256  # GitHub's limit on a search's text

_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_NAME = r"[A-Za-z0-9._-]{1,100}"
_REPO = re.compile(rf"^(?:https?://[^/\s]+/)?({_OWNER})/({_NAME}|\*)/?$")
_KEYED = re.compile(r"^(topic|language|search|include)\s*:\s*(.*)$", re.IGNORECASE)
_TOPIC = re.compile(r"^[a-z0-9][a-z0-9-]{0,49}$")
_BULLET = re.compile(r"^(?:[-*+]|\d+[.)])(?:\s+|$)")
_INLINE_COMMENT = re.compile(r"\s+#.*$")
_INCLUDES = {"archived": "archived", "forks": "forks", "fork": "forks"}
FORMS = (
    "owner/name, owner/*, topic:NAME, language:NAME, search:QUERY, include:archived "
    "or include:forks"
)


class SelectionError(HonkError):
    """A selection Honk cannot read or resolve; the message is for people as written."""


@dataclass(frozen=True)
class Selection:
    """The criteria of a `repositories:` block, each list in the order written, no repeats."""

    repos: tuple[str, ...] = ()  # owner/name, as written
    owners: tuple[str, ...] = ()  # owner of each owner/*
    topics: tuple[str, ...] = ()  # lower case, as GitHub keeps topics
    languages: tuple[str, ...] = ()  # as written; matched in any case
    searches: tuple[str, ...] = ()  # code search queries, as written
    include_archived: bool = False
    include_forks: bool = False

    @property
    def empty(self) -> bool:
        """Names no repository and no way to find one."""
        return not (self.repos or self.owners or self.topics or self.languages or self.searches)

    def lines(self) -> list[str]:
        """The selection written back, one criterion a line (parse_selection reads it)."""
        lines = [*self.repos, *(f"{owner}/*" for owner in self.owners)]
        lines += [f"topic:{topic}" for topic in self.topics]
        lines += [f"language:{language}" for language in self.languages]
        lines += [f"search:{query}" for query in self.searches]
        lines += ["include:archived"] * self.include_archived
        lines += ["include:forks"] * self.include_forks
        return lines

    def __str__(self) -> str:
        return "\n".join(self.lines())


@dataclass(frozen=True)
class Plan:
    """The repositories a fleet goes to, then those left out with their reasons."""

    targets: tuple[FleetTarget, ...]
    notes: tuple[str, ...] = ()  # what people should know of how it was resolved (Markdown)

    @property
    def chosen(self) -> list[str]:
        return [t.repo for t in self.targets if t.skipped is None]

    @property
    def left_out(self) -> list[FleetTarget]:
        return [t for t in self.targets if t.skipped is not None]


# --- reading ---------------------------------------------------------------------------


def parse_selection(text: str) -> Selection:
    """Read a `repositories:` block; SelectionError names the first line it cannot read."""
    repos: dict[str, str] = {}  # lower -> as written; a dict keeps the order, once each
    owners: dict[str, str] = {}
    topics: dict[str, str] = {}
    languages: dict[str, str] = {}
    searches: dict[str, str] = {}
    include: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _unwrap(raw)
        if not line:
            continue
        keyed = _KEYED.match(line)
        if keyed is None:
            line = _INLINE_COMMENT.sub("", line)
            repo = _REPO.match(line)
            if repo is None:
                raise SelectionError(f"line {number}: `{shorten(line)}` is not one of {FORMS}.")
            owner, name = repo.group(1), repo.group(2)
            if name == "*":
                owners.setdefault(owner.lower(), owner)
            elif name in (".", ".."):
                raise SelectionError(f"line {number}: `{line}` is not a repository's name.")
            else:
                repos.setdefault(f"{owner}/{name}".lower(), f"{owner}/{name}")
            continue
        key, value = keyed.group(1).lower(), keyed.group(2).strip()
        if key != "search":
            value = _INLINE_COMMENT.sub("", value).strip()
        if not value:
            raise SelectionError(f"line {number}: `{key}:` needs a value after the colon.")
        if key == "topic":
            topic = value.lower()
            if _TOPIC.match(topic) is None:
                raise SelectionError(
                    f"line {number}: `{shorten(value)}` is not a topic (GitHub's topics are "
                    "letters, digits and hyphens, at most 50)."
                )
            topics.setdefault(topic, topic)
        elif key == "language":
            languages.setdefault(value.casefold(), value)
        elif key == "search":
            if len(value) > MAX_SEARCH_TEXT:
                raise SelectionError(
                    f"line {number}: the search is longer than GitHub's "
                    f"{MAX_SEARCH_TEXT} characters."
                )
            searches.setdefault(value, value)
        else:
            what = _INCLUDES.get(value.lower())
            if what is None:
                raise SelectionError(
                    f"line {number}: `include:{shorten(value)}` is not include:archived "
                    "or include:forks."
                )
            include.add(what)
    selection = Selection(
        repos=tuple(repos.values()),
        owners=tuple(owners.values()),
        topics=tuple(topics.values()),
        languages=tuple(languages.values()),
        searches=tuple(searches.values()),
        include_archived="archived" in include,
        include_forks="forks" in include,
    )
    if selection.empty:
        raise SelectionError(f"The selection names no repositories: write one of {FORMS}.")
    return selection


def _unwrap(raw: str) -> str:
    """A line without its bullet, its backticks, or itself when it is a comment or fence."""
    line = raw.strip()
    if not line or line.startswith("#") or line.startswith("```"):
        return ""
    line = _BULLET.sub("", line, count=1).strip()
    if len(line) > 1 and line.startswith("`") and line.endswith("`"):
        line = line[1:-1].strip()
    return "" if line.startswith("#") else line


def shorten(text: str, most: int = 80) -> str:
    text = text.replace("`", "'")
    return text if len(text) <= most else text[: most - 1] + "…"


# --- telling people --------------------------------------------------------------------


def describe_plan(plan: Plan, *, shown: int = 50) -> str:
    """The plan as Markdown for people: how many, which (the first `shown`), what was left
    out grouped by reason (the first `shown` of each), and the notes."""
    chosen = plan.chosen
    if chosen:
        parts = [f"**{len(chosen)} {repositories(len(chosen))}** will get this change:", ""]
        parts += [f"- `{name}`" for name in chosen[:shown]]
        if len(chosen) > shown:
            parts.append(f"- and {len(chosen) - shown} more")
    else:
        parts = ["**No repository** will get this change."]
    groups: dict[str, list[str]] = {}
    for target in plan.left_out:
        groups.setdefault(target.skipped or "", []).append(target.repo)
    if groups:
        count = len(plan.left_out)
        parts += ["", f"**Left out** ({count} {repositories(count)}):", ""]
        for reason, names in groups.items():
            listed = ", ".join(f"`{name}`" for name in names[:shown])
            more = f" and {len(names) - shown} more" if len(names) > shown else ""
            parts.append(f"- {reason} ({len(names)}): {listed}{more}")
    for note in plan.notes:
        parts += ["", f"Note: {note}"]
    return "\n".join(parts)


def repositories(count: int) -> str:
    return "repository" if count == 1 else "repositories"
