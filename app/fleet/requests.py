"""What people ask of a fleet, from Slack, the fleet issue, the fleet page or the CLI alike.

Each request changes the store (a compare-and-set on the fleet's state, so two people
clicking at once change it once) and wakes the conductor, which does the work: queueing
runs, cancelling them, closing PRs. Whoever calls these has already checked that `by` may
steer the fleet (the requester, or a person with write access to the fleet issue's
repository). Every refusal is a `FleetError` whose message is for that person.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum

from app.errors import HonkError
from app.fleet_models import Fleet, FleetRepoState, FleetState, FleetTarget, NewFleet
from app.models import ACTIVE_STATES
from app.store import Store

# Asked of the conductor through the fleet's milestones: close every unmerged PR of the fleet.
ROLLBACK_REQUESTED = "rollback-requested"
# The canary's end has been announced: a resumed fleet fans out rather than trying again.
CANARY_DONE = "canary"


class FleetError(HonkError):
    """A fleet request that cannot be honoured now; its message says why, for people."""


class FleetCommand(StrEnum):
    CONTINUE = "continue"  # fan out after the canary (or without waiting for it)
    PAUSE = "pause"  # queue nothing more; what runs finishes
    RESUME = "resume"
    STOP = "stop"  # queue nothing more, cancel what runs; the fleet ends
    RETRY = "retry"  # take the failed and vetoed repositories up again
    ROLLBACK = "rollback"  # stop, and close every unmerged PR of the fleet


Wake = Callable[[], None]


def _no_wake() -> None:
    return None


async def start_fleet(
    store: Store, new: NewFleet, targets: Sequence[FleetTarget], *, wake: Wake = _no_wake
) -> Fleet:
    """Store a planned fleet and wake the conductor, which runs its canary first."""
    if not any(target.skipped is None for target in targets):
        raise FleetError("Nothing to run: the selection left every repository out.")
    if new.canary_size < 1:
        raise FleetError("A fleet tries at least one repository first (canary: 1 or more).")
    fleet = await store.fleets.create(new, targets)
    wake()
    return fleet


async def command(
    store: Store, fleet_id: int, asked: FleetCommand, *, by: str, wake: Wake = _no_wake
) -> str:
    """Carry out `asked` on the fleet for `by`; a sentence saying what happened."""
    fleet = await store.fleets.get(fleet_id)
    if fleet is None:
        raise FleetError(f"There is no fleet {fleet_id}.")
    said = await _COMMANDS[FleetCommand(asked)](store, fleet, by)
    wake()
    return said


async def _continue(store: Store, fleet: Fleet, by: str) -> str:
    moved = await store.fleets.set_state(
        fleet.id,
        FleetState.RUNNING,
        f"continued by @{by}",
        expect=[FleetState.PLANNED, FleetState.CANARY, FleetState.WAITING],
    )
    if moved is None:
        raise _refused(fleet, "Continue is for a fleet waiting after its canary")
    left = (await store.fleets.counts(fleet.id))[FleetRepoState.PLANNED]
    return f"Fleet {fleet.id} continues: {left} repositories to go."


async def _pause(store: Store, fleet: Fleet, by: str) -> str:
    moved = await store.fleets.set_state(
        fleet.id,
        FleetState.PAUSED,
        f"paused by @{by}",
        expect=[FleetState.PLANNED, FleetState.CANARY, FleetState.WAITING, FleetState.RUNNING],
    )
    if moved is None:
        raise _refused(fleet, "only a fleet that is running can be paused")
    return f"Fleet {fleet.id} is paused: nothing more is queued; what runs now finishes."


async def _resume(store: Store, fleet: Fleet, by: str) -> str:
    # A fleet paused before its canary ended goes back to its canary, never past it.
    state = FleetState.RUNNING if CANARY_DONE in fleet.milestones else FleetState.CANARY
    moved = await store.fleets.set_state(
        fleet.id, state, f"resumed by @{by}", expect=[FleetState.PAUSED]
    )
    if moved is None:
        raise _refused(fleet, "only a paused fleet can be resumed")
    return f"Fleet {fleet.id} resumes."


async def _stop(store: Store, fleet: Fleet, by: str) -> str:
    moved = await store.fleets.set_state(
        fleet.id,
        FleetState.STOPPED,
        f"stopped by @{by}",
        expect=[state for state in FleetState if not state.ended],
    )
    if moved is None:
        raise _refused(fleet, "it has already ended")
    cancelled = await _cancel_runs(store, fleet.id)
    return f"Fleet {fleet.id} is stopped; {cancelled} of its runs were cancelled."


async def _retry(store: Store, fleet: Fleet, by: str) -> str:
    if fleet.state is FleetState.STOPPED:
        raise _refused(fleet, "a stopped fleet is not taken up again")
    failed = [repo for repo in await store.fleets.repos(fleet.id) if repo.state.failed]
    retried = 0
    for repo in failed:
        again = await store.fleets.set_repo(
            fleet.id,
            repo.repo,
            FleetRepoState.PLANNED,
            expect=[repo.state],
            reason=f"retried by @{by}",
        )
        retried += again is not None
    if not retried:
        raise FleetError(f"Fleet {fleet.id} has no failed repositories to retry.")
    if fleet.state in (FleetState.DONE, FleetState.PAUSED):
        await store.fleets.set_state(
            fleet.id, FleetState.RUNNING, f"retried by @{by}", expect=[fleet.state]
        )
    return f"Fleet {fleet.id} retries {retried} repositories."


async def _rollback(store: Store, fleet: Fleet, by: str) -> str:
    # Asked first, then the state set (which moves the fleet's version on): a conductor that
    # sees the new version sees the request with it. It leases an ended fleet only while its
    # summaries are behind, so an ended fleet's state is set again, with the reason.
    await store.fleets.announce(fleet.id, ROLLBACK_REQUESTED)
    if not fleet.state.ended:
        await store.fleets.set_state(
            fleet.id,
            FleetState.STOPPED,
            f"rolled back by @{by}",
            expect=[state for state in FleetState if not state.ended],
        )
        await _cancel_runs(store, fleet.id)
    else:
        await store.fleets.set_state(
            fleet.id, fleet.state, f"rolled back by @{by}", expect=[fleet.state]
        )
    open_prs = sum(repo.state.has_pr for repo in await store.fleets.repos(fleet.id))
    return f"Fleet {fleet.id} is rolled back: its {open_prs} unmerged PRs are being closed."


async def _cancel_runs(store: Store, fleet_id: int) -> int:
    active = await store.runs.find(fleet_id=fleet_id, states=list(ACTIVE_STATES), limit=10_000)
    for run in active:
        await store.runs.request_cancel(run.id)
    return len(active)


def _refused(fleet: Fleet, why: str) -> FleetError:
    return FleetError(f"Fleet {fleet.id} is {fleet.state.value}: {why}.")


_COMMANDS = {
    FleetCommand.CONTINUE: _continue,
    FleetCommand.PAUSE: _pause,
    FleetCommand.RESUME: _resume,
    FleetCommand.STOP: _stop,
    FleetCommand.RETRY: _retry,
    FleetCommand.ROLLBACK: _rollback,
}
