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
    """The last red CI on a pull request: context for a retry."""

    sha: str
    checks: str
    summary: str


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
    return CiFailure(
        str(data.get("sha", "")), str(data.get("checks", "")), str(data.get("summary", ""))
    )


# "<repo>@<sha>": the verdict on that commit was reported (claimed once, before anything is said)
_VERDICTS: Namespace[dict[str, Any]] = Namespace("ci", owner=__name__, decode=mapping)
# "<repo>@<sha>": environment -> URL, from deployment_status events
_DEPLOYMENTS: Namespace[dict[str, Any]] = Namespace("ci-deploy", owner=__name__, decode=mapping)
# "<repo>#<pr>": the last CI failure on that PR, cleared when CI passes
_FAILURES: Namespace[CiFailure] = Namespace(
    "ci-failure", owner=__name__, encode=asdict, decode=_failure
)
# "<repo>@<sha>": Honk's own check run on that commit
_CHECKS: Namespace[HonkCheck] = Namespace(
    "honk-check", owner=__name__, encode=asdict, decode=_honk_check
)


def _commit(repo: str, sha: str) -> str:
    return f"{repo}@{sha}"


def _pull(repo: str, pr_number: int) -> str:
    return f"{repo}#{pr_number}"


async def verdict_reported(store: Store, repo: str, sha: str) -> bool:
    return await _VERDICTS.get(store, _commit(repo, sha)) is not None


async def claim_verdict(store: Store, repo: str, sha: str, *, conclusion: str, run_id: int) -> bool:
    """True for exactly one caller per commit: the one that reports the verdict."""
    value = {"conclusion": conclusion, "run": run_id, "at": _now()}
    return await _VERDICTS.put_if_absent(store, _commit(repo, sha), value)


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
