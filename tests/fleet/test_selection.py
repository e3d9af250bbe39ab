"""A fleet's selection: the `repositories:` block read, resolved against a fake GitHub of 60
repositories (two languages, topics, archived ones, forks, one outside the installation, a
requester who cannot write to some), and the plan told to people."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from app.config import Settings
from app.fleet.resolving import resolve
from app.fleet.selection import (
    Plan,
    Selection,
    SelectionError,
    describe_plan,
    parse_selection,
)
from app.fleet_models import FleetTarget
from app.github import GitHubApp, GitHubClient
from tests.fakes.github import FakeGitHub, ManualClock

OWNER = "octo"
ARCHIVED = {10, 11}
FORKS = {20, 21}
READ_ONLY = {3, 4, 5}  # alice may only read these (5 only as the public may)
OLD_API = "old_client.connect()"


def svc(i: int) -> str:
    return f"{OWNER}/svc-{i:02d}"


def language_of(i: int) -> str:
    return "Python" if i % 2 == 0 else "Go"


def topics_of(i: int) -> list[str]:
    topics = ["billing"] if i % 3 == 0 else ["web"]
    return topics + (["legacy"] if i % 5 == 0 else [])


def calls_old_api(i: int) -> bool:
    return i % 6 == 0


class AdvancingSleep:
    """The client's sleep: records the wait and moves the clock GitHub's side reads."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def world(fake_github: FakeGitHub, clock: ManualClock) -> FakeGitHub:
    """Seeded outside the event loop: one git-backed repository, the rest REST objects."""
    fake_github.clock = clock
    names = []
    for i in range(60):
        if language_of(i) == "Python":
            # Three files that call the old API: more results than repositories.
            files = {
                f"app/{part}.py": (OLD_API if calls_old_api(i) else "new_client.connect()")
                for part in ("main", "jobs", "cli")
            }
        else:
            files = {"main.go": "package main\n"}
        fake_github.add_repo(
            svc(i),
            git=False,
            files=files,
            language=language_of(i),
            topics=topics_of(i),
            archived=i in ARCHIVED,
            fork=i in FORKS,
        )
        fake_github.set_permission(svc(i), "alice", "read" if i in (3, 4) else "write")
        names.append(svc(i))
    # svc-05: alice is no collaborator, so she may read it as the public may.
    fake_github.repo(svc(5))["collaborators"].pop("alice")
    fake_github.add_repo(
        f"{OWNER}/with-git", files={"lib/client.py": f"x = {OLD_API}\n"}, language="Python"
    )
    fake_github.set_permission(f"{OWNER}/with-git", "alice", "admin")
    names.append(f"{OWNER}/with-git")
    # Public, of the same owner, but Honk is not installed on it.
    fake_github.add_repo(f"{OWNER}/outside", git=False, files={"a.py": OLD_API}, language="Python")
    fake_github.add_repo("someone/else", git=False, files={"a.py": OLD_API}, language="Python")
    fake_github.add_installation(1, OWNER, repos=names)
    return fake_github


def installed() -> list[str]:
    return [svc(i) for i in range(60)] + [f"{OWNER}/with-git"]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def sleep(clock: ManualClock) -> AdvancingSleep:
    return AdvancingSleep(clock)


@pytest.fixture
async def gh(
    world: FakeGitHub,
    base_settings: Settings,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    sleep: AdvancingSleep,
) -> GitHubClient:
    """The installation's client, on the fake's clock (its waits take no time)."""
    settings = base_settings.with_overrides(github_api_url=world.url)
    token = await GitHubApp(settings.github, session).installation_token(1)
    return GitHubClient(
        session, base_url=world.url, oauth_token=token.token, sleep=sleep, clock=clock
    )


def reasons(plan: Plan) -> dict[str, str]:
    return {t.repo: t.skipped for t in plan.left_out if t.skipped is not None}


# --- reading ---------------------------------------------------------------------------


