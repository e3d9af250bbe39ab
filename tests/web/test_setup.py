"""First-run set-up over real HTTP: the manifest form, the callback, `.env` written safely."""

from __future__ import annotations

import html
import json
import logging
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.web import create_app
from app.web.app_manifest import SetupError, check_env_file
from app.web.env_file import write_env_file
from tests.fakes.github import FakeGitHub
from tests.helpers import ClientFactory

APP_YML = Path(__file__).parents[2] / "app.yml"
PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "honk.example.org"}
EXISTING_ENV = """# Honk settings
SLACK_CHANNEL=#honk
PRIVATE_KEY_PATH=/old/key.pem
WEBHOOK_SECRET="old
secret"
HONK_WORKERS=3
"""


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "deploy" / ".env"
    path.parent.mkdir()
    path.write_text(EXISTING_ENV)
    path.chmod(0o644)
    return path


@pytest.fixture
def fresh_settings(base_settings: Settings, fake_github: FakeGitHub, env_file: Path) -> Settings:
    """No App yet: what `honk serve` has on its first run."""
    return base_settings.with_overrides(
        app_id=None,
        private_key=None,
        webhook_secret=None,
        github_api_url=fake_github.url,
        github_url=fake_github.url,
        env_file=env_file,
    )


@pytest.fixture
async def client(aiohttp_client: ClientFactory, fresh_settings: Settings) -> TestClient:
    return await aiohttp_client(create_app(fresh_settings, workers=0))


async def start(client: TestClient, org: str = "", **headers: str) -> tuple[str, dict[str, Any]]:
    """POST the set-up form; returns the GitHub form's action and the manifest it carries."""
    response = await client.post(
        "/setup/start", data={"org": org, "name": "Honk Test"}, headers=headers
    )
    assert response.status == 200
    page = await response.text()
    action = re.search(r'<form id="manifest" method="post" action="([^"]+)"', page)
    manifest = re.search(r'name="manifest" value="([^"]+)"', page)
    assert action and manifest
    return html.unescape(action.group(1)), json.loads(html.unescape(manifest.group(1)))


def text_of(path: Path) -> str:
    return path.read_text()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def names_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def state_of(action: str) -> str:
    match = re.search(r"[?&]state=([^&]+)", action)
    assert match
    return match.group(1)


VIEWPORT = '<meta name="viewport" content="width=device-width, initial-scale=1">'


async def test_first_run_serves_the_setup_page(client: TestClient) -> None:
    response = await client.get("/", headers=PROXY)
    assert response.status == 200
    page = await response.text()
    assert 'action="/setup/start"' in page
    assert "https://honk.example.org/api/github/webhooks" in page
    assert VIEWPORT in page  # a phone lays it out at its own width
    # A tunnel to the port this server listens on, whatever address the browser used.
    assert f'<pre id="tunnel">ngrok http {client.server.port}</pre>' in page


