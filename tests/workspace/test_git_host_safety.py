"""Host-side git runs nothing the agent planted, on the run's checkout and on a retry's: nested
repositories' config, .gitattributes and .gitmodules tricks, option-like file names. `.git`
cannot be reached through hard links, renames or symlinks. Real git, real bwrap."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from app.agent.tools import ToolBox
from app.config import Settings
from app.models import RunState
from app.runs.texts import branch_name
from app.web import SERVICES, create_app
from app.workspace.checkout import ChangeRefused, Checkout
from app.workspace.mirror import Workspaces, split_repo
from app.workspace.sandbox import Sandbox
from tests.calc_world import ISSUE, REPO, calc_settings, fixing_script, labeled, seed_calc
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.git_http import run_git
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, eventually, post_webhook

pytestmark = pytest.mark.bwrap

AUTHOR = {"author_name": "honk[bot]", "author_email": "honk@example.com"}
OPTION_LIKE = ("--upload-pack=touch pwned", "--exec=touch pwned", "-n", "--output=pwned")


def nested_config(markers: Path) -> dict[str, str]:
    """Every setting of a repository's own config that makes git run a command."""
    run = {name: f"touch {markers}/{name}" for name in (
        "fsmonitor", "clean", "smudge", "process", "textconv", "external", "credential",
        "gpg", "pager", "editor", "ssh", "askpass", "packobjects", "sequence",
    )}  # fmt: skip
    return {
        "core.fsmonitor": run["fsmonitor"],
        "core.hooksPath": "hooks",
        "filter.evil.clean": run["clean"],
        "filter.evil.smudge": run["smudge"],
        "filter.evil.process": run["process"],
        "filter.evil.required": "true",
        "diff.evil.textconv": run["textconv"],
        "diff.external": run["external"],
        "credential.helper": f"!{run['credential']}",
        "gpg.program": run["gpg"],
        "commit.gpgSign": "true",
        "core.pager": run["pager"],
        "core.editor": run["editor"],
        "core.sshCommand": run["ssh"],
        "core.askPass": run["askpass"],
        "uploadpack.packObjectsHook": run["packobjects"],
        "sequence.editor": run["sequence"],
    }


def plant_script(markers: Path, where: str) -> str:
    """What the agent runs in its sandbox: a nested repository at `where` with all of it."""
    settings = " && ".join(
        f"git config {key} {_quote(value)}" for key, value in nested_config(markers).items()
    )
    hooks = " && ".join(
        f"printf '#!/bin/sh\\ntouch {markers}/hook-{hook}\\n' > hooks/{hook} && "
        f"chmod +x hooks/{hook}"
        for hook in ("pre-commit", "commit-msg", "post-commit", "pre-push", "post-checkout")
    )
    return (
        f"mkdir -p {where} && cd {where} && git init -q && mkdir hooks && {hooks} && "
        f"{settings} && echo '* filter=evil diff=evil' > .gitattributes && echo x > file"
    )


def attributes_and_modules(markers: Path) -> dict[str, str]:
    """Top-level files the agent may commit: drivers and submodules that would run things."""
    return {
        ".gitattributes": "* filter=evil diff=evil merge=evil\n",
        ".gitmodules": (
            '[submodule "a"]\n\tpath = mod-a\n'
            f"\turl = file://{markers}/nowhere\n\tupdate = !touch {markers}/update\n"
            '[submodule "b"]\n\tpath = mod-b\n'
            f"\turl = ext::sh -c touch% {markers}/ext\n"
        ),
        **{name: "an option-like name\n" for name in OPTION_LIKE},
    }


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


@pytest.fixture
async def remote(tmp_path: Path) -> Path:
    seed = tmp_path / "seed"
    await run_git("init", "-q", "--initial-branch=main", str(seed))
    (seed / "calc.py").write_text("x = 1\n")
    (seed / ".gitignore").write_text("deps/\n")
    await run_git("add", ".", cwd=seed)
    await run_git("commit", "-qm", "seed", cwd=seed)
    bare = tmp_path / "remote.git"
    await run_git("clone", "-q", "--bare", str(seed), str(bare))
    return bare


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    where = tmp_path / "markers"
    where.mkdir()
    return where


