"""GitHub's own example payloads conform to the TypedDicts of app/github/payloads.py.

The examples (`@octokit/webhooks-examples`, unchanged) are in `shared/github-webhooks` beside
the repository (`../shared/github-webhooks` in CI; a worktree's is found further up). Each
of an event Honk handles must carry every key its TypedDict requires, with the declared JSON
type, down through nested TypedDicts, lists and `| None`.
"""

from __future__ import annotations

import copy
import json
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest
from gidgethub import sansio

from app.github import payloads
from app.handlers import router

ROOT = Path(__file__).resolve().parents[2]


def _examples_dir() -> Path:
    for parent in (ROOT, *ROOT.parents):
        found = parent / "shared" / "github-webhooks"
        if found.is_dir():
            return found
    raise FileNotFoundError("no shared/github-webhooks beside the repository or above it")


EXAMPLES = _examples_dir()


def _handled() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("*.json") if p.name.split(".")[0] in payloads.EVENTS)


def mismatches(value: Any, declared: Any, where: str = "$") -> list[str]:
    """Where `value` (parsed JSON) does not have the `declared` type; [] when it does."""
    origin = get_origin(declared)
    if declared is Any:
        return []
    if origin in (Union, types.UnionType):
        options = get_args(declared)
        if any(not mismatches(value, option, where) for option in options):
            return []
        return [f"{where}: {value!r:.60} is none of {options}"]
    if declared is type(None):
        return [] if value is None else [f"{where}: {value!r:.60} is not null"]
    if is_typeddict(declared):
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__} is not an object ({declared.__name__})"]
        found: list[str] = []
        hints = get_type_hints(declared)
        for key, hint in hints.items():
            if key not in value:
                if key in declared.__required_keys__:
                    found.append(f"{where}.{key}: missing ({declared.__name__})")
                continue
            found += mismatches(value[key], hint, f"{where}.{key}")
        return found
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__} is not an array"]
        (item,) = get_args(declared)
        return [m for i, one in enumerate(value) for m in mismatches(one, item, f"{where}[{i}]")]
    if declared is int:  # JSON's integers; a bool is no number
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif declared in (str, bool):
        ok = isinstance(value, declared)
    else:
        raise TypeError(f"{where}: the checker knows no {declared!r}")
    return [] if ok else [f"{where}: {value!r:.60} is not {declared.__name__}"]


def _handles(payload: dict[str, Any], event: str) -> bool:
    return bool(router.fetch(sansio.Event(payload, event=event, delivery_id="d")))


def test_every_event_the_router_takes_has_its_typed_dict() -> None:
    """Each event of EVENTS reaches a handler, and no example of another event does."""
    actions = {
        "status": None,
        "deployment_status": "created",
        "github_app_authorization": "revoked",
    }
    for event in payloads.EVENTS:
        examples = list(EXAMPLES.glob(f"{event}.*.json"))
        tried = {p.name.split(".")[1] for p in examples if p.name.count(".") == 3}
        tried.add(str(actions.get(event)))
        assert any(_handles({"action": action}, event) for action in tried), event
    for path in EXAMPLES.glob("*.json"):
        event = path.name.split(".")[0]
        if event not in payloads.EVENTS and path.name != "README.md":
            assert not _handles(json.loads(path.read_text()), event), path.name


def test_examples_cover_the_events_honk_handles() -> None:
    names = {p.name.split(".")[0] for p in _handled()}
    # deployment_status and github_app_authorization have no example in the package.
    assert names >= set(payloads.EVENTS) - {"deployment_status", "github_app_authorization"}


@pytest.mark.parametrize("path", _handled(), ids=lambda p: p.name)
def test_example_conforms(path: Path) -> None:
    payload = json.loads(path.read_text())
    declared = payloads.EVENTS[path.name.split(".")[0]]
    assert mismatches(payload, declared) == []


def _example(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return copy.deepcopy(payload)


def test_a_broken_payload_fails() -> None:
    missing = _example("issue_comment.created.1.json")
    del missing["comment"]["id"]
    assert mismatches(missing, payloads.IssueCommentEvent) == ["$.comment.id: missing (Comment)"]
    wrong = _example("issues.labeled.1.json")
    wrong["issue"]["number"] = "7"
    wrong["issue"]["labels"][0]["name"] = None
    assert mismatches(wrong, payloads.IssuesEvent) == [
        "$.issue.number: '7' is not int",
        "$.issue.labels[0].name: None is not str",
    ]
    nullable = _example("issues.labeled.1.json")
    nullable["issue"]["body"] = None  # `str | None`: null is fine
    nullable["issue"].pop("pull_request", None)  # NotRequired: absent is fine
    assert mismatches(nullable, payloads.IssuesEvent) == []
    installed = _example("installation.created.1.json")
    installed["installation"]["account"] = None
    assert mismatches(installed, payloads.InstallationEvent) == [
        "$.installation.account: NoneType is not an object (User)"
    ]