def test_every_form_is_read_and_the_noise_ignored() -> None:
    text = """
    # which repositories
    - octo/widgets
    * Octo/Gadgets   # the old one
    + `octo/tools`
    1. https://github.com/octo/web/
    octo/widgets
    - octo/*
    Topic: Billing
    topic:billing
    language: Go
    language:C#
    search: "old_client.connect(" # not a comment in a search
    include:archived
    INCLUDE:forks
    ```
    """
    selection = parse_selection(text)
    assert selection == Selection(
        repos=("octo/widgets", "Octo/Gadgets", "octo/tools", "octo/web"),
        owners=("octo",),
        topics=("billing",),
        languages=("Go", "C#"),
        searches=('"old_client.connect(" # not a comment in a search',),
        include_archived=True,
        include_forks=True,
    )
    assert parse_selection(str(selection)) == selection


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("octo/a\nnot a repo", "line 2: `not a repo` is not one of owner/name, owner/*"),
        ("\n\nocto", "line 3: `octo` is not one of"),
        ("octo/a/b", "line 1: `octo/a/b`"),
        ("octo/*x", "line 1: `octo/*x`"),
        ("-bad/name", "line 1"),
        ("octo/..", "line 1: `octo/..` is not a repository's name"),
        ("topic:", "line 1: `topic:` needs a value"),
        ("octo/a\ntopic:not_a topic", "line 2: `not_a topic` is not a topic"),
        ("include:everything", "line 1: `include:everything` is not include:archived"),
        ("search:" + "x" * 300, "line 1: the search is longer than GitHub's 256 characters"),
        ("", "The selection names no repositories"),
        ("# only a comment\n\n- \ninclude:archived", "The selection names no repositories"),
    ],
)
def test_what_it_cannot_read_is_named_by_its_line(text: str, message: str) -> None:
    with pytest.raises(SelectionError) as caught:
        parse_selection(text)
    assert message in str(caught.value)


# --- resolving -------------------------------------------------------------------------


async def test_an_owner_s_repositories_leave_out_archived_forks_and_the_unwritable(
    gh: GitHubClient,
) -> None:
    plan = await resolve(parse_selection("octo/*"), gh, requester="@alice", limit=500)
    left_out = ARCHIVED | FORKS | READ_ONLY
    expected = [f"{OWNER}/with-git"] + [svc(i) for i in range(60) if i not in left_out]
    assert plan.chosen == sorted(expected)
    assert reasons(plan) == {
        **{svc(i): "archived" for i in ARCHIVED},
        **{svc(i): "a fork" for i in FORKS},
        **{svc(i): "@alice cannot write to it" for i in READ_ONLY},
    }
    # Chosen first, then the left out, each in the selection's order.
    assert [t.repo for t in plan.left_out] == [svc(i) for i in sorted(left_out)]
    assert plan.targets[: len(plan.chosen)] == tuple(FleetTarget(r) for r in plan.chosen)


async def test_included_archived_repositories_and_forks_are_chosen(gh: GitHubClient) -> None:
    selection = parse_selection("octo/*\ninclude:archived\ninclude:forks")
    plan = await resolve(selection, gh, requester="alice", limit=500)
    assert {svc(i) for i in ARCHIVED | FORKS} <= set(plan.chosen)
    assert set(reasons(plan)) == {svc(i) for i in READ_ONLY}


async def test_languages_match_in_any_case_and_filters_are_and_across_or_within(
    gh: GitHubClient,
) -> None:
    go = await resolve(parse_selection("language:go"), gh, requester="alice", limit=500)
    assert go.chosen == [svc(i) for i in range(60) if i % 2 and i not in ARCHIVED | FORKS | {3, 5}]

    both = "language:Go\ntopic:billing"
    plan = await resolve(parse_selection(both), gh, requester="alice", limit=500)
    assert plan.chosen == [svc(i) for i in (9, 15, 27, 33, 39, 45, 51, 57)]
    assert reasons(plan) == {svc(3): "@alice cannot write to it", svc(21): "a fork"}

    either = "topic:legacy\ntopic:billing\nlanguage:python\nlanguage:Go"
    plan = await resolve(parse_selection(either), gh, requester="alice", limit=500)
    wanted = [i for i in range(60) if i % 3 == 0 or i % 5 == 0]
    assert plan.chosen == [svc(i) for i in wanted if i not in (3, 5, 10, 20, 21)]
    assert list(reasons(plan)) == [svc(i) for i in (3, 5, 10, 20, 21)]


