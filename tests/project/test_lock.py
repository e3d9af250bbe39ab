"""The lock: requirements/lock.txt pins what `.ci/run` installs, pyproject.toml keeps ranges.

A deployed service installs with `-c requirements/lock.txt`; these tests keep the lock from
drifting away from pyproject.toml (a dependency added there and not locked fails here) and
keep the README's test command the one `.ci/run` runs.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "lock.txt"
CI_RUN = ROOT / ".ci" / "run"
README = ROOT / "README.md"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def declared(pyproject: str, extras: tuple[str, ...] = ("test",)) -> set[str]:
    """The names of the project's dependencies and of the named extras', canonicalized."""
    project = tomllib.loads(pyproject)["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return {canonicalize_name(Requirement(line).name) for line in lines}


def pins(lock: str) -> dict[str, str]:
    """`name==version` lines of a compiled lock (comments and blank lines aside)."""
    found: dict[str, str] = {}
    for raw in lock.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        assert match, f"not an exact pin in the lock: {raw!r}"
        found[canonicalize_name(match[1])] = match[2]
    return found


def lock_problems(pyproject: str, lock: str) -> list[str]:
    pinned = pins(lock)
    missing = sorted(declared(pyproject) - set(pinned))
    return [
        f"{name} is in pyproject.toml but not pinned in requirements/lock.txt" for name in missing
    ]


def test_the_lock_pins_every_dependency_of_pyproject() -> None:
    assert lock_problems((ROOT / "pyproject.toml").read_text(), LOCK.read_text()) == []


def test_a_dependency_missing_from_the_lock_is_named() -> None:
    pyproject = (
        '[project]\ndependencies = ["aiohttp>=3.9", "PyJWT[crypto]>=2.8"]\n'
        '[project.optional-dependencies]\ntest = ["pytest_xdist>=3"]\n'
    )
    assert lock_problems(pyproject, "aiohttp==3.14.5\n    # via honk\npyjwt==2.15.1\n") == [
        "pytest-xdist is in pyproject.toml but not pinned in requirements/lock.txt"
    ]
    assert lock_problems(pyproject, "aiohttp==3\npyjwt==2\npytest-xdist==3.8.0\n") == []


def test_every_line_of_the_lock_is_an_exact_pin() -> None:
    pinned = pins(LOCK.read_text())
    assert pinned["pytest"] and pinned["aiohttp"]
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version) for version in pinned.values())


def readme_test_command(readme: str) -> str:
    commands = [line for line in readme.splitlines() if line.rstrip().endswith("python -m pytest")]
    assert len(commands) == 1, commands
    return commands[0].strip()


def ci_test_command(script: str) -> str:
    """`.ci/run`'s install line and its pytest line, as the README writes them: `a && b`."""
    lines = [line.strip() for line in script.splitlines()]
    install = [line for line in lines if line.startswith("python -m pip install")]
    pytest_runs = [line for line in lines if line.startswith("python -m pytest")]
    assert len(install) == 1 and len(pytest_runs) == 1, (install, pytest_runs)
    return f"{install[0]} && {pytest_runs[0].split(' || ')[0]}"


def test_ci_runs_exactly_the_readme_test_command_with_the_lock() -> None:
    command = readme_test_command(README.read_text())
    assert command == ci_test_command(CI_RUN.read_text())
    assert "-c requirements/lock.txt" in command


def test_a_ci_script_that_differs_from_the_readme_is_seen() -> None:
    readme = (
        "```sh\npython -m pip install -c requirements/lock.txt -e '.[test]'"
        " && python -m pytest\n```"
    )
    script = "python -m pip install -e '.[test]'\ntests=0\npython -m pytest || tests=$?\n"
    assert ci_test_command(script) == "python -m pip install -e '.[test]' && python -m pytest"
    assert readme_test_command(readme) != ci_test_command(script)
