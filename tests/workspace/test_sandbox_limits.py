"""A hostile agent's command ends at the sandbox's limits and the host keeps serving (real bwrap).

Each attempt is bounded in time (a few seconds) and size (tens of MiB at most).
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from app.agent.tools import ToolBox
from app.config import Settings
from app.web import create_app
from app.workspace.cgroups import (
    MemoryCgroup,
    PidsCgroup,
    controller_dirs,
    memory_cap,
    pids_dirs,
)
from app.workspace.limits import FALLBACK_PROCESSES, MIB, SandboxLimits
from app.workspace.sandbox import Sandbox
from tests.helpers import ClientFactory
from tests.workspace.test_sandbox import _processes_with

pytestmark = pytest.mark.bwrap
SMALL = SandboxLimits(
    processes=64, memory_mb=256, file_size_mb=4, tmp_mb=8, disk_mb=16, check_interval=0.1
)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "widgets"
    root.mkdir()
    (root / "README.md").write_text("# widgets\n")
    return root


def _marker() -> str:
    return f"{secrets.randbelow(900) + 100}.{secrets.randbelow(9000) + 1000}"


async def _serves_while(client: TestClient, work: asyncio.Task[object]) -> list[float]:
    """/healthz answered every 0.1 s while `work` runs: each answer's time."""
    loop = asyncio.get_running_loop()
    times = []
    while not work.done():
        started = loop.time()
        response = await asyncio.wait_for(client.get("/healthz"), 5)
        assert response.status == 200
        times.append(loop.time() - started)
        await asyncio.sleep(0.1)
    return times


