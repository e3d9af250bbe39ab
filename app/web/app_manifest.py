"""The GitHub App's manifest and what GitHub answers for it: app.yml read, this server's
addresses filled in, where the form posts; the converted App's credentials as `.env` lines,
read back the way `honk serve` will."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import yaml

from app.config import ConfigError, Settings
from app.web.env_file import quoted

CALLBACK_PATH = "/setup/callback"
# The keys setup writes (PRIVATE_KEY_PATH is dropped: it could shadow the new key).
ENV_KEYS = ("APP_ID", "PRIVATE_KEY", "WEBHOOK_SECRET", "GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET")
SIGNIN_CALLBACK = "/signin/callback"  # app/web/signin.py: GitHub sends people back there


class SetupError(Exception):
    """A step of the set-up that cannot go on; the message is shown on the page."""


def load_manifest(path: Path | None = None) -> dict[str, Any]:
    """app.yml: the given path, else ./app.yml, else the one beside the package."""
    candidates = [path] if path else [Path("app.yml"), Path(__file__).parents[2] / "app.yml"]
    for candidate in candidates:
        if candidate.is_file():
            try:
                data = yaml.safe_load(candidate.read_text())
            except yaml.YAMLError as exc:
                raise SetupError(f"{candidate} is not valid YAML: {exc}") from None
            if not isinstance(data, dict):
                raise SetupError(f"{candidate} is not a manifest (a mapping)")
            return data
    raise SetupError("app.yml (the GitHub App manifest) was not found")


def build_manifest(
    manifest: Mapping[str, Any], base_url: str, webhook_path: str, *, name: str | None = None
) -> dict[str, Any]:
    """The manifest with this server's webhook and redirect addresses filled in."""
    data = dict(manifest)
    if name:
        data["name"] = name
    hooks = dict(data.get("hook_attributes") or {})
    hooks["url"] = base_url + webhook_path
    hooks.setdefault("active", True)
    data["hook_attributes"] = hooks
    data["redirect_url"] = base_url + CALLBACK_PATH
    # Signing in with GitHub on the run pages: GitHub sends people back here.
    data["callback_urls"] = [base_url + SIGNIN_CALLBACK]
    return data


def manifest_form_action(github_url: str, org: str, state: str) -> str:
    """Where the manifest form posts: the personal or the organization's new-App page."""
    owner = f"/organizations/{quote(org, safe='')}" if org else ""
    return f"{github_url.rstrip('/')}{owner}/settings/apps/new?{urlencode({'state': state})}"


def env_values(app: Mapping[str, Any]) -> dict[str, str]:
    """The `.env` lines for a converted App: the key inline, newlines escaped, on one line.

    Inline rather than PRIVATE_KEY_PATH: one 0600 file holds every secret, nothing lands
    in the data directory beside the agent's checkouts, and a deployment copies it as one
    variable per line.
    """
    pem = str(app.get("pem") or "")
    secret = str(app.get("webhook_secret") or "")
    if "PRIVATE KEY-----" not in pem:
        raise SetupError("GitHub's answer has no private key")
    if not secret:
        raise SetupError("GitHub's answer has no webhook secret")
    values = {
        "APP_ID": str(int(app["id"])),
        "PRIVATE_KEY": quoted(pem.strip().replace("\r\n", "\n") + "\n"),
        "WEBHOOK_SECRET": quoted(secret),
    }
    if app.get("client_id") and app.get("client_secret"):  # sign-in with GitHub (run pages)
        values["GITHUB_CLIENT_ID"] = quoted(str(app["client_id"]))
        values["GITHUB_CLIENT_SECRET"] = quoted(str(app["client_secret"]))
    return values


def check_env_file(path: Path) -> None:
    """Read the file back the way `honk serve` will, so a bad write shows now."""
    try:
        settings = Settings.from_env(environ={}, env_file=path)
    except ConfigError as exc:
        raise SetupError(f"{path} was written but does not load: {exc}") from None
    if not settings.github.configured or not settings.github.webhook_secret:
        raise SetupError(f"{path} was written but does not hold the App's credentials")
