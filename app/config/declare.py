"""Each setting declared once: `setting(env=..., parse=..., default=..., doc=...)` is a
dataclass field of its group that also says which variable sets it, how its text is read,
and the one line docs/configuration.md shows for it. Reading a group from the environment
and writing its rows of the docs both walk these declarations."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar, Self, TypeVar

T = TypeVar("T")
G = TypeVar("G", bound="Group")

# The environment with the empty string as unset: name -> value or None.
Getter = Callable[[str], str | None]
NO_DEFAULT = "—"


@dataclass(frozen=True)
class Setting:
    """One environment variable: the field it sets, how, its default, and its line of doc."""

    env: str
    parse: Callable[[str, str], object]
    doc: str
    secret: bool = False
    # The docs' default column when the default's own text is not it (e.g. per machine).
    shown: str | None = None
    # Unset, the setting takes this other variable's value (`as VARIABLE` in the docs).
    follows: str | None = None
    # The `## section` of docs/configuration.md whose table lists it; None: the group's.
    section: str | None = None
    # The name Settings.with_overrides knows it by, when not the field's own.
    flat: str | None = None


def setting(
    env: str,
    parse: Callable[[str, str], T],
    default: T,
    doc: str,
    *,
    secret: bool = False,
    shown: str | None = None,
    follows: str | None = None,
    section: str | None = None,
    flat: str | None = None,
    factory: Callable[[], T] | None = None,
) -> T:
    """A group's field, declared with its variable: `max_turns: int = setting("HONK_MAX_TURNS",
    whole(1), 40, "the agent's turns per run")`. Secrets are kept out of `repr`."""
    spec = Setting(env, parse, doc, secret, shown, follows, section, flat)
    metadata = {"setting": spec}
    if factory is not None:
        return dataclasses.field(default_factory=factory, repr=not secret, metadata=metadata)
    return dataclasses.field(default=default, repr=not secret, metadata=metadata)


class Group:
    """The base of a frozen dataclass of settings (GitHubSettings, SandboxSettings, ...)."""

    # The `## section` of docs/configuration.md that lists the group's settings.
    section: ClassVar[str] = ""

    def checked(self, get: Getter) -> Self:
        """The group after its checks across settings (a group may replace some values)."""
        return self


def declared(group: type[Group]) -> Iterator[tuple[str, Setting]]:
    """(field name, its declaration) for each setting of `group`, in order."""
    for item in dataclasses.fields(group):  # type: ignore[arg-type]
        spec = item.metadata.get("setting")
        if isinstance(spec, Setting):
            yield item.name, spec


def read_group(group: type[G], get: Getter) -> G:
    """The group as the environment sets it: each declared variable parsed when set, its
    default otherwise; then the group's own checks across its settings."""
    values: dict[str, object] = {}
    for name, spec in declared(group):
        raw = get(spec.env)
        if raw is None and spec.follows is not None:
            raw = get(spec.follows)
        if raw is not None:
            values[name] = spec.parse(raw, spec.env)
    return group(**values).checked(get)


def default_of(group: type[Group], name: str) -> object:
    return getattr(group(), name)


def shown(value: object) -> str:
    """A default as docs/configuration.md writes it."""
    if value in (None, "", ()):
        return NO_DEFAULT
    if isinstance(value, bool):
        return "`on`" if value else "`off`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, tuple):
        value = " ".join(map(str, value))
    return f"`{value}`"


def rows(groups: Mapping[str, type[Group]]) -> dict[str, list[str]]:
    """The docs' table rows by `## section`, in declaration order."""
    tables: dict[str, list[str]] = {}
    for group in groups.values():
        for name, spec in declared(group):
            if spec.shown is not None:
                default = spec.shown
            elif spec.follows is not None:
                default = f"as `{spec.follows}`"
            else:
                default = shown(default_of(group, name))
            row = f"| `{spec.env}` | {default} | {spec.doc} |"
            tables.setdefault(spec.section or group.section, []).append(row)
    return tables