@pytest.mark.parametrize("cgroup", [True, False], ids=["pids-cgroup", "rlimit-and-watch"])
async def test_a_fork_bomb_ends_with_a_clear_error_while_honk_serves(
    aiohttp_client: ClientFactory, base_settings: Settings, checkout: Path, cgroup: bool
) -> None:
    if cgroup:
        # Never a real fork bomb where nothing but the watch would stop it.
        probe = PidsCgroup.create(1)
        assert probe is not None, "this host has no writable pids cgroup for the sandbox"
        probe.remove()
    client = await aiohttp_client(create_app(base_settings, workers=0))
    limits = SandboxLimits(processes=64, check_interval=0.1, use_cgroup=cgroup)
    tools = ToolBox(Sandbox(checkout, limits=limits, timeout=60))
    marker = _marker()
    # Without a cgroup (root is not bound by RLIMIT_NPROC) a linear spawner stands in for
    # the exponential bomb, so an unbounded test cannot take the machine down.
    bomb = (
        f": {marker}; b(){{ b | b & }}; b; sleep 60"
        if cgroup
        else f": {marker}; for i in $(seq 300); do sleep 60 & done; wait"
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    work = asyncio.create_task(tools.run("bash", {"command": bomb}))
    answers = await _serves_while(client, work)
    outcome = await work
    assert loop.time() - started < 20
    assert outcome.is_error
    assert "limit of 64 processes" in outcome.content
    assert "HONK_SANDBOX_MAX_PROCESSES" in outcome.content
    assert answers and max(answers) < 2.0
    await asyncio.sleep(0.3)
    assert not _processes_with(marker)
    # The sandbox is usable again at once.
    assert (await tools.run("bash", {"command": "echo fine"})).content.strip() == "fine"


def test_pids_cgroup_found_from_mountinfo_and_membership() -> None:
    v1 = (
        "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    )
    assert pids_dirs(v1, "8:pids:/honk\n0::/svc\n") == [
        Path("/sys/fs/cgroup/pids/honk"),
        Path("/sys/fs/cgroup/unified/svc"),
    ]
    # In a container the mount's root is the container's own cgroup.
    docker = "50 40 0:30 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert pids_dirs(docker, "0::/docker/abc/honk\n") == [Path("/sys/fs/cgroup/honk")]
    assert pids_dirs(docker, "0::/elsewhere\n") == []


async def test_a_disk_filler_in_the_checkout_is_stopped(checkout: Path) -> None:
    tools = ToolBox(Sandbox(checkout, limits=SMALL, timeout=60))
    filler = "for i in $(seq 200); do head -c 1M /dev/zero > fill-$i; done; echo filled"
    outcome = await tools.run("bash", {"command": filler})
    assert outcome.is_error and "filled" not in outcome.content
    assert "limit of 16 MiB" in outcome.content and "HONK_SANDBOX_DISK_MB" in outcome.content
    written = len(await asyncio.to_thread(lambda: list(checkout.glob("fill-*"))))
    assert 16 <= written < 200
    # The agent can still clean up, and then work on.
    cleaned = await tools.run("bash", {"command": "rm fill-*; ls"})
    assert not cleaned.is_error and cleaned.content.strip() == "README.md"
    assert not (await tools.run("bash", {"command": "echo again"})).is_error


async def test_a_file_past_the_size_limit_is_refused(checkout: Path) -> None:
    tools = ToolBox(Sandbox(checkout, limits=SMALL, timeout=60))
    outcome = await tools.run("bash", {"command": "head -c 100M /dev/zero > big.bin"})
    assert outcome.is_error
    assert "file size limit of 4 MiB" in outcome.content
    assert "HONK_SANDBOX_FILE_SIZE_MB" in outcome.content
    assert (checkout / "big.bin").stat().st_size <= 4 * MIB
    sparse = await tools.run("bash", {"command": "truncate -s 100G sparse.bin"})
    assert sparse.is_error and not (checkout / "sparse.bin").stat().st_size > 4 * MIB


async def test_tmp_and_dev_shm_are_small_and_dev_takes_no_files(checkout: Path) -> None:
    limits = SandboxLimits(tmp_mb=8, file_size_mb=64)
    sandbox = Sandbox(checkout, limits=limits)
    for place in ("/tmp/fill", "/dev/shm/fill"):
        result = await sandbox.run(f"head -c 32M /dev/zero > {place}; echo $?; du -m {place}")
        assert "No space left on device" in result.output, place
        assert int(result.output.split()[-2]) <= 8
    dev = await sandbox.run("echo x > /dev/honk-file")
    assert dev.exit_code != 0 and "Read-only file system" in dev.output
    assert (await sandbox.run("echo x > /dev/null && echo ok")).output.strip() == "ok"


async def test_memory_per_process_is_capped(checkout: Path) -> None:
    sandbox = Sandbox(checkout, limits=SMALL)
    result = await sandbox.run("python -c 'x = bytearray(512 * 1024 * 1024)'")
    assert result.exit_code != 0 and "MemoryError" in result.output
    fits = await sandbox.run("python -c 'x = bytearray(64 * 1024 * 1024); print(len(x))'")
    assert fits.exit_code == 0 and fits.output.strip() == str(64 * MIB)


@pytest.mark.parametrize(
    "memory_cgroup", [True, False], ids=["memory-cgroup", "address-space-and-watch"]
)
async def test_memory_is_capped_for_the_command_as_a_whole(
    aiohttp_client: ClientFactory, base_settings: Settings, checkout: Path, memory_cgroup: bool
) -> None:
    """Four processes of 40 MiB each: every one within any per-process limit, together past
    the command's 96 MiB. The kernel (a memory cgroup) or Honk's watch (without one) ends
    the command, the result says which limit, and Honk serves on meanwhile."""
    if memory_cgroup:
        probe = MemoryCgroup.create(64 * MIB)
        assert probe is not None, "this host has no memory cgroup Honk can make"
        probe.remove()
    client = await aiohttp_client(create_app(base_settings, workers=0))
    limits = SandboxLimits(memory_mb=96, check_interval=0.1, memory_cgroup=memory_cgroup)
    tools = ToolBox(Sandbox(checkout, limits=limits, timeout=60))
    marker = _marker()
    hog = (
        f": {marker}; for i in 1 2 3 4; do python -c 'import time; "
        "x = bytearray(40 * 1024 * 1024); time.sleep(30)' & done; wait; echo survived"
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    work = asyncio.create_task(tools.run("bash", {"command": hog}))
    answers = await _serves_while(client, work)
    outcome = await work
    assert loop.time() - started < 20
    assert outcome.is_error and "survived" not in outcome.content
    assert "memory limit of 96 MiB for all its processes together" in outcome.content
    assert "HONK_SANDBOX_MEMORY_MB" in outcome.content
    assert answers and max(answers) < 2.0
    await asyncio.sleep(0.3)
    assert not _processes_with(marker)
    limit = await Sandbox(checkout, limits=limits).run(
        "ulimit -u; ulimit -v; python -c 'x = bytearray(8 * 1024 * 1024); print(len(x))'"
    )
    processes, address_space, fits = limit.output.split()
    if memory_cgroup:  # the kernel holds the whole: the per-process limits stay as they were
        assert (processes, address_space) == ("512", "unlimited")
    else:  # fewer processes, each within the limit's address space
        assert (processes, address_space) == (str(FALLBACK_PROCESSES), str(96 * 1024))
    assert fits == str(8 * MIB) and limit.limit is None


async def test_an_allocation_past_the_address_space_limit_is_named(checkout: Path) -> None:
    limits = SandboxLimits(memory_mb=96, memory_cgroup=False)
    result = await Sandbox(checkout, limits=limits).run(
        "python -c 'x = bytearray(200 * 1024 * 1024)'"
    )
    assert result.exit_code != 0 and "MemoryError" in result.output
    assert result.limit == (
        "a process ran out of memory: each may map at most 96 MiB (HONK_SANDBOX_MEMORY_MB) "
        "on this host"
    )


def test_what_holds_memory_on_this_host() -> None:
    """This machine (root, cgroup v1's memory hierarchy writable) makes a memory cgroup;
    the fallback is what the doctor names where none can be made."""
    made = memory_cap(SandboxLimits(memory_mb=4096))
    assert made == (
        "a memory cgroup (v1) per command: 4,096 MiB for all its processes together, no swap"
    )
    assert memory_cap(SandboxLimits(memory_mb=4096, memory_cgroup=False)) == (
        "an address-space limit (RLIMIT_AS) of 4,096 MiB per process, at most "
        f"{FALLBACK_PROCESSES} processes, and Honk's watch of their total (4,096 MiB); no "
        "memory cgroup: not used"
    )
    v1 = "40 31 0:37 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    assert controller_dirs("memory", v1, "4:memory:/process_api/abc\n0::/\n") == [
        Path("/sys/fs/cgroup/memory/process_api/abc")
    ]


async def test_the_limits_cannot_be_raised_from_inside(checkout: Path) -> None:
    sandbox = Sandbox(checkout, limits=SMALL)
    result = await sandbox.run(
        "ulimit -u; ulimit -d; ulimit -f; ulimit -S -u 100000 && echo raised"
    )
    assert result.output.split()[:3] == ["64", str(256 * 1024), str(4 * 1024)]
    assert "raised" not in result.output


@pytest.mark.parametrize(
    "daemonise",
    [
        "( sleep {m} & ) &",  # double fork: the child's parent exits, it is reparented
        "setsid sleep {m} &",  # a session of its own
        "nohup sleep {m} > /dev/null 2>&1 &",
        "sleep {m} & disown",
        "setsid bash -c '( sleep {m} & ) &' < /dev/null > /dev/null 2>&1",
    ],
    ids=["double-fork", "setsid", "nohup", "disown", "setsid-double-fork"],
)
async def test_daemonised_children_die_with_their_command(checkout: Path, daemonise: str) -> None:
    marker = _marker()
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await Sandbox(checkout).run(daemonise.format(m=marker) + "; echo started")
    assert "started" in result.output and not result.timed_out
    assert loop.time() - started < 5
    await asyncio.sleep(0.3)
    assert not _processes_with(marker)
