"""A `Selection` resolved against GitHub, for the requester, into a `Plan`.

How the criteria combine (`resolve`):

- The listed repositories and every `owner/*` make the universe; with neither, the universe
  is every repository the installation can reach.
- Topics, languages and searches narrow the universe: a repository stays when it matches at
  least one line of each kind given (OR within a kind, AND across kinds). A repository
  that does not match is simply not chosen: it is not listed as left out.
- Each search goes to GitHub's code search scoped to the installation's owners (Honk adds
  `org:OWNER` or `user:OWNER`, and `fork:true` with `include:forks`) and chooses the
  repositories its results name; only the first 1000 results are read (a note says so).
- What matches is then left out, with its reason, when Honk is not installed on it (a
  listed repository, or a search result within the universe's owners), it is archived
  or a fork (unless included; naming a repository does not include it), the requester
  cannot write to it, or the fleet's limit is reached.
- Order: listed repositories as listed, then each `owner/*`'s by name (or the whole
  installation by name), then search results outside the installation by name. The
  chosen come first in that order, then those left out in that order.

Only read requests are made: the installation's repositories (a hundred a page), one code
search per `search:` line (at most ten pages, one after another, because code search has
a small budget of its own, which the client waits out), and the requester's permission on
each repository that could be chosen, a few at once, until the limit is reached.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import gidgethub

from app.fleet.selection import FORMS, Plan, Selection, SelectionError, repositories, shorten
from app.fleet_models import FleetTarget
from app.github.client import GitHubClient

ARCHIVED = "archived"
FORK = "a fork"
NOT_INSTALLED = "Honk is not installed on it"
SEARCH_PER_PAGE = 100
SEARCH_MAX_RESULTS = 1000  # GitHub answers no more of one search
PERMISSION_CONCURRENCY = 4  # permission checks in flight at once, per resolve
MAX_LINES_TOLD = 10  # of the selection, in the message that nothing matched


@dataclass
class _Candidate:
    """A repository the selection reaches, with GitHub's data when Honk is installed on it."""

    name: str
    data: Mapping[str, Any] | None


async def resolve(selection: Selection, gh: GitHubClient, *, requester: str, limit: int) -> Plan:
    """The selection as concrete repositories for `requester`, at most `limit` chosen.

    `gh` is the installation's client. SelectionError when the selection is empty, nothing
    matched, or GitHub refused a code search (in its words)."""
    if limit < 1:
        raise ValueError(f"a fleet's limit is at least 1, not {limit}")
    if selection.empty:
        raise SelectionError(f"The selection names no repositories: write one of {FORMS}.")
    requester = requester.removeprefix("@")
    installed = {str(r["full_name"]).lower(): r for r in await gh.installation_repositories()}
    notes: list[str] = []
    candidates, wildcard_owners = _universe(selection, installed, notes)
    hits: set[str] | None = None
    if selection.searches:
        hits, outside = await _search(selection, gh, installed, notes)
        everywhere = not (selection.repos or selection.owners)
        listed = {c.name.lower() for c in candidates}
        for name in sorted(outside, key=str.lower):
            owner = name.partition("/")[0].lower()
            if name.lower() not in listed and (everywhere or owner in wildcard_owners):
                candidates.append(_Candidate(name, None))

    left_out: list[tuple[int, FleetTarget]] = []
    eligible: list[tuple[int, str]] = []
    for position, candidate in enumerate(candidates):
        data = candidate.data
        if data is None:
            left_out.append((position, FleetTarget(candidate.name, NOT_INSTALLED)))
        elif not _matches(selection, data, hits):
            continue
        elif data.get("archived") and not selection.include_archived:
            left_out.append((position, FleetTarget(candidate.name, ARCHIVED)))
        elif data.get("fork") and not selection.include_forks:
            left_out.append((position, FleetTarget(candidate.name, FORK)))
        else:
            eligible.append((position, candidate.name))

    chosen, refused, over = await _writable(gh, eligible, requester, limit)
    left_out += refused
    reason = f"over the fleet's limit of {limit} {repositories(limit)}"
    left_out += [(position, FleetTarget(name, reason)) for position, name in over]
    if not chosen and not left_out:
        lines = selection.lines()
        named = ", ".join(f"`{shorten(line)}`" for line in lines[:MAX_LINES_TOLD])
        more = f" and {len(lines) - MAX_LINES_TOLD} more" if len(lines) > MAX_LINES_TOLD else ""
        raise SelectionError(f"No repository matched the selection ({named}{more}).")
    targets = [FleetTarget(name) for name in chosen]
    targets += [target for _, target in sorted(left_out, key=lambda item: item[0])]
    return Plan(tuple(targets), tuple(notes))


def _universe(
    selection: Selection, installed: Mapping[str, Mapping[str, Any]], notes: list[str]
) -> tuple[list[_Candidate], set[str]]:
    """The repositories the selection reaches before its filters, and its owners/*."""
    by_name = sorted(installed.values(), key=lambda r: str(r["full_name"]).lower())
    if not (selection.repos or selection.owners):
        return [_Candidate(str(r["full_name"]), r) for r in by_name], set()
    candidates: list[_Candidate] = []
    seen: set[str] = set()

    def add(name: str, data: Mapping[str, Any] | None) -> None:
        if name.lower() not in seen:
            seen.add(name.lower())
            candidates.append(_Candidate(name, data))

    for repo in selection.repos:
        data = installed.get(repo.lower())
        add(str(data["full_name"]) if data else repo, data)
    for owner in selection.owners:
        theirs = [r for r in by_name if _owner(r).lower() == owner.lower()]
        if not theirs:
            notes.append(f"`{owner}/*`: Honk is installed on no repository of {owner}'s.")
        for data in theirs:
            add(str(data["full_name"]), data)
    return candidates, {owner.lower() for owner in selection.owners}


