"""A repository's own environment, piece by piece: `env:` and its refusals, the JSONC reader,
devcontainer.json as Honk takes it, what staging keeps out of the commit (real git), the
variables in a real bwrap sandbox, a refusal explained, the texts that tell people."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from app.models import Usage
from app.network_policy import Cap, Presets, compile_rules
from app.repo_config import RepoConfig, RepoConfigError, parse_config
from app.runs.devcontainer import DevcontainerError, parse_devcontainer, pick_devcontainer
from app.runs.environment import describe_devcontainer, plan_environment
from app.runs.jsonc import JsoncError, read_jsonc
from app.runs.network import explain_refusals
from app.runs.texts import (
    ChangeReport,
    FailureDetails,
    Verification,
    left_out_section,
    pr_body,
    tail,
)
from app.untrusted import code_block
from app.workspace.changes import build_output
from app.workspace.checkout import Checkout
from app.workspace.egress_config import Record
from app.workspace.egress_summary import NetworkSummary
from app.workspace.sandbox import Sandbox

WORKSPACE = "/workspace/calc"

# -- env: -------------------------------------------------------------------------------------


def test_env_is_a_mapping_of_plain_variables() -> None:
    config = parse_config(
        "env:\n  NODE_ENV: test\n  PORT: 8080\n  RATIO: 1.5\n  PYTHONPATH: src\n  EMPTY: ''\n"
        "  GOPROXY: https://goproxy.example.com\n"
    )
    assert config.env == (
        ("NODE_ENV", "test"),
        ("PORT", "8080"),
        ("RATIO", "1.5"),
        ("PYTHONPATH", "src"),
        ("EMPTY", ""),
        # A module mirror, not an HTTP proxy: fetched through the phase's proxy like any host.
        ("GOPROXY", "https://goproxy.example.com"),
    )
    assert "env" in config.fields_set


@pytest.mark.parametrize(
    "name",
    [
        "GITHUB_TOKEN",
        "npm_token",
        "API_KEY",
        "stripe_key",
        "DB_PASSWORD",
        "password",
        "PGPASSWORD",
        "CLIENT_SECRET",
        "SECRET_KEY_BASE",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "AWS_SECRET_ACCESS_KEY",
    ],
)
def test_a_secret_like_name_is_refused(name: str) -> None:
    with pytest.raises(RepoConfigError) as caught:
        parse_config(f"env:\n  {name}: x\n")
    assert str(caught.value) == (
        f".github/honk.yml: env: {name} is refused: it names a secret (a token, key, password "
        "or credentials): secrets never go to the agent, and a value written in the repository "
        "is no secret"
    )


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("PATH", "set by Honk"),
        ("Path", "set by Honk"),
        ("HOME", "set by Honk"),
        ("CARGO_HOME", "set by Honk"),
        ("LD_PRELOAD", "changes how Honk's sandbox works"),
        ("LD_LIBRARY_PATH", "changes how Honk's sandbox works"),
        ("http_proxy", "changes how Honk's sandbox works"),
        ("HTTPS_PROXY", "changes how Honk's sandbox works"),
        ("NO_PROXY", "changes how Honk's sandbox works"),
        ("ALL_PROXY", "changes how Honk's sandbox works"),
        ("npm_config_proxy", "changes how Honk's sandbox works"),
        ("BASH_ENV", "changes how Honk's sandbox works"),
        ("ENV", "changes how Honk's sandbox works"),
        ("PROMPT_COMMAND", "changes how Honk's sandbox works"),
        ("GIT_DIR", "changes how Honk's sandbox works"),
        ("GIT_CONFIG_GLOBAL", "changes how Honk's sandbox works"),
        ("HONK_ANYTHING", "changes how Honk's sandbox works"),
        ("PYTHONHOME", "changes how Honk's sandbox works"),
        ("TMPDIR", "changes how Honk's sandbox works"),
        ("1ABC", "is not a variable name"),
        ("A-B", "is not a variable name"),
    ],
)
def test_a_name_honk_sets_or_the_sandbox_depends_on_is_refused(name: str, why: str) -> None:
    with pytest.raises(RepoConfigError, match=f"env: {name} is refused: it .*{why}"):
        parse_config(f"env:\n  {name}: x\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("env: [A, B]\n", "env must be a mapping of variable names to values, not a list"),
        ("env: FOO=1\n", "env must be a mapping of variable names to values, not a string"),
        ("env:\n  CI: true\n", "env.CI must be a string \\(quote it\\), not true or false"),
        ("env:\n  CI: yes\n", "env.CI must be a string \\(quote it\\), not true or false"),
        ("env:\n  X:\n", "env.X must be a string \\(quote it\\), not empty"),
        ("env:\n  X: [1]\n", "env.X must be a string \\(quote it\\), not a list"),
        ("env:\n  X: ghp_abcdefABCDEF0123\n", "env.X is refused: its value looks like a secret"),
        (f"env:\n  X: {'y' * 4097}\n", "env.X is refused: its value is longer than 4096"),
        (
            "env:\n" + "".join(f"  V{i}: x\n" for i in range(65)),
            "env holds 65 variables; at most 64",
        ),
    ],
)
def test_a_malformed_env_names_the_problem(text: str, message: str) -> None:
    with pytest.raises(RepoConfigError, match=message):
        parse_config(text)


def test_the_repositorys_env_wins_over_the_org_default_name_by_name() -> None:
    org = parse_config("env:\n  CI: '1'\n  NODE_ENV: production\n", "octo/.github:x")
    own = parse_config("env:\n  NODE_ENV: test\n  EXTRA: 'yes'\n")
    assert own.merged_over(org).env == (("CI", "1"), ("NODE_ENV", "test"), ("EXTRA", "yes"))
    assert parse_config("verify: x\n").merged_over(org).env == org.env


# -- JSON with comments ---------------------------------------------------------------------


def test_jsonc_comments_and_trailing_commas_strings_untouched() -> None:
    text = """\ufeff{
  // a line comment, with "quotes" and a , before }
  "url": "http://example.org/*not a comment*/", /* a block
  comment */ "path": "a//b",
  "quote": "say \\"hi\\" // still a string",
  "list": [1, 2, /* three */ 3,],
  "nested": {"a": [], "b": {},},
}
"""
    assert read_jsonc(text) == {
        "url": "http://example.org/*not a comment*/",
        "path": "a//b",
        "quote": 'say "hi" // still a string',
        "list": [1, 2, 3],
        "nested": {"a": [], "b": {}},
    }


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ('{\n  // fine\n  "a": 1\n  "b": 2\n}', 4, 3),  # a missing comma
        ('{\n  "a": /* never closed\n}', 2, 8),
        ('{"a": [1,,2]}', 1, 10),
        ("", 1, 1),
    ],
)
def test_jsonc_errors_name_the_files_own_line_and_column(text: str, line: int, column: int) -> None:
    with pytest.raises(JsoncError) as caught:
        read_jsonc(text)
    assert (caught.value.line, caught.value.column) == (line, column)


def test_jsonc_reads_what_json_reads() -> None:
    value = {"a": ["x,]", "/*", "//", "\\", 1.5, None, True], "b": {"c": "}"}}
    assert read_jsonc(json.dumps(value, indent=2)) == value


# -- devcontainer.json ------------------------------------------------------------------------


def test_the_spec_order_picks_the_first_devcontainer() -> None:
    both = [".devcontainer.json", ".devcontainer/devcontainer.json", ".devcontainer/b/x"]
    assert pick_devcontainer(both) == ".devcontainer/devcontainer.json"
    assert pick_devcontainer([".devcontainer.json", "src/a.py"]) == ".devcontainer.json"
    nested = [".devcontainer/python/devcontainer.json", ".devcontainer/node/devcontainer.json"]
    assert pick_devcontainer(nested) == ".devcontainer/node/devcontainer.json"
    deeper = [".devcontainer/a/b/devcontainer.json", "x/.devcontainer.json"]
    assert pick_devcontainer(deeper) is None


DEVCONTAINER = """{
  // Made by VS Code
  "name": "calc",
  "image": "mcr.microsoft.com/devcontainers/python:3.12",
  "features": {"ghcr.io/devcontainers/features/node:1": {}},
  "forwardPorts": [8000],
  "containerEnv": {
    "CALC_MODE": "strict",
    "DATA_DIR": "${containerWorkspaceFolder}/data",
    "PATH": "${containerEnv:PATH}:/opt/tools",
    "GH_TOKEN": "${localEnv:GH_TOKEN}",
    "HOST_USER": "${localEnv:USER}",
  },
  "remoteEnv": {"CALC_MODE": "lenient", "UNSET_ME": null},
  "postCreateCommand": {
    "deps": "pip install -e . && echo ${localEnv:HOME:/home/x}",
    "tools": ["npm", "install", "--prefix", "tools dir"],
  },
  "onCreateCommand": "echo made > ${containerWorkspaceFolder}/.made",
  "updateContentCommand": ["make", "data"],
  "postStartCommand": "make serve",
  "customizations": {"vscode": {"extensions": ["ms-python.python"]}},
}
"""


def test_a_devcontainer_gives_its_variables_and_creation_commands_in_order() -> None:
    found = parse_devcontainer(DEVCONTAINER, ".devcontainer/devcontainer.json", WORKSPACE)
    assert found.env == (("CALC_MODE", "lenient"), ("DATA_DIR", f"{WORKSPACE}/data"))
    assert [(c.origin, c.line) for c in found.commands] == [
        ("onCreateCommand", f"echo made > {WORKSPACE}/.made"),
        ("updateContentCommand", "make data"),
        ("postCreateCommand (deps)", "pip install -e . && echo /home/x"),
        ("postCreateCommand (tools)", "npm install --prefix 'tools dir'"),
    ]
    assert found.not_done == ("image", "features", "forwardPorts", "postStartCommand")
    assert [name for name, _why in found.dropped] == ["PATH", "GH_TOKEN", "HOST_USER"]
    dropped = dict(found.dropped)
    assert "set by Honk" in dropped["PATH"]
    assert "names a secret" in dropped["GH_TOKEN"]
    assert dropped["HOST_USER"] == "its value reads ${localEnv:USER}, which Honk does not give"
    assert found.parallel == ("postCreateCommand",)
    said = describe_devcontainer(found)
    assert said[0] == (
        "Honk set up this run from `.devcontainer/devcontainer.json`: 2 variables; "
        "`onCreateCommand`, `updateContentCommand`, `postCreateCommand` as setup, in that order."
    )
    assert "ran one after another (the spec runs them at once)" in said[1]
    assert said[2] == (
        "Not done (Honk runs the repository in its own sandbox, not in a container): `image`, "
        "`features`, `forwardPorts`, `postStartCommand`."
    )
    assert said[3].startswith("Variables left out: `PATH` (it is set by Honk")
    assert "`${localEnv:HOME:/home/x}`" in said[4]


def test_container_env_in_a_command_is_the_sandboxs_own() -> None:
    found = parse_devcontainer(
        '{"postCreateCommand": "echo ${containerEnv:HOME} $HOME"}', ".devcontainer.json", WORKSPACE
    )
    assert found.commands[0].line == "echo ${HOME} $HOME"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1\n "b": 2}', "is not valid JSON with comments: line 2, column 2"),
        ("[1]", "must hold an object, not list"),
        ('{"postCreateCommand": 3}', "postCreateCommand must be a string, an array or an object"),
        ('{"onCreateCommand": [1, 2]}', "onCreateCommand must be a command"),
        ('{"postCreateCommand": {"a": {"b": 1}}}', "postCreateCommand.a must be a command"),
    ],
)
def test_an_unreadable_devcontainer_names_the_problem(text: str, message: str) -> None:
    with pytest.raises(DevcontainerError, match=message):
        parse_devcontainer(text, ".devcontainer.json", WORKSPACE)


def test_honk_yml_setup_wins_and_env_wins_name_by_name() -> None:
    found = parse_devcontainer(
        '{"containerEnv": {"A": "dc", "B": "dc"}, "postCreateCommand": "make"}',
        ".devcontainer.json",
        WORKSPACE,
    )
    own = parse_config("env:\n  B: yml\n")
    planned = plan_environment(own, found)
    assert planned.env == (("A", "dc"), ("B", "yml"))
    assert [c.line for c in planned.commands] == ["make"]
    assert planned.comment == planned.notes and planned.notes
    with_setup = parse_config("setup: [make deps]\nenv:\n  B: yml\n")
    unused = plan_environment(with_setup, None, unused=".devcontainer.json")
    assert [c.line for c in unused.commands] == ["make deps"] and unused.env == (("B", "yml"),)
    assert unused.notes == (
        "`.devcontainer.json` was not used: `.github/honk.yml` names `setup:`, which wins over "
        "a devcontainer.json.",
    )
    assert unused.comment == ()  # the run page only
    assert plan_environment(RepoConfig(), None).notes == ()


# -- what is committed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("target/debug/calc", "target/"),
        ("crates/a/target/x.rlib", "crates/a/target/"),
        ("node_modules/left-pad/index.js", "node_modules/"),
        ("pkg/__pycache__/m.cpython-311.pyc", "pkg/__pycache__/"),
        ("calc.egg-info/PKG-INFO", "calc.egg-info/"),
        ("build/lib/calc.py", "build/"),
        ("vendor/github.com/x/y.go", "vendor/"),
        ("m.pyc", "m.pyc"),
        (".coverage", ".coverage"),
        ("Cargo.lock", "Cargo.lock"),
        ("web/package-lock.json", "web/package-lock.json"),
        ("src/calc.py", None),
        ("targets.txt", None),
        ("docs/build.md", None),
        ("tools/build/make.py", None),  # tools/build is tracked
    ],
)
def test_build_output_by_toolchain_convention(path: str, label: str | None) -> None:
    assert build_output(path, frozenset({"tools", "tools/build"})) == label


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Checkout:
    """A clone with a tracked `tools/build/` directory and a tracked lock file; no .gitignore
    rule for target/ (the repository's .gitignore even un-ignores dist/)."""
    root = tmp_path / "calc"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    files = {
        "calc.py": "def add(a, b):\n    return a - b\n",
        "package.json": "{}\n",
        "package-lock.json": '{"v": 1}\n',
        "tools/build/make.py": "print('tool')\n",
        ".gitignore": "deps/\n!dist/\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "base")
    start = _git(root, "rev-parse", "HEAD")
    return Checkout(root, "octo/calc", "honk/1-x", "main", "", start_sha=start)


async def test_setups_products_and_build_output_are_never_committed(checkout: Checkout) -> None:
    root = checkout.path
    # Setup: an ignored directory, an untracked directory, a rewritten tracked lock file.
    (root / "deps").mkdir()
    (root / "deps" / "lib.py").write_text("x = 1\n")
    (root / "generated").mkdir()
    (root / "generated" / "data.json").write_text("{}\n")
    (root / "package-lock.json").write_text('{"v": 2}\n')
    products = await checkout.record_setup_products()
    assert products.untracked == {"deps/", "generated/"}
    assert set(products.changed) == {"package-lock.json"}
    assert not await checkout.has_changes()  # setup alone is no change

    # The agent: a fix, a new source file, a build's target/ and dist/, a new file in the
    # tracked tools/build/, a new lock file, a .pyc.
    (root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "util.py").write_text("ONE = 1\n")
    for name in ("target/debug/calc", "target/release/calc", "dist/calc-1.0.tar.gz"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("binary\n")
    (root / "tools" / "build" / "check.py").write_text("print('check')\n")
    (root / "Cargo.lock").write_text("# lock\n")
    (root / "calc.pyc").write_bytes(b"\x00")

    staged = await checkout.stage()
    assert sorted(c.path for c in staged) == ["calc.py", "tools/build/check.py", "util.py"]
    assert [item.describe() for item in checkout.left_out] == [  # in git's order of paths
        "Cargo.lock (build output)",
        "calc.pyc (build output)",
        "dist/ (build output)",
        "generated/ (made or changed by setup)",
        "package-lock.json (made or changed by setup)",
        "target/ (build output, 2 files)",
    ]
    diff = await checkout.unified_diff()
    assert "util.py" in diff and "target/" not in diff and "package-lock" not in diff
    assert await checkout.changed_files() == ["calc.py", "tools/build/check.py", "util.py"]
    sha = await checkout.commit_staged("fix", author_name="h", author_email="h@e")
    assert sha is not None
    committed = _git(checkout.path, "show", "--name-only", "--format=", "HEAD").split()
    assert sorted(committed) == ["calc.py", "tools/build/check.py", "util.py"]
    # The work tree keeps them all.
    assert (root / "target" / "debug" / "calc").exists()
    assert (root / "package-lock.json").read_text() == '{"v": 2}\n'


async def test_a_lock_file_the_agent_changes_after_setup_is_committed(checkout: Checkout) -> None:
    (checkout.path / "package-lock.json").write_text('{"v": 2}\n')  # setup's npm install
    await checkout.record_setup_products()
    (checkout.path / "package-lock.json").write_text('{"v": 3, "dep": "left-pad"}\n')
    staged = await checkout.stage()
    assert [c.path for c in staged] == ["package-lock.json"] and checkout.left_out == []


# -- the variables in the sandbox -------------------------------------------------------------


@pytest.mark.bwrap
async def test_the_repositorys_variables_reach_a_sandboxed_command(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, timeout=30)
    sandbox.repository_env = {"CALC_MODE": "strict", "PATH": "/nowhere", "HOME": "/x"}
    result = await sandbox.run(
        'echo "$CALC_MODE|$HOME"; command -v bash; env | grep -c ^CALC_MODE='
    )
    lines = result.output.split()
    assert result.exit_code == 0, result.output
    # Honk's own values win even if a vetted list ever named them.
    assert lines[0] == "strict|/tmp" and lines[1].endswith("/bash") and lines[2] == "1"


# -- a refusal explained ----------------------------------------------------------------------


def _cap(allow: tuple[str, ...] | None, presets: dict[str, tuple[str, ...]] | None = None) -> Cap:
    return Cap(allow, Presets.with_overrides(presets or {}))


def test_a_refused_host_gets_its_reason_and_what_would_allow_it() -> None:
    cap = _cap(None)
    rules = compile_rules(["pypi"], setting="setup_network", cap=cap)
    summary = NetworkSummary(
        "setup",
        (
            Record("registry.npmjs.org", 443, "CONNECT", reason="not allowed"),
            Record("registry.npmjs.org", 443, "CONNECT", reason="not allowed"),  # once
            Record("evil.example", 443, "CONNECT", reason="not allowed"),
            Record("registry.yarnpkg.com", 443, "CONNECT", reason="10.1.2.3: a private address"),
            Record("10.0.0.9", 443, "CONNECT", reason="not allowed"),
            Record("pypi.org", 443, "CONNECT", allowed=True),
        ),
    )
    lines = explain_refusals(summary, rules, cap, "setup")
    assert lines[0] == (
        "`registry.npmjs.org` was refused: it is not in `setup_network:` in `.github/honk.yml`. "
        "To allow it, add the preset `npm` there"
    )
    assert lines[1] == (
        "`evil.example` was refused: it is not in `setup_network:` in `.github/honk.yml`, and "
        "this Honk's operator does not let repositories name it: ask the operator to allow it "
        "in `HONK_NETWORK_ALLOW`, then add it to `setup_network:` in `.github/honk.yml`"
    )
    assert lines[2].startswith(
        "`registry.yarnpkg.com` resolves to 10.1.2.3, a private address: Honk's proxy reaches "
        "such an address only through an exact `host:port` entry the operator vouches for"
    )
    assert lines[2].endswith(
        "Ask the operator to allow it in the preset it comes from: "
        "`npm=registry.npmjs.org registry.yarnpkg.com:443` in `HONK_NETWORK_PRESETS`"
    )
    assert "is an IP address" in lines[3] and len(lines) == 4
    assert explain_refusals(None, rules, cap, "setup") == ()


def test_a_private_host_outside_any_preset_is_advised_with_the_operators_cap() -> None:
    cap = _cap(("pypi", "*"))
    rules = compile_rules(["pypi"], setting="setup_network", cap=cap)
    summary = NetworkSummary(
        "setup", (Record("localhost", 4873, "GET", reason="127.0.0.1: a loopback address"),)
    )
    (line,) = explain_refusals(summary, rules, cap, "setup")
    assert line.startswith("`localhost` resolves to 127.0.0.1, a loopback address")
    assert line.endswith(
        "with `HONK_NETWORK_ALLOW=pypi * localhost:4873` and add `localhost:4873` to "
        "`setup_network:`"
    )


# -- texts ------------------------------------------------------------------------------------


def test_a_code_block_nothing_inside_closes() -> None:
    block = code_block("```\n@team <img src=x> ````\nend")
    fence = block.split("text", 1)[0]
    assert fence == "`````" and block.endswith("\n" + fence)


def test_the_tail_keeps_the_last_lines() -> None:
    output = "\n".join(f"line {i}" for i in range(100))
    assert tail(output).splitlines() == [f"line {i}" for i in range(80, 100)]
    assert len(tail("x" * 10_000)) == 2_000


def test_a_failed_setups_details_in_markdown() -> None:
    details = FailureDetails("npm ci", "npm ERR! 404 Not Found", ("`a` was refused: why",))
    assert details.markdown() == (
        "The last lines it printed:\n\n```text\nnpm ERR! 404 Not Found\n```\n\n"
        "- `a` was refused: why"
    )


def test_the_pr_body_lists_what_was_left_out_and_a_failed_verifications_tail() -> None:
    failed = Verification("pytest -q", False, "collected 1 item\n" + "E   assert 1 == 2\n" * 3)
    body = pr_body(
        ChangeReport(7, "Fixed.", failed, Usage(), "claude-sonnet-4-6"),
        issue_number=3,
        left_out=tuple(f"f{i}.o (build output)" for i in range(25)),
    )
    assert "Honk ran `pytest -q`: **failed**.\n\nThe last lines it printed:\n\n```text\n" in body
    assert "E   assert 1 == 2\n```" in body
    assert "## Left out of the commit" in body and "- `f19.o (build output)`" in body
    assert "f20.o" not in body and "- and 5 more" in body
    assert left_out_section(("target/ (build output, 3 files)",)).endswith(
        "- `target/ (build output, 3 files)`"
    )
    passed = pr_body(
        ChangeReport(
            7, "Fixed.", Verification("pytest -q", True, "1 passed"), Usage(), "claude-sonnet-4-6"
        ),
        issue_number=3,
    )
    assert "last lines" not in passed and "Left out" not in passed


def test_a_long_name_from_the_file_is_cut_before_it_is_quoted() -> None:
    found = parse_devcontainer('{"' + "x" * 500 + '": 1}', ".devcontainer.json", WORKSPACE)
    (_used, not_done) = describe_devcontainer(found)
    assert len(not_done) < 200 and not_done.count("`") == 2 and "…" in not_done
