"""The fleet page in a real browser (Debian's chromium through Playwright, the run page's
browser): the counts and the burndown at 390 px and at desktop width, nothing wider than the
screen, and the page following the fleet live as the store changes, without a reload.
Screenshots go to test-artifacts/."""

from __future__ import annotations

from typing import Any

from playwright.async_api import BrowserContext, expect

from app.fleet_models import FleetRepoState, FleetState
from app.web import SERVICES
from tests.calc_world import REPO
from tests.fakes.github import FakeGitHub
from tests.fleet_page_world import LIB, WEB, new_fleet, seed_fleet_repos
from tests.web.test_run_page_browser import (  # the run page's browser and Honk, shared
    ARTIFACTS,
    DESKTOP,
    PHONE,
    WAIT_MS,
    BrowserThread,
    b,  # noqa: F401 - a fixture
    context,  # noqa: F401 - a fixture
    idle_honk,  # noqa: F401 - a fixture
    overflow,
    signed_in_page,
)


async def test_the_fleet_page_fits_a_phone_and_the_desktop_and_follows_the_fleet_live(
    b: BrowserThread,  # noqa: F811 - the fixture imported above
    context: Any,  # noqa: F811
    idle_honk: Any,  # noqa: F811
    fake_github: FakeGitHub,
) -> None:
    await seed_fleet_repos(fake_github)
    store = idle_honk.app[SERVICES].store
    fleet = await new_fleet(store)
    await store.fleets.set_repo(fleet.id, REPO, FleetRepoState.RUNNING, queued=True)
    await store.fleets.set_repo(
        fleet.id, LIB, FleetRepoState.FAILED, reason="the tests failed before the change"
    )
    fake_github.sign_in_as("alice")
    url = f"{idle_honk.settings.web.url}/fleets/{fleet.id}"
    page = await signed_in_page(b, context, fake_github, url)

    await b(expect(page.locator("#count-running dd")).to_have_text("1"))
    await b(expect(page.locator("#count-failed dd")).to_have_text("1"))
    await b(expect(page.locator("#count-planned dd")).to_have_text("1"))
    chart = page.locator("svg#burndown")
    await b(expect(chart).to_be_visible())
    assert await b(chart.get_attribute("role")) == "img"
    assert "not yet settled" in str(await b(page.locator("#burndown-title").text_content()))
    await b(expect(page.locator("#repos li")).to_have_count(3))
    width, inner = await overflow(b, page)
    assert width <= inner == PHONE["width"]
    box = await b(chart.bounding_box())
    assert box is not None and box["width"] <= PHONE["width"] and box["height"] > 100
    ARTIFACTS.mkdir(exist_ok=True)
    await b(page.screenshot(path=str(ARTIFACTS / "fleet-page-phone.png"), full_page=True))

    # The store changes (the conductor and webhooks would do this): the page follows.
    await b(page.evaluate("window.__stayed = 'no reload'"))
    await store.fleets.set_repo(
        fleet.id, REPO, FleetRepoState.PR_OPEN, pr_url=f"{fake_github.url}/{REPO}/pull/7"
    )
    await store.fleets.set_repo(fleet.id, WEB, FleetRepoState.MERGED)
    await b(expect(page.locator("#count-merged dd")).to_have_text("1", timeout=WAIT_MS))
    await b(expect(page.locator("#count-pr_open dd")).to_have_text("1", timeout=WAIT_MS))
    await b(expect(page.locator("#count-running dd")).to_have_text("0"))
    await b(expect(page.locator("#progress")).to_have_text("3 of 3 repositories settled"))
    row = page.locator(f'#repos li[data-repo="{REPO}"]')
    await b(expect(row.locator("a", has_text="Pull request")).to_be_visible())
    await store.fleets.set_state(fleet.id, FleetState.PAUSED, "paused by @alice")
    await b(expect(page.locator("#state")).to_have_text("Paused", timeout=WAIT_MS))
    await b(expect(page.locator("#reason")).to_have_text("paused by @alice"))
    await b(expect(page.locator("#cmd-resume")).to_be_visible())
    assert await b(page.evaluate("window.__stayed")) == "no reload"
    await b(page.screenshot(path=str(ARTIFACTS / "fleet-page-phone-live.png"), full_page=True))

    # Desktop width: the counts in one row of six, still nothing wider than the window.
    assert b.browser is not None
    desktop: BrowserContext = await b(b.browser.new_context(viewport=DESKTOP))
    try:
        wide = await signed_in_page(b, desktop, fake_github, url)
        await b(expect(wide.locator("#count-merged dd")).to_have_text("1"))
        await b(expect(wide.locator("svg#burndown")).to_be_visible())
        width, inner = await overflow(b, wide)
        assert width <= inner == DESKTOP["width"]
        await b(wide.screenshot(path=str(ARTIFACTS / "fleet-page-desktop.png"), full_page=True))
    finally:
        await b(desktop.close())
