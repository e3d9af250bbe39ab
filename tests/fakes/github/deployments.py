"""Deployments and their statuses, and the `deployment_status` webhook GitHub sends for each."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.github.state import GitHubState, _Answer

STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")


class DeploymentsMixin(GitHubState):
    """Seeds deployments (as a deploy workflow creates them) and answers their reads."""

    def add_deployment(
        self,
        repo: str,
        sha: str,
        *,
        environment: str = "production",
        ref: str | None = None,
        production: bool | None = None,
        creator: str = "github-actions[bot]",
    ) -> dict[str, Any]:
        state = self.repo(repo)
        deployment_id = next(self._ids)
        api = f"{state['data']['url']}/deployments/{deployment_id}"
        deployment = {
            "id": deployment_id,
            "node_id": f"DE_{deployment_id}",
            "url": api,
            "statuses_url": f"{api}/statuses",
            "sha": sha,
            "ref": ref or state["data"]["default_branch"],
            "task": "deploy",
            "payload": {},
            "original_environment": environment,
            "environment": environment,
            "description": None,
            "creator": self._user(creator, kind="Bot"),
            "transient_environment": False,
            "production_environment": (
                environment == "production" if production is None else production
            ),
            "created_at": self._now(),
            "updated_at": self._now(),
        }
        state["deployments"][deployment_id] = deployment
        state["deployment_statuses"][deployment_id] = []
        return deployment

    def add_deployment_status(
        self,
        repo: str,
        deployment: dict[str, Any],
        state_name: str,
        *,
        environment_url: str = "",
        log_url: str = "",
    ) -> dict[str, Any]:
        if state_name not in STATES:
            raise ValueError(state_name)
        state = self.repo(repo)
        status_id = next(self._ids)
        status = {
            "id": status_id,
            "node_id": f"DES_{status_id}",
            "url": f"{deployment['statuses_url']}/{status_id}",
            "state": state_name,
            "creator": deployment["creator"],
            "description": "",
            "environment": deployment["environment"],
            "target_url": log_url,
            "log_url": log_url,
            "environment_url": environment_url,
            "deployment_url": deployment["url"],
            "repository_url": state["data"]["url"],
            "created_at": self._now(),
            "updated_at": self._now(),
        }
        state["deployment_statuses"][deployment["id"]].insert(0, status)
        return status

    def deployment_status_event(
        self, repo: str, deployment: dict[str, Any], status: dict[str, Any], installation: int
    ) -> dict[str, Any]:
        """The `deployment_status` webhook's payload for `status`, as GitHub sends it."""
        return {
            "action": "created",
            "deployment_status": status,
            "deployment": deployment,
            "repository": self.repo(repo)["data"],
            "sender": deployment["creator"],
            "installation": {"id": installation, "node_id": f"MDIz{installation}"},
        }

    async def _list_deployments(self, request: web.Request) -> web.Response:
        state, query = self._state(request), request.query
        found = [
            d
            for d in sorted(state["deployments"].values(), key=lambda d: -d["id"])
            if query.get("sha") in (None, d["sha"])
            and query.get("environment") in (None, d["environment"])
        ]
        return self._page(request, found)

    async def _list_deployment_statuses(self, request: web.Request) -> web.Response:
        state = self._state(request)
        statuses = state["deployment_statuses"].get(int(request.match_info["id"]))
        if statuses is None:
            raise _Answer(404)
        return self._page(request, list(statuses))
