"""Setup's cost with a repository's dependencies: a Node and a Rust repository, each run twice
through the real pipeline (webhook → setup in bwrap through Honk's proxy → PR), against
local registries that answer after a delay (a registry far away).

Printed per fixture: setup's time on the first run and on the second (whatever Honk's caches
kept between them), beside a plain `npm ci` / `cargo fetch` outside the sandbox in the same
run, cold (empty cache) and warm (the cache filled). The goal: the second run's setup takes
at most 20% of the first's. Any `honk_cache*` metric Honk reports is printed too.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from app.web import SERVICES, create_app
from app.workspace.sandbox import Sandbox
from app.workspace.toolchains import find_installed
from bench._servers import serve, world_settings
from tests.conftest import load_payload, new_private_key, sign
from tests.fakes.anthropic import FakeAnthropic, text, tool_use_edit
from tests.fakes.github import FakeGitHub, public_key_of
from tests.fakes.registries import LocalRegistries
from tests.fakes.slack import FakeSlack
from tests.toolchain_world import BUG, FIX, FIXED_FILE, HOST, crate_project, node_project

INSTALLATION = 78
GOAL = 0.20
METRICS_TOKEN = "bench-metrics-token"


def labeled(repo: str, number: int) -> dict[str, Any]:
    payload = load_payload("issues.labeled.1")
    payload["label"] = {**payload["label"], "name": "honk"}
    payload["repository"] = {
        **payload["repository"],
        "full_name": repo,
        "name": repo.split("/")[1],
    }
    payload["issue"] = {**payload["issue"], "number": number, "title": "add() subtracts"}
    payload["sender"] = {**payload["sender"], "login": "alice", "type": "User"}
    payload["installation"] = {"id": INSTALLATION}
    return payload


def files_of(project: Mapping[str, str | None]) -> dict[str, str]:
    return {name: text for name, text in project.items() if text is not None}


def write(root: Path, project: Mapping[str, str | None]) -> Path:
    for name, body in files_of(project).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body)
    return root


def timed(argv: list[str], cwd: Path, env: Mapping[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        argv, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - start


def plain(kind: str, registries: LocalRegistries, scratch: Path) -> tuple[float, float]:
    """The client outside the sandbox: (cold cache, warm cache) seconds."""
    project = node_project(registries) if kind == "node" else crate_project(registries)
    root = write(scratch / f"plain-{kind}", project)
    if kind == "node":
        env = {"npm_config_cache": str(scratch / "plain-npm-cache")}
        cold = timed(["npm", "ci"], root, env)
        shutil.rmtree(root / "node_modules")
        return cold, timed(["npm", "ci"], root, env)
    cargo = shutil.which("cargo") or "/root/.cargo/bin/cargo"
    env = {"CARGO_HOME": str(scratch / "plain-cargo-home")}
    cold = timed([cargo, "fetch"], root, env)
    return cold, timed([cargo, "fetch"], root, env)


async def setup_seconds(app: Any, repo: str, number: int) -> tuple[float, str]:
    """From the first setup command's start to the last's end, from the run's events; and
    how the run ended."""
    store = app[SERVICES].store
    start = time.perf_counter()
    while True:
        runs = await store.runs.find(repo=repo, issue_number=number)
        if runs and not runs[0].state.active:
            break
        if time.perf_counter() - start > 600:
            raise RuntimeError(f"{repo}#{number}: no end within 600 s")
        await asyncio.sleep(0.05)
    run = runs[0]
    events = await store.events.read(run.id, kinds=("setup",))
    if not events:
        return float("nan"), f"{run.state.value}: {run.error}"
    seconds = (events[-1].at - events[0].at).total_seconds()
    ended = run.state.value if not run.error else f"{run.state.value}: {run.error}"
    return seconds, ended


async def cache_metrics(http: aiohttp.ClientSession, honk_url: str) -> list[str]:
    async with http.get(
        f"{honk_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    ) as response:
        if response.status != 200:
            return [f"(/metrics answered {response.status})"]
        body = await response.text()
    return [line for line in body.splitlines() if line.startswith("honk_cache")]


async def main(quick: bool = False) -> None:
    extra, delay = (4, 0.02) if quick else (24, 0.05)
    key = new_private_key()
    with (
        tempfile.TemporaryDirectory(prefix="honk-bench-env-") as tmp,
        LocalRegistries(extra=extra, delay=delay) as registries,
    ):
        root = Path(tmp)
        github = FakeGitHub(
            app_id=1, public_key_pem=public_key_of(key), private_key_pem=key, repos_root=root / "gh"
        )
        slack, model = FakeSlack(), FakeAnthropic()
        repos = {"node": "bench/node-app", "rust": "bench/rust-app"}
        projects = {"node": node_project(registries), "rust": crate_project(registries)}
        async with (
            serve(github.app) as github_url,
            serve(slack.app(), "/api/") as slack_url,
            serve(model.app) as model_url,
        ):
            github.url, slack.url, model.url = github_url, slack_url, model_url
            github.add_installation(INSTALLATION, account="bench", repos=list(repos.values()))
            for kind, repo in repos.items():
                github.add_repo(repo, files=files_of(projects[kind]))
                github.set_permission(repo, "alice", "write")
            if await Sandbox.check("bwrap") is not None:
                print("environments benchmark: needs bwrap (setup runs in the sandbox)")
                return
            settings = world_settings(
                root, key, github_url, slack, slack_url, model, model_url,
                metrics_token=METRICS_TOKEN,
                review_outcome_optional=True,
                network_presets=(("registries", (f"{HOST}:{registries.port}",)),),
            )  # fmt: skip
            # Honk gives the sandbox the host's Rust where it finds one (rustup's, Debian's).
            has_cargo = any(
                found.language == "rust" for found in await find_installed(settings.sandbox)
            )
            rows: list[str] = []
            app = create_app(settings)
            async with serve(app) as honk_url, aiohttp.ClientSession() as http:
                for kind, repo in repos.items():
                    base_cold, base_warm = await asyncio.to_thread(plain, kind, registries, root)
                    tool = "npm ci" if kind == "node" else "cargo fetch"
                    rows.append(f"{kind}: plain `{tool}` outside the sandbox")
                    rows.append(f"  cold cache               {base_cold:7.2f} s")
                    rows.append(f"  warm cache               {base_warm:7.2f} s")
                    if kind == "rust" and not has_cargo:
                        rows.append("  Honk: skipped: Honk finds no Rust toolchain on this host")
                        continue
                    seconds = []
                    for number in (1, 2):
                        github.add_issue(
                            repo, number, title="add() subtracts", body="", user="alice",
                            labels=["honk"],
                        )  # fmt: skip
                        model.script(
                            tool_use_edit(
                                command="str_replace",
                                path=FIXED_FILE[kind],
                                old_str=BUG,
                                new_str=FIX,
                            ),
                            text("Fixed `add`."),
                        )
                        asked_before = len(registries.paths)
                        body = json.dumps(labeled(repo, number)).encode()
                        async with http.post(
                            f"{honk_url}/api/github/webhooks",
                            data=body,
                            headers={
                                "X-GitHub-Event": "issues",
                                "X-GitHub-Delivery": str(uuid.uuid4()),
                                "X-Hub-Signature-256": sign(body),
                                "Content-Type": "application/json",
                            },
                        ) as response:
                            assert response.status == 202, await response.text()
                        took, ended = await setup_seconds(app, repo, number)
                        seconds.append(took)
                        asked = len(registries.paths) - asked_before
                        rows.append(
                            f"  Honk, run {number} setup       {took:7.2f} s ({ended}; "
                            f"{asked} registry requests)"
                        )
                    share = seconds[1] / seconds[0] if seconds[0] else float("nan")
                    met = "met" if share <= GOAL else "NOT met"
                    rows.append(
                        f"  second / first           {share * 100:6.0f} %"
                        f" (goal <= {GOAL * 100:.0f}%: {met})"
                    )
                metrics = await cache_metrics(http, honk_url)
        print(
            f"environments benchmark: {1 + extra} npm packages and {1 + extra} crates from "
            f"local registries answering after {delay * 1000:.0f} ms"
        )
        for row in rows:
            print(row)
        print("  cache metrics: " + ("; ".join(metrics) if metrics else "none reported"))


if __name__ == "__main__":
    asyncio.run(main(quick="--quick" in sys.argv))
