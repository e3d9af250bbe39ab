"""Docs that cannot drift: each reference page is checked against the code it describes.

- docs/configuration.md: every environment variable app/config.py reads, with its default;
- docs/repository-config.md: every `.github/honk.yml` key app/repo_config.py accepts;
- the README's Commands: every `honk` subcommand and every `/honk` command;
- docs/architecture.md: every module under app/, and none that is gone;
- slack-app.yml: its request URLs are Honk's routes, its scopes cover the Slack methods the
  code calls, and docs/slack.md says why each scope is there.

Each checker is a function returning the problems it found, in words that say what to
change; the tests below also feed them a page with a known fault, so a checker that finds
nothing cannot pass unnoticed.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from slack_sdk.web.async_client import AsyncWebClient

from app import repo_config
from app.config import GROUPS, ConfigError, Settings
from app.config import docs as config_docs
from app.config.declare import declared
from app.handlers import comments
from app.handlers.slack import parsing
from app.repo_config import parse as repo_config_parse

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
REPOSITORY_CONFIG = ROOT / "docs" / "repository-config.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
SLACK_DOC = ROOT / "docs" / "slack.md"
SLACK_MANIFEST = ROOT / "slack-app.yml"

# -- Markdown -----------------------------------------------------------------------------

_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def table_rows(markdown: str, header: tuple[str, ...]) -> Iterator[list[str]]:
    """The body rows of every table whose header row is `header` (cells stripped)."""
    in_table = False
    for line in markdown.splitlines():
        stripped = line.strip()
        if not stripped.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in _CELL_SPLIT.split(stripped.strip("|"))]
        if tuple(c.lower() for c in cells) == header:
            in_table = True
        elif in_table and not all(set(c) <= set("-: ") for c in cells):
            yield cells


def section(markdown: str, title: str) -> str:
    """The text of the `## title` section, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"no '## {title}' section"
    return match.group(1)


def code_blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, re.M | re.S)


def backticked(cell: str) -> str | None:
    match = re.fullmatch(r"`([^`]+)`", cell)
    return match.group(1) if match else None


# -- Environment settings -------------------------------------------------------------------

CONFIG_HEADER = ("variable", "default", "meaning")
NO_DEFAULT = "—"
# Placeholders a documented default may hold for what differs per machine.
PLACEHOLDERS = {"<uid>": str(os.getuid())}
# Values a setting referred to by `as VARIABLE` is tried with until one changes it.
PROBES = ("probe-value", "7", "https://probe.example", "off", "on")


