"""The App and its installations: tokens, manifest conversion, users and orgs."""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.github.state import (
    DEFAULT_INSTALLATION_PERMISSIONS,
    JSON_BODY,
    TOKEN,
    GitHubState,
    IssuedToken,
    _Answer,
)

TOKEN_ALPHABET = string.ascii_letters + string.digits
LEVELS = {"read": 1, "write": 2, "admin": 3}


class AppMixin(GitHubState):
    """Seeds installations, users and orgs; answers /app, /installation, /users, /orgs."""

    # --- seeding -------------------------------------------------------------------

    def add_installation(
        self,
        installation_id: int,
        account: str = "octo",
        repos: Iterable[str] | None = None,
        *,
        permissions: Mapping[str, str] | None = None,
        account_type: str = "Organization",
    ) -> dict[str, Any]:
        """An installation on `account`: on the `repos` listed, or on all of them (None)."""
        owner = self._user(account, kind=account_type)
        selected = None if repos is None else [r if "/" in r else f"{account}/{r}" for r in repos]
        self._installation_repos[installation_id] = selected
        self.installations[installation_id] = {
            "id": installation_id,
            "account": owner,
            "repository_selection": "all" if selected is None else "selected",
            "access_tokens_url": f"{self.url}/app/installations/{installation_id}/access_tokens",
            "repositories_url": f"{self.url}/installation/repositories",
            "html_url": f"{self.url}/settings/installations/{installation_id}",
            "app_id": self.app_id,
            "app_slug": self.app_info["slug"],
            "target_id": owner["id"],
            "target_type": account_type,
            "permissions": dict(permissions or DEFAULT_INSTALLATION_PERMISSIONS),
            "events": list(self.app_info["events"]),
            "created_at": self._now(),
            "updated_at": self._now(),
            "single_file_name": None,
            "suspended_at": None,
            "suspended_by": None,
        }
        return self.installations[installation_id]

    def remove_installation(self, installation_id: int) -> None:
        """Uninstall: the installation and every token it was given stop working."""
        self.installations.pop(installation_id, None)
        self._installation_repos.pop(installation_id, None)
        for issued in self.tokens.values():
            if issued.installation_id == installation_id:
                issued.revoked = True

    def add_user(
        self, login: str, *, name: str | None = None, email: str | None = None, kind: str = "User"
    ) -> dict[str, Any]:
        user = self._user(login, kind=kind)
        user.update({"name": name, "email": email})
        return user

    def add_org_member(self, org: str, login: str) -> None:
        self._user(login)
        self.org_members.setdefault(org.lower(), []).append(login)

    def add_manifest_code(self, code: str, **overrides: Any) -> dict[str, Any]:
        """What POST /app-manifests/<code>/conversions answers (once)."""
        slug = overrides.get("slug", "honk-new")
        conversion = {
            "id": 777_001,
            "slug": slug,
            "node_id": "A_new",
            "name": "Honk New",
            "description": "",
            "owner": self._user("octo", kind="Organization"),
            "external_url": "https://honk.example.com",
            "html_url": f"{self.url}/apps/{slug}",
            "created_at": self._now(),
            "updated_at": self._now(),
            "permissions": dict(DEFAULT_INSTALLATION_PERMISSIONS),
            "events": list(self.app_info["events"]),
            "client_id": "Iv1.0123456789abcdef",
            "client_secret": "client-secret-" + secrets.token_hex(16),
            "webhook_secret": "webhook-secret-" + secrets.token_hex(16),
            "pem": self.private_key_pem or "",
        } | overrides
        self.manifest_conversions[code] = conversion
        return conversion

    # --- handlers: the App ---------------------------------------------------------

    async def _create_token(self, request: web.Request) -> web.Response:
        installation_id = int(request.match_info["id"])
        installation = self.installations.get(installation_id)
        if installation is None:
            raise _Answer(404)
        body = request[JSON_BODY]
        available = self._installation_repo_names(installation_id)
        repositories: tuple[str, ...] | None = None
        if body.get("repositories") is not None:
            by_name = {r.rpartition("/")[2].lower(): r for r in available}
            wanted = [str(n).rpartition("/")[2].lower() for n in body["repositories"]]
            if any(n not in by_name or by_name[n].lower() not in self._repos for n in wanted):
                raise _Answer(
                    422,
                    "There is at least one repository that does not exist or is not "
                    "accessible to the parent installation.",
                )
            repositories = tuple(by_name[n] for n in wanted)
        granted = installation["permissions"]
        permissions = dict(granted)
        if body.get("permissions") is not None:
            permissions = dict(body["permissions"])
            for name, level in permissions.items():
                if LEVELS.get(level, 99) > LEVELS.get(granted.get(name, ""), 0):
                    raise _Answer(
                        422, "The permissions requested are not granted to this installation."
                    )
        token = self.token_prefix + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(76))
        expires = self.clock() + self.token_ttl
        self.tokens[token] = IssuedToken(token, installation_id, expires, permissions, repositories)
        answer: dict[str, Any] = {
            "token": token,
            "expires_at": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": permissions,
            "repository_selection": "all" if repositories is None else "selected",
        }
        if repositories is not None:
            answer["repositories"] = [self.repo(r)["data"] for r in repositories]
        return web.json_response(answer, status=201)

    async def _get_app(self, request: web.Request) -> web.Response:
        owner = self.app_info.get("owner") or self._user("octo", kind="Organization")
        return web.json_response(
            self.app_info | {"owner": owner, "html_url": f"{self.url}/apps/{self.app_info['slug']}"}
        )

    async def _list_installations(self, request: web.Request) -> web.Response:
        return self._page(request, list(self.installations.values()))

    async def _get_installation(self, request: web.Request) -> web.Response:
        installation = self.installations.get(int(request.match_info["id"]))
        if installation is None:
            raise _Answer(404)
        return web.json_response(installation)

    async def _repo_installation(self, request: web.Request) -> web.Response:
        """GET /repos/{owner}/{repo}/installation (App JWT): which installation serves it."""
        full = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        for installation_id, installation in self.installations.items():
            names = [n.lower() for n in self._installation_repo_names(installation_id)]
            if full in names:
                return web.json_response(installation)
        raise _Answer(404)

    async def _convert_manifest(self, request: web.Request) -> web.Response:
        conversion = self.manifest_conversions.pop(request.match_info["code"], None)
        if conversion is None:
            raise _Answer(404)
        return web.json_response(conversion, status=201)

    async def _revoke_token(self, request: web.Request) -> web.Response:
        request[TOKEN].revoked = True
        return web.Response(status=204)

    async def _installation_repositories(self, request: web.Request) -> web.Response:
        issued: IssuedToken = request[TOKEN]
        names = issued.repositories or self._installation_repo_names(issued.installation_id)
        repos = [self.repo(n)["data"] for n in names if n.lower() in self._repos]
        selection = self.installations[issued.installation_id]["repository_selection"]
        return self._page(request, repos, "repositories", {"repository_selection": selection})

    async def _get_user(self, request: web.Request) -> web.Response:
        login = request.match_info["login"]
        if login.lower() == self.bot_login().lower():
            return web.json_response(self._bot_user())
        user = self.users.get(login.lower())
        if user is None:
            raise _Answer(404)
        return web.json_response(user)

    async def _org_members(self, request: web.Request) -> web.Response:
        logins = self.org_members.get(request.match_info["org"].lower(), [])
        return self._page(request, [self._user(login) for login in logins])

    async def _org_member(self, request: web.Request) -> web.Response:
        logins = self.org_members.get(request.match_info["org"].lower(), [])
        if request.match_info["login"].lower() not in {m.lower() for m in logins}:
            raise _Answer(404)
        return web.Response(status=204)
