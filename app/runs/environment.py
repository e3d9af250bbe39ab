"""The repository's own environment for a run: `env:` and `setup:` of `.github/honk.yml`, or,
where the file names no `setup:`, its devcontainer.json's (devcontainer.py: variables and
creation commands), with a note of what Honk does not do of it."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.repo_config import CONFIG_PATH, RepoConfig, merge_env
from app.runs.devcontainer import Devcontainer, SetupCommand
from app.untrusted import code

SHOWN_NAMES = 12  # names listed in one note before "and N more"


@dataclass(frozen=True)
class RunEnvironment:
    """The run's variables and setup commands, and what was said about where they came from."""

    env: tuple[tuple[str, str], ...] = ()
    commands: tuple[SetupCommand, ...] = ()
    devcontainer: Devcontainer | None = None
    # For the run page (and, `comment`, the tracking comment): what Honk did and did not do.
    notes: tuple[str, ...] = field(default=())
    comment: tuple[str, ...] = field(default=())


def plan_environment(
    config: RepoConfig, devcontainer: Devcontainer | None, *, unused: str | None = None
) -> RunEnvironment:
    """`env:` and `setup:` of `config`, or `devcontainer`'s variables (under `env:`, which wins
    name by name) and commands when the file names no `setup:`. `unused` is a devcontainer.json
    that was not read because `setup:` is there."""
    own = tuple(SetupCommand(line) for line in config.setup)
    if devcontainer is None:
        notes: tuple[str, ...] = ()
        if unused is not None:
            notes = (
                f"{code(unused)} was not used: {code(CONFIG_PATH)} names `setup:`, "
                "which wins over a devcontainer.json.",
            )
        return RunEnvironment(env=config.env, commands=own, notes=notes)
    said = describe_devcontainer(devcontainer)
    return RunEnvironment(
        env=merge_env(devcontainer.env, config.env),
        commands=devcontainer.commands,
        devcontainer=devcontainer,
        notes=said,
        comment=said,
    )


def describe_devcontainer(found: Devcontainer) -> tuple[str, ...]:
    """What Honk did with a devcontainer.json and what it did not: Markdown lines, every
    name from the file as inline code (the file is the repository's, not Honk's)."""
    used: list[str] = []
    if found.env:
        used.append(f"{len(found.env)} variable{'s' if len(found.env) != 1 else ''}")
    kinds = list(dict.fromkeys(c.origin.split(" ", 1)[0] for c in found.commands))
    if kinds:
        used.append(", ".join(code(k) for k in kinds) + " as setup, in that order")
    lines = [
        f"Honk set up this run from {code(found.path)}: "
        + ("; ".join(used) if used else "nothing in it applies")
        + "."
    ]
    if found.parallel:
        lines.append(
            "Named commands of "
            + ", ".join(code(k) for k in found.parallel)
            + " ran one after another (the spec runs them at once)."
        )
    if found.not_done:
        lines.append(
            "Not done (Honk runs the repository in its own sandbox, not in a container): "
            + _names(found.not_done)
            + "."
        )
    if found.dropped:
        left = [f"{code(_short(name))} ({why})" for name, why in found.dropped[:SHOWN_NAMES]]
        more = len(found.dropped) - SHOWN_NAMES
        lines.append(
            "Variables left out: "
            + "; ".join(left)
            + (f"; and {more} more" if more > 0 else "")
            + "."
        )
    if found.substituted:
        lines.append(
            "Honk gives no variable of its own host: "
            + _names(list(dict.fromkeys(found.substituted)))
            + " read as empty (or the default written)."
        )
    return tuple(lines)


def _short(name: str, limit: int = 60) -> str:
    """A name from the file, cut before it is made a code span (never through one)."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _names(items: list[str] | tuple[str, ...]) -> str:
    shown = ", ".join(code(_short(item)) for item in items[:SHOWN_NAMES])
    more = len(items) - SHOWN_NAMES
    return f"{shown} and {more} more" if more > 0 else shown