class LookupRecorder(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def settings_read() -> set[str]:
    """Every environment variable Settings reads: the parser run on an environment that
    records each lookup (no grep: a name built at run time counts too)."""
    environment = LookupRecorder()
    Settings._parse(environment, None)
    return environment.names


def settings_declared() -> set[str]:
    return {spec.env for group in GROUPS.values() for _, spec in declared(group)}


def declared_rows() -> dict[str, list[str]]:
    """Each declared variable's row as the declarations write it: name -> cells."""
    rows: dict[str, list[str]] = {}
    for table in config_docs.tables().values():
        for cells in table_rows(table, CONFIG_HEADER):
            rows[backticked(cells[0]) or cells[0]] = cells
    return rows


def settings_with(**environment: str) -> Settings:
    return Settings.from_env(environment, env_file=None)


def value_of(settings: Settings, name: str) -> object:
    """The value the variable `name` sets in `settings`, found by its declaration."""
    for group_name, group in GROUPS.items():
        for field_name, spec in declared(group):
            if spec.env == name:
                return getattr(getattr(settings, group_name), field_name)
    raise KeyError(name)


def code_default(name: str) -> str:
    cells = declared_rows().get(name)
    return cells[1] if cells else "(see app/config/)"


def default_problem(name: str, cell: str) -> str | None:
    """Why the documented default of `name` is not what the parser does when it is unset,
    or None when it is: the declarations' own `shown` and `follows` are checked by it."""
    base = settings_with()
    told = f"{CONFIGURATION.name} gives {name} the default {cell}"
    if cell == NO_DEFAULT:
        if value_of(base, name) in (None, "", ()):
            return None
        return f"{told}, but the code's is {code_default(name)}: write that"
    if reference := re.fullmatch(r"as `([A-Z0-9_]+)`", cell):
        other = reference.group(1)
        for probe in PROBES:
            try:
                moved = settings_with(**{other: probe})
            except ConfigError:
                continue
            if moved == base:
                continue
            if settings_with(**{other: probe, name: probe}) == moved:
                return None
            return f"{told}, but {name} does not follow {other}: write {code_default(name)}"
        return f"{told}: no value of {other} tried ({', '.join(PROBES)}) changes anything"
    literal = backticked(cell)
    if literal is None:
        return f"{told}: write it as `value`, {NO_DEFAULT} (unset) or as `VARIABLE`"
    for placeholder, value in PLACEHOLDERS.items():
        literal = literal.replace(placeholder, value)
    try:
        explicit = settings_with(**{name: literal})
    except ConfigError as exc:
        return f"{told}, which the code refuses ({exc}); the code's is {code_default(name)}"
    if explicit != base:
        return f"{told}, but the code's is {code_default(name)}: write that"
    return None


REGENERATE = "python -m app.config --markdown --write"


def configuration_problems(markdown: str) -> list[str]:
    """Where docs/configuration.md's tables are not the ones the declarations write."""
    problems: list[str] = []
    documented: dict[str, list[str]] = {}
    for cells in table_rows(markdown, CONFIG_HEADER):
        name = backticked(cells[0]) if len(cells) == 3 else None
        if name is None:
            problems.append(
                f"{CONFIGURATION.name}: a row is not `NAME` | default | meaning: {cells}"
            )
            continue
        if name in documented:
            problems.append(f"{CONFIGURATION.name}: {name} has two rows")
        documented[name] = cells
    wanted = declared_rows()
    for name in sorted(wanted.keys() - documented.keys()):
        problems.append(
            f"{name} is declared in app/config/ but missing from {CONFIGURATION.name}: add the "
            f"row {' | '.join(['', *wanted[name], '']).strip()} ({REGENERATE})"
        )
    for name in sorted(documented.keys() - wanted.keys()):
        problems.append(f"{CONFIGURATION.name} documents {name}, which app/config/ never declares")
    for name in sorted(documented.keys() & wanted.keys()):
        cell, code = documented[name][1], wanted[name][1]
        if cell != code:
            problems.append(f"{told_default(name, cell)}, but the code's is {code}: write that")
        elif documented[name][2] != wanted[name][2]:
            problems.append(f"{CONFIGURATION.name}: {name}'s meaning is not its declared doc")
    if not problems:
        try:
            if config_docs.rewrite(markdown) != markdown:
                problems.append(
                    f"{CONFIGURATION.name}: the settings tables are not in the declared "
                    f"sections and order: run {REGENERATE}"
                )
        except ValueError as exc:
            problems.append(f"{CONFIGURATION.name}: {exc}")
    return problems


def told_default(name: str, cell: str) -> str:
    return f"{CONFIGURATION.name} gives {name} the default {cell}"


def test_the_settings_tables_are_the_ones_the_declarations_write() -> None:
    assert configuration_problems(CONFIGURATION.read_text()) == []


def test_every_declared_default_is_what_the_parser_does_unset() -> None:
    problems = [default_problem(name, cells[1]) for name, cells in declared_rows().items()]
    assert [p for p in problems if p] == []


def test_the_settings_read_are_found_by_running_the_parser() -> None:
    read = settings_read()
    # A handful the parser reads whatever else is set, including ones built from others.
    assert {"APP_ID", "PRIVATE_KEY_PATH", "HONK_DATA_DIR", "DATABASE_URL", "HONK_URL"} <= read
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in read)
    # The parser reads what is declared, and nothing else.
    assert read == settings_declared()


def test_the_tables_are_generated_by_python_m_app_config() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.config", "--markdown", str(CONFIGURATION)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert result.stdout == CONFIGURATION.read_text()


def test_a_setting_missing_from_the_docs_is_reported_with_the_row_to_add() -> None:
    markdown = CONFIGURATION.read_text()
    without = "\n".join(line for line in markdown.splitlines() if "`HONK_WORKERS`" not in line)
    problems = configuration_problems(without)
    assert len(problems) == 1
    assert problems[0].startswith(
        "HONK_WORKERS is declared in app/config/ but missing from configuration.md: add the "
        "row | `HONK_WORKERS` | `2` | concurrent runs"
    )