async def test_listed_repositories_filters_and_those_honk_is_not_installed_on(
    gh: GitHubClient,
) -> None:
    text = "octo/svc-07\nsomeone/else\nOCTO/SVC-10\nocto/svc-02\nocto/outside\nocto/svc-04"
    plan = await resolve(parse_selection(text), gh, requester="alice", limit=500)
    assert plan.chosen == [svc(7), svc(2)]  # as listed, GitHub's spelling
    assert plan.left_out == [
        FleetTarget("someone/else", "Honk is not installed on it"),
        FleetTarget(svc(10), "archived"),  # naming it does not include it
        FleetTarget("octo/outside", "Honk is not installed on it"),
        FleetTarget(svc(4), "@alice cannot write to it"),
    ]
    # A filter narrows the listed ones too; who is not installed is still said.
    plan = await resolve(parse_selection(text + "\nlanguage:Go"), gh, requester="alice", limit=9)
    assert plan.chosen == [svc(7)]
    assert reasons(plan) == {
        "someone/else": "Honk is not installed on it",
        "octo/outside": "Honk is not installed on it",
    }


async def test_a_code_search_chooses_the_repositories_its_results_name(
    gh: GitHubClient, world: FakeGitHub
) -> None:
    plan = await resolve(parse_selection(f"search:{OLD_API}"), gh, requester="alice", limit=500)
    callers = [svc(i) for i in range(60) if calls_old_api(i)]
    assert plan.chosen == [*callers, f"{OWNER}/with-git"]  # with-git through git grep
    # octo/outside is found and said to be out of Honk's reach; someone/else, whose
    # someone/else calls it too, is not searched: the search is scoped to the owner.
    assert reasons(plan) == {"octo/outside": "Honk is not installed on it"}
    searches = world.calls_to("GET", r"^/search/code$")
    # 30 files of Python repositories + with-git + outside, over 100 a page: one page.
    assert [c.query["q"] for c in searches] == [f"{OLD_API} org:octo"]
    assert searches[0].query["per_page"] == "100"

    with_forks = f"search:{OLD_API}\ninclude:forks\nlanguage:python\ntopic:billing"
    plan = await resolve(parse_selection(with_forks), gh, requester="alice", limit=500)
    assert world.calls_to("GET", r"^/search/code$")[-1].query["q"] == (
        f"{OLD_API} org:octo fork:true"
    )
    assert plan.chosen == [svc(i) for i in (0, 6, 12, 18, 24, 30, 36, 42, 48, 54)]
    # Honk cannot know outside's topics; the search found it, so it is said to be out of reach.
    assert reasons(plan) == {"octo/outside": "Honk is not installed on it"}

    # Listed repositories are the universe: a search result beyond them is not named.
    listed = f"search:{OLD_API}\nocto/svc-00\nocto/svc-01"
    plan = await resolve(parse_selection(listed), gh, requester="alice", limit=500)
    assert plan.targets == (FleetTarget(svc(0)),)


async def test_searches_are_paginated_and_or_ed(gh: GitHubClient, world: FakeGitHub) -> None:
    for i in range(60):
        if language_of(i) == "Python":
            world.repo(svc(i))["code"] |= {f"extra/{n}.py": "needle" for n in range(4)}
    text = "octo/*\nsearch:needle\nsearch:package main"
    plan = await resolve(parse_selection(text), gh, requester="alice", limit=500)
    excluded = ARCHIVED | FORKS | READ_ONLY
    assert plan.chosen == [svc(i) for i in range(60) if i not in excluded]
    needle = [c for c in world.calls_to("GET", r"^/search/code$") if "needle" in c.query["q"]]
    assert [c.query["page"] for c in needle] == ["1", "2"]  # 120 results


async def test_a_search_past_github_s_thousand_results_says_so(
    gh: GitHubClient, world: FakeGitHub
) -> None:
    world.add_repo(
        f"{OWNER}/monorepo",
        git=False,
        files={f"pkg/{n}.py": "needle" for n in range(1100)},
    )
    world.add_installation(1, OWNER, repos=[*installed(), f"{OWNER}/monorepo"])
    world.set_permission(f"{OWNER}/monorepo", "alice", "write")
    plan = await resolve(parse_selection("search:needle"), gh, requester="alice", limit=5)
    assert plan.chosen == [f"{OWNER}/monorepo"]
    assert len(world.calls_to("GET", r"^/search/code$")) == 10
    assert len(plan.notes) == 1 and "more than GitHub tells (1000 results)" in plan.notes[0]
    assert "Note: The code search `needle` found more" in describe_plan(plan)


