"""What the fleet page tests share: a fleet over three private repositories of octo-org.

octo-org/calc (the run pages' world: alice writes, carol reads, bob sees nothing) holds the
fleet's issue; octo-org/lib and octo-org/web are private too: alice writes to both, carol
reads web only. So carol sees two of the fleet's three repositories, bob none.
"""

from __future__ import annotations

import asyncio
from typing import Any

from app.fleet_models import Fleet, FleetOrigin, FleetRepoState, FleetTarget, NewFleet
from app.models import RunKind
from app.store import NewRun, Store
from tests.calc_world import INSTALLATION, REPO
from tests.fakes.github import FakeGitHub

LIB = "octo-org/lib"
WEB = "octo-org/web"
REQUEST = "Bump the logging library to 2.x\n\nEvery call of `log.warn` becomes `log.warning`."


async def seed_fleet_repos(fake_github: FakeGitHub) -> None:
    """lib and web beside calc (seed_people first): private, Honk installed on all three
    (a user token reaches only repositories the App is installed on), alice writes, carol
    reads web. The fake makes real git repositories: in a thread, off the test's loop."""
    fake_github.add_installation(INSTALLATION, account="octo-org", repos=[REPO, LIB, WEB])
    for name in (LIB, WEB):
        await asyncio.to_thread(
            fake_github.add_repo, name, private=True, files={"README.md": f"# {name}\n"}
        )
        fake_github.set_permission(name, "alice", "write")
    fake_github.set_permission(WEB, "carol", "read")


async def new_fleet(store: Store, *, requested_by: str = "alice", issue: bool = True) -> Fleet:
    """A planned fleet over calc, lib and web, asked for on calc's issue 40."""
    new = NewFleet(
        installation_id=INSTALLATION,
        requested_by=requested_by,
        request=REQUEST,
        selection=f"{REPO}\n{LIB}\n{WEB}",
        origin=FleetOrigin.ISSUE if issue else FleetOrigin.CLI,
        issue_repo=REPO if issue else None,
        issue_number=40 if issue else None,
    )
    return await store.fleets.create(new, [FleetTarget(REPO), FleetTarget(LIB), FleetTarget(WEB)])


async def open_green_pr(
    store: Store,
    fake_github: FakeGitHub,
    fleet: Fleet,
    repo: str,
    *,
    review: str = "approved",
    state: FleetRepoState = FleetRepoState.CI_GREEN,
) -> dict[str, Any]:
    """A fleet run that opened a PR in `repo` (a real branch and pull request on the fake),
    its review's verdict `review`, the repository moved to `state`. The PR."""
    branch = f"honk/fleet-{fleet.id}"
    sha = await asyncio.to_thread(
        fake_github.commit_files,
        repo,
        {"CHANGES.md": f"fleet {fleet.id}\n"},
        branch=branch,
        message="Fleet change",
    )
    pr = await asyncio.to_thread(
        fake_github.add_pull, repo, head=branch, title="Bump logging", user="honk-app[bot]"
    )
    run = await store.runs.enqueue(
        NewRun(
            repo=repo,
            installation_id=INSTALLATION,
            kind=RunKind.FLEET,
            fleet_id=fleet.id,
            requested_by=fleet.requested_by,
            instructions=fleet.request,
        )
    )
    assert run is not None
    await store.runs.update(
        run.id, review=review, pr_number=pr["number"], pr_url=pr["html_url"], head_sha=sha
    )
    await store.fleets.set_repo(
        fleet.id,
        repo,
        state,
        run_id=run.id,
        pr_number=pr["number"],
        pr_url=pr["html_url"],
        head_sha=sha,
    )
    return pr
