"""The bwrap sandbox, for real: what a command must not reach, and what must still work."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from app.network_policy import Cap, Presets, compile_rules
from app.workspace.command_output import OutputCap
from app.workspace.egress import EgressProxy, proxy_config
from app.workspace.inside import PathOutsideWorkspace, resolve_inside
from app.workspace.mounts import Hidden, SandboxPython
from app.workspace.sandbox import Sandbox, SandboxUnavailable
from tests.fakes.git_http import create_git_app, init_bare_repo, run_git

pytestmark = pytest.mark.bwrap
SESSION_STARTED = time.time() - 60

ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
def data_dir(tmp_path: Path, private_key_pem: str) -> Path:
    """A Honk data dir as in production: key, database, another run, this run's checkout."""
    data = tmp_path / "honk-data"
    (data / "runs" / "1" / "widgets").mkdir(parents=True)
    (data / "runs" / "2" / "other").mkdir(parents=True)
    (data / "runs" / "2" / "other" / "their-secret.txt").write_text("another run\n")
    (data / "private-key.pem").write_text(private_key_pem)
    (data / "honk.db").write_text("database\n")
    (tmp_path / "next-to-checkout.txt").write_text("outside\n")
    return data


@pytest.fixture
def checkout(data_dir: Path) -> Path:
    root = data_dir / "runs" / "1" / "widgets"
    (root / "README.md").write_text("# widgets\n")
    return root


@pytest.fixture
async def loopback(aiohttp_server: ServerFactory) -> TestServer:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello from the host")

    app = web.Application()
    app.router.add_get("/", hello)
    return await aiohttp_server(app)


async def test_check_reports_bwrap_usable() -> None:
    assert await Sandbox.check("bwrap") is None
    assert await Sandbox.check("off") is None


async def test_files_outside_the_checkout_are_invisible(
    checkout: Path, data_dir: Path, tmp_path: Path
) -> None:
    sandbox = Sandbox(checkout)
    for path in (
        tmp_path / "next-to-checkout.txt",
        data_dir / "private-key.pem",
        data_dir / "honk.db",
        data_dir / "runs" / "2" / "other" / "their-secret.txt",
    ):
        result = await sandbox.run(f"cat {path}")
        assert result.exit_code != 0
        assert "No such file" in result.output
    parent = await sandbox.run(f"ls -a {sandbox.visible_root}/..")
    assert parent.output.split() == [".", "..", "widgets"]  # the checkout alone, by name
    listing = await sandbox.run(f"ls -a /; test -e {data_dir} || test -e {tmp_path} || echo none")
    assert listing.output.splitlines()[-1] == "none"
    assert "honk-data" not in listing.output and "runs" not in listing.output
    # The Python installation is readable (the toolchain), nothing else of /root.
    root_home = await sandbox.run("ls -a /root; ls /root/.pyenv 2>&1")
    assert root_home.exit_code == 0
    assert ".bashrc" not in root_home.output and ".ssh" not in root_home.output


async def test_private_key_not_readable_anywhere(checkout: Path, private_key_pem: str) -> None:
    marker = private_key_pem.splitlines()[1]  # random per key: found only in a copy of it
    # The whole file system, /usr, /opt and the Python install included (only the kernel's
    # /proc, /sys and /dev are left to the check below): a file holding the key was written
    # during this test session, so only files changed since it began are read.
    result = await Sandbox(checkout).run(
        "find / \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -type f "
        f"-newermt '@{int(SESSION_STARTED)}' -print0 2>/dev/null"
        f" | xargs -0 -r grep -lF -e '{marker}' 2>/dev/null; echo searched",
        timeout=120,
    )
    assert result.output.strip().splitlines()[-1] == "searched", result.output
    assert "private-key" not in result.output and ".pem" not in result.output
    # Other places Honk keeps it: its own environment and the parent's /proc entries.
    proc = await Sandbox(checkout).run(
        "cat /proc/*/environ /proc/*/cmdline 2>/dev/null | tr '\\0' '\\n'"
    )
    assert marker not in proc.output