async def test_code_search_s_own_rate_limit_is_waited_out(
    gh: GitHubClient, world: FakeGitHub, sleep: AdvancingSleep
) -> None:
    world.code_search_limit = 1
    text = "search:new_client\nsearch:package"
    plan = await resolve(parse_selection(text), gh, requester="alice", limit=500)
    assert svc(2) in plan.chosen and svc(1) in plan.chosen
    assert len(world.rate_limited) == 1
    assert len(sleep.waits) == 1 and 0 < sleep.waits[0] <= 61


@pytest.mark.parametrize(
    ("status", "body", "headers", "words"),
    [
        (
            422,
            {
                "message": "Validation Failed",
                "errors": [{"message": "ERROR_TYPE_QUERY_PARSING_FATAL unable to parse query!"}],
            },
            {},
            "Validation Failed",
        ),
        (403, {"message": "Resource not accessible by integration"}, {}, "not accessible"),
        (
            403,
            {"message": "API rate limit exceeded for installation ID 1."},
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9999999999"},
            "API rate limit exceeded",
        ),
    ],
)
async def test_a_refused_code_search_is_told_in_github_s_words(
    gh: GitHubClient,
    world: FakeGitHub,
    status: int,
    body: dict[str, object],
    headers: dict[str, str],
    words: str,
) -> None:
    world.fail_next("GET", r"^/search/code$", status, body=body, headers=headers)
    with pytest.raises(SelectionError) as caught:
        await resolve(parse_selection("search:needle"), gh, requester="alice", limit=5)
    assert str(caught.value).startswith("GitHub refused the code search `needle`: ")
    assert words in str(caught.value)


async def test_the_fake_refuses_what_github_cannot_parse(gh: GitHubClient) -> None:
    with pytest.raises(SelectionError) as caught:
        await resolve(parse_selection('search:"unbalanced'), gh, requester="alice", limit=5)
    assert "ERROR_TYPE_QUERY_PARSING_FATAL unable to parse query!" in str(caught.value)
    with pytest.raises(SelectionError) as caught:
        await resolve(parse_selection("search:language:python"), gh, requester="alice", limit=5)
    assert "qualifiers only are not allowed" in str(caught.value)


async def test_the_limit_bounds_the_chosen_and_the_permission_checks(
    gh: GitHubClient, world: FakeGitHub
) -> None:
    plan = await resolve(parse_selection("language:Python"), gh, requester="alice", limit=5)
    # svc-04 cannot be written and svc-10 is archived: the fifth is svc-12.
    assert plan.chosen == [svc(i) for i in (0, 2, 6, 8, 12)]
    over = [t for t in plan.left_out if t.skipped == "over the fleet's limit of 5 repositories"]
    # 31 Python repositories, less archived svc-10, the fork svc-20 and the 6 asked about.
    assert len(over) == 31 - 2 - 6
    assert over[0] == FleetTarget(svc(14), "over the fleet's limit of 5 repositories")
    # Asked about the first five, then one more for svc-04's place.
    assert len(world.calls_to("GET", r"/collaborators/alice/permission$")) == 6
    assert reasons(plan)[svc(10)] == "archived"

    one = await resolve(parse_selection("octo/svc-00\nocto/svc-02"), gh, requester="alice", limit=1)
    assert one.left_out == [FleetTarget(svc(2), "over the fleet's limit of 1 repository")]


async def test_permission_checks_run_a_few_at_once(gh: GitHubClient, world: FakeGitHub) -> None:
    holds = [world.hold_next("GET", r"/collaborators/alice/permission$") for _ in range(10)]
    task = asyncio.create_task(resolve(parse_selection("octo/*"), gh, requester="alice", limit=500))
    for _ in range(300):
        await asyncio.sleep(0.01)
        if len(world.calls_to("GET", r"/collaborators/")) >= 4:
            break
    await asyncio.sleep(0.2)
    assert len(world.calls_to("GET", r"/collaborators/")) == 4  # held, and no fifth asked
    for hold in holds:
        hold.set()
    plan = await task
    assert len(plan.chosen) == 61 - len(ARCHIVED | FORKS | READ_ONLY)


