"""Warm per-run checkout (mirror fetch + local hard-linked clone) vs a plain `git clone`.

The repository is made locally from this machine's Python standard library (thousands of
files, tens of MB), served over loopback by `git http-backend` with token auth, as GitHub
serves it to Honk. Also: a warm checkout after a force-push upstream (the mirror is
repacked without the objects nothing reaches any more), and, for comparison, what cloning
every run through the pack protocol (`--no-local`, only reachable objects) would cost.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiohttp import web

from app.workspace.git import git
from app.workspace.mirror import Workspaces
from bench._servers import serve
from tests.fakes.git_http import make_git_handler

TOKEN = "ghs_bench" + uuid.uuid4().hex * 2
REPO = "bench/stdlib"


def make_repository(root: Path, quick: bool) -> tuple[Path, int, int]:
    """A bare repo with the stdlib as content, in a few commits; (path, files, bytes)."""
    source = (
        Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    )
    work = root / "work"
    ignore = shutil.ignore_patterns(
        "site-packages", "__pycache__", "*.pyc", "test" if quick else ""
    )
    shutil.copytree(source, work / "lib", ignore=ignore, symlinks=True)
    env = {
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@x",
        "PATH": "/usr/bin:/bin",
        "HOME": str(root),
    }

    def run(*args: str, cwd: Path = work) -> None:
        subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)

    run("git", "init", "-q", "-b", "main")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "import")
    for index in range(3):
        (work / f"CHANGES-{index}.txt").write_text(f"change {index}\n" * 100)
        run("git", "add", "-A")
        run("git", "commit", "-q", "-m", f"change {index}")
    bare = root / "repos" / "bench" / "stdlib.git"
    bare.parent.mkdir(parents=True)
    run("git", "clone", "-q", "--bare", str(work), str(bare), cwd=root)
    files = sum(1 for p in (work / "lib").rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in (work / "lib").rglob("*") if p.is_file())
    shutil.rmtree(work)
    return bare, files, size


def force_push(bare: Path, root: Path) -> None:
    """Rewrite the last commit upstream, as a force-push does: its objects become garbage."""
    work = root / "rewrite"
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@x", "PATH": "/usr/bin:/bin", "HOME": str(root)}  # fmt: skip

    def run(*args: str, cwd: Path = work) -> None:
        subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)

    run("git", "clone", "-q", str(bare), str(work), cwd=root)
    run("git", "reset", "-q", "--hard", "HEAD~1")
    (work / "REWRITTEN.txt").write_text("rewritten\n")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "rewritten")
    run("git", "push", "-q", "-f", "origin", "HEAD:main")
    run("git", "gc", "-q", "--prune=now", cwd=bare)
    shutil.rmtree(work)


async def timed(coro_factory) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    await coro_factory()
    return time.perf_counter() - start


async def main(quick: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix="honk-bench-") as tmp:
        root = Path(tmp)
        bare, files, size = await asyncio.to_thread(make_repository, root, quick)
        app = web.Application()
        app.router.add_route(
            "*",
            "/{owner}/{name}.git/{tail:.*}",
            make_git_handler(root / "repos", lambda auth, repo: auth is not None),
        )
        async with serve(app) as url:
            clone_url = f"{url}/{REPO}.git"
            rounds = 1 if quick else 3
            plain = []
            for index in range(rounds):
                dest = root / f"plain-{index}"
                plain.append(
                    await timed(lambda d=dest: git("clone", "-q", clone_url, str(d), token=TOKEN))
                )
                shutil.rmtree(dest)
            workspaces = Workspaces(root / "data")

            async def one_checkout(run_id: int) -> None:
                async with workspaces.checkout(
                    repo=REPO,
                    clone_url=clone_url,
                    token=TOKEN,
                    run_id=run_id,
                    branch=f"honk/{run_id}-bench",
                ):
                    pass

            cold = await timed(lambda: one_checkout(0))
            warm = [await timed(lambda i=i: one_checkout(i + 1)) for i in range(rounds)]
            await asyncio.to_thread(force_push, bare, root)
            pruned = await timed(lambda: one_checkout(rounds + 1))
            mirror = workspaces.mirror_path(REPO)
            no_local, linked = [], []
            for index in range(rounds):
                dest = root / f"linked-{index}"
                linked.append(
                    await timed(
                        lambda d=dest: git("clone", "-q", "--no-checkout", str(mirror), str(d))
                    )
                )
                shutil.rmtree(dest)
                dest = root / f"no-local-{index}"
                no_local.append(
                    await timed(
                        lambda d=dest: git(
                            "clone", "-q", "--no-local", "--no-checkout", str(mirror), str(d)
                        )
                    )
                )
                shutil.rmtree(dest)
        print(f"checkout benchmark: {files} files, {size / 1e6:.1f} MB, served over loopback")
        print(f"  plain git clone          {statistics.median(plain):7.3f} s (median of {rounds})")
        print(f"  honk cold (mirror+clone) {cold:7.3f} s")
        print(f"  honk warm (fetch+clone)  {statistics.median(warm):7.3f} s (median of {rounds})")
        print(
            f"  warm speed-up vs clone   {statistics.median(plain) / statistics.median(warm):7.1f}x"
        )
        print(f"  warm after a force-push  {pruned:7.3f} s (fetch + gc --prune=now + clone)")
        print(
            f"  hard-linked clone alone  {statistics.median(linked):7.3f} s "
            f"(median of {rounds}; what a run pays, before checkout)"
        )
        print(
            f"  --no-local clone alone   {statistics.median(no_local):7.3f} s "
            f"(median of {rounds}; the per-run alternative to pruning)"
        )


if __name__ == "__main__":
    asyncio.run(main(quick="--quick" in sys.argv))
