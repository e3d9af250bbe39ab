"""`paths:` holds for everything committed: globs in CODEOWNERS' reading (`docs/*` is the files
directly in docs/) checked on exactly what is staged, submodule commits, modes and types
included; through a real run, and on a real checkout."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.models import RunState
from app.repo_config import parse_config
from app.web import SERVICES, create_app
from app.workspace.checkout import ChangeRefused
from app.workspace.mirror import Workspaces
from tests.calc_world import ISSUE, REPO, calc_settings, fixing_script, labeled, seed_calc
from tests.fakes.anthropic import FakeAnthropic, text, tool_use_bash, tool_use_edit
from tests.fakes.git_http import run_git
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, eventually, post_webhook

AUTHOR = {"author_name": "honk[bot]", "author_email": "honk@example.com"}
PATHS = 'verify: python -m pytest -q\npaths: ["calc.py", "test_calc.py", "tests/*.py"]\n'


# The examples the repository-config page documents, each tested: (globs, path, allowed).
EXAMPLES = [
    # `*` is the files directly in the directory: never a directory it happens to match.
    ("docs/*", "docs/index.md", True),
    ("docs/*", "docs/_ext/build_hooks/hook.py", False),
    ("docs/*", "api/docs/index.md", False),  # a `/` inside: anchored at the root
    # A trailing `/` or `/**`: everything below.
    ("docs/", "docs/index.md", True),
    ("docs/", "docs/_ext/build_hooks/hook.py", True),
    ("docs/", "api/docs/index.md", True),  # only a trailing `/`: any depth
    ("/docs/", "api/docs/index.md", False),
    ("/docs/", "docs/guide/a.md", True),
    ("docs/**", "docs/guide/a/b.md", True),
    ("docs/**", "api/docs/index.md", False),
    ("docs/**/*.md", "docs/index.md", True),
    ("docs/**/*.md", "docs/guide/a.md", True),
    ("docs/**/*.md", "docs/guide/conf.py", False),
    # No `/`: any depth, as in CODEOWNERS; a leading `/` anchors.
    ("*.md", "README.md", True),
    ("*.md", "docs/guide/a.md", True),
    ("*.md", "notes.md/run.sh", False),  # a directory named like a match is not one
    ("calc.py", "calc.py", True),
    ("calc.py", "lib/calc.py", True),
    ("calc.py", "calc.pyc", False),
    ("/calc.py", "calc.py", True),
    ("/calc.py", "lib/calc.py", False),
    # A name without wildcards is a file or a directory (everything below it).
    ("src/app", "src/app", True),
    ("src/app", "src/app/main.py", True),
    ("src/app", "src/apple.py", False),
    ("src/app", "lib/src/app/main.py", False),
    ("**/logs", "logs/today.txt", True),
    ("**/logs", "build/logs/today.txt", True),
    ("**/logs", "catalogs/a.txt", False),
    ("tests/test_?.py", "tests/test_a.py", True),
    ("tests/test_?.py", "tests/test_ab.py", False),
    ("tests/test_?.py", "tests/unit/test_a.py", False),
    ("tests/test_[ab].py", "tests/test_b.py", True),
    ("tests/test_[ab].py", "tests/test_c.py", False),
    ("tests/test_[!ab].py", "tests/test_b.py", False),
    # `!` takes paths back out; the last glob that matches decides.
    ("src/** !src/vendor/**", "src/a.py", True),
    ("src/** !src/vendor/**", "src/vendor/x.py", False),
    ("!src/vendor/** src/**", "src/vendor/x.py", True),
    ("**", ".github/workflows/ci.yml", True),
]


@pytest.mark.parametrize(("globs", "path", "allowed"), EXAMPLES)
def test_the_documented_examples(globs: str, path: str, allowed: bool) -> None:
    config = parse_config(f"paths: {globs.split()!r}\n")
    assert config.path_allowed(path) is allowed


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("calc.py", True),
        ("tests/test_x.py", True),
        ("tests/fixtures/plugins/conftest.py", False),  # `*` stays in one segment
        ("src/a/b/c.py", True),
        ("src/vendor/x.py", False),  # taken back out by `!`
        ("docs/guide/index.md", True),
        ("docs/guide/index.html", False),
        ("docs/guide/index.md/hook.py", False),
        (".github/workflows/ci.yml", False),
    ],
)
def test_a_file_with_several_globs(path: str, allowed: bool) -> None:
    config = parse_config(
        'paths: ["/calc.py", "tests/*.py", "src/", "!src/vendor/**", "docs/**/*.md"]\n'
    )
    assert config.path_allowed(path) is allowed


# -- through a real run -------------------------------------------------------------------------


@pytest.fixture
def world_settings(calc_world_settings: Settings, fake_github: FakeGitHub) -> Settings:
    fake_github.commit_files(REPO, {".github/honk.yml": PATHS})
    return calc_world_settings


async def refused_run(client: TestClient, fake_github: FakeGitHub) -> str:
    await post_webhook(client, "issues", labeled())
    store = client.app[SERVICES].store

    async def done() -> Any:
        runs = await store.runs.find(repo=REPO, issue_number=ISSUE)
        return runs[0] if runs and not runs[0].state.active else None

    run = await eventually(done, within=60)
    assert run.state == RunState.FAILED
    assert fake_github.repo(REPO)["pulls"] == {}  # no PR
    assert not [b for b in fake_github.git(REPO, "branch", "--list").split() if "honk/" in b]
    tracking = fake_github.repo(REPO)["comments"][run.tracking_comment_id]["body"]
    assert run.error and run.error in tracking
    return run.error


async def test_a_file_below_a_one_segment_glob_is_refused(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    conftest = "tests/fixtures/plugins/conftest.py"
    fake_anthropic.script(
        tool_use_edit(command="create", path=conftest, file_text="import os\n"),
        *fixing_script(),
    )
    client = await aiohttp_client(create_app(world_settings))
    error = await refused_run(client, fake_github)
    assert "does not let Honk change" in error and conftest in error
    assert "calc.py" not in error.split(":", 1)[1]  # only what is refused is named


async def test_a_hook_below_a_directory_that_star_matches_is_refused(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    """The issue's attempt: `paths: ['docs/*']`, and the agent writes a Sphinx build hook
    below docs/_ext/ next to an allowed page; gitignore's reading let the hook through."""
    seed_calc(fake_github)
    fake_github.commit_files(REPO, {".github/honk.yml": "paths: ['docs/*']\n"})
    hook = "docs/_ext/build_hooks/hook.py"
    fake_anthropic.script(
        tool_use_edit(command="create", path="docs/index.md", file_text="# Calc\n"),
        tool_use_edit(command="create", path=hook, file_text="import os\n"),
        text("Documented calc."),
    )
    settings = calc_settings(base_settings, fake_github, fake_anthropic, fake_slack)
    client = await aiohttp_client(create_app(settings))
    error = await refused_run(client, fake_github)
    assert "does not let Honk change" in error and hook in error
    assert "docs/index.md" not in error  # allowed: directly in docs/


@pytest.mark.bwrap
async def test_a_nested_repository_the_agent_made_is_refused(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    # The issue's attack: `.github/actions/evil` committed as a gitlink to a commit of its own.
    make_repo = (
        "mkdir -p .github/actions/evil && cd .github/actions/evil && git init -q && "
        "echo 'runs: {using: node20}' > action.yml && git add . && "
        "git -c user.name=x -c user.email=x@example.com commit -qm evil && git rev-parse HEAD"
    )
    fake_anthropic.script(tool_use_bash(make_repo), *fixing_script())
    client = await aiohttp_client(create_app(world_settings))
    error = await refused_run(client, fake_github)
    assert "nested git repository" in error and ".github/actions/evil/.git" in error


# -- on a real checkout: what is staged is what is judged ----------------------------------------


async def _git(cwd: Path, *args: str) -> str:
    return (await run_git(*args, cwd=cwd)).strip()


@pytest.fixture
async def remote(tmp_path: Path) -> Path:
    """A repository with calc.py, a script and a submodule pinned at vendor/lib."""
    work = tmp_path / "seed"
    work.mkdir()
    await _git(work, "init", "-q", "--initial-branch=main")
    (work / "calc.py").write_text("x = 1\n")
    (work / "run.sh").write_text("echo hi\n")
    await _git(work, "add", ".")
    await _git(work, "commit", "-qm", "seed")
    pinned = await _git(work, "rev-parse", "HEAD")
    await _git(work, "update-index", "--add", "--cacheinfo", f"160000,{pinned},vendor/lib")
    (work / ".gitmodules").write_text('[submodule "lib"]\n\tpath = vendor/lib\n\turl = ./lib\n')
    await _git(work, "add", ".gitmodules")
    await _git(work, "commit", "-qm", "submodule")
    bare = tmp_path / "remote.git"
    await _git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    return bare


async def test_submodule_repins_mode_and_type_changes_are_judged_by_their_path(
    remote: Path, tmp_path: Path
) -> None:
    workspaces = Workspaces(tmp_path / "data")
    checkout = workspaces.checkout(
        repo=REPO, clone_url=str(remote), token=None, run_id=1, branch="honk/1-x"
    )
    async with checkout as co:
        other = await _git(co.path, "rev-parse", "HEAD")
        # A gitlink repinned in the index (git add -A records one from any nested .git).
        await _git(co.path, "update-index", "--cacheinfo", f"160000,{other},vendor/lib")
        (co.path / "run.sh").chmod(0o755)
        (co.path / "calc.py").unlink()
        (co.path / "calc.py").symlink_to("/etc/passwd")
        only_docs = parse_config('paths: ["docs/**"]\n').path_allowed
        with pytest.raises(ChangeRefused) as refused:
            await co.commit_all("x", **AUTHOR, allowed=only_docs)
        message = str(refused.value)
        assert "vendor/lib (a submodule or nested repository commit)" in message
        assert "run.sh (mode 100644 -> 100755)" in message
        assert "calc.py (type 100644 -> 120000)" in message
        assert await co.head_sha() == co.start_sha  # nothing was committed
        # Inside `paths:`, the same change is committed exactly as staged.
        sha = await co.commit_all("x", **AUTHOR, allowed=lambda path: True)
        assert sha is not None
        assert (await _git(co.path, "ls-tree", "HEAD", "vendor/lib")).split()[2] == other


async def test_a_nested_repository_is_refused_before_git_add_sees_it(
    remote: Path, tmp_path: Path
) -> None:
    workspaces = Workspaces(tmp_path / "data")
    checkout = workspaces.checkout(
        repo=REPO, clone_url=str(remote), token=None, run_id=2, branch="honk/2-x"
    )
    async with checkout as co:
        nested = co.path / "vendor" / "lib"
        await _git(nested, "init", "-q")
        await _git(nested, "commit", "-q", "--allow-empty", "-m", "repinned")
        for judge in (co.has_changes, co.changed_files, co.stage):
            with pytest.raises(ChangeRefused, match=r"vendor/lib/\.git"):
                await judge()
        assert await _git(co.path, "diff", "--cached", "--name-only") == ""  # nothing staged
        # In an ignored directory holding nothing tracked, a dependency's checkout is fine.
        shutil.rmtree(nested / ".git")
        (co.path / ".gitignore").write_text("deps/\n")
        dependency = co.path / "deps" / "pkg"
        dependency.mkdir(parents=True)
        await _git(dependency, "init", "-q")
        assert await co.changed_files() == [".gitignore"]