def test_a_documented_setting_the_code_does_not_read_is_reported() -> None:
    markdown = (
        CONFIGURATION.read_text() + "\n| variable | default | meaning |\n| --- | --- | --- |\n"
    )
    markdown += "| `HONK_GONE` | `1` | a setting since removed |\n"
    problems = configuration_problems(markdown)
    assert problems == ["configuration.md documents HONK_GONE, which app/config/ never declares"]


def test_a_changed_meaning_or_a_moved_row_is_reported() -> None:
    markdown = CONFIGURATION.read_text()
    changed = markdown.replace("the address `honk serve` listens on", "where Honk listens")
    assert configuration_problems(changed) == [
        "configuration.md: HOST's meaning is not its declared doc"
    ]
    lines = markdown.splitlines(keepends=True)
    host = next(i for i, line in enumerate(lines) if line.startswith("| `HOST` |"))
    lines[host], lines[host + 1] = lines[host + 1], lines[host]
    problems = configuration_problems("".join(lines))
    assert len(problems) == 1 and "declared sections and order" in problems[0]


@pytest.mark.parametrize(
    ("name", "wrong", "code"),
    [
        ("HONK_WORKERS", "`3`", "`2`"),  # a number
        ("HONK_MODEL_JUDGE", "`off`", "`on`"),  # a switch
        ("HONK_DATA_DIR", "`/srv/honk`", "`.honk`"),  # a path
        ("HONK_URL", "`https://honk.example.com`", "—"),  # documented, though unset
        ("HONK_MAX_TURNS", "—", "`40`"),  # a default documented as none
        ("HONK_REVIEW_MODEL", "as `HONK_LABEL`", "as `HONK_MODEL`"),  # follows another
    ],
)
def test_a_wrong_default_is_reported_with_the_codes(name: str, wrong: str, code: str) -> None:
    markdown = CONFIGURATION.read_text()
    rows = [line for line in markdown.splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1
    cells = rows[0].split(" | ")
    cells[1] = wrong
    problems = configuration_problems(markdown.replace(rows[0], " | ".join(cells)))
    assert len(problems) == 1
    assert problems[0].startswith(f"configuration.md gives {name} the default {wrong}")
    assert code in problems[0]
    # And the parser, asked directly, disagrees with the wrong default as well.
    assert default_problem(name, wrong) is not None


def test_a_documented_default_the_code_refuses_is_reported() -> None:
    problem = default_problem("PORT", "`port three thousand`")
    assert problem is not None and "refuses" in problem and "`3000`" in problem


# -- .github/honk.yml ---------------------------------------------------------------------

REPO_HEADER = ("key", "default", "meaning")
_NOT_A_KEY = "zz_not_a_key"


def _refused_as_unknown(text: str) -> bool:
    try:
        repo_config.parse_config(text)
    except repo_config.RepoConfigError as exc:
        return "unknown" in str(exc)
    return False


def repo_config_keys() -> set[str]:
    """Every key `.github/honk.yml` may hold, from app/repo_config/: its settings, and the
    keys of each setting that is a mapping (the one parse_config refuses an unknown key in)."""
    keys = set(repo_config.SETTINGS)
    for name in repo_config.SETTINGS:
        if not _refused_as_unknown(f"{name}:\n  {_NOT_A_KEY}: 1\n"):
            continue  # not a mapping of known keys
        known = getattr(repo_config_parse, f"_{name.upper()}", None)
        assert isinstance(known, Mapping | tuple), (
            f"`{name}:` is a mapping, but its keys are not in repo_config.parse._{name.upper()}"
        )
        keys |= {f"{name}.{key}" for key in known}
    return keys


def repository_config_problems(markdown: str, keys: set[str]) -> list[str]:
    documented = [backticked(cells[0]) or cells[0] for cells in table_rows(markdown, REPO_HEADER)]
    problems = [
        f"{REPOSITORY_CONFIG.name}: {key} has two rows"
        for key in documented
        if documented.count(key) > 1
    ]
    problems += [
        f"`{key}` is accepted by app/repo_config.py but missing from {REPOSITORY_CONFIG.name}: "
        f"add the row | `{key}` | <default> | <what it does> |"
        for key in sorted(keys - set(documented))
    ]
    problems += [
        f"{REPOSITORY_CONFIG.name} documents `{key}`, which app/repo_config.py refuses"
        for key in sorted(set(documented) - keys)
    ]
    return sorted(set(problems), key=problems.index)


def test_every_repository_setting_is_documented() -> None:
    assert repository_config_problems(REPOSITORY_CONFIG.read_text(), repo_config_keys()) == []


def test_the_repository_keys_are_the_ones_the_parser_accepts() -> None:
    keys = repo_config_keys()
    assert {"verify", "limits.turns", "review.model", "merge"} <= keys
    for key in keys:
        top, _, sub = key.partition(".")
        text = f"{top}:\n  {sub}: null\n" if sub else f"{key}: null\n"
        assert not _refused_as_unknown(text), key
    assert _refused_as_unknown(f"limits:\n  {_NOT_A_KEY}: 1\n")
    assert _refused_as_unknown(f"{_NOT_A_KEY}: 1\n")


def test_a_missing_or_unknown_repository_key_is_reported() -> None:
    markdown = REPOSITORY_CONFIG.read_text()
    without = "\n".join(
        line for line in markdown.splitlines() if "| `review.on_veto` |" not in line
    )
    assert repository_config_problems(without, repo_config_keys()) == [
        "`review.on_veto` is accepted by app/repo_config.py but missing from "
        "repository-config.md: add the row | `review.on_veto` | <default> | <what it does> |"
    ]
    extra = markdown.replace("| `merge` |", "| `limits.tokens` | none | not a key |\n| `merge` |")
    assert repository_config_problems(extra, repo_config_keys()) == [
        "repository-config.md documents `limits.tokens`, which app/repo_config.py refuses"
    ]


@pytest.mark.parametrize("page", [README, REPOSITORY_CONFIG], ids=lambda p: p.name)
def test_the_honk_yml_examples_are_valid(page: Path) -> None:
    examples = code_blocks(page.read_text(), "yaml")
    assert examples, f"{page.name} shows no .github/honk.yml"
    for example in examples:
        config = repo_config.parse_config(example)
        assert config.fields_set, example
        repo_config.network_plan(settings_with().network, config)  # within the default cap too


# -- Commands -------------------------------------------------------------------------------


class _Caught(BaseException):
    """Raised out of main() with its parser: a BaseException, so no `except Exception` in
    main() can swallow it."""


def honk_parser() -> argparse.ArgumentParser:
    """The parser app/__main__.py's main() builds, caught as main() starts parsing with it
    (the first parser holding subcommands: a pre-parser for --env-file alone is let be)."""
    from app.__main__ import main

    original = argparse.ArgumentParser.parse_known_args

    def catch(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, argparse._SubParsersAction) for a in self._actions):
            raise _Caught(self)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_known_args", catch)
        try:
            main(["--help"])
        except _Caught as caught:
            return caught.args[0]  # type: ignore[no-any-return]
    raise AssertionError("main() parsed its arguments without a parser of subcommands")


