"""Check runs and suites, commit statuses, and Actions (workflow runs, jobs, logs, artifacts)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.fakes.github.state import (
    JSON_BODY,
    GitHubState,
    _Answer,
    _git,
    _validation_failed,
)

ACTIONS_APP = {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"}
SHA_RE = re.compile(r"[0-9a-f]{40}")


class ChecksMixin(GitHubState):
    """Seeds other Apps' checks, statuses and Actions runs; answers Honk's checks and CI reads."""

    # --- seeding -------------------------------------------------------------------

    def add_check_run(
        self,
        repo: str,
        head_sha: str,
        name: str,
        *,
        status: str = "completed",
        conclusion: str | None = "success",
        app: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A check run made by another App (GitHub Actions unless `app` says otherwise)."""
        fields.update(name=name, head_sha=head_sha, status=status, conclusion=conclusion)
        return self._new_check_run(self.repo(repo), fields, dict(app or ACTIONS_APP))

    def set_check_suite(
        self, repo: str, sha: str, status: str, *, app: Mapping[str, Any] | None = None
    ) -> None:
        """Force the status of an App's check suite on `sha` (by default derived from its
        runs): "in_progress" models a workflow whose later jobs have not started yet."""
        app = dict(app or ACTIONS_APP)
        self.repo(repo)["suite_status"][(sha, app["id"])] = (status, app)

    def set_status(
        self,
        repo: str,
        sha: str,
        state: str,
        context: str = "ci",
        *,
        description: str = "",
        target_url: str | None = None,
    ) -> dict[str, Any]:
        """A commit status (pending, success, failure, error); replaces the context's last."""
        statuses = self.repo(repo)["statuses"].setdefault(sha, [])
        status = {
            "id": next(self._ids),
            "state": state,
            "context": context,
            "description": description,
            "target_url": target_url,
            "created_at": self._now(),
            "updated_at": self._now(),
        }
        statuses[:] = [status, *(s for s in statuses if s["context"] != context)]
        return status

    def add_workflow_run(
        self,
        repo: str,
        *,
        head_sha: str,
        head_branch: str = "main",
        name: str = "CI",
        conclusion: str | None = "failure",
        jobs: Iterable[Mapping[str, Any]] = (),
        artifacts: Iterable[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """An Actions run. Each job ({"name", "conclusion", "log", "steps"?}) also appears
        as a GitHub Actions check run with the job's id, as on GitHub."""
        state = self.repo(repo)
        run_id = next(self._ids)
        api = f"{state['data']['url']}/actions/runs/{run_id}"
        html = f"{state['data']['html_url']}/actions/runs/{run_id}"
        status = "completed" if conclusion else "in_progress"
        run = {
            "id": run_id,
            "name": name,
            "node_id": f"WFR_{run_id}",
            "head_branch": head_branch,
            "head_sha": head_sha,
            "run_number": len(state["workflow_runs"]) + 1,
            "run_attempt": 1,
            "event": "pull_request",
            "status": status,
            "conclusion": conclusion,
            "html_url": html,
            "url": api,
            "jobs_url": f"{api}/jobs",
            "logs_url": f"{api}/logs",
            "artifacts_url": f"{api}/artifacts",
            "check_suite_id": next(self._ids),
            "pull_requests": [],
            "created_at": self._now(),
            "updated_at": self._now(),
            "run_started_at": self._now(),
        }
        state["workflow_runs"][run_id] = run
        for spec in jobs:
            job_conclusion = spec.get("conclusion", conclusion)
            job_status = "completed" if job_conclusion else "in_progress"
            check = self._new_check_run(
                state,
                {
                    "name": spec["name"],
                    "head_sha": head_sha,
                    "status": job_status,
                    "conclusion": job_conclusion,
                },
                dict(ACTIONS_APP),
            )
            job_html = f"{html}/job/{check['id']}"
            check.update(details_url=job_html, html_url=job_html)
            state["jobs"][check["id"]] = {
                "id": check["id"],
                "run_id": run_id,
                "run_url": api,
                "node_id": f"CR_{check['id']}",
                "head_sha": head_sha,
                "head_branch": head_branch,
                "name": spec["name"],
                "workflow_name": name,
                "status": job_status,
                "conclusion": job_conclusion,
                "url": f"{state['data']['url']}/actions/jobs/{check['id']}",
                "html_url": job_html,
                "check_run_url": check["url"],
                "steps": list(spec.get("steps", [])),
                "labels": ["ubuntu-latest"],
                "started_at": self._now(),
                "completed_at": self._now() if job_conclusion else None,
            }
            self._job_logs[check["id"]] = spec.get("log", "")
        state["artifacts"][run_id] = [
            {
                "id": (artifact_id := next(self._ids)),
                "node_id": f"MDg6QXJ0aWZhY3Q{artifact_id}",
                "name": spec["name"],
                "size_in_bytes": spec.get("size_in_bytes", 0),
                "url": f"{state['data']['url']}/actions/artifacts/{artifact_id}",
                "archive_download_url": f"{state['data']['url']}/actions/artifacts/"
                f"{artifact_id}/zip",
                "expired": False,
                "workflow_run": {"id": run_id, "head_branch": head_branch, "head_sha": head_sha},
                "created_at": self._now(),
                "expires_at": self._now(),
            }
            for spec in artifacts
        ]
        return run

    def rerun_failed_jobs(
        self, repo: str, run: dict[str, Any], *, conclusion: str = "success"
    ) -> dict[str, Any]:
        """GitHub's "Re-run failed jobs": the failed jobs run again on the same commit as new
        check runs (the old ones stay), and the workflow run's attempt and conclusion move."""
        state = self.repo(repo)
        failed = [
            job
            for job in list(state["jobs"].values())
            if job["run_id"] == run["id"] and job["conclusion"] not in ("success", "skipped")
        ]
        for job in failed:
            check = self._new_check_run(
                state,
                {
                    "name": job["name"],
                    "head_sha": run["head_sha"],
                    "status": "completed",
                    "conclusion": conclusion,
                },
                dict(ACTIONS_APP),
            )
            job_html = f"{run['html_url']}/job/{check['id']}"
            check.update(details_url=job_html, html_url=job_html)
            state["jobs"][check["id"]] = {
                **job, "id": check["id"], "conclusion": conclusion, "html_url": job_html,
                "check_run_url": check["url"], "completed_at": self._now(),
            }  # fmt: skip
        run.update(
            run_attempt=run["run_attempt"] + 1,
            status="completed",
            conclusion=conclusion,
            updated_at=self._now(),
        )
        return run

    # --- building ------------------------------------------------------------------

    def _new_check_run(
        self, state: dict[str, Any], fields: Mapping[str, Any], app: dict[str, Any]
    ) -> dict[str, Any]:
        if not fields.get("name") or not fields.get("head_sha"):
            raise _validation_failed(resource="CheckRun", field="name", code="missing_field")
        run_id = next(self._ids)
        api = f"{state['data']['url']}/check-runs/{run_id}"
        run: dict[str, Any] = {
            "id": run_id,
            "node_id": f"CR_{run_id}",
            "head_sha": fields["head_sha"],
            "external_id": "",
            "url": api,
            "html_url": f"{state['data']['html_url']}/runs/{run_id}",
            "details_url": None,
            "status": "queued",
            "conclusion": None,
            "started_at": self._now(),
            "completed_at": None,
            "output": {
                "title": None,
                "summary": None,
                "text": None,
                "annotations_count": 0,
                "annotations_url": f"{api}/annotations",
            },
            "name": fields["name"],
            "check_suite": {"id": abs(hash((state["data"]["full_name"], fields["head_sha"])))},
            "app": app,
            "pull_requests": [],
        }
        self._apply_check_fields(run, fields)
        state["check_runs"][run_id] = run
        return run

    def _apply_check_fields(self, run: dict[str, Any], fields: Mapping[str, Any]) -> None:
        for key, value in fields.items():
            if key == "output" and isinstance(value, Mapping):
                run["output"].update(value)
            elif key != "actions":
                run[key] = value
        if fields.get("conclusion") is not None:
            run["status"] = "completed"
        if run["status"] == "completed" and not run.get("completed_at"):
            run["completed_at"] = self._now()

    async def _resolve(self, state: dict[str, Any], ref: str) -> str:
        """A branch, tag or sha to a commit sha (422 if there is none, like GitHub)."""
        if SHA_RE.fullmatch(ref):
            return ref
        code, out = await _git(
            "--git-dir",
            str(self.bare_path(state["data"]["full_name"])),
            "rev-parse",
            "--verify",
            "--quiet",
            f"{ref}^{{commit}}",
        )
        if code != 0:
            raise _Answer(422, f"No commit found for SHA: {ref}")
        return out.decode().strip()

    # --- handlers: checks and statuses ---------------------------------------------

    async def _create_check_run(self, request: web.Request) -> web.Response:
        app = {"id": self.app_id, "slug": self.app_info["slug"], "name": self.app_info["name"]}
        run = self._new_check_run(self._state(request), request[JSON_BODY], app)
        return web.json_response(run, status=201)

    async def _get_check_run(self, request: web.Request) -> web.Response:
        run = self._state(request)["check_runs"].get(int(request.match_info["id"]))
        if run is None:
            raise _Answer(404)
        return web.json_response(run)

    async def _update_check_run(self, request: web.Request) -> web.Response:
        run = self._state(request)["check_runs"].get(int(request.match_info["id"]))
        if run is None:
            raise _Answer(404)
        fields = {k: v for k, v in request[JSON_BODY].items() if k != "head_sha"}
        self._apply_check_fields(run, fields)
        return web.json_response(run)

    async def _list_check_suites(self, request: web.Request) -> web.Response:
        """One suite per App on the commit, as GitHub groups check runs (an App may have a
        suite and no runs at all: one that never ran)."""
        state = self._state(request)
        sha = await self._resolve(state, unquote(request.match_info["ref"]))
        runs_by_app: dict[Any, list[dict[str, Any]]] = {}
        apps: dict[Any, dict[str, Any]] = {}
        for (suite_sha, app_id), (_forced, app) in state["suite_status"].items():
            if suite_sha == sha:
                runs_by_app.setdefault(app_id, [])
                apps[app_id] = app
        for run in state["check_runs"].values():
            if run["head_sha"] == sha:
                runs_by_app.setdefault(run["app"]["id"], []).append(run)
                apps[run["app"]["id"]] = run["app"]
        suites = []
        for app_id, runs in sorted(runs_by_app.items(), key=lambda item: str(item[0])):
            forced = state["suite_status"].get((sha, app_id))
            done = all(r["status"] == "completed" for r in runs)
            status = forced[0] if forced else ("completed" if done else "in_progress")
            conclusion = "failure" if any(r["conclusion"] == "failure" for r in runs) else "success"
            suites.append({
                "id": abs(hash((state["data"]["full_name"], sha, app_id))),
                "head_sha": sha,
                "status": status,
                "conclusion": conclusion if status == "completed" else None,
                "app": apps[app_id],
                "latest_check_runs_count": len(runs),
            })  # fmt: skip
        return web.json_response({"total_count": len(suites), "check_suites": suites})

    async def _list_check_runs(self, request: web.Request) -> web.Response:
        state = self._state(request)
        sha = await self._resolve(state, unquote(request.match_info["ref"]))
        query = request.query
        runs = [
            r
            for r in sorted(state["check_runs"].values(), key=lambda r: -r["id"])
            if r["head_sha"] == sha
            and query.get("check_name", r["name"]) == r["name"]
            and query.get("status", r["status"]) == r["status"]
        ]
        return self._page(request, runs, "check_runs")

    async def _combined_status(self, request: web.Request) -> web.Response:
        state = self._state(request)
        sha = await self._resolve(state, unquote(request.match_info["ref"]))
        statuses = state["statuses"].get(sha, [])
        states = {s["state"] for s in statuses}
        if states & {"failure", "error"}:
            combined = "failure"
        elif not statuses or "pending" in states:
            combined = "pending"
        else:
            combined = "success"
        return web.json_response(
            {
                "state": combined,
                "statuses": statuses,
                "sha": sha,
                "total_count": len(statuses),
                "repository": state["data"],
                "commit_url": f"{state['data']['url']}/commits/{sha}",
                "url": f"{state['data']['url']}/commits/{sha}/status",
            }
        )

    async def _create_status(self, request: web.Request) -> web.Response:
        body = request[JSON_BODY]
        if body.get("state") not in ("pending", "success", "failure", "error"):
            raise _validation_failed(resource="Status", field="state", code="invalid")
        status = self.set_status(
            self._state(request)["data"]["full_name"],
            request.match_info["sha"],
            body["state"],
            body.get("context", "default"),
            description=body.get("description") or "",
            target_url=body.get("target_url"),
        )
        return web.json_response(status, status=201)

    # --- handlers: actions ---------------------------------------------------------

    async def _get_workflow_run(self, request: web.Request) -> web.Response:
        run = self._state(request)["workflow_runs"].get(int(request.match_info["id"]))
        if run is None:
            raise _Answer(404)
        return web.json_response(run)

    async def _list_jobs(self, request: web.Request) -> web.Response:
        state, run_id = self._state(request), int(request.match_info["id"])
        if run_id not in state["workflow_runs"]:
            raise _Answer(404)
        jobs = [j for j in state["jobs"].values() if j["run_id"] == run_id]
        return self._page(request, jobs, "jobs")

    async def _job_logs_redirect(self, request: web.Request) -> web.Response:
        job_id = int(request.match_info["id"])
        if job_id not in self._state(request)["jobs"]:
            raise _Answer(404)
        # GitHub answers with a short-lived link to its log storage.
        raise web.HTTPFound(f"{self.url}/_blobs/job-logs/{job_id}")

    async def _job_log_blob(self, request: web.Request) -> web.Response:
        log = self._job_logs.get(int(request.match_info["id"]))
        if log is None:
            raise _Answer(404)
        return web.Response(text=log, content_type="text/plain")

    async def _list_artifacts(self, request: web.Request) -> web.Response:
        state, run_id = self._state(request), int(request.match_info["id"])
        if run_id not in state["workflow_runs"]:
            raise _Answer(404)
        return self._page(request, state["artifacts"].get(run_id, []), "artifacts")
