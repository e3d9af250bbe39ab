"""Orchestration overhead from a signed webhook to an opened PR, with a model that answers at once.

Everything real but the model's thinking: the HTTP entry, the SQLite store, the worker,
git over loopback (`git http-backend`), the bwrap sandbox, the anthropic SDK against a
scripted fake, GitHub and Slack fakes.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from app.workspace.sandbox import Sandbox
from bench._servers import serve, world_settings
from tests.conftest import load_payload, new_private_key, sign
from tests.fakes.anthropic import FakeAnthropic, text, tool_use_edit
from tests.fakes.github import FakeGitHub, public_key_of
from tests.fakes.slack import FakeSlack

REPO = "bench/app"
INSTALLATION = 77


def labeled(number: int) -> dict[str, Any]:
    payload = load_payload("issues.labeled.1")
    payload["label"] = {**payload["label"], "name": "honk"}
    payload["repository"] = {**payload["repository"], "full_name": REPO, "name": "app"}
    payload["issue"] = {**payload["issue"], "number": number, "title": f"Bump version {number}"}
    payload["sender"] = {**payload["sender"], "login": "alice", "type": "User"}
    payload["installation"] = {"id": INSTALLATION}
    return payload


async def main(quick: bool = False) -> None:
    from app.web import create_app

    runs = 3 if quick else 10
    key = new_private_key()
    with tempfile.TemporaryDirectory(prefix="honk-bench-") as tmp:
        root = Path(tmp)
        github = FakeGitHub(
            app_id=1,
            public_key_pem=public_key_of(key),
            private_key_pem=key,
            repos_root=root / "github",
        )
        slack = FakeSlack()
        model = FakeAnthropic()
        async with (
            serve(github.app) as github_url,
            serve(slack.app(), "/api/") as slack_url,
            serve(model.app) as model_url,
        ):
            github.url, slack.url, model.url = github_url, slack_url, model_url
            github.add_installation(INSTALLATION, account="bench", repos=[REPO])
            github.add_repo(REPO, files={"VERSION": "1\n"})
            github.set_permission(REPO, "alice", "write")
            sandbox = "bwrap" if await Sandbox.check("bwrap") is None else "off"
            settings = world_settings(
                root, key, github_url, slack, slack_url, model, model_url, sandbox=sandbox
            )
            durations = []
            async with serve(create_app(settings)) as honk_url, aiohttp.ClientSession() as http:
                for number in range(1, runs + 1):
                    # Labelled at GitHub too: Honk checks the label there before it queues a run.
                    github.add_issue(
                        REPO, number, title=f"Bump version {number}", body="", user="alice",
                        labels=["honk"],
                    )  # fmt: skip
                    model.script(
                        tool_use_edit(
                            command="create", path="VERSION", file_text=f"{number + 1}\n"
                        ),
                        text("Bumped the version."),
                    )
                    body = json.dumps(labeled(number)).encode()
                    start = time.perf_counter()
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
                    while not any(
                        p["head"]["ref"].startswith(f"honk/{number}-")
                        for p in github.repo(REPO)["pulls"].values()
                    ):
                        if time.perf_counter() - start > 120:
                            raise RuntimeError("no PR within 120 s")
                        await asyncio.sleep(0.01)
                    durations.append(time.perf_counter() - start)
        print(f"webhook -> PR benchmark ({runs} runs, sandbox={sandbox}, instant model)")
        print(f"  median  {statistics.median(durations):6.3f} s")
        print(f"  min     {min(durations):6.3f} s")
        print(f"  max     {max(durations):6.3f} s")


if __name__ == "__main__":
    asyncio.run(main(quick="--quick" in sys.argv))
