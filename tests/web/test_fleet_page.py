"""The fleet page without a browser: who sees which repositories, the counts and burndown,
the JSON, the live stream, CSRF, the steering forms and Merge all green as the person."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import unquote

from aiohttp.test_utils import TestClient

from app.fleet_models import FleetRepoState, FleetState
from app.web import SERVICES
from tests.calc_world import REPO
from tests.fakes.github import FakeGitHub
from tests.fleet_page_world import LIB, REQUEST, WEB, new_fleet, open_green_pr, seed_fleet_repos
from tests.run_page_world import csrf_of, sign_in


def shown_repos(page: str) -> list[str]:
    return re.findall(r'data-repo="([^"]+)"', page)


def count(page: str, state: str) -> int:
    found = re.search(rf'id="count-{state}"><dt>[^<]*</dt><dd>(\d+)</dd>', page)
    assert found, state
    return int(found.group(1))


async def test_a_visitor_signs_in_and_sees_the_fleet_with_its_counts_and_burndown(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    await seed_fleet_repos(fake_github)
    store = page_client.app[SERVICES].store
    fleet = await new_fleet(store)
    await store.fleets.set_repo(fleet.id, LIB, FleetRepoState.QUEUED, queued=True)
    await store.fleets.set_repo(fleet.id, WEB, FleetRepoState.FAILED, reason="setup failed")
    first = await page_client.get(f"/fleets/{fleet.id}", allow_redirects=False)
    assert first.status == 302
    assert unquote(first.headers["Location"]) == f"/signin?next=/fleets/{fleet.id}"
    back = await sign_in(page_client, fake_github, "alice", f"/fleets/{fleet.id}")
    assert back == f"/fleets/{fleet.id}"
    response = await page_client.get(back)
    assert response.status == 200
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    page = await response.text()
    assert "Bump the logging library to 2.x" in page  # the request's first line, the title
    assert shown_repos(page) == [REPO, LIB, WEB]
    assert (count(page, "planned"), count(page, "queued"), count(page, "failed")) == (1, 1, 1)
    assert count(page, "merged") == 0
    assert "setup failed" in page
    # The burndown: inline SVG with its accessible name, axes labelled, no script.
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert 'role="img"' in svg and 'aria-labelledby="burndown-title burndown-desc"' in svg
    assert "repositories not yet settled over time</title>" in svg
    assert "time (UTC)" in svg and "not settled" in svg
    assert "<script" not in svg
    # alice asked for it: every form but Resume (it is not paused).
    for verb in ("continue", "pause", "stop", "retry", "rollback"):
        assert f'action="/fleets/{fleet.id}/{verb}"' in page, verb
    assert f'action="/fleets/{fleet.id}/resume"' not in page
    assert '<noscript><meta http-equiv="refresh"' in page
    listed = await (await page_client.get("/fleets")).text()
    assert f'href="/fleets/{fleet.id}"' in listed


async def test_a_person_sees_only_the_repositories_they_can_read(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    await seed_fleet_repos(fake_github)
    store = page_client.app[SERVICES].store
    fleet = await new_fleet(store)
    await store.fleets.set_repo(fleet.id, LIB, FleetRepoState.FAILED, reason="lib's secret error")
    await sign_in(page_client, fake_github, "carol")
    page = await (await page_client.get(f"/fleets/{fleet.id}")).text()
    assert shown_repos(page) == [REPO, WEB]
    assert LIB not in page and "lib's secret error" not in page  # nor the selection naming it
    assert count(page, "failed") == 0 and count(page, "planned") == 2
    assert "of 2 repositories settled" in page
    # A reader who did not ask for it and cannot write to calc: no forms.
    assert 'action="/fleets/' not in page
    api = await (await page_client.get(f"/api/fleets/{fleet.id}")).json()
    assert [r["repo"] for r in api["repos"]] == [REPO, WEB]
    assert api["counts"]["failed"] == 0 and api["state"] == "planned"
    refused = await page_client.post(
        f"/fleets/{fleet.id}/stop", data={"csrf": csrf_of(page)}, allow_redirects=False
    )
    assert refused.status == 403
    assert "needs write access" in await refused.text()
    stored = await store.fleets.get(fleet.id)
    assert stored is not None and stored.state == FleetState.PLANNED


async def test_a_person_who_can_read_none_of_them_gets_the_same_404_as_for_no_fleet(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    await seed_fleet_repos(fake_github)
    store = page_client.app[SERVICES].store
    fleet = await new_fleet(store)
    await sign_in(page_client, fake_github, "bob")
    hidden = await page_client.get(f"/fleets/{fleet.id}")
    missing = await page_client.get("/fleets/999999")
    assert hidden.status == missing.status == 404
    assert await hidden.text() == await missing.text()
    for path in (f"/api/fleets/{fleet.id}", f"/fleets/{fleet.id}/live"):
        assert (await page_client.get(path)).status == 404, path
    assert (await page_client.post(f"/fleets/{fleet.id}/stop", data={})).status == 404
    listed = await (await page_client.get("/fleets")).text()
    assert f"/fleets/{fleet.id}" not in listed and "No fleets" in listed
    bearer = {"Authorization": f"Bearer {fake_github.user_token_for('bob')}"}
    assert (await page_client.get(f"/api/fleets/{fleet.id}", headers=bearer)).status == 404
    assert (await page_client.get(f"/api/fleets/{fleet.id}")).status == 404  # still bob's session


async def test_the_json_api_takes_a_bearer_and_asks_a_stranger_to_sign_in(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    await seed_fleet_repos(fake_github)
    fleet = await new_fleet(page_client.app[SERVICES].store)
    carol = {"Authorization": f"Bearer {fake_github.user_token_for('carol')}"}
    body = await (await page_client.get(f"/api/fleets/{fleet.id}", headers=carol)).json()
    assert body["request"] == REQUEST and body["requested_by"] == "alice"
    assert body["issue"] == f"{REPO}#40" and len(body["repos"]) == 2
    nobody = await page_client.get(f"/api/fleets/{fleet.id}")
    assert nobody.status == 401


async def test_steering_needs_the_sessions_csrf_token_and_says_what_happened(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    await seed_fleet_repos(fake_github)
    store = page_client.app[SERVICES].store
    fleet = await new_fleet(store)
    await sign_in(page_client, fake_github, "alice")
    page = await (await page_client.get(f"/fleets/{fleet.id}")).text()
    for form in ({}, {"csrf": "forged"}):
        refused = await page_client.post(
            f"/fleets/{fleet.id}/pause", data=form, allow_redirects=False
        )
        assert refused.status == 403
        assert "expired" in await refused.text()
    assert (await store.fleets.get(fleet.id)).state == FleetState.PLANNED  # type: ignore[union-attr]

    paused = await page_client.post(
        f"/fleets/{fleet.id}/pause", data={"csrf": csrf_of(page)}, allow_redirects=False
    )
    assert paused.status == 303 and paused.headers["Location"] == f"/fleets/{fleet.id}"
    stored = await store.fleets.get(fleet.id)
    assert stored is not None and stored.state == FleetState.PAUSED
    assert stored.state_reason == "paused by @alice"
    page = await (await page_client.get(f"/fleets/{fleet.id}")).text()
    assert "is paused: nothing more is queued" in page  # said once, on the next page
    assert "paused by @alice" in page
    assert f'action="/fleets/{fleet.id}/resume"' in page
    assert f'action="/fleets/{fleet.id}/pause"' not in page
    again = await (await page_client.get(f"/fleets/{fleet.id}")).text()
    assert "is paused: nothing more is queued" not in again

    # What the fleet's state refuses is said to the person, in the requests' words.
    followed = await page_client.post(f"/fleets/{fleet.id}/continue", data={"csrf": csrf_of(page)})
    told = await followed.text()  # the page it was sent back to
    assert f"Fleet {fleet.id} is paused: Continue is for a fleet waiting" in told
    assert 'class="card notice refused"' in told

    resumed = await page_client.post(f"/fleets/{fleet.id}/resume", data={"csrf": csrf_of(page)})
    assert resumed.status == 200  # followed back to the page
    assert f"Fleet {fleet.id} resumes." in await resumed.text()
    stored = await store.fleets.get(fleet.id)
    assert stored is not None and stored.state == FleetState.CANARY


async def test_a_writer_of_the_fleet_issues_repository_may_steer_and_others_may_not(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    await seed_fleet_repos(fake_github)
    fake_github.set_permission(REPO, "dave", "write")
    fake_github.set_permission(WEB, "dave", "read")
    store = page_client.app[SERVICES].store
    fleet = await new_fleet(store, requested_by="carol")
    without_issue = await new_fleet(store, requested_by="carol", issue=False)
    await sign_in(page_client, fake_github, "dave")
    page = await (await page_client.get(f"/fleets/{fleet.id}")).text()
    stopped = await page_client.post(
        f"/fleets/{fleet.id}/stop", data={"csrf": csrf_of(page)}, allow_redirects=False
    )
    assert stopped.status == 303
    assert (await store.fleets.get(fleet.id)).state == FleetState.STOPPED  # type: ignore[union-attr]
    # A fleet with no issue: its requester only.
    other = await (await page_client.get(f"/fleets/{without_issue.id}")).text()
    assert 'action="/fleets/' not in other
    refused = await page_client.post(
        f"/fleets/{without_issue.id}/stop", data={"csrf": csrf_of(page)}, allow_redirects=False
    )
    assert refused.status == 403 and "@carol" in await refused.text()


async def test_merge_all_green_merges_as_the_person_and_reports_what_github_refused(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    await seed_fleet_repos(fake_github)
    store = page_client.app[SERVICES].store
    fleet = await new_fleet(store)
    merged_pr = await open_green_pr(store, fake_github, fleet, WEB)
    protected_pr = await open_green_pr(
        store, fake_github, fleet, LIB, state=FleetRepoState.APPROVED
    )
    fake_github.require_reviews(LIB, 1)  # branch protection: GitHub refuses, 405
    vetoed = await open_green_pr(store, fake_github, fleet, REPO, review="vetoed")
    await sign_in(page_client, fake_github, "alice")
    page = await (await page_client.get(f"/fleets/{fleet.id}")).text()
    assert "Merge all green (3)" in page
    writes_before = len(fake_github.calls_to("PUT", r"/merge$"))
    response = await page_client.post(f"/fleets/{fleet.id}/merge", data={"csrf": csrf_of(page)})
    assert response.status == 200
    shown = await response.text()
    assert "Merged 1 pull request; 2 could not be merged." in shown
    assert f"<strong>{LIB}</strong>: At least 1 approving review is required" in shown
    assert f"<strong>{REPO}</strong>: Its review did not approve the change" in shown

    web_pr = fake_github.repo(WEB)["pulls"][merged_pr["number"]]
    assert web_pr["merged"] and web_pr["merged_by"]["login"] == "alice"  # as the person
    assert not fake_github.repo(LIB)["pulls"][protected_pr["number"]]["merged"]
    assert not fake_github.repo(REPO)["pulls"][vetoed["number"]]["merged"]
    puts = fake_github.calls_to("PUT", r"/merge$")[writes_before:]
    assert len(puts) == 2  # the vetoed one was never asked of GitHub
    assert all(call.headers["Authorization"].startswith("Bearer ghu_") for call in puts)
    states = {r.repo: r.state for r in await store.fleets.repos(fleet.id)}
    assert states == {
        WEB: FleetRepoState.MERGED,
        LIB: FleetRepoState.APPROVED,
        REPO: FleetRepoState.CI_GREEN,
    }
    assert count(shown, "merged") == 1
    run = await store.runs.get((await store.fleets.repo(fleet.id, WEB)).run_id)  # type: ignore[arg-type,union-attr]
    assert run is not None and any(s.name == "merge" and "@alice" in s.detail for s in run.steps)


async def test_merge_all_green_merges_only_what_the_person_can_see(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    await seed_fleet_repos(fake_github)
    fake_github.set_permission(WEB, "carol", "write")
    store = page_client.app[SERVICES].store
    fleet = await new_fleet(store, requested_by="carol")
    await open_green_pr(store, fake_github, fleet, WEB)
    await open_green_pr(store, fake_github, fleet, LIB)  # carol cannot read lib
    carol = {"Authorization": f"Bearer {fake_github.user_token_for('carol')}"}
    answer = await page_client.post(f"/fleets/{fleet.id}/merge", headers=carol)
    assert answer.status == 200
    assert await answer.json() == {"merged": [WEB], "not_merged": []}
    lib = await store.fleets.repo(fleet.id, LIB)
    assert lib is not None and lib.state == FleetRepoState.CI_GREEN


async def test_the_live_stream_sends_the_fleet_again_when_it_changes(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    await seed_fleet_repos(fake_github)
    store = page_client.app[SERVICES].store
    fleet = await new_fleet(store)
    await sign_in(page_client, fake_github, "carol")
    seen: list[tuple[str, str]] = []

    async def read_until(stream: Any, wanted: str, n: int = 1) -> None:
        event = ""
        async with asyncio.timeout(20):
            while sum(name == wanted for name, _ in seen) < n:
                line = (await stream.content.readline()).decode().rstrip("\r\n")
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    seen.append((event, line.removeprefix("data: ")))

    async with page_client.get(f"/fleets/{fleet.id}/live?version={fleet.version}") as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        await store.fleets.set_repo(fleet.id, WEB, FleetRepoState.RUNNING)
        await read_until(stream, "fleet")
        await store.fleets.set_repo(fleet.id, LIB, FleetRepoState.FAILED, reason="hidden")
        await store.fleets.set_repo(fleet.id, WEB, FleetRepoState.MERGED)
        await read_until(stream, "fleet", 2)
        await store.fleets.set_repo(fleet.id, REPO, FleetRepoState.SKIPPED, reason="no need")
        await store.fleets.set_state(fleet.id, FleetState.DONE, "every repository ended")
        await read_until(stream, "end")
    messages = [json.loads(data) for name, data in seen if name == "fleet"]
    assert messages[0]["counts"]["running"] == 1
    assert 'data-repo="octo-org/web" data-state="running"' in messages[0]["html"]
    assert messages[1]["counts"]["merged"] == 1
    assert all("hidden" not in m["html"] and LIB not in m["html"] for m in messages)
    assert messages[-1]["state"] == "done"
    assert "<svg" in messages[-1]["html"]
