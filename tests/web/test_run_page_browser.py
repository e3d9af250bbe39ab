"""The run page in a real browser: Debian's chromium driven by Playwright, one browser for all.

A scripted agent works while the page is open (the fake model holds a turn until the test
lets it go): the transcript grows without a reload, the page fits a 390 px phone, Cancel
stops the run, a person who cannot read the repository gets 404, and a visitor is sent to
GitHub's (the fake's) authorize page and comes back to the run. Screenshots go to
test-artifacts/ (ignored by git); docs/run-page.png is one of them, committed.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from app.config import Settings
from app.models import Run, RunState
from app.store import NewRun
from app.web import SERVICES, create_app
from tests.calc_world import INSTALLATION, ISSUE, ISSUE_TITLE, REPO, fixing_script, labeled
from tests.fakes.anthropic import FakeAnthropic, Hold, tool_use_bash
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import eventually, post_webhook
from tests.run_page_world import page_settings, seed_people

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright downloads no browser here
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
WAIT_MS = 45_000
LEAKED = "ghp_" + "Q7" * 20  # a token-shaped secret the agent prints


class BrowserThread:
    """Playwright's async API on an event loop of its own thread: the browser outlives each
    test's event loop, and a test awaits it without ever blocking its own loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="browser", daemon=True)
        self.thread.start()
        self.browser: Browser | None = None

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """From outside any event loop (set-up and teardown)."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=60)

    async def __call__(self, work: Coroutine[Any, Any, T]) -> T:
        """From a test: `await b(page.goto(url))`."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, self.loop)
        return await asyncio.wrap_future(future)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="session")
def b() -> Iterator[BrowserThread]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    thread = BrowserThread()
    playwright = thread.run(async_playwright().start())
    thread.browser = thread.run(
        playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    )
    try:
        yield thread
    finally:
        thread.run(thread.browser.close())
        thread.run(playwright.stop())
        thread.stop()


@pytest.fixture
async def context(b: BrowserThread) -> Any:
    """A fresh browser profile (no cookies) the size of a phone."""
    assert b.browser is not None
    made: BrowserContext = await b(
        b.browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    )
    yield made
    await b(made.close())


async def start_honk(
    aiohttp_server: Any, base: Settings, fakes: tuple[Any, Any, Any], workers: int
) -> Any:
    """Honk on a real port, reached by the browser at HONK_URL."""
    fake_github, fake_anthropic, fake_slack = fakes
    seed_people(fake_github)
    port = unused_port()
    settings = page_settings(
        base,
        fake_github,
        fake_anthropic,
        fake_slack,
        honk_url=f"http://127.0.0.1:{port}",
        workers=workers,
        lease_seconds=3.0,  # the heartbeat (a third of it) notices a cancel within a second
    )
    server = await aiohttp_server(create_app(settings), port=port)
    server.settings = settings
    return server


