"""`.github/honk.yml`: good, partial and malformed files; the org-wide default; the SHA cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from app.config import Settings
from app.github.auth import GitHubApp
from app.github.client import GitHubClient
from app.repo_config import (
    CONFIG_PATH,
    ConfigCache,
    RepoConfig,
    RepoConfigError,
    load_repo_config,
    parse_config,
)
from tests.fakes.github import FakeGitHub

FULL = """
verify: pytest -q
setup:
  - pip install -e .
  - npm ci
network: [pypi.org, "*.npmjs.org", "proxy.internal:3128"]
model: claude-opus-4-1
limits:
  turns: 60
  minutes: 45.5
  ci_repair_rounds: 0
slack_channel: "#widgets"
label: fix-it
paths: ["src/**", "tests/*.py"]
"""

ORG_DEFAULT = """
verify: make test
network: [pypi.org]
model: claude-sonnet-4-5
limits: {turns: 20}
slack_channel: "#eng"
"""


def test_full_file() -> None:
    config = parse_config(FULL)
    assert config.verify == "pytest -q"
    assert config.setup == ("pip install -e .", "npm ci")
    assert config.network == ("pypi.org", "*.npmjs.org", "proxy.internal:3128")
    assert config.model == "claude-opus-4-1"
    assert (config.max_turns, config.max_minutes, config.ci_repair_rounds) == (60, 45.5, 0)
    assert config.slack_channel == "#widgets" and config.label == "fix-it"
    assert config.path_allowed("src/app/main.py") and config.path_allowed("tests/test_a.py")
    assert not config.path_allowed("setup.py")
    assert config.source == CONFIG_PATH


def test_partial_file_leaves_the_rest_to_defaults() -> None:
    config = parse_config("verify: npm test\nlimits:\n  minutes: 10\n")
    assert config.verify == "npm test" and config.max_minutes == 10.0
    assert config.setup == () and config.network == () and config.paths == ()
    assert config.model is None and config.max_turns is None and config.label is None
    assert config.path_allowed("anything/at/all.txt")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_is_the_defaults(text: str) -> None:
    assert parse_config(text) == RepoConfig(source=CONFIG_PATH)


def test_verify_as_a_list_runs_each_command() -> None:
    config = parse_config("verify: [ruff check ., pytest]\n")
    assert config.verify == "( ruff check . ) && ( pytest )"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("verify: [unclosed\n", r"not valid YAML at line 2"),
        ("verify: a\n  b: c\n", r"not valid YAML at line 2.*mapping values are not allowed"),
        ("- verify\n- setup\n", "must be a mapping of settings, not a list"),
        ("verfiy: pytest\n", r"unknown setting\(s\) verfiy \(did you mean verify\?\)"),
        ("setup: 5\n", "setup must be a string or a list of strings"),
        ("verify: {a: b}\n", "verify must be a string, not dict"),
        ("model: true\n", "model must be a string"),
        ("limits: 5\n", "limits must be a mapping"),
        ("limits: {turn: 5}\n", r"unknown limit 'turn' \(did you mean turns\?\)"),
        ("limits: {turns: 0}\n", "limits.turns must be a whole number of at least 1"),
        ("limits: {turns: 2.5}\n", "limits.turns must be a whole number"),
        ("limits: {minutes: ten}\n", "limits.minutes must be a number"),
        ("limits: {minutes: 0}\n", "limits.minutes must be more than 0"),
        ("limits: {ci_repair_rounds: -1}\n", "ci_repair_rounds must be a whole number >= 0"),
        ("network: https://pypi.org/simple\n", "not a host entry like pypi.org"),
        ("network: [off, pypi]\n", "`off` cannot be mixed"),
        ("network: true\n", "network is `off`, a preset, or a list of hosts"),
        ("setup_network: [10.0.0.1]\n", "an IP address is allowed only with its port"),
        ("paths: ['../outside/*']\n", "globs inside the repository"),
        ("paths: ['//etc/*']\n", "globs inside the repository"),  # `/x` is x at the root
        ("paths: ['src/../../etc']\n", "globs inside the repository"),
        ("paths: ['/']\n", "not a valid glob"),
        ("paths: ['!']\n", "not a valid glob"),
        ("paths: ['src/[z-a].py']\n", "not a valid glob"),
        ("label: ''\n", "label must not be empty"),
        (f"label: {'x' * 51}\n", "label must be 1 to 50 characters"),
    ],
)
def test_malformed_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(RepoConfigError, match=message) as caught:
        parse_config(text, source="octo/widgets:.github/honk.yml")
    assert str(caught.value).startswith("octo/widgets:.github/honk.yml")


def test_repo_file_over_org_default() -> None:
    base = parse_config(ORG_DEFAULT, "octo/.github:.github/honk.yml")
    merged = parse_config("verify: pytest\nnetwork: []\nlimits: {minutes: 5}\n").merged_over(base)
    assert merged.verify == "pytest"  # the repository's own
    assert merged.network == ()  # written as empty: clears the org default
    assert merged.model == "claude-sonnet-4-5" and merged.slack_channel == "#eng"  # inherited
    assert merged.max_turns == 20 and merged.max_minutes == 5.0
    assert merged.source == CONFIG_PATH


def test_hand_built_config_merges_what_it_sets() -> None:
    merged = RepoConfig(model="m").merged_over(RepoConfig(verify="make", network=("a.io",)))
    assert (merged.model, merged.verify, merged.network) == ("m", "make", ("a.io",))


def test_cache_parses_one_blob_once_per_file() -> None:
    cache = ConfigCache()
    first = cache.parse("verify: a\n", "sha1", "x/.github:.github/honk.yml")
    assert cache.parse("ignored: because cached\n", "sha1", "x/.github:.github/honk.yml") is first
    other = cache.parse("verify: a\n", "sha1", CONFIG_PATH)
    assert other.source == CONFIG_PATH  # same bytes elsewhere: its own name in messages


# --- loading through the contents API ---------------------------------------------------

ORG = "octo"
REPO = f"{ORG}/widgets"


@pytest.fixture
async def gh(
    base_settings: Settings, fake_github: FakeGitHub
) -> AsyncIterator[tuple[GitHubApp, Any]]:
    settings = base_settings.with_overrides(github_api_url=fake_github.url)
    async with aiohttp.ClientSession() as session:
        app = GitHubApp(settings.github, session)
        yield app, fake_github


async def client_for(gh: tuple[GitHubApp, Any], repos: list[str] | None) -> GitHubClient:
    app, fake = gh
    fake.add_installation(1, account=ORG, repos=repos)
    return await app.installation_client(1)


async def test_load_merges_the_org_default(gh: tuple[GitHubApp, Any]) -> None:
    fake = gh[1]
    fake.add_repo(f"{ORG}/.github", files={CONFIG_PATH: ORG_DEFAULT})
    fake.add_repo(REPO, files={CONFIG_PATH: "verify: pytest\n", "README.md": "w\n"})
    client = await client_for(gh, None)
    cache = ConfigCache()
    config = await load_repo_config(client, REPO, "main", cache)
    assert config.verify == "pytest" and config.model == "claude-sonnet-4-5"
    assert config.max_turns == 20

    again = await load_repo_config(client, REPO, "main", cache)
    assert again == config and len(cache.by_sha) == 2  # both blobs parsed once
    fake.commit_files(REPO, {CONFIG_PATH: "verify: make check\n"})
    changed = await load_repo_config(client, REPO, "main", cache)
    assert changed.verify == "make check" and len(cache.by_sha) == 3


async def test_load_without_any_file_is_the_defaults(gh: tuple[GitHubApp, Any]) -> None:
    gh[1].add_repo(REPO)
    client = await client_for(gh, None)
    assert await load_repo_config(client, REPO, None, ConfigCache()) == RepoConfig()


async def test_org_default_out_of_reach_is_no_default(gh: tuple[GitHubApp, Any]) -> None:
    """Installed on selected repositories: the org's `.github` answers 403, not an error."""
    fake = gh[1]
    fake.add_repo(f"{ORG}/.github", files={CONFIG_PATH: ORG_DEFAULT})
    fake.add_repo(REPO, files={CONFIG_PATH: "limits: {turns: 7}\n"})
    client = await client_for(gh, [REPO])
    config = await load_repo_config(client, REPO, None, ConfigCache())
    assert config.max_turns == 7 and config.model is None


async def test_malformed_org_default_names_its_file(gh: tuple[GitHubApp, Any]) -> None:
    fake = gh[1]
    fake.add_repo(f"{ORG}/.github", files={CONFIG_PATH: "limits: [1, 2]\n"})
    fake.add_repo(REPO)
    client = await client_for(gh, None)
    with pytest.raises(RepoConfigError, match=r"^octo/\.github:\.github/honk\.yml: limits"):
        await load_repo_config(client, REPO, None, ConfigCache())


async def test_malformed_repo_file_raises(gh: tuple[GitHubApp, Any]) -> None:
    gh[1].add_repo(REPO, files={CONFIG_PATH: "verify: [\n"})
    client = await client_for(gh, None)
    with pytest.raises(RepoConfigError, match="not valid YAML"):
        await load_repo_config(client, REPO, None, ConfigCache())