async def test_manifest_form_for_an_org_behind_a_proxy(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    action, manifest = await start(client, "octo-org", **PROXY)
    assert action.startswith(f"{fake_github.url}/organizations/octo-org/settings/apps/new?state=")
    assert manifest["hook_attributes"]["url"] == "https://honk.example.org/api/github/webhooks"
    assert manifest["redirect_url"] == "https://honk.example.org/setup/callback"
    assert manifest["callback_urls"] == ["https://honk.example.org/signin/callback"]
    assert manifest["name"] == "Honk Test"
    app_yml = yaml.safe_load(APP_YML.read_text())
    assert manifest["default_permissions"] == app_yml["default_permissions"]
    assert manifest["default_events"] == app_yml["default_events"]


async def test_personal_account_and_the_request_host(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    action, manifest = await start(client)
    assert action.startswith(f"{fake_github.url}/settings/apps/new?state=")
    host = f"{client.server.host}:{client.server.port}"
    assert manifest["redirect_url"] == f"http://{host}/setup/callback"


async def test_bad_org_name_is_refused(client: TestClient) -> None:
    response = await client.post("/setup/start", data={"org": "../evil"})
    assert response.status == 400


async def test_callback_writes_env_and_asks_for_a_restart(
    client: TestClient, fake_github: FakeGitHub, env_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    action, _ = await start(client, "octo-org", **PROXY)
    app = fake_github.add_manifest_code("code-123")
    response = await client.get(
        f"/setup/callback?code=code-123&state={state_of(action)}", headers=PROXY
    )
    assert response.status == 200
    page = await response.text()
    assert "Restart Honk" in page and f"{app['html_url']}/installations/new" in page
    assert VIEWPORT in page
    # The next steps, in order: the key and the address into the env file, restart, install,
    # label an issue. The test's settings have a key already; HONK_URL is the page's address.
    steps = re.findall(r"<li>(.*?)</li>", page.split('<ol id="next-steps">')[1], re.DOTALL)
    assert len(steps) == 5
    assert "<code>ANTHROPIC_API_KEY</code> is set already" in steps[0]
    assert "<pre>HONK_URL=https://honk.example.org</pre>" in steps[1]
    assert str(env_file) in steps[1]
    assert "Restart Honk" in steps[2] and "installations/new" in steps[3]
    assert "<code>honk</code>" in steps[4]
    assert len(fake_github.calls_to("POST", r"^/app-manifests/code-123/conversions$")) == 1

    assert mode_of(env_file) == 0o600
    settings = Settings.from_env(environ={}, env_file=env_file)
    assert settings.github.app_id == app["id"]
    assert settings.github.private_key is not None
    assert settings.github.private_key.strip() == app["pem"].strip()
    assert settings.github.webhook_secret == app["webhook_secret"]
    # Signing in to the run pages: the App's OAuth client, and a session key made once.
    assert settings.github.client_id == app["client_id"]
    assert settings.github.client_secret == app["client_secret"]
    assert settings.web.session_key and settings.github.sign_in_configured
    text = text_of(env_file)
    assert "# Honk settings\nSLACK_CHANNEL=#honk\n" in text and "HONK_WORKERS=3" in text
    # The old values are gone (whole values: a fresh PEM may well contain "old" somewhere).
    assert "PRIVATE_KEY_PATH" not in text and "/old/key.pem" not in text
    assert '"old' not in text and 'secret"' not in text.splitlines()
    assert len([line for line in text.splitlines() if line.startswith("PRIVATE_KEY=")]) == 1
    assert names_in(env_file.parent) == [".env"]  # no temp file left

    key_body = app["pem"].splitlines()[1]
    for secret in (key_body, app["webhook_secret"], app["client_secret"]):
        assert secret not in page
        assert secret not in caplog.text

    # Done once: the set-up refuses to run again until Honk restarts with the new App.
    again = await client.get("/")
    assert "already connected" in await again.text()
    assert (await client.post("/setup/start", data={"org": ""})).status == 409


async def test_the_next_steps_ask_for_what_is_missing_and_name_what_is_set(
    aiohttp_client: ClientFactory, fresh_settings: Settings, fake_github: FakeGitHub, env_file: Path
) -> None:
    cases = (
        ({"anthropic_api_key": None}, "<pre>ANTHROPIC_API_KEY=sk-ant-…</pre>"),
        ({"honk_url": "https://honk.example.net"}, "<code>HONK_URL</code> is set already"),
    )
    for number, (overrides, wanted) in enumerate(cases):
        env = {"env_file": env_file.parent / f"{number}.env"}  # each registration afresh
        client = await aiohttp_client(create_app(fresh_settings.with_overrides(**overrides, **env)))
        action, _ = await start(client)
        code = f"code-{number}"
        fake_github.add_manifest_code(code)
        response = await client.get(f"/setup/callback?code={code}&state={state_of(action)}")
        assert response.status == 200
        assert wanted in await response.text()


async def test_unknown_or_reused_state_is_refused(
    client: TestClient, fake_github: FakeGitHub, env_file: Path
) -> None:
    fake_github.add_manifest_code("code-1")
    response = await client.get("/setup/callback?code=code-1&state=made-up")
    assert response.status == 400
    assert fake_github.calls_to("POST", r"/conversions$") == []
    assert text_of(env_file) == EXISTING_ENV

    action, _ = await start(client)
    fake_github.fail_next("POST", r"^/app-manifests/code-1/conversions$", 404)
    first = await client.get(f"/setup/callback?code=code-1&state={state_of(action)}")
    assert first.status == 502 and "start again" in await first.text()
    second = await client.get(f"/setup/callback?code=code-1&state={state_of(action)}")
    assert second.status == 400  # a state is good for one try
    assert text_of(env_file) == EXISTING_ENV


async def test_configured_honk_keeps_its_index(
    aiohttp_client: ClientFactory, base_settings: Settings
) -> None:
    client = await aiohttp_client(create_app(base_settings, workers=0))
    response = await client.get("/")
    assert "Honk is running" in await response.text()
    assert "already connected" in await (await client.get("/setup")).text()
    callback = await client.get("/setup/callback?code=x&state=y")
    assert callback.status == 409


def test_env_file_is_created_private_when_missing(tmp_path: Path) -> None:
    path = tmp_path / "new.env"
    write_env_file(path, {"APP_ID": "5"})
    assert path.read_text() == "APP_ID=5\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_env_rewrite_keeps_other_lines(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("export APP_ID=1\nA='x'\nPRIVATE_KEY='-----BEGIN\nabc\n-----END'\nB=2\n")
    write_env_file(path, {"APP_ID": "7", "PRIVATE_KEY": '"k"'})
    assert path.read_text() == "A='x'\nB=2\nAPP_ID=7\nPRIVATE_KEY=\"k\"\n"
    with pytest.raises(SetupError, match="does not load"):
        check_env_file(path)  # a key that is not a key is caught before the restart