async def test_parent_environment_secrets_are_not_visible(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, private_key_pem: str
) -> None:
    secret = "whsec-" + secrets.token_hex(12)
    monkeypatch.setenv("WEBHOOK_SECRET", secret)
    monkeypatch.setenv("PRIVATE_KEY", private_key_pem)
    result = await Sandbox(checkout).run(
        "env; echo ---; cat /proc/1/environ | tr '\\0' '\\n'; echo ---; "
        "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done"
    )
    assert result.exit_code == 0, result.output
    assert "HOME=/tmp" in result.output  # /proc/1/environ was read: bwrap's own environment
    for leaked in (secret, "WEBHOOK_SECRET", "PRIVATE KEY"):
        assert leaked not in result.output
    env = (await Sandbox(checkout).run("env")).output.splitlines()
    assert {line.split("=", 1)[0] for line in env} <= {
        "PATH",
        "HOME",
        "LANG",
        "PYTHONDONTWRITEBYTECODE",
        "PWD",
        "SHLVL",
        "_",
    }
    # Unsafe mode has no /proc isolation, but commands still start from a clean environment.
    unsafe = await Sandbox(checkout, mode="off").run("env")
    assert secret not in unsafe.output and "PRIVATE KEY" not in unsafe.output


async def test_no_network_by_default(checkout: Path, loopback: TestServer) -> None:
    probe = (
        "python -c \"import socket; socket.create_connection(('127.0.0.1', "
        f"{loopback.port}), timeout=3); print('connected')\""
    )
    blocked = await Sandbox(checkout).run(probe)
    assert blocked.exit_code != 0
    assert "connected" not in blocked.output
    assert "ConnectionRefused" in blocked.output or "unreachable" in blocked.output.lower()


async def test_network_only_through_the_phases_proxy(checkout: Path, loopback: TestServer) -> None:
    fetch = (
        'python -c "import urllib.request; '
        f"print(urllib.request.urlopen('http://localhost:{loopback.port}/').read().decode())\""
    )
    listed = f"localhost:{loopback.port}"
    cap = Cap((listed,), Presets.with_overrides({}))
    rules = compile_rules([listed], setting="network", cap=cap)
    proxy = await EgressProxy.start(proxy_config(rules, setting="network", cap=cap), phase="agent")
    try:
        sandbox = Sandbox(checkout)
        assert (await sandbox.run(fetch)).exit_code != 0  # no proxy: loopback only
        sandbox.proxy = proxy.sandbox
        allowed = await sandbox.run(fetch)
        assert allowed.exit_code == 0, allowed.output
        assert "hello from the host" in allowed.output
        assert (await sandbox.run(fetch, offline=True)).exit_code != 0
    finally:
        await proxy.stop()


@pytest.mark.parametrize(
    "target", ["/usr/honk-was-here", "/etc/honk-was-here", "/root/honk-was-here", "/honk-was-here"]
)
async def test_cannot_write_outside_the_checkout(checkout: Path, target: str) -> None:
    result = await Sandbox(checkout).run(f"echo x > {target}")
    assert result.exit_code != 0
    assert "Read-only file system" in result.output
    assert not _exists(target)


