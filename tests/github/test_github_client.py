"""The GitHub client against the fake GitHub: retries, rate limits and Honk's calls."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import gidgethub
import pytest

from app.config import Settings
from app.github import GitHubApp, GitHubClient, convert_manifest
from tests.fakes.github import SECONDARY_RATE_LIMIT, FakeGitHub, ManualClock

REPO = "octo/widgets"
ISSUE = rf"^/repos/{REPO}/issues/1$"


class RecordingSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
async def gh(
    fake_github: FakeGitHub, base_settings: Settings, sleep: RecordingSleep, clock: ManualClock
) -> AsyncIterator[GitHubClient]:
    fake_github.add_installation(1, "octo")
    fake_github.add_repo(REPO, files={"README.md": "# widgets\n", "docs/guide.md": "Guide\n"})
    fake_github.add_issue(REPO, 1, title="Crash", body="It crashes", user="alice")
    settings = base_settings.with_overrides(github_api_url=fake_github.url)
    async with aiohttp.ClientSession() as session:
        token = await GitHubApp(settings.github, session).installation_token(1)
        yield GitHubClient(
            session, base_url=fake_github.url, oauth_token=token.token, sleep=sleep, clock=clock
        )


# --- retries --------------------------------------------------------------------------


async def test_a_502_is_retried(
    gh: GitHubClient, fake_github: FakeGitHub, sleep: RecordingSleep
) -> None:
    fake_github.fail_next("GET", ISSUE, 502)
    assert (await gh.issue(REPO, 1))["title"] == "Crash"
    assert sleep.waits == [1.0]
    assert len(fake_github.calls_to("GET", ISSUE)) == 2


async def test_secondary_rate_limit_waits_for_retry_after(
    gh: GitHubClient, fake_github: FakeGitHub, sleep: RecordingSleep
) -> None:
    fake_github.fail_next(
        "POST",
        r"/comments$",
        403,
        headers={"Retry-After": "7"},
        body={"message": SECONDARY_RATE_LIMIT},
    )
    comment = await gh.comment(REPO, 1, "On it")
    assert comment["body"] == "On it"
    assert sleep.waits == [7.0]
    assert len(fake_github.repo(REPO)["comments"]) == 1


async def test_secondary_rate_limit_without_retry_after_waits_a_minute(
    gh: GitHubClient, fake_github: FakeGitHub, sleep: RecordingSleep
) -> None:
    fake_github.fail_next("GET", ISSUE, 403, body={"message": SECONDARY_RATE_LIMIT}, times=2)
    await gh.issue(REPO, 1)
    assert sleep.waits == [60.0, 120.0]


async def test_primary_rate_limit_waits_until_reset(
    gh: GitHubClient, fake_github: FakeGitHub, sleep: RecordingSleep, clock: ManualClock
) -> None:
    fake_github.fail_next(
        "GET",
        ISSUE,
        403,
        headers={
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": str(int(clock()) + 30),
        },
        body={"message": "API rate limit exceeded for installation ID 1."},
    )
    await gh.issue(REPO, 1)
    assert sleep.waits == [31.0]  # until the reset, and a second to be sure


async def test_429_is_retried(
    gh: GitHubClient, fake_github: FakeGitHub, sleep: RecordingSleep
) -> None:
    fake_github.fail_next("GET", ISSUE, 429, headers={"Retry-After": "3"})
    await gh.issue(REPO, 1)
    assert sleep.waits == [3.0]


async def test_gives_up_after_max_retries_with_a_clear_error(
    gh: GitHubClient, fake_github: FakeGitHub, sleep: RecordingSleep
) -> None:
    fake_github.fail_next("GET", ISSUE, 502, times=10)
    with pytest.raises(gidgethub.GitHubBroken) as broken:
        await gh.issue(REPO, 1)
    assert broken.value.status_code == 502
    assert "gave up after 5 attempts" in str(broken.value)
    assert f"/repos/{REPO}/issues/1" in str(broken.value)
    assert sleep.waits == [1.0, 2.0, 4.0, 8.0]
    assert len(fake_github.calls_to("GET", ISSUE)) == 5


async def test_a_wait_longer_than_max_wait_is_not_attempted(
    gh: GitHubClient, fake_github: FakeGitHub, sleep: RecordingSleep, clock: ManualClock
) -> None:
    fake_github.fail_next(
        "GET",
        ISSUE,
        403,
        headers={
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": str(int(clock()) + 3000),
        },
        body={"message": "API rate limit exceeded"},
    )
    with pytest.raises(gidgethub.RateLimitExceeded) as limited:
        await gh.issue(REPO, 1)
    assert "more than the 120 s allowed" in str(limited.value)
    assert sleep.waits == []


async def test_permission_denied_is_not_retried_and_hides_the_token(
    gh: GitHubClient, fake_github: FakeGitHub, sleep: RecordingSleep
) -> None:
    fake_github.fail_next(
        "POST", r"/comments$", 403, body={"message": "Resource not accessible by integration"}
    )
    with pytest.raises(gidgethub.BadRequest) as denied:
        await gh.comment(REPO, 1, "hi")
    assert denied.value.status_code == 403
    assert sleep.waits == []
    assert gh.oauth_token is not None and gh.oauth_token not in str(denied.value)


async def test_a_refused_connection_is_retried(sleep: RecordingSleep) -> None:
    async with aiohttp.ClientSession() as session:
        gh = GitHubClient(session, base_url="http://127.0.0.1:9", sleep=sleep, max_retries=2)
        with pytest.raises(aiohttp.ClientConnectorError):
            await gh.getitem("/app")
    assert sleep.waits == [1.0, 2.0]


# --- permissions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "writer"),
    [
        ("admin", True),
        ("maintain", True),
        ("write", True),
        ("triage", False),
        ("read", False),
        ("none", False),
    ],
)
async def test_permission_levels(
    gh: GitHubClient, fake_github: FakeGitHub, level: str, writer: bool
) -> None:
    fake_github.set_permission(REPO, "bob", level)
    assert await gh.permission(REPO, "bob") == level
    assert await gh.can_write(REPO, "bob") is writer


async def test_unknown_user_has_no_permission(gh: GitHubClient) -> None:
    assert await gh.permission(REPO, "ghost") == "none"
    assert await gh.can_write(REPO, "ghost") is False


async def test_custom_role_falls_back_to_its_base_permission(
    gh: GitHubClient, fake_github: FakeGitHub
) -> None:
    fake_github.fail_next(
        "GET",
        r"/collaborators/carol/permission$",
        200,
        body={"permission": "write", "role_name": "release-manager", "user": {"login": "carol"}},
    )
    assert await gh.permission(REPO, "carol") == "write"


# --- issues, comments, reactions ------------------------------------------------------


async def test_comment_edit_and_react(gh: GitHubClient, fake_github: FakeGitHub) -> None:
    comment = await gh.comment(REPO, 1, "Working on it")
    edited = await gh.edit_comment(REPO, comment["id"], "Done")
    assert edited["body"] == "Done"
    assert [c["body"] for c in await gh.issue_comments(REPO, 1)] == ["Done"]
    await gh.react(f"/repos/{REPO}/issues/1", "eyes")
    await gh.react(comment["url"], "rocket")
    assert fake_github.reactions_on(REPO, "issue:1") == ["eyes"]
    assert fake_github.reactions_on(REPO, f"comment:{comment['id']}") == ["rocket"]
    assert comment["user"]["login"] == "honk-test[bot]"


async def test_create_issue_with_labels(gh: GitHubClient, fake_github: FakeGitHub) -> None:
    issue = await gh.create_issue(REPO, "Follow-up", "Details", ["honk"])
    assert issue["number"] == 2
    assert [label["name"] for label in issue["labels"]] == ["honk"]
    assert (await gh.issue(REPO, 2))["title"] == "Follow-up"


# --- pull requests --------------------------------------------------------------------


async def test_open_pull_is_idempotent(gh: GitHubClient, fake_github: FakeGitHub) -> None:
    fake_github.commit_files(REPO, {"fix.py": "x = 1\n"}, branch="honk/issue-1")
    pr, created = await gh.open_pull(
        REPO, head="honk/issue-1", base="main", title="Fix", body="v1", draft=True
    )
    assert created and pr["draft"] is True and pr["head"]["ref"] == "honk/issue-1"
    again, created_again = await gh.open_pull(
        REPO, head="honk/issue-1", base="main", title="Fix (2)", body="v2"
    )
    assert not created_again
    assert again["number"] == pr["number"]
    assert (await gh.pull(REPO, pr["number"]))["body"] == "v2"
    assert len(fake_github.calls_to("POST", rf"^/repos/{REPO}/pulls$")) == 1


async def test_open_pull_reuses_a_pr_opened_concurrently(
    gh: GitHubClient, fake_github: FakeGitHub
) -> None:
    fake_github.commit_files(REPO, {"fix.py": "x = 1\n"}, branch="honk/issue-1")
    existing = fake_github.add_pull(REPO, head="honk/issue-1", title="Other run")
    # The first look misses it, as if the other run had not opened it yet.
    fake_github.fail_next("GET", rf"^/repos/{REPO}/pulls$", 200, body=[])
    pr, created = await gh.open_pull(
        REPO, head="octo:honk/issue-1", base="main", title="T", body="B"
    )
    assert not created
    assert pr["number"] == existing["number"] and pr["title"] == "T"


async def test_find_pull_prefers_open_then_newest(
    gh: GitHubClient, fake_github: FakeGitHub
) -> None:
    fake_github.commit_files(REPO, {"a.py": "a\n"}, branch="honk/x")
    old = fake_github.add_pull(REPO, head="honk/x", state="closed")
    current = fake_github.add_pull(REPO, head="honk/x")
    fake_github.add_pull(REPO, head="honk/x", state="closed")
    found = await gh.find_pull(REPO, "octo", "honk/x")
    assert found is not None and found["number"] == current["number"] != old["number"]
    assert await gh.find_pull(REPO, "octo", "honk/none") is None


async def test_pull_follows_pushes_and_lists_review_comments(
    gh: GitHubClient, fake_github: FakeGitHub
) -> None:
    fake_github.commit_files(REPO, {"a.py": "a\n"}, branch="honk/x")
    pr = fake_github.add_pull(REPO, head="honk/x")
    fake_github.add_review_comment(REPO, pr["number"], "rename this", user="alice", path="a.py")
    pushed = fake_github.commit_files(REPO, {"a.py": "b\n"}, branch="honk/x")
    assert (await gh.pull(REPO, pr["number"]))["head"]["sha"] == pushed
    (comment,) = await gh.review_comments(REPO, pr["number"])
    assert (comment["body"], comment["path"]) == ("rename this", "a.py")


# --- contents and labels --------------------------------------------------------------


async def test_file_text(gh: GitHubClient, fake_github: FakeGitHub) -> None:
    text, sha = await gh.file_text(REPO, "docs/guide.md") or ("", "")
    assert text == "Guide\n"
    assert sha == fake_github.git(REPO, "rev-parse", "main:docs/guide.md").strip()
    fake_github.commit_files(REPO, {"docs/guide.md": "Other\n"}, branch="dev")
    assert (await gh.file_text(REPO, "docs/guide.md", ref="dev") or ("",))[0] == "Other\n"
    assert await gh.file_text(REPO, "missing.txt") is None
    assert await gh.file_text(REPO, "docs") is None  # a directory


async def test_file_text_of_a_file_over_a_megabyte(
    gh: GitHubClient, fake_github: FakeGitHub
) -> None:
    big = "x" * 1_100_000
    fake_github.commit_files(REPO, {"big.txt": big})
    assert (await gh.file_text(REPO, "big.txt") or ("",))[0] == big


async def test_ensure_label(gh: GitHubClient, fake_github: FakeGitHub) -> None:
    assert await gh.ensure_label(REPO, "honk", "#6f42c1", "Honk works on it") is True
    label = fake_github.repo(REPO)["labels"]["honk"]
    assert (label["color"], label["description"]) == ("6f42c1", "Honk works on it")
    assert await gh.ensure_label(REPO, "honk", "000000", "changed") is False
    assert fake_github.repo(REPO)["labels"]["honk"]["color"] == "6f42c1"
    assert len(fake_github.calls_to("POST", r"/labels$")) == 1


async def test_ensure_label_treats_already_exists_as_existing(
    gh: GitHubClient, fake_github: FakeGitHub
) -> None:
    await gh.ensure_label(REPO, "honk", "ededed", "")
    fake_github.fail_next("GET", r"/labels/honk$", 404)  # created between look and post
    assert await gh.ensure_label(REPO, "honk", "ededed", "") is False


# --- checks and CI --------------------------------------------------------------------


async def test_check_runs_are_read_across_pages(gh: GitHubClient, fake_github: FakeGitHub) -> None:
    sha = fake_github.branch_sha(REPO, "main")
    assert sha is not None
    for n in range(130):
        fake_github.add_check_run(REPO, sha, f"job-{n}")
    runs = await gh.check_runs(REPO, sha)
    assert len(runs) == 130
    assert len({r["id"] for r in runs}) == 130
    assert len(fake_github.calls_to("GET", r"/check-runs$")) == 2
    assert len(await gh.check_runs(REPO, "main")) == 130  # a branch name works too


async def test_create_and_update_check_run(gh: GitHubClient, fake_github: FakeGitHub) -> None:
    sha = fake_github.branch_sha(REPO, "main")
    run = await gh.create_check_run(REPO, name="honk", head_sha=sha, status="in_progress")
    done = await gh.update_check_run(
        REPO, run["id"], conclusion="success", output={"title": "Done", "summary": "ok"}
    )
    assert (done["status"], done["conclusion"]) == ("completed", "success")
    assert done["output"]["title"] == "Done"
    assert done["app"]["slug"] == "honk-test"


async def test_combined_status(gh: GitHubClient, fake_github: FakeGitHub) -> None:
    sha = fake_github.branch_sha(REPO, "main")
    assert sha is not None
    assert (await gh.combined_status(REPO, sha))["state"] == "pending"
    fake_github.set_status(REPO, sha, "success", "lint")
    fake_github.set_status(REPO, sha, "failure", "tests")
    status = await gh.combined_status(REPO, "main")
    assert status["state"] == "failure"
    assert {s["context"] for s in status["statuses"]} == {"lint", "tests"}


async def test_workflow_jobs_logs_and_artifacts(gh: GitHubClient, fake_github: FakeGitHub) -> None:
    sha = fake_github.branch_sha(REPO, "main")
    assert sha is not None
    run = fake_github.add_workflow_run(
        REPO,
        head_sha=sha,
        jobs=[
            {"name": "test", "conclusion": "failure", "log": "FAILED test_x\n"},
            {"name": "lint", "conclusion": "success", "log": "ok\n"},
        ],
        artifacts=[{"name": "report"}],
    )
    jobs = await gh.workflow_jobs(REPO, run["id"])
    assert [(j["name"], j["conclusion"]) for j in jobs] == [
        ("test", "failure"),
        ("lint", "success"),
    ]
    assert await gh.job_logs(REPO, jobs[0]["id"]) == "FAILED test_x\n"
    assert len(fake_github.calls_to("GET", r"^/_blobs/job-logs/")) == 1  # the redirect
    assert [a["name"] for a in await gh.artifacts(REPO, run["id"])] == ["report"]
    # Each job is also a check run with the job's id, as GitHub Actions makes them.
    failing = [r for r in await gh.check_runs(REPO, sha) if r["conclusion"] == "failure"]
    assert [r["id"] for r in failing] == [jobs[0]["id"]]


async def test_installation_repositories(gh: GitHubClient, fake_github: FakeGitHub) -> None:
    fake_github.add_repo("octo/gadgets")
    fake_github.add_repo("someone-else/thing")
    names = {r["full_name"] for r in await gh.installation_repositories()}
    assert names == {REPO, "octo/gadgets"}


async def test_convert_manifest(fake_github: FakeGitHub) -> None:
    expected = fake_github.add_manifest_code("code-123", slug="honk-prod")
    async with aiohttp.ClientSession() as session:
        answer = await convert_manifest(session, fake_github.url, "code-123")
        assert answer["slug"] == "honk-prod"
        assert answer["pem"] == expected["pem"] and "PRIVATE KEY" in answer["pem"]
        assert {"id", "webhook_secret", "client_id", "client_secret", "html_url"} <= set(answer)
        with pytest.raises(gidgethub.BadRequest):  # a code works once
            await convert_manifest(session, fake_github.url, "code-123")