def ran(markers: Path, *checkouts: Path) -> list[str]:
    """What a planted command left behind: markers, or `pwned` from an option-like name."""
    left = sorted(p.name for p in markers.iterdir())
    return left + [str(c / "pwned") for c in checkouts if (c / "pwned").exists()]


async def publish(co: Checkout, remote: Path) -> str | None:
    await co.has_changes()
    await co.changed_files()
    await co.diff_stat()
    sha = await co.commit_all("planted", **AUTHOR)
    await co.push(None)
    return sha


async def test_planted_config_attributes_and_names_run_nothing_on_the_host(
    remote: Path, markers: Path, tmp_path: Path
) -> None:
    workspaces = Workspaces(tmp_path / "data")
    mirror = workspaces.mirror_path(REPO)
    checkout = workspaces.checkout(
        repo=REPO, clone_url=str(remote), token=None, run_id=1, branch="honk/1-planted"
    )
    async with checkout as co:
        sandbox = Sandbox(co.path, mode="bwrap", timeout=60)
        # A dependency's checkout in an ignored directory: allowed, and never entered.
        planted = await sandbox.run(plant_script(markers, "deps/pkg"))
        assert planted.exit_code == 0, planted.output
        for name, content in attributes_and_modules(markers).items():
            (co.path / name).write_text(content)
        (co.path / "calc.py").write_text("x = 2\n")
        sha = await publish(co, remote)
        assert sha is not None
        committed = await run_git("ls-tree", "--name-only", sha, cwd=co.path)
        assert set(OPTION_LIKE) <= set(committed.splitlines())
        assert "deps" not in committed.splitlines()
        assert ran(markers, co.path, mirror) == []

        # The same, not ignored: refused before any git looks into it.
        planted = await sandbox.run(plant_script(markers, "sub"))
        assert planted.exit_code == 0, planted.output
        with pytest.raises(ChangeRefused, match=r"sub/\.git"):
            await co.has_changes()
        with pytest.raises(ChangeRefused, match=r"sub/\.git"):
            await co.commit_all("sub", **AUTHOR)
        assert ran(markers, co.path, mirror) == []

    # A retry checks the agent's branch out again: attributes, modules and names come along.
    retry = workspaces.checkout(
        repo=REPO, clone_url=str(remote), token=None, run_id=2, branch="honk/1-planted"
    )
    async with retry as co:
        assert (co.path / ".gitmodules").exists() and (co.path / OPTION_LIKE[0]).exists()
        async with co.on_base_tree() as switched:  # as setup: runs, with the base's files
            assert switched and not (co.path / ".gitmodules").exists()
            (co.path / "deps").mkdir(exist_ok=True)
            (co.path / "deps" / "built").write_text("by setup\n")
        assert (co.path / ".gitmodules").exists() and (co.path / "deps" / "built").exists()
        planted = await Sandbox(co.path, mode="bwrap", timeout=60).run(
            plant_script(markers, "deps/other")
        )
        assert planted.exit_code == 0, planted.output
        (co.path / "calc.py").write_text("x = 3\n")
        assert await publish(co, remote) is not None
        assert ran(markers, co.path, mirror) == []
    assert ran(markers) == []


