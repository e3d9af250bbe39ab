"""This machine's toolchains in real bwrap, as the pipeline builds its sandboxes: rustup's own
cargo builds and tests a crate, `rust-toolchain.toml` picks nightly, the toolchain is read-only
and rustup's proxies are not there; and one run, issue -> PR, of a Rust crate through the real
pipeline and the fakes, whose `verify: cargo test` passes in the sandbox; `honk run` chooses
the same way."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.cli.local import EXIT_OK, run_local
from app.config import Settings
from app.models import RunState
from app.web import SERVICES, create_app
from app.workspace.sandbox import Sandbox
from app.workspace.toolchain_versions import choose, read_declared
from app.workspace.toolchains import find_installed
from tests.calc_world import REPO, calc_settings, labeled, seed_calc
from tests.e2e.test_e2e import finished_run
from tests.fakes.anthropic import (
    FakeAnthropic,
    result_text,
    text,
    tool_results,
    tool_use_bash,
    tool_use_edit,
)
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, post_webhook

pytestmark = pytest.mark.bwrap

CARGO_TOML = '[package]\nname = "calc"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n'
LIB_RS = """pub fn add(a: i64, b: i64) -> i64 {
    a - b
}

#[cfg(test)]
mod tests {
    #[test]
    fn adds() {
        assert_eq!(super::add(2, 3), 5);
    }
}
"""


async def rust_or_skip(settings: Settings) -> None:
    found = await find_installed(settings.sandbox)
    if not any(t.language == "rust" and t.source == "rustup" for t in found):
        pytest.skip("no rustup toolchain on this machine")


def crate(root: Path, *, fixed: bool = True, toolchain: str | None = None) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "Cargo.toml").write_text(CARGO_TOML)
    (root / "src" / "lib.rs").write_text(LIB_RS.replace("a - b", "a + b") if fixed else LIB_RS)
    if toolchain is not None:
        (root / "rust-toolchain.toml").write_text(f'[toolchain]\nchannel = "{toolchain}"\n')
    return root


async def sandbox_as_the_pipeline_builds_it(settings: Settings, root: Path) -> Sandbox:
    sandbox = Sandbox.for_settings(settings, root)
    declared = await asyncio.to_thread(read_declared, root)
    found = await find_installed(settings.sandbox)
    choice = choose(found, declared, dict(settings.sandbox.toolchain_defaults))
    sandbox.toolchains = choice.toolchains
    return sandbox


async def test_rustups_own_cargo_builds_and_tests_a_crate_in_the_sandbox(
    base_settings: Settings, tmp_path: Path
) -> None:
    await rust_or_skip(base_settings)
    root = crate(tmp_path / "calc")
    sandbox = await sandbox_as_the_pipeline_builds_it(base_settings, root)
    version = await sandbox.run("cargo --version && rustc -V && command -v cargo", offline=True)
    assert version.exit_code == 0, version.output
    lines = version.output.splitlines()
    assert lines[0].startswith("cargo ") and lines[1].startswith("rustc ")
    assert "nightly" not in lines[1]  # the host's default: rustup's stable
    assert lines[2].endswith("/bin/cargo") and "/.rustup/toolchains/" in lines[2]
    tested = await sandbox.run("cargo test", offline=True)
    assert tested.exit_code == 0, tested.output
    assert "test tests::adds ... ok" in tested.output
    # The toolchain is shown read-only, and rustup's proxies (which may download) not at all.
    toolchain_bin = lines[2].rsplit("/", 1)[0]
    proxies = Path.home() / ".cargo" / "bin"
    probe = await sandbox.run(
        f"touch {toolchain_bin}/planted; echo $?; "
        f"test -e {proxies}/rustup || echo no-proxies; command -v rustup || echo no-rustup",
        offline=True,
    )
    assert probe.output.splitlines()[0] != "0", probe.output
    assert "no-proxies" in probe.output and "no-rustup" in probe.output
    assert not await asyncio.to_thread(Path(toolchain_bin, "planted").exists)


async def test_rust_toolchain_toml_with_nightly_picks_the_nightly_toolchain(
    base_settings: Settings, tmp_path: Path
) -> None:
    await rust_or_skip(base_settings)
    found = await find_installed(base_settings.sandbox)
    if not any(t.language == "rust" and "nightly" in t.names for t in found):
        pytest.skip("no nightly toolchain on this machine")
    root = crate(tmp_path / "calc", toolchain="nightly")
    sandbox = await sandbox_as_the_pipeline_builds_it(base_settings, root)
    result = await sandbox.run("rustc -V && cargo test -q", offline=True)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("rustc ") and "-nightly" in result.output.splitlines()[0]


# -- one run, issue -> PR ------------------------------------------------------------------


async def events_of(client: TestClient, run: Any, kind: str) -> list[dict[str, Any]]:
    store = client.app[SERVICES].store
    return [event.data for event in await store.events.read(run.id, kinds=(kind,))]


async def test_a_rust_crate_gets_a_ready_pr_whose_cargo_test_passed_in_the_sandbox(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    await rust_or_skip(base_settings)
    seed_calc(fake_github)
    fake_github.commit_files(
        REPO,
        {
            "calc.py": None,
            "test_calc.py": None,
            "AGENTS.md": "Run `cargo test` before you finish.\n",
            ".github/honk.yml": "verify: cargo test\n",
            ".gitignore": "/target\nCargo.lock\n",
            "Cargo.toml": CARGO_TOML,
            "src/lib.rs": LIB_RS,
            "rust-toolchain.toml": '[toolchain]\nchannel = "stable"\n',
            # A Node version this Honk has no toolchain for: said, and the run goes on.
            ".nvmrc": "4\n",
        },
    )
    settings = calc_settings(base_settings, fake_github, fake_anthropic, fake_slack)
    fake_anthropic.script(
        tool_use_bash("cargo test 2>&1 | tail -3; command -v cargo"),
        tool_use_edit(command="str_replace", path="src/lib.rs", old_str="a - b", new_str="a + b"),
        tool_use_bash("cargo test"),
        text("Fixed `add`: it subtracted. `cargo test` passes."),
    )
    client = await aiohttp_client(create_app(settings))
    assert (await post_webhook(client, "issues", labeled(), delivery_id="rust-1")).status == 202

    run = await finished_run(client)
    assert run.state == RunState.SUCCEEDED, run.error
    first = result_text(tool_results(fake_anthropic.requests[1])[0])
    assert "test result: FAILED" in first  # the agent ran rustup's cargo: no "command not found"
    assert "/.rustup/toolchains/stable-" in first
    pr = fake_github.repo(REPO)["pulls"][run.pr_number]
    assert "`cargo test`: **passed**" in pr["body"] and not pr["draft"]
    changed = fake_github.git(REPO, "diff", "--name-only", "main", run.branch).split()
    assert changed == ["src/lib.rs"]  # neither target/ nor Cargo.lock

    said = "`.nvmrc` asks for Node.js `4`; this Honk has "
    notes = [e["text"] for e in await events_of(client, run, "note")]
    assert any(note.startswith(said) for note in notes), notes
    comment = fake_github.repo(REPO)["comments"][run.tracking_comment_id]["body"]
    assert said in comment
    used = [step.detail for step in run.steps if step.name == "toolchains"]
    assert len(used) == 1 and "rust 1." in used[0] and "(rustup)" in used[0]


async def test_honk_run_gives_the_agent_the_toolchain_the_checkout_declares(
    base_settings: Settings, fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    await rust_or_skip(base_settings)
    found = await find_installed(base_settings.sandbox)
    if not any(t.language == "rust" and "nightly" in t.names for t in found):
        pytest.skip("no nightly toolchain on this machine")
    root = crate(tmp_path / "calc", fixed=False, toolchain="nightly")
    await asyncio.to_thread((root / ".nvmrc").write_text, "4\n")
    git = ["git", "-C", str(root), "-c", "user.name=T", "-c", "user.email=t@example.com"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "crate"]):
        proc = await asyncio.create_subprocess_exec(*git, *args)
        assert await proc.wait() == 0
    fake_anthropic.script(
        tool_use_bash("rustc -V"),
        tool_use_edit(command="str_replace", path="src/lib.rs", old_str="a - b", new_str="a + b"),
        tool_use_bash("cargo test -q"),
        text("Fixed `add`."),
    )
    settings = base_settings.with_overrides(anthropic_base_url=fake_anthropic.url)
    out, err = io.StringIO(), io.StringIO()
    code = await run_local(root, "add() subtracts", settings, out=out, err=err)
    assert code == EXIT_OK, out.getvalue() + err.getvalue()
    assert "honk: `.nvmrc` asks for Node.js `4`; this Honk has " in out.getvalue()
    looked = result_text(tool_results(fake_anthropic.requests[1])[0])
    assert looked.startswith("rustc ") and "-nightly" in looked