def cli_subcommands(parser: argparse.ArgumentParser) -> set[str]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name for action in actions for name in action.choices}


def comment_commands() -> set[str]:
    """The `/honk` words comments.carry_out acts on: the names it compares the command with."""
    tree = ast.parse(Path(comments.__file__).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute):
            if node.left.attr != "name":
                continue
            for comparator in node.comparators:
                items = comparator.elts if isinstance(comparator, ast.Tuple) else [comparator]
                names |= {str(i.value) for i in items if isinstance(i, ast.Constant)}
    return names


def slack_kinds() -> set[str]:
    """Every kind of Slack request parsing.py makes: the `Command("kind", …)` it builds."""
    tree = ast.parse(Path(parsing.__file__).read_text())
    return {
        str(node.args[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Command"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def documented_commands(readme: str) -> tuple[set[str], list[str]]:
    """The README's Commands: `honk <subcommand>` words and `/honk …` texts."""
    text = section(readme, "Commands")
    cli = set(re.findall(r"`honk ([a-z][\w-]*)", text))
    slash = [m.strip() for m in re.findall(r"`/honk\b([^`]*)`", text)]
    return cli, slash


def command_problems(readme: str, subcommands: set[str]) -> list[str]:
    cli, slash = documented_commands(readme)
    problems = [
        f"`honk {name}` is missing from the README's Commands" for name in sorted(subcommands - cli)
    ]
    problems += [
        f"the README's Commands lists `honk {name}`, which app/__main__.py does not have"
        for name in sorted(cli - subcommands)
    ]
    handled = comment_commands()
    kinds_seen: set[str] = set()
    names_seen: set[str] = set()
    for text in slash:
        comment = comments.parse_command(f"/honk {text}")
        slack = parsing.parse_command(text)
        is_comment = comment is not None and comment.name in handled
        # Slack's fallback reads any text as a request; it counts when it names a repository.
        is_slack = slack.kind != "ask" or slack.repo is not None
        if comment is not None and is_comment:
            names_seen.add(comment.name)
        if is_slack:
            kinds_seen.add(slack.kind)
        if not (is_comment or is_slack):
            problems.append(f"the README's Commands lists `/honk {text}`, which no parser knows")
    problems += [
        f"`/honk {name}` (app/handlers/comments.py) is missing from the README's Commands"
        for name in sorted(handled - names_seen)
    ]
    problems += [
        f"Slack's `{kind}` request (app/handlers/slack/parsing.py) is missing from the "
        "README's Commands"
        for kind in sorted(slack_kinds() - kinds_seen)
    ]
    return problems


def test_every_command_is_in_the_readme_and_nothing_else() -> None:
    subcommands = cli_subcommands(honk_parser())
    assert {"serve", "worker", "run", "migrate", "doctor", "stats"} <= subcommands
    assert command_problems(README.read_text(), subcommands) == []


def test_the_commands_are_found_in_the_code() -> None:
    assert {"retry", "cancel", "help"} <= comment_commands()
    assert {"ask", "repo", "link", "unlink", "help"} <= slack_kinds()


def test_a_missing_or_unknown_command_is_reported() -> None:
    subcommands = cli_subcommands(honk_parser())
    readme = README.read_text()
    lines = readme.splitlines()
    without = "\n".join(
        line
        for line in lines
        if not line.startswith("| `honk stats") and "/honk cancel" not in line
    )
    assert command_problems(without, subcommands) == [
        "`honk stats` is missing from the README's Commands",
        "`/honk cancel` (app/handlers/comments.py) is missing from the README's Commands",
    ]
    invented = readme.replace("| `/honk help` |", "| `/honk frobnicate` | | \n| `/honk help` |", 1)
    invented = invented.replace("| `honk doctor` |", "| `honk deploy` | |\n| `honk doctor` |")
    assert command_problems(invented, subcommands) == [
        "the README's Commands lists `honk deploy`, which app/__main__.py does not have",
        "the README's Commands lists `/honk frobnicate`, which no parser knows",
    ]
    no_link = readme.replace("`/honk link`", "Connect")
    assert command_problems(no_link, subcommands) == [
        "Slack's `link` request (app/handlers/slack/parsing.py) is missing from the README's "
        "Commands"
    ]


# -- docs/architecture.md -------------------------------------------------------------------

MODULE_HEADERS = (("module", "one job"), ("revision", "what it adds"))


def app_modules(root: Path = ROOT) -> set[str]:
    return {
        str(path.relative_to(root))
        for path in (root / "app").rglob("*.py")
        if path.name != "__init__.py"
    }


def named_modules(markdown: str) -> tuple[set[str], set[str]]:
    """What the module tables' first cells name: file paths, and folder paths.

    A first cell is a path, optionally followed by file names relative to its folder:
    `app/runs/diff_checks.py`, `tests_in_diffs.py` or `app/agent/`: `loop.py`, `tools.py`."""
    files: set[str] = set()
    folders: set[str] = set()
    for header in MODULE_HEADERS:
        for cells in table_rows(markdown, header):
            items = re.findall(r"`([^`]+)`", cells[0])
            if not items or not items[0].startswith("app/"):
                continue
            first, rest = items[0], items[1:]
            if first.endswith("/"):
                folder = first
                folders.add(first.rstrip("/"))
            else:
                folder = first.rsplit("/", 1)[0] + "/"
                files.add(first)
            files |= {item if "/" in item else folder + item for item in rest}
    return files, folders


def architecture_problems(markdown: str, modules: set[str], root: Path = ROOT) -> list[str]:
    files, folders = named_modules(markdown)
    problems = [
        f"{module} is missing from {ARCHITECTURE.name}'s module table: add a row, or its file "
        f"name to the row of `{module.rsplit('/', 1)[0]}/`"
        for module in sorted(modules - files)
    ]
    problems += [
        f"{ARCHITECTURE.name}'s module table names {path}, which does not exist"
        for path in sorted(files - modules)
    ]
    problems += [
        f"{ARCHITECTURE.name}'s module table names {path}/, which does not exist"
        for path in sorted(folders)
        if not (root / path).is_dir()
    ]
    # Anywhere else on the page: a path to a Python file or an app/ folder must exist.
    for path in sorted(set(re.findall(r"(?<![\w/.])((?:app|tests|bench)/[\w/.]*\w/?)", markdown))):
        if path.endswith((".py", "/")) and not (root / path).exists():
            problems.append(f"{ARCHITECTURE.name} names {path}, which does not exist")
    for name in sorted(set(re.findall(r"(?<![\w/.-])((?:[a-z_]+/)*[a-z_0-9]+\.py)\b", markdown))):
        if not any(m.endswith(name) for m in modules) and not (root / name).exists():
            problems.append(f"{ARCHITECTURE.name} names {name}, which is not a module of app/")
    return problems


def test_architecture_names_every_module_and_only_those() -> None:
    assert architecture_problems(ARCHITECTURE.read_text(), app_modules()) == []


def test_a_module_missing_from_architecture_or_gone_is_reported() -> None:
    markdown = ARCHITECTURE.read_text()
    modules = app_modules()
    assert architecture_problems(markdown, modules | {"app/runs/new_phase.py"}) == [
        "app/runs/new_phase.py is missing from architecture.md's module table: add a row, "
        "or its file name to the row of `app/runs/`"
    ]
    # A file listed in its folder's row, then removed from the code.
    gone = architecture_problems(markdown, modules - {"app/agent/editor.py"})
    assert (
        gone[0] == "architecture.md's module table names app/agent/editor.py, which does not exist"
    )
    assert all("editor.py" in problem for problem in gone)
    # A row that names a module that never existed.
    ghost = markdown.replace(
        "| `app/progress.py` |", "| `app/ghost.py` | gone |\n| `app/progress.py` |"
    )
    assert "architecture.md's module table names app/ghost.py, which does not exist" in (
        architecture_problems(ghost, modules)
    )


# -- slack-app.yml ----------------------------------------------------------------------------

# The bot scopes each Slack Web API method Honk calls needs (api.slack.com/methods). A
# method the code starts calling that is not here fails the test: add it, with its scopes.
METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "auth.test": (),
    "chat.getPermalink": (),
    "chat.postEphemeral": ("chat:write",),
    "chat.postMessage": ("chat:write",),
    "chat.update": ("chat:write",),
    # Honk reads the profile's e-mail (handlers/slack/identity.py), which needs the second.
    "users.info": ("users:read", "users:read.email"),
    "views.open": (),
}
# Each event the manifest subscribes to, and the scope Slack requires for it.
EVENT_SCOPES = {"app_mention": "app_mentions:read", "message.im": "im:history"}
SLASH_COMMAND_SCOPE = "commands"


def slack_methods_called(root: Path = APP) -> dict[str, set[str]]:
    """Slack Web API method -> the files that call it (slack_sdk's client methods by name)."""
    client_methods = {
        name
        for name in dir(AsyncWebClient)
        if not name.startswith("_")
        and name != "api_call"
        and callable(getattr(AsyncWebClient, name))
    }
    called: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            method = None
            if isinstance(node, ast.Attribute) and node.attr in client_methods:
                method = node.attr.replace("_", ".")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "api_call"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                method = str(node.args[0].value)
            if method:
                called.setdefault(method, set()).add(str(path.relative_to(ROOT)))
    return called


def manifest() -> dict[str, Any]:
    return yaml.safe_load(SLACK_MANIFEST.read_text())  # type: ignore[no-any-return]


def scope_problems(data: Mapping[str, Any], called: Mapping[str, set[str]]) -> list[str]:
    scopes = set(data["oauth_config"]["scopes"]["bot"])
    problems = [
        f"{method} (called in {', '.join(sorted(where))}) is not in tests/project/test_docs.py's "
        "METHOD_SCOPES: add it with the scopes api.slack.com/methods gives"
        for method, where in sorted(called.items())
        if method not in METHOD_SCOPES
    ]
    needed = {s for m in called for s in METHOD_SCOPES.get(m, ())}
    needed |= {EVENT_SCOPES[e] for e in data["settings"]["event_subscriptions"]["bot_events"]}
    if data["features"].get("slash_commands"):
        needed.add(SLASH_COMMAND_SCOPE)
    problems += [
        f"{SLACK_MANIFEST.name} lacks the bot scope {scope}" for scope in sorted(needed - scopes)
    ]
    return problems


def test_the_manifests_scopes_cover_every_slack_method_the_code_calls() -> None:
    called = slack_methods_called()
    assert {"chat.postMessage", "users.info", "views.open"} <= called.keys()
    assert scope_problems(manifest(), called) == []


def test_a_scope_the_manifest_lacks_or_a_method_without_scopes_is_reported() -> None:
    data = manifest()
    called = slack_methods_called()
    data["oauth_config"]["scopes"]["bot"].remove("users:read.email")
    assert scope_problems(data, called) == ["slack-app.yml lacks the bot scope users:read.email"]
    called = {**called, "reactions.add": {"app/somewhere.py"}}
    assert scope_problems(manifest(), called) == [
        "reactions.add (called in app/somewhere.py) is not in "
        "tests/project/test_docs.py's METHOD_SCOPES: "
        "add it with the scopes api.slack.com/methods gives"
    ]


def test_the_manifests_request_urls_are_honks_routes() -> None:
    from app.web import create_app

    app = create_app(settings_with())
    posts = {r.resource.canonical for r in app.router.routes() if r.method == "POST" and r.resource}
    data = manifest()
    (command,) = data["features"]["slash_commands"]
    assert command["command"] == "/honk"
    urls = {
        "slash command": command["url"],
        "events": data["settings"]["event_subscriptions"]["request_url"],
        "interactivity": data["settings"]["interactivity"]["request_url"],
    }
    paths = {what: urlparse(url).path for what, url in urls.items()}
    assert paths == {
        "slash command": "/slack/commands",
        "events": "/slack/events",
        "interactivity": "/slack/interactions",
    }
    assert set(paths.values()) <= posts
    # Every Slack route Honk serves is in the manifest, and all on the one host.
    assert {p for p in posts if p.startswith("/slack/")} == set(paths.values())
    assert {urlparse(url).netloc for url in urls.values()} == {"honk.example.com"}
    assert data["settings"]["interactivity"]["is_enabled"] is True


@pytest.mark.parametrize("event", sorted(EVENT_SCOPES))
def test_each_event_the_manifest_subscribes_to_is_a_request(event: str) -> None:
    assert event in manifest()["settings"]["event_subscriptions"]["bot_events"]
    kind, _, channel_type = event.partition(".")
    body: dict[str, Any] = {"type": kind, "user": "U1", "text": "fix it in octo-org/calc"}
    body |= {"channel": "C1", "ts": "1.1"} | (
        {"channel_type": channel_type} if channel_type else {}
    )
    payload = {"type": "event_callback", "event_id": "Ev1", "team_id": "T1", "event": body}
    found = parsing.event_request(payload)
    assert found is not None and found[1].repo == "octo-org/calc"


def test_a_message_in_a_channel_is_not_a_request() -> None:
    """So the manifest needs no channel history scope: only mentions and DMs are read."""
    event = {"type": "message", "channel_type": "channel", "user": "U1", "text": "hi", "ts": "1"}
    assert parsing.event_request({"type": "event_callback", "event": event}) is None
    assert not any(
        "history" in s and s != "im:history" for s in manifest()["oauth_config"]["scopes"]["bot"]
    )


def test_docs_slack_says_why_each_scope_is_asked_for() -> None:
    documented = {
        backticked(cells[0]) for cells in table_rows(SLACK_DOC.read_text(), ("scope", "why"))
    }
    assert documented == set(manifest()["oauth_config"]["scopes"]["bot"])


def test_the_slack_section_points_to_the_manifest() -> None:
    text = SLACK_DOC.read_text()
    assert "slack-app.yml" in text and "From a manifest" in text
    assert "slack-app.yml" in README.read_text()


# -- Links ------------------------------------------------------------------------------------

PAGES = sorted([README, ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")])
_LINK = re.compile(r"\]\(([^)\s]+)\)|<img src=\"([^\"]+)\"")
_README_SECTION = re.compile(r"README(?:'s)? \(?\"([^\"]+)\"")


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation gone, spaces as hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def link_problems(page: Path) -> list[str]:
    """Relative links and pictures of a Markdown page that lead nowhere: a file, or a
    heading (GitHub's anchor for it) that is not there."""
    problems = []
    for match in _LINK.finditer(page.read_text()):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            problems.append(f"{_name(page)} links to {target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{_name(page)} links to {target}: no such heading")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_docs_links_resolve(page: Path) -> None:
    assert link_problems(page) == []


def test_a_broken_link_is_reported(tmp_path: Path) -> None:
    page = ROOT / "docs" / "configuration.md"
    assert github_anchor("Review statistics: `honk stats`") == "review-statistics-honk-stats"
    assert "the-sandbox" in anchors(ROOT / "docs" / "security.md")
    broken = tmp_path / "page.md"
    broken.write_text(f"[a]({page}#no-such-heading) [b]({tmp_path}/gone.md) [c](#the-sandbox)\n")
    assert link_problems(broken) == [
        f"{broken} links to {page}#no-such-heading: no such heading",
        f"{broken} links to {tmp_path}/gone.md: no such file",
        f"{broken} links to #the-sandbox: no such heading",
    ]


def stale_readme_pointers(texts: Mapping[str, str], readme: str) -> list[str]:
    """`README "Title"` (or `README's "Title"`) in code and pages, where the README has no
    `## Title`: comments and messages pointed at sections that have moved to docs/."""
    sections = {h.strip() for h in re.findall(r"^## (.+)$", readme, re.M)}
    return [
        f'{where}: README "{title}" (no such section)'
        for where, text in sorted(texts.items())
        for title in _README_SECTION.findall(text)
        if title not in sections
    ]


def test_no_code_or_page_points_at_a_readme_section_that_is_gone() -> None:
    places = [*APP.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").glob("*.py")]
    places += [*PAGES, ROOT / "app.yml", SLACK_MANIFEST, ROOT / ".ci" / "run"]
    texts = {_name(p): p.read_text() for p in places if p != Path(__file__).resolve()}
    assert stale_readme_pointers(texts, README.read_text()) == []
    assert stale_readme_pointers(
        {"app/config.py": '# limits (docs: README "Security")', "app.yml": 'README ("Commands")'},
        README.read_text(),
    ) == ['app/config.py: README "Security" (no such section)']


# -- docs/render_slack_card.py ----------------------------------------------------------------

RENDERER = ROOT / "docs" / "render_slack_card.py"


def renderer() -> Any:
    spec = importlib.util.spec_from_file_location("render_slack_card", RENDERER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_card_renderer_refuses_without_an_emoji_font(tmp_path: Path) -> None:
    """With no font that has the card's emoji, nothing is written and it says why."""
    no_fonts = tmp_path / "fonts.conf"
    no_fonts.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n'
        f"<fontconfig><cachedir>{tmp_path / 'cache'}</cachedir></fontconfig>\n"
    )
    committed = (ROOT / "docs" / "slack-card.png").read_bytes()
    result = subprocess.run(
        [sys.executable, str(RENDERER), "--overwrite"],
        env={**os.environ, "FONTCONFIG_FILE": str(no_fonts)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "no installed font has" in result.stderr and "fonts-noto-color-emoji" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert (ROOT / "docs" / "slack-card.png").read_bytes() == committed


def test_the_emoji_check_finds_characters_an_installed_font_has() -> None:
    module = renderer()
    assert set(module.missing_emoji()) <= {module.AVATAR, *module.EMOJI.values()}
    # Letters every font has: the same query finds them, so a refusal means what it says.
    module.AVATAR, module.EMOJI = "A", {":b:": "B"}
    assert module.missing_emoji() == []


def test_the_card_renderer_writes_beside_the_committed_picture_unless_told() -> None:
    module = renderer()
    picture, block_kit = module.output_paths(overwrite=False)
    assert picture.parent == ROOT / "docs" and picture.suffix == ".png"
    assert picture.name != "slack-card.png" and block_kit.name != "slack-card.json"
    assert module.output_paths(overwrite=True) == (
        ROOT / "docs" / "slack-card.png",
        ROOT / "docs" / "slack-card.json",
    )