async def test_git_internals_cannot_be_reached_from_the_sandbox(
    remote: Path, tmp_path: Path
) -> None:
    workspaces = Workspaces(tmp_path / "data")
    checkout = workspaces.checkout(
        repo=REPO, clone_url=str(remote), token=None, run_id=3, branch="honk/3-git"
    )
    async with checkout as co:
        config = (co.path / ".git" / "config").read_text()
        box = ToolBox(Sandbox(co.path, mode="bwrap", timeout=30))
        attempts = {
            "hard link out": "ln .git/config cfg && echo '[core]fsmonitor=x' >> cfg",
            "hard link in": "echo '#!/bin/sh' > h && ln h .git/hooks/pre-commit",
            "rename in": "echo '#!/bin/sh' > h2 && mv h2 .git/hooks/pre-push",
            "copy in": "cp calc.py .git/hooks/post-checkout",
            "symlink through": "ln -s .git/hooks hk && echo x > hk/pre-commit",
            "rename .git": "mv .git git-moved",
            "replace .git": "rm -rf .git",
        }
        for what, command in attempts.items():
            outcome = await box.run("bash", {"command": f"{command}; echo rc=$?"})
            assert "rc=0" not in outcome.content, (what, outcome.content)
        editor_attempts = [
            {"command": "create", "path": "hk/post-commit", "file_text": "#!/bin/sh\n"},
            {"command": "create", "path": "sub/../.git/hooks/pre-commit", "file_text": "x"},
            {"command": "str_replace", "path": ".git/config", "old_str": "[", "new_str": "x"},
            {"command": "insert", "path": ".git/HEAD", "insert_line": 0, "insert_text": "x"},
        ]  # fmt: skip
        for tool_input in editor_attempts:
            outcome = await box.run("str_replace_based_edit_tool", tool_input)
            assert outcome.is_error, tool_input
        assert (co.path / ".git" / "config").read_text() == config
        hooks = co.path / ".git" / "hooks"
        assert not any((hooks / h).exists() for h in ("pre-commit", "pre-push", "post-checkout"))
        assert (co.path / ".git").is_dir() and not (co.path / "git-moved").exists()


# -- titles and repository names --------------------------------------------------------------

NASTY_TITLE = "$(touch {m}/subst) `touch {m}/tick`; touch {m}/semi --exec=x ../../etc \"'\\"


def test_a_branch_name_holds_nothing_but_safe_characters() -> None:
    for title in (NASTY_TITLE, "--upload-pack=evil", "../../../etc/passwd", "refs/heads/main", ""):
        assert re.fullmatch(r"honk/12-[a-z0-9-]{1,40}", branch_name(12, title)), title


@pytest.mark.parametrize(
    "repo",
    ["octo/$(touch x)", "octo/`id`", "octo/a;b", "--upload-pack=x/y", "octo/a b", "o/../x"],
)
def test_repository_names_with_shell_metacharacters_are_refused(repo: str) -> None:
    with pytest.raises(ValueError):
        split_repo(repo)


async def test_an_option_like_repository_name_is_only_ever_a_path(
    remote: Path, markers: Path, tmp_path: Path
) -> None:
    workspaces = Workspaces(tmp_path / "data")
    checkout = workspaces.checkout(
        repo="octo/-n", clone_url=str(remote), token=None, run_id=4, branch="honk/4-x"
    )
    async with checkout as co:
        # An absolute path ending in the name: git never reads it as an option.
        assert co.path == workspaces.checkout_path("octo/-n", 4)
        assert co.path.is_absolute() and co.path.name == "-n"
        (co.path / "calc.py").write_text("x = 4\n")
        assert await publish(co, remote) is not None
    assert workspaces.mirror_path("octo/-n") == tmp_path / "data" / "mirrors" / "octo" / "-n.git"
    assert await run_git("rev-parse", "--verify", "refs/heads/honk/4-x", cwd=remote)


async def test_a_title_full_of_shell_and_git_metacharacters_is_only_text(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
    markers: Path,
) -> None:
    seed_calc(fake_github)
    title = NASTY_TITLE.format(m=markers)
    fake_github.repo(REPO)["issues"][ISSUE]["title"] = title
    payload = labeled()
    payload["issue"]["title"] = title
    fake_anthropic.script(*fixing_script())
    settings = calc_settings(base_settings, fake_github, fake_anthropic, fake_slack)
    client = await aiohttp_client(create_app(settings))
    await post_webhook(client, "issues", payload)
    store = client.app[SERVICES].store

    async def done() -> Any:
        runs = await store.runs.find(repo=REPO, issue_number=ISSUE)
        return runs[0] if runs and not runs[0].state.active else None

    run = await eventually(done, within=60)
    assert run.state == RunState.SUCCEEDED, run.error
    (pr,) = fake_github.repo(REPO)["pulls"].values()
    assert pr["title"] == title
    subject = fake_github.git(REPO, "log", "-1", "--format=%s", run.branch).strip()
    assert subject == title.splitlines()[0][:72].strip()
    assert ran(markers) == []
