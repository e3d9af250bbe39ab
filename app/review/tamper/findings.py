"""What the parse checks say: the kinds of finding, a `Found` as published, and the `Fact`s each
version of a file yields, matched between the run's start and the agent's version so only what
the change brought is said."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

# Kinds of finding; the first three are the words the checks of the diff use for the same
# things, so a finding reads the same whichever check made it.
MARKER = "marker"  # a test skipped, expected to fail or no longer collected
ASSERTIONS = "assertions"  # an assertion that cannot fail, weakened, or expecting another value
TEST_CONFIG = "test-config"  # a pytest hook or plugin: how tests are collected, run, reported
PATCH = "patch"  # the code under test replaced by the tests themselves
EXIT = "exit"  # the test process ended before pytest reports
UNREADABLE = "unreadable"  # a test file Honk could not read, so could not check
CHECK = "parse"  # which check made these findings, for the run page


@dataclass(frozen=True)
class Found:
    """One thing the change does to the tests, in words, with where it is."""

    path: str
    line: int | None
    kind: str
    message: str
    test: str | None = None  # the test it is about, when it is about one


@dataclass(frozen=True)
class Fact:
    """Something a version of the file does, keyed so the start's version can be matched."""

    key: tuple[str, ...]
    line: int | None
    kind: str
    message: str
    test: str | None = None


def under_old_name(fact: Fact, renamed: dict[str, str]) -> Fact:
    """The fact keyed under the test's name at the start (its key's second part is whom)."""
    if len(fact.key) > 1 and fact.key[1] in renamed:
        key = (fact.key[0], renamed[fact.key[1]], *fact.key[2:])
        return Fact(key, fact.line, fact.kind, fact.message, fact.test)
    return fact


def new_facts(after: list[Fact], before: list[Fact]) -> list[Fact]:
    """The facts of the agent's version that the start's did not have (by key and count)."""
    left = Counter(fact.key for fact in before)
    new = []
    for fact in after:
        if left[fact.key] > 0:
            left[fact.key] -= 1
        else:
            new.append(fact)
    return new
