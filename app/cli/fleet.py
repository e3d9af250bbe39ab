"""`honk fleet`: plan, start and steer fleet changes from the operator's command line.

`plan` and `start` resolve the selection with the installation's own client, as the GitHub
and Slack entries do, for the person named by `--as` (repositories they cannot write to are
left out, and listed). The operator is trusted: `--as` is who the fleet is for, not a
sign-in. The fleet is stored; the conductor of a running `honk serve` or `honk worker`
takes it up at its next poll (this process has none to wake).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TextIO

import aiohttp
import gidgethub

from app.config import Settings
from app.errors import HonkError
from app.fleet.requests import FleetCommand, FleetError, command, start_fleet
from app.fleet.selection import Plan, SelectionError, describe_plan
from app.fleet_models import Fleet, FleetOrigin, FleetRepo, FleetRepoState, NewFleet
from app.github.auth import GitHubApp
from app.github.client import GitHubClient
from app.handlers.fleet import canary_line, default_canary, fleet_limit, plan_fleet
from app.store import Store

NO_APP = (
    "honk fleet {action} needs the GitHub App: set APP_ID and PRIVATE_KEY (or "
    "PRIVATE_KEY_PATH), as for honk serve"
)


async def fleet_command(
    settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO
) -> int:
    """Carry out `honk fleet <action>`: 0 done, 1 refused (said on `err`), 2 unusable."""
    action = str(args.fleet_action)
    settings.store.data_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(settings.store.database_url)
    try:
        if action in ("plan", "start"):
            if not settings.github.configured:
                err.write(f"honk: {NO_APP.format(action=action)}\n")
                return 2
            return await _plan_or_start(settings, store, args, out)
        if action == "status":
            return await _status(settings, store, int(args.fleet_id), out)
        said = await command(store, int(args.fleet_id), FleetCommand(action), by=args.login)
        out.write(f"{said}\n")
        return 0
    except (FleetError, SelectionError) as exc:
        err.write(f"honk: {exc}\n")
        return 1
    except gidgethub.HTTPException as exc:
        err.write(f"honk: GitHub answered {int(exc.status_code)}: {exc}\n")
        return 2
    except (OSError, aiohttp.ClientError, HonkError) as exc:
        err.write(f"honk: {exc}\n")
        return 2
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def _installation(settings: Settings, installation_id: int) -> AsyncIterator[GitHubClient]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        github = GitHubApp(settings.github, session)
        yield await github.installation_client(installation_id)


async def _plan_or_start(
    settings: Settings, store: Store, args: argparse.Namespace, out: TextIO
) -> int:
    if args.repos is not None:
        selection = str(args.repos)
    else:
        selection = await asyncio.to_thread(args.repos_file.read_text)
    async with _installation(settings, args.installation) as gh:
        plan = await plan_fleet(gh, selection, requester=args.login, limit=fleet_limit(settings))
    if args.fleet_action == "plan":
        out.write(f"{describe_plan(plan)}\n")
        return 0
    new = NewFleet(
        installation_id=args.installation,
        requested_by=args.login,
        request=args.request.strip(),
        selection=selection.strip(),
        origin=FleetOrigin.CLI,
        canary_size=args.canary or default_canary(settings),
    )
    fleet = await start_fleet(store, new, plan.targets)
    out.write(_started(fleet, plan, settings.web.fleet_url(fleet.id)))
    return 0


def _started(fleet: Fleet, plan: Plan, page: str | None) -> str:
    lines = [
        f"Fleet {fleet.id} is planned for @{fleet.requested_by}.",
        "",
        describe_plan(plan),
        "",
        f"Honk tries {canary_line(fleet, plan).replace('`', '')} once `honk serve` or "
        f"`honk worker` runs, then waits: `honk fleet continue {fleet.id} --as LOGIN` fans "
        "out to the rest.",
    ]
    if page:
        lines.append(f"Its page: {page}")
    return "\n".join(lines) + "\n"


async def _status(settings: Settings, store: Store, fleet_id: int, out: TextIO) -> int:
    fleet = await store.fleets.get(fleet_id)
    if fleet is None:
        raise FleetError(f"There is no fleet {fleet_id}.")
    repos = await store.fleets.repos(fleet_id)
    counts = await store.fleets.counts(fleet_id)
    where = {
        FleetOrigin.ISSUE: f"the issue {fleet.issue}",
        FleetOrigin.SLACK: "Slack",
        FleetOrigin.CLI: "the command line",
    }[fleet.origin]
    state = fleet.state.value + (f" ({fleet.state_reason})" if fleet.state_reason else "")
    request = fleet.request.strip().splitlines()[0] if fleet.request.strip() else ""
    lines = [
        f"Fleet {fleet.id}: {state}",
        f"asked by @{fleet.requested_by} from {where}; canary {fleet.canary_size}",
        f"request: {request}",
        "repositories: "
        + ", ".join(f"{counts[s]} {s.value}" for s in FleetRepoState if counts.get(s)),
    ]
    if page := settings.web.fleet_url(fleet.id):
        lines.append(f"page: {page}")
    out.write("\n".join([*lines, "", *_table(repos)]) + "\n")
    return 0


def _table(repos: list[FleetRepo]) -> list[str]:
    rows = [("repository", "state", "pull request", "why")]
    rows += [
        (
            r.repo,
            r.state.value,
            r.pr_url or (f"#{r.pr_number}" if r.pr_number else ""),
            r.reason or "",
        )
        for r in repos
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return [
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3]]
        ).rstrip()
        for row in rows
    ]