async def test_someone_who_cannot_write_anywhere_gets_a_plan_of_nothing(
    gh: GitHubClient,
) -> None:
    plan = await resolve(parse_selection("topic:legacy"), gh, requester="mallory", limit=50)
    assert plan.chosen == []
    assert set(reasons(plan).values()) == {"@mallory cannot write to it", "archived", "a fork"}
    assert describe_plan(plan).startswith("**No repository** will get this change.")


async def test_a_permission_github_will_not_tell_leaves_that_repository_out(
    gh: GitHubClient, world: FakeGitHub
) -> None:
    world.fail_next("GET", r"^/repos/octo/svc-02/collaborators/", 502, times=10)
    plan = await resolve(
        parse_selection("octo/svc-00\nocto/svc-02"), gh, requester="alice", limit=5
    )
    assert plan.chosen == [svc(0)]
    assert reasons(plan)[svc(2)].startswith("GitHub did not say whether @alice can write to it (")


async def test_nothing_matched_is_an_error(gh: GitHubClient) -> None:
    with pytest.raises(SelectionError) as caught:
        await resolve(
            parse_selection("topic:nothing-has-this\nlanguage:Go"), gh, requester="alice", limit=5
        )
    assert str(caught.value) == (
        "No repository matched the selection (`topic:nothing-has-this`, `language:Go`)."
    )
    with pytest.raises(SelectionError):
        await resolve(Selection(include_forks=True), gh, requester="alice", limit=5)
    plan = await resolve(parse_selection("nobody/*\nocto/svc-00"), gh, requester="alice", limit=5)
    assert plan.chosen == [svc(0)]
    assert plan.notes == ("`nobody/*`: Honk is installed on no repository of nobody's.",)


async def test_installation_repositories_are_paginated_with_link_headers(
    gh: GitHubClient, world: FakeGitHub
) -> None:
    url = "/installation/repositories?per_page=25"
    listed = [r async for r in gh.getiter(url, iterable_key="repositories")]
    assert [r["full_name"] for r in listed] == installed()
    pages = world.calls_to("GET", r"^/installation/repositories$")
    assert [c.query.get("page", "1") for c in pages] == ["1", "2", "3"]
    assert {k: listed[20][k] for k in ("topics", "language", "archived", "fork")} == {
        "topics": ["web", "legacy"],
        "language": "Python",
        "archived": False,
        "fork": True,
    }


async def test_through_the_app_s_paced_client(
    world: FakeGitHub, base_settings: Settings, session: aiohttp.ClientSession
) -> None:
    settings = base_settings.with_overrides(github_api_url=world.url)
    gh = await GitHubApp(settings.github, session).installation_client(1)
    plan = await resolve(
        parse_selection("language:Go\ntopic:legacy"), gh, requester="alice", limit=50
    )
    assert plan.chosen == [svc(i) for i in (15, 25, 35, 45, 55)]
    assert plan.left_out == [FleetTarget(svc(5), "@alice cannot write to it")]


# --- telling people --------------------------------------------------------------------


def test_the_plan_for_people() -> None:
    plan = Plan(
        (
            *(FleetTarget(f"octo/r{i}") for i in range(5)),
            FleetTarget("octo/old", "archived"),
            FleetTarget("octo/a", "@alice cannot write to it"),
            FleetTarget("octo/b", "archived"),
            FleetTarget("octo/c", "archived"),
        ),
        notes=("`x/*`: Honk is installed on no repository of x's.",),
    )
    assert describe_plan(plan, shown=3) == "\n".join(
        [
            "**5 repositories** will get this change:",
            "",
            "- `octo/r0`",
            "- `octo/r1`",
            "- `octo/r2`",
            "- and 2 more",
            "",
            "**Left out** (4 repositories):",
            "",
            "- archived (3): `octo/old`, `octo/b`, `octo/c`",
            "- @alice cannot write to it (1): `octo/a`",
            "",
            "Note: `x/*`: Honk is installed on no repository of x's.",
        ]
    )
    assert describe_plan(plan, shown=2).splitlines()[-4] == (
        "- archived (3): `octo/old`, `octo/b` and 1 more"
    )
    one = describe_plan(Plan((FleetTarget("octo/a"),)))
    assert one == "**1 repository** will get this change:\n\n- `octo/a`"
