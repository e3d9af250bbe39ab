"""What Honk remembers of CI, per commit and pull request; the one owner of those kv namespaces."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from app.store import Store
from app.store.kv import Namespace, mapping


@dataclass(frozen=True)
class HonkCheck:
    """Honk's own `Honk` check run on a commit, so CI's verdict can be added to it."""

    id: int
    title: str
    summary: str
    run: int


@dataclass(frozen=True)
class CiFailure:
    """The last red CI on a pull request: context for a retry; the repair it started."""

    sha: str
    checks: str
    summary: str
    repair: int | None = None  # the CI_FIX run queued for it


@dataclass(frozen=True)
class Published:
    """What a run pushed, as the card on its commit shows it (the model's summary raw: the
    card makes it inert)."""

    run: int
    summary: str
    verification: str
    review: str | None
    cost: float  # dollars, the agent's and the review's shares each at its model's price
    usage: str  # the cost in words


@dataclass(frozen=True)
class Merge:
    """A Honk PR merged from Slack: the commit GitHub made, followed to production."""

    run: int
    pr: int
    by: str  # the GitHub login that merged it
    slack_user: str  # the Slack user id that pressed Merge
    base: str
    method: str


def _honk_check(value: Any) -> HonkCheck | None:
    data = mapping(value)
    if not data or not data.get("id"):
        return None
    return HonkCheck(
        int(data["id"]), str(data.get("title") or ""), str(data.get("summary") or ""),
        int(data.get("run") or 0),
    )  # fmt: skip


def _failure(value: Any) -> CiFailure | None:
    data = mapping(value)
    if data is None:
        return None
    repair = data.get("repair")
    return CiFailure(
        str(data.get("sha", "")),
        str(data.get("checks", "")),
        str(data.get("summary", "")),
        int(repair) if isinstance(repair, int) else None,
    )


def _published(value: Any) -> Published | None:
    data = mapping(value)
    if not data or not isinstance(data.get("run"), int):
        return None
    return Published(
        int(data["run"]), str(data.get("summary") or ""), str(data.get("verification") or ""),
        str(data["review"]) if data.get("review") else None, float(data.get("cost") or 0.0),
        str(data.get("usage") or ""),
    )  # fmt: skip


def _merge(value: Any) -> Merge | None:
    data = mapping(value)
    if not data or not isinstance(data.get("run"), int):
        return None
    return Merge(
        int(data["run"]), int(data.get("pr") or 0), str(data.get("by") or ""),
        str(data.get("slack_user") or ""), str(data.get("base") or ""),
        str(data.get("method") or ""),
    )  # fmt: skip


# "<repo>@<sha>/<conclusion>": that verdict on that commit was reported (claimed once, before
# anything is said; a re-run that changes the conclusion is a new verdict);
# "<repo>@<sha>/deploy:<environment>:<state>": a deployment of a merge commit was reported
_VERDICTS: Namespace[dict[str, Any]] = Namespace("ci", owner=__name__, decode=mapping)
# "<repo>@<sha>": environment -> URL, from deployment_status events
_DEPLOYMENTS: Namespace[dict[str, Any]] = Namespace("ci-deploy", owner=__name__, decode=mapping)
# "<repo>#<pr>": the last CI failure on that PR, cleared when CI passes
_FAILURES: Namespace[CiFailure] = Namespace(
    "ci-failure", owner=__name__, encode=asdict, decode=_failure
)
# "<repo>@<sha>": what the run that pushed that commit did (the card's facts)
_PUBLISHED: Namespace[Published] = Namespace(
    "ci-published", owner=__name__, encode=asdict, decode=_published
)
# "<repo>@<sha>": a merge commit of a Honk PR, merged from Slack, which its thread follows
_MERGES: Namespace[Merge] = Namespace("ci-merge", owner=__name__, encode=asdict, decode=_merge)
# "<repo>@<sha>": Honk's own check run on that commit
_CHECKS: Namespace[HonkCheck] = Namespace(
    "honk-check", owner=__name__, encode=asdict, decode=_honk_check
)


def _commit(repo: str, sha: str) -> str:
    return f"{repo}@{sha}"


def _pull(repo: str, pr_number: int) -> str:
    return f"{repo}#{pr_number}"


async def verdict_reported(store: Store, repo: str, sha: str, conclusion: str) -> bool:
    return await _VERDICTS.get(store, f"{_commit(repo, sha)}/{conclusion}") is not None


async def claim_verdict(store: Store, repo: str, sha: str, *, conclusion: str, run_id: int) -> bool:
    """True for exactly one caller per commit and conclusion: the one that reports it. A
    verdict that changes on the same commit (failed jobs re-run and passed) is claimed anew."""
    value = {"conclusion": conclusion, "run": run_id, "at": _now()}
    return await _VERDICTS.put_if_absent(store, f"{_commit(repo, sha)}/{conclusion}", value)


async def claim_deployment(
    store: Store, repo: str, sha: str, *, environment: str, state: str, run_id: int
) -> bool:
    """True for exactly one caller per merge commit, environment and deployment state."""
    value = {"environment": environment, "state": state, "run": run_id, "at": _now()}
    key = f"{_commit(repo, sha)}/deploy:{environment}:{state}"
    return await _VERDICTS.put_if_absent(store, key, value)


async def record_published(store: Store, repo: str, sha: str, published: Published) -> None:
    await _PUBLISHED.put(store, _commit(repo, sha), published)


async def published(store: Store, repo: str, sha: str) -> Published | None:
    return await _PUBLISHED.get(store, _commit(repo, sha))


async def record_merge(store: Store, repo: str, sha: str, merge: Merge) -> None:
    """Remember the merge commit, so CI on the base branch and its deployments reach the
    run's thread."""
    await _MERGES.put(store, _commit(repo, sha), merge)


async def merge_of(store: Store, repo: str, sha: str) -> Merge | None:
    return await _MERGES.get(store, _commit(repo, sha))


async def record_deployment(store: Store, repo: str, sha: str, environment: str, url: str) -> None:
    """Remember where a deployment of `sha` can be tried, for the CI message."""
    found = await deployments(store, repo, sha)
    found[environment or "deployment"] = url
    await _DEPLOYMENTS.put(store, _commit(repo, sha), found)


async def deployments(store: Store, repo: str, sha: str) -> dict[str, str]:
    """Environment -> URL of the deployments of `sha` seen so far."""
    found = await _DEPLOYMENTS.get(store, _commit(repo, sha)) or {}
    return {str(k): str(v) for k, v in found.items()}


async def record_failure(store: Store, repo: str, pr_number: int, failure: CiFailure) -> None:
    await _FAILURES.put(store, _pull(repo, pr_number), failure)


async def clear_failure(store: Store, repo: str, pr_number: int) -> None:
    await _FAILURES.delete(store, _pull(repo, pr_number))


async def last_failure(store: Store, repo: str, pr_number: int) -> CiFailure | None:
    """The last CI failure reported on that PR (cleared when CI passes)."""
    return await _FAILURES.get(store, _pull(repo, pr_number))


async def record_honk_check(store: Store, repo: str, sha: str, check: HonkCheck) -> None:
    await _CHECKS.put(store, _commit(repo, sha), check)


async def honk_check(store: Store, repo: str, sha: str) -> HonkCheck | None:
    return await _CHECKS.get(store, _commit(repo, sha))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