def _matches(selection: Selection, data: Mapping[str, Any], hits: set[str] | None) -> bool:
    """Whether the repository passes the topic, language and search lines (each kind given)."""
    if selection.topics:
        topics = {str(t).lower() for t in data.get("topics") or ()}
        if not topics.intersection(selection.topics):
            return False
    if selection.languages:
        language = str(data.get("language") or "").casefold()
        if language not in {wanted.casefold() for wanted in selection.languages}:
            return False
    return hits is None or str(data["full_name"]).lower() in hits


async def _search(
    selection: Selection,
    gh: GitHubClient,
    installed: Mapping[str, Mapping[str, Any]],
    notes: list[str],
) -> tuple[set[str], set[str]]:
    """(lower names of installed repositories any search found, names of others it found)."""
    owners = {_owner(r): _owner_kind(r) for r in installed.values()}
    if not owners:  # nothing installed: no search can choose anything
        return set(), set()
    scope = " ".join(f"{kind}:{owner}" for owner, kind in sorted(owners.items()))
    if selection.include_forks:
        scope += " fork:true"
    found: set[str] = set()
    outside: dict[str, str] = {}
    for query in selection.searches:
        names, complete = await _code_search(gh, query, f"{query} {scope}")
        if not complete:
            notes.append(
                f"The code search {_code(query)} found more than GitHub tells "
                f"({SEARCH_MAX_RESULTS} results), or did not finish: it may have missed some."
            )
        for name in names:
            if name.lower() in installed:
                found.add(name.lower())
            else:
                outside.setdefault(name.lower(), name)
    return found, set(outside.values())


async def _code_search(gh: GitHubClient, query: str, scoped: str) -> tuple[list[str], bool]:
    """The repositories a code search names, and whether every result was read."""
    names: dict[str, str] = {}
    read = 0
    page = 1
    while True:
        url = "/search/code?" + urlencode({"q": scoped, "per_page": SEARCH_PER_PAGE, "page": page})
        try:
            answer = await gh.getitem(url)
        except gidgethub.HTTPException as exc:
            raise SelectionError(
                f"GitHub refused the code search {_code(query)}: {_github_words(exc)}"
            ) from exc
        items = answer.get("items") or []
        for item in items:
            name = str((item.get("repository") or {}).get("full_name") or "")
            if name:
                names.setdefault(name.lower(), name)
        read += len(items)
        total = int(answer.get("total_count") or 0)
        if answer.get("incomplete_results"):
            return list(names.values()), False
        if len(items) < SEARCH_PER_PAGE or read >= total:
            return list(names.values()), True
        if read >= SEARCH_MAX_RESULTS:
            return list(names.values()), False
        page += 1


async def _writable(
    gh: GitHubClient, eligible: Sequence[tuple[int, str]], requester: str, limit: int
) -> tuple[list[str], list[tuple[int, FleetTarget]], list[tuple[int, str]]]:
    """(chosen, left out for want of write access, over the limit) of `eligible`, in order.

    Asks only as many at a time as could still be chosen, so a fleet of 500 out of 5000
    asks about a few more than 500, never all 5000."""
    gate = asyncio.Semaphore(PERMISSION_CONCURRENCY)
    cannot = f"@{requester} cannot write to it"

    async def check(name: str) -> str | None:
        """None when the requester may write, else why the repository is left out."""
        async with gate:
            try:
                return None if await gh.can_write(name, requester) else cannot
            except (gidgethub.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
                return (
                    f"GitHub did not say whether @{requester} can write to it "
                    f"({_github_words(exc)})"
                )

    chosen: list[str] = []
    refused: list[tuple[int, FleetTarget]] = []
    start = 0
    while start < len(eligible) and len(chosen) < limit:
        batch = eligible[start : start + limit - len(chosen)]
        start += len(batch)
        reasons = await asyncio.gather(*(check(name) for _, name in batch))
        for (position, name), reason in zip(batch, reasons, strict=True):
            if reason is None:
                chosen.append(name)
            else:
                refused.append((position, FleetTarget(name, reason)))
    return chosen, refused, list(eligible[start:])


def _owner(data: Mapping[str, Any]) -> str:
    owner = data.get("owner") or {}
    return str(owner.get("login") or str(data["full_name"]).partition("/")[0])


def _owner_kind(data: Mapping[str, Any]) -> str:
    """The code search qualifier for the repository's owner: org: or user:."""
    owner = data.get("owner") or {}
    return "org" if owner.get("type") == "Organization" else "user"


def _github_words(exc: BaseException) -> str:
    """What GitHub said: its message, and the messages of its errors when it gave some."""
    message = str(exc) or type(exc).__name__
    errors = getattr(exc, "errors", None)
    details: list[str] = []
    if isinstance(errors, str):
        details.append(errors)
    elif isinstance(errors, Iterable):
        for error in errors:
            if isinstance(error, Mapping) and error.get("message"):
                details.append(str(error["message"]))
    if details and all(detail not in message for detail in details):
        message = f"{message}: {'; '.join(details)}"
    return message


def _code(text: str) -> str:
    """Text as a Markdown code span, whatever backticks it holds."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"