async def test_cannot_write_next_to_the_checkout(checkout: Path, tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    sandbox = Sandbox(checkout)
    result = await sandbox.run(f"echo x > {target}; echo x > {sandbox.visible_root}/../up.txt")
    assert result.exit_code != 0
    assert not target.exists()
    assert not (checkout.parent / "up.txt").exists()


async def test_git_metadata_is_read_only_but_readable(checkout: Path) -> None:
    await run_git("init", "-q", str(checkout))
    await run_git("add", "-A", cwd=checkout)
    await run_git("commit", "-q", "-m", "initial", cwd=checkout)
    sandbox = Sandbox(checkout)
    hook = await sandbox.run("echo 'echo pwned' > .git/hooks/pre-commit")
    assert hook.exit_code != 0
    assert not (checkout / ".git" / "hooks" / "pre-commit").exists()
    config = await sandbox.run("git config core.fsmonitor 'echo pwned'")
    assert config.exit_code != 0
    assert "pwned" not in (checkout / ".git" / "config").read_text()
    log = await sandbox.run("echo changed >> README.md && git log --oneline && git diff --stat")
    assert log.exit_code == 0, log.output
    assert "initial" in log.output and "README.md" in log.output


async def test_git_push_from_inside_fails(
    checkout: Path, tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    remote_root = tmp_path / "remote"
    bare = await init_bare_repo(remote_root, "octo/widgets")
    # The server would accept anything: only the sandbox stands in the way.
    server = await aiohttp_server(create_git_app(remote_root))
    url = str(server.make_url("/octo/widgets.git"))
    await run_git("clone", "-q", url, str(checkout / "repo"))
    before = await run_git("rev-parse", "main", cwd=bare)

    result = await Sandbox(checkout / "repo").run(
        "echo change >> README.md && git -c user.name=a -c user.email=a@b commit -qam x; "
        "git push origin HEAD:refs/heads/honk/escape"
    )
    assert result.exit_code != 0
    assert "Could not resolve host" in result.output or "Failed to connect" in result.output
    assert await run_git("rev-parse", "main", cwd=bare) == before
    assert "honk/escape" not in await run_git("branch", "--list", cwd=bare)


async def test_writes_in_the_checkout_land_on_the_host(checkout: Path) -> None:
    result = await Sandbox(checkout).run(
        "mkdir -p src && printf 'x = 1\\n' > src/new.py && echo ok > /tmp/s && cat /tmp/s"
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "ok"
    assert (checkout / "src" / "new.py").read_text() == "x = 1\n"
    assert (checkout / "src" / "new.py").stat().st_uid == os.getuid()


async def test_pytest_runs_inside_the_sandbox(
    checkout: Path, sandbox_python: SandboxPython
) -> None:
    (checkout / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (checkout / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n"
    )
    sandbox = Sandbox(checkout, python=sandbox_python)
    result = await sandbox.run("python -m pytest -q -p no:cacheprovider test_calc.py")
    assert result.exit_code == 0, result.output
    assert "1 passed" in result.output


async def test_timeout_kills_the_command_and_leaves_nothing(checkout: Path) -> None:
    marker = f"{secrets.randbelow(900) + 100}.{secrets.randbelow(9000) + 1000}"
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await Sandbox(checkout).run(f"echo before; sleep {marker}", timeout=1)
    assert loop.time() - started < 8
    assert result.timed_out and result.exit_code is None
    assert "before" in result.output
    await asyncio.sleep(0.2)
    assert not _processes_with(marker)


async def test_timeout_in_mode_off_kills_background_jobs(checkout: Path) -> None:
    marker = f"{secrets.randbelow(900) + 100}.{secrets.randbelow(9000) + 1000}"
    result = await Sandbox(checkout, mode="off").run(f"sleep {marker} & sleep {marker}", timeout=1)
    assert result.timed_out
    await asyncio.sleep(0.2)
    assert not _processes_with(marker)


async def test_background_jobs_die_with_the_command(checkout: Path) -> None:
    marker = f"{secrets.randbelow(900) + 100}.{secrets.randbelow(9000) + 1000}"
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await Sandbox(checkout).run(f"sleep {marker} & echo started")
    assert result.exit_code == 0 and not result.timed_out
    assert loop.time() - started < 5
    await asyncio.sleep(0.2)
    assert not _processes_with(marker)


async def test_cancelled_command_is_killed(checkout: Path) -> None:
    marker = f"{secrets.randbelow(900) + 100}.{secrets.randbelow(9000) + 1000}"
    task = asyncio.create_task(Sandbox(checkout).run(f"sleep {marker}"))
    for _ in range(100):
        await asyncio.sleep(0.05)
        if _processes_with(marker):
            break
    assert _processes_with(marker)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)
    assert not _processes_with(marker)


async def test_output_keeps_head_and_tail(checkout: Path) -> None:
    result = await Sandbox(checkout, output_limit=1000).run("seq 1 100000")
    assert result.exit_code == 0 and result.truncated
    assert result.output.startswith("1\n2\n3\n")
    assert result.output.endswith("99999\n100000\n")
    assert "characters cut ...]" in result.output
    assert len(result.output) < 1100
    assert "50000\n" not in result.output


def test_output_cap_counts_what_was_cut() -> None:
    cap = OutputCap(10)
    for piece in ("abcdefgh", "ijklmnop", "qrstuvwxyz"):
        cap.feed(piece)
    assert cap.text() == "abcde\n[... 16 characters cut ...]\nvwxyz"
    small = OutputCap(100)
    small.feed("short")
    assert small.text() == "short" and small.cut == 0


async def test_exit_code_input_and_merged_stderr(checkout: Path) -> None:
    sandbox = Sandbox(checkout)
    result = await sandbox.run("echo out; echo err >&2; exit 3")
    assert result.exit_code == 3
    assert "out" in result.output and "err" in result.output
    echoed = await sandbox.run("tr a-z A-Z", input="hello\n")
    assert echoed.output == "HELLO\n"


async def test_no_capabilities_and_no_new_namespaces(checkout: Path) -> None:
    result = await Sandbox(checkout).run(
        "grep CapEff /proc/self/status; unshare -U true && echo nested-ok; "
        "mkdir -p mnt && mount -t tmpfs none mnt 2>&1 || echo mount-refused"
    )
    assert "CapEff:\t0000000000000000" in result.output
    assert "nested-ok" not in result.output
    assert "mount-refused" in result.output


async def test_ro_paths_are_visible_read_only_and_hide_paths_are_not(
    checkout: Path, tmp_path: Path
) -> None:
    tools = tmp_path / "tools"
    (tools / "secret").mkdir(parents=True)
    (tools / "tool.sh").write_text("echo tool works\n")
    (tools / "secret" / "key").write_text("hidden\n")
    sandbox = Sandbox(
        checkout, ro_paths=[str(tools)], hidden=Hidden(secrets=(str(tools / "secret"),))
    )
    used = await sandbox.run(f"bash {tools}/tool.sh")
    assert used.output.strip() == "tool works"
    assert (await sandbox.run(f"touch {tools}/new")).exit_code != 0
    hidden = await sandbox.run(f"cat {tools}/secret/key")
    assert hidden.exit_code != 0 and "hidden" not in hidden.output


async def test_mode_off_runs_in_the_checkout_with_a_clean_environment(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-" + secrets.token_hex(8))
    sandbox = Sandbox(checkout, mode="off")
    real = _realpath(checkout)
    assert sandbox.visible_root == real
    result = await sandbox.run("pwd; env")
    assert result.output.splitlines()[0] == real
    assert "ANTHROPIC_API_KEY" not in result.output
    assert Sandbox(checkout).visible_root == "/workspace/widgets"


async def test_missing_bwrap_is_reported(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = checkout.parent / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        await Sandbox(checkout).run("true")
    reason = await Sandbox.check("bwrap")
    assert reason is not None and "HONK_SANDBOX=off" in reason


def test_resolve_inside(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("x = 1\n")
    (tmp_path / "outside.txt").write_text("no\n")
    (root / "link-out").symlink_to(tmp_path / "outside.txt")
    (root / "dir-out").symlink_to(tmp_path)
    (root / "link-in").symlink_to(root / "src" / "app.py")
    real = root.resolve()

    assert resolve_inside(root, "src/app.py") == real / "src" / "app.py"
    assert resolve_inside(root, "new/file.py") == real / "new" / "file.py"
    assert resolve_inside(root, "src/../src/app.py") == real / "src" / "app.py"
    assert resolve_inside(root, "link-in") == real / "src" / "app.py"
    assert resolve_inside(root, str(real / "src")) == real / "src"
    ws = {"visible_root": "/workspace/widgets"}
    assert resolve_inside(root, "/workspace/widgets/src/app.py", **ws) == real / "src" / "app.py"
    assert resolve_inside(root, "/workspace/widgets", **ws) == real
    assert resolve_inside(root, "/workspace/widgets/", **ws) == real
    for bad in ("../outside.txt", "/etc/passwd", "link-out", "dir-out/outside.txt", "src/../.."):
        with pytest.raises(PathOutsideWorkspace):
            resolve_inside(root, bad, **ws)
    for bad in ("/workspace/widgetsx/a", "/workspace/widgets/../etc/passwd", "/workspace", "a\0b"):
        with pytest.raises(PathOutsideWorkspace):
            resolve_inside(root, bad, **ws)
    with pytest.raises(PathOutsideWorkspace, match="outside the workspace"):
        resolve_inside(root, "/workspace/widgets/src", visible_root=None)


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _realpath(path: Path) -> str:
    return os.path.realpath(path)


def _processes_with(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found