@pytest.fixture
async def honk(
    aiohttp_server: Any,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> Any:
    """With one worker: runs happen."""
    fakes = (fake_github, fake_anthropic, fake_slack)
    return await start_honk(aiohttp_server, base_settings, fakes, workers=1)


@pytest.fixture
async def idle_honk(
    aiohttp_server: Any,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> Any:
    """Without workers: a queued run stays queued."""
    fakes = (fake_github, fake_anthropic, fake_slack)
    return await start_honk(aiohttp_server, base_settings, fakes, workers=0)


async def started_run(honk: Any, hold: Hold) -> Run:
    """Label the issue; the run is working once the model's held turn has been asked for."""
    async with aiohttp.ClientSession(base_url=honk.settings.web.url) as client:
        assert (await post_webhook(client, "issues", labeled())).status == 202  # type: ignore[arg-type]
    async with asyncio.timeout(30):
        await hold.reached.wait()
    runs = await honk.app[SERVICES].store.runs.find(repo=REPO, issue_number=ISSUE)
    return runs[0]


async def signed_in_page(b: BrowserThread, context: Any, fake_github: FakeGitHub, url: str) -> Page:
    """Open `url` signed out: via the fake GitHub's authorize page, back to `url`."""
    page: Page = await b(context.new_page())
    visited: list[str] = []

    async def listen() -> None:
        # On the browser's own loop: subscribing sends a message to Playwright's driver,
        # and one sent from this thread races the browser thread's (a lost response).
        page.on("request", lambda request: visited.append(request.url))

    await b(listen())
    await b(page.goto(url))
    assert any(u.startswith(f"{fake_github.url}/login/oauth/authorize?") for u in visited)
    assert page.url == url
    return page


async def overflow(b: BrowserThread, page: Page) -> tuple[int, int]:
    return await b(page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]"))


async def test_the_transcript_grows_live_and_fits_a_phone(
    b: BrowserThread,
    context: Any,
    honk: Any,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    hold = Hold(tool_use_bash("seq 1 50", say="Let me count before I change anything."))
    look = tool_use_bash(f"echo 'token: {LEAKED}'; ls", say="Looking around first.")
    fake_anthropic.script(look, hold, *fixing_script())
    run = await started_run(honk, hold)
    fake_github.sign_in_as("alice")
    url = f"{honk.settings.web.url}/runs/{run.id}"
    page = await signed_in_page(b, context, fake_github, url)
    transcript = page.locator("#transcript-list")
    await b(expect(transcript).to_contain_text("token: [REDACTED]", timeout=WAIT_MS))
    assert "seq 1 50" not in await b(transcript.inner_text())
    await b(page.evaluate("window.__stayed = 'no reload'"))

    hold.release()
    await b(expect(transcript).to_contain_text("$ seq 1 50", timeout=WAIT_MS))
    await b(expect(transcript).to_contain_text("python -m pytest -q", timeout=WAIT_MS))
    await b(expect(page.locator(".badge").first).to_have_text("PR opened", timeout=WAIT_MS))
    await b(expect(page.locator("#diff-section")).to_be_visible(timeout=WAIT_MS))
    await b(expect(page.locator("#diff-list")).to_contain_text("calc.py"))
    await b(expect(page.locator("#verification-list")).to_contain_text("Passed"))
    await b(expect(page.locator("nav.links")).to_contain_text("Pull request #"))
    assert await b(page.evaluate("window.__stayed")) == "no reload"

    width, inner = await overflow(b, page)
    assert width <= inner == PHONE["width"]
    # Outputs are folded: the 50 lines of `seq` show a few, the rest behind <details>.
    folded = page.locator("details.more", has_text="44 more lines").first
    await b(expect(folded).not_to_have_attribute("open", ""))
    ARTIFACTS.mkdir(exist_ok=True)
    await b(page.screenshot(path=str(ARTIFACTS / "run-page-phone.png"), full_page=True))
    assert LEAKED not in await b(page.content())

    # What the run left links here: the tracking comment, the PR, the check, Slack.
    store = honk.app[SERVICES].store
    done = await store.runs.get(run.id)
    assert done is not None and done.state == RunState.SUCCEEDED
    assert LEAKED not in json.dumps([e.data for e in await store.events.read(run.id)])
    pr = next(iter(fake_github.repo(REPO)["pulls"].values()))
    assert f"({url})" in pr["body"]
    assert f"({url})" in fake_github.repo(REPO)["comments"][done.tracking_comment_id]["body"]
    check = next(iter(fake_github.repo(REPO)["check_runs"].values()))
    assert check["details_url"] == url
    assert await b(page.locator("nav.links a", has_text="Honk check").get_attribute("href")) == (
        f"{fake_github.url}/{REPO}/runs/{check['id']}"
    )
    messages = fake_slack.messages()
    assert messages and all(url in json.dumps(m.blocks) for m in messages)

    await b(page.set_viewport_size(DESKTOP))
    await b(page.reload())
    await b(expect(page.locator("#diff-list")).to_contain_text("calc.py"))
    width, inner = await overflow(b, page)
    assert width <= inner == DESKTOP["width"]
    await b(page.screenshot(path=str(ARTIFACTS / "run-page-desktop.png"), full_page=True))


async def test_cancel_from_the_page_stops_the_run(
    b: BrowserThread,
    context: Any,
    honk: Any,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    hold = Hold(tool_use_bash("echo never", say="This turn waits for the test."))
    fake_anthropic.script(hold, *fixing_script())
    run = await started_run(honk, hold)
    fake_github.sign_in_as("alice")
    page = await signed_in_page(b, context, fake_github, f"{honk.settings.web.url}/runs/{run.id}")
    await b(page.locator("#cancel").click())
    await b(expect(page.locator(".badge").first).to_have_text("Cancelled", timeout=WAIT_MS))
    store = honk.app[SERVICES].store

    async def stopped() -> Run | None:
        current = await store.runs.get(run.id)
        return current if current is not None and not current.state.active else None

    final = await eventually(stopped, within=30)
    assert final.state == RunState.CANCELLED
    hold.release()
    await asyncio.sleep(0.5)
    assert "echo never" not in await b(page.locator("#transcript-list").inner_text())
    assert not fake_github.repo(REPO)["pulls"]  # nothing was published
    await b(page.screenshot(path=str(ARTIFACTS / "run-page-cancelled.png"), full_page=True))


async def test_a_person_who_cannot_read_the_repository_gets_404(
    b: BrowserThread, context: Any, idle_honk: Any, fake_github: FakeGitHub
) -> None:
    store = idle_honk.app[SERVICES].store
    run = await store.runs.enqueue(
        NewRun(repo=REPO, installation_id=INSTALLATION, issue_number=ISSUE, requested_by="alice")
    )
    assert run is not None
    fake_github.sign_in_as("bob")
    page: Page = await b(context.new_page())
    response = await b(page.goto(f"{idle_honk.settings.web.url}/runs/{run.id}"))
    assert response is not None and response.status == 404
    assert "cannot see it" in await b(page.locator("body").inner_text())
    missing = await b(page.goto(f"{idle_honk.settings.web.url}/runs/{run.id + 1}"))
    assert missing is not None and missing.status == 404


async def finished_run(honk: Any) -> Run:
    """Label the issue and wait for the run to end."""
    async with aiohttp.ClientSession(base_url=honk.settings.web.url) as client:
        assert (await post_webhook(client, "issues", labeled())).status == 202  # type: ignore[arg-type]
    store = honk.app[SERVICES].store

    async def ended() -> Run | None:
        runs = await store.runs.find(repo=REPO, issue_number=ISSUE)
        return runs[0] if runs and not runs[0].state.active else None

    return await eventually(ended, within=60)


async def on_first_screen(b: BrowserThread, page: Page, selector: str) -> str:
    """The element's text, once it is seen to lie wholly within the first screen, unscrolled."""
    element = page.locator(selector).first
    await b(expect(element).to_be_visible(timeout=WAIT_MS))
    box = await b(element.bounding_box())
    assert box is not None, selector
    assert await b(page.evaluate("window.scrollY")) == 0
    assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"], (selector, box)
    return str(await b(element.inner_text()))


async def test_the_first_screen_of_a_finished_run_shows_its_outcome(
    b: BrowserThread,
    context: Any,
    honk: Any,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.script(*fixing_script(look_first=True))
    run = await finished_run(honk)
    assert run.state == RunState.SUCCEEDED, run.error
    fake_github.sign_in_as("alice")
    url = f"{honk.settings.web.url}/runs/{run.id}"
    page = await signed_in_page(b, context, fake_github, url)

    assert await on_first_screen(b, page, "h1#title") == ISSUE_TITLE
    assert await on_first_screen(b, page, "#state") == "PR opened"
    summary = await on_first_screen(b, page, "#agent-summary")
    assert summary.startswith("Fixed add: it subtracted instead of adding.")
    # The summary is Markdown, rendered: its backticks became code.
    assert await on_first_screen(b, page, "#agent-summary code") == "add"
    assert "Review: Approved" in await on_first_screen(b, page, "#verdict")
    pr = next(iter(fake_github.repo(REPO)["pulls"].values()))
    assert await on_first_screen(b, page, "a#open-pr") == f"Open pull request #{pr['number']}"
    assert await b(page.locator("a#open-pr").get_attribute("href")) == pr["html_url"]
    width, inner = await overflow(b, page)
    assert width <= inner == PHONE["width"]
    # Times in the reader's zone (here the browser's, UTC), still with their date.
    stamp = await b(page.locator(".timeline time").first.text_content())
    assert stamp is not None and re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \S+", stamp)
    ARTIFACTS.mkdir(exist_ok=True)
    await b(page.screenshot(path=str(ARTIFACTS / "run-page-outcome-phone.png")))

    # The desktop picture (docs/render_run_page.py copies it to docs/run-page.png).
    assert b.browser is not None
    desktop: BrowserContext = await b(b.browser.new_context(viewport=DESKTOP))
    try:
        wide = await signed_in_page(b, desktop, fake_github, url)
        await b(expect(wide.locator("#diff-list")).to_contain_text("calc.py"))
        width, inner = await overflow(b, wide)
        assert width <= inner == DESKTOP["width"]
        await b(
            wide.screenshot(path=str(ARTIFACTS / "run-page-outcome-desktop.png"), full_page=True)
        )
    finally:
        await b(desktop.close())


async def test_the_setup_page_fits_a_phone(
    b: BrowserThread, context: Any, aiohttp_server: Any, base_settings: Settings, tmp_path: Path
) -> None:
    fresh = base_settings.with_overrides(
        app_id=None, private_key=None, webhook_secret=None, env_file=tmp_path / ".env"
    )
    server = await aiohttp_server(create_app(fresh, workers=0))
    page: Page = await b(context.new_page())
    response = await b(page.goto(f"http://127.0.0.1:{server.port}/"))
    assert response is not None and response.status == 200
    width, inner = await overflow(b, page)
    assert width == inner == PHONE["width"]  # not laid out 980 px wide and shrunk to fit
    # The size text is seen at: its CSS size times the page's zoom.
    seen = await b(
        page.evaluate(
            "parseFloat(getComputedStyle(document.querySelector('p')).fontSize)"
            " * (window.visualViewport ? window.visualViewport.scale : 1)"
        )
    )
    assert seen >= 14, seen
    tunnel = await b(page.locator("#tunnel").inner_text())
    assert tunnel == f"ngrok http {server.port}"
    await b(page.screenshot(path=str(ARTIFACTS / "setup-phone.png"), full_page=True))


async def test_a_tab_in_next_does_not_carry_the_browser_to_another_site(
    b: BrowserThread, context: Any, idle_honk: Any, fake_github: FakeGitHub, aiohttp_server: Any
) -> None:
    """The issue's attack in a browser: `next=/<tab>/other-site/landed` after a real sign-in.
    The other site is a second server on loopback; it must never be asked for anything."""
    landed: list[str] = []

    async def record(request: web.Request) -> web.Response:
        landed.append(request.path)
        return web.Response(text="another site")

    other = web.Application()
    other.router.add_get("/{tail:.*}", record)
    elsewhere = await aiohttp_server(other)
    fake_github.sign_in_as("alice")
    page: Page = await b(context.new_page())
    honk_url = idle_honk.settings.web.url
    for encoded in ("%09", "%0A", "%5C"):
        target = f"/{encoded}/127.0.0.1:{elsewhere.port}/landed"
        await b(page.goto(f"{honk_url}/signin?next={target}"))
        assert page.url == f"{honk_url}/runs", page.url
    assert landed == []
