"""The App's user authorization on the web side (OAuth web flow), user tokens and GET /user.

As GitHub does: /login/oauth/authorize sends the browser back with `code` and `state`;
/login/oauth/access_token answers form-encoded unless asked for JSON, and with HTTP 200
even for a bad code; user tokens expire (8 h) and are refreshed with single-use refresh
tokens (6 months); a user token reads a repository only with that user's permission (a
private repository the user cannot see is a 404); the App revokes a user token with
DELETE /applications/{client_id}/token.
"""

from __future__ import annotations

import base64
import secrets
import string
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.github.state import JSON_BODY, OAUTH_CLIENT_ID, GitHubState, _Answer

TOKEN_ALPHABET = string.ascii_letters + string.digits
CODE_TTL = 600.0  # GitHub's codes expire after ten minutes
USER_TOKEN_TTL = 8 * 3600.0
REFRESH_TOKEN_TTL = 15_897_600.0  # six months, as GitHub says in refresh_token_expires_in
READ_ROLES = frozenset({"read", "triage", "write", "maintain", "admin"})
WRITE_ROLES = frozenset({"write", "maintain", "admin"})
NO_PUSH = "Must have push access to repository"
DOCS = (
    "https://docs.github.com/apps/managing-oauth-apps/"
    "troubleshooting-oauth-app-access-token-request-errors"
)


@dataclass
class UserGrant:
    """A user access token (ghu_...) GitHub issued to the App for `login`."""

    token: str = field(repr=False)
    login: str
    expires_at: float
    revoked: bool = False


USER_GRANT = web.RequestKey("user_grant", UserGrant)  # the user token a request came with


@dataclass
class _Code:
    login: str
    redirect_uri: str
    expires_at: float


class OAuthMixin(GitHubState):
    """Seeding: the App's OAuth client, who signs in next; handlers for the web flow."""

    oauth_client_id = OAUTH_CLIENT_ID
    oauth_client_secret = "fake-client-secret-0123456789abcdef"

    def _oauth_init(self) -> None:
        self.oauth_callback_urls: list[str] = []  # empty: any redirect_uri is accepted
        self.signing_in: str | None = None  # who approves at /login/oauth/authorize next
        self.user_token_ttl = USER_TOKEN_TTL
        self.user_tokens: dict[str, UserGrant] = {}
        self.refresh_tokens: dict[str, tuple[str, float]] = {}  # token -> (login, expiry)
        self._codes: dict[str, _Code] = {}

    # --- seeding -------------------------------------------------------------------

    def sign_in_as(self, login: str | None) -> None:
        """The person who is signed in to the fake GitHub and approves the App's sign-in."""
        if login is not None:
            self._user(login)
        self.signing_in = login

    def user_token_for(self, login: str, *, ttl: float | None = None) -> str:
        """A user access token for `login`, as if they had signed in (for bearer requests)."""
        self._user(login)
        return self._new_user_token(login, ttl)[0]["access_token"]

    def expire_user_tokens(self) -> None:
        """Every user access token issued so far expires now (refresh tokens still work)."""
        for grant in self.user_tokens.values():
            grant.expires_at = self.clock() - 1

    # --- authorization of user tokens -----------------------------------------------

    def _user_grant(self, header: str) -> UserGrant | None:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return None
        grant = self.user_tokens.get(credential)
        if grant is None:
            return None
        if grant.revoked or grant.expires_at <= self.clock():
            raise _Answer(401, "Bad credentials")
        return grant

    def _user_may_read(self, login: str, state: dict[str, Any]) -> bool:
        if not state["data"]["private"]:
            return True
        full_name = state["data"]["full_name"].lower()
        installed = any(
            full_name in {n.lower() for n in self._installation_repo_names(installation)}
            for installation in self.installations
        )
        return installed and state["collaborators"].get(login.lower(), "none") in READ_ROLES

    def _user_role(self, login: str, state: dict[str, Any]) -> str:
        default = "none" if state["data"]["private"] else "read"
        return str(state["collaborators"].get(login.lower(), default))

    def _authorize_user(self, request: web.Request, access: str | None) -> bool:
        """True when the request carries a user token and may go on: as that user, within
        their permission (a user token does what both the App and the user may do)."""
        grant = self._user_grant(request.headers.get("Authorization", ""))
        if grant is None:
            return False
        request[USER_GRANT] = grant
        if access == "user":
            return True
        owner, name = request.match_info.get("owner"), request.match_info.get("repo")
        if not (owner and name):
            raise _Answer(403, "Resource not accessible by integration")
        state = self._repos.get(f"{owner}/{name}".lower())
        if state is None or not self._user_may_read(grant.login, state):
            raise _Answer(404)
        # Anyone who can read may review a pull request (only writers' approvals count);
        # every other write needs push access, as GitHub answers a reader.
        reviewing = request.method == "POST" and request.path.endswith("/reviews")
        writing = request.method != "GET" and not reviewing
        if writing and self._user_role(grant.login, state) not in WRITE_ROLES:
            raise _Answer(404) if state["data"]["private"] else _Answer(403, NO_PUSH)
        return True

    def _actor(self, request: web.Request) -> dict[str, Any]:
        """The user a user token belongs to; the App's bot for installation tokens."""
        grant = request.get(USER_GRANT)
        return self._user(grant.login) if grant is not None else self._bot_user()

    def revoke_user_tokens(self, login: str) -> None:
        """The user revoked the App's authorization (Settings -> Applications): every token
        of theirs stops working, refresh tokens too."""
        for grant in self.user_tokens.values():
            if grant.login.lower() == login.lower():
                grant.revoked = True
        for refresh, (owner, _expiry) in list(self.refresh_tokens.items()):
            if owner.lower() == login.lower():
                del self.refresh_tokens[refresh]

    # --- handlers --------------------------------------------------------------------

    async def _oauth_authorize(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("client_id") != self.oauth_client_id:
            return web.Response(status=404, text="Not Found", content_type="text/html")
        redirect_uri = query.get("redirect_uri") or (self.oauth_callback_urls or [""])[0]
        state = query.get("state", "")
        if self.oauth_callback_urls and not any(
            redirect_uri.startswith(url) for url in self.oauth_callback_urls
        ):
            refusal = _error_of("redirect_uri_mismatch") | {"state": state}
            raise web.HTTPFound(f"{self.oauth_callback_urls[0]}?{urlencode(refusal)}")
        if self.signing_in is None:
            # A person would sign in to GitHub here first.
            return web.Response(text="<h1>Sign in to GitHub</h1>", content_type="text/html")
        code = secrets.token_hex(10)
        self._codes[code] = _Code(self.signing_in, redirect_uri, self.clock() + CODE_TTL)
        separator = "&" if "?" in redirect_uri else "?"
        raise web.HTTPFound(f"{redirect_uri}{separator}{urlencode({'code': code, 'state': state})}")

    async def _oauth_access_token(self, request: web.Request) -> web.Response:
        params = dict(request[JSON_BODY]) or dict(await request.post())
        params = {k: str(v) for k, v in params.items()}
        wants_json = "application/json" in request.headers.get("Accept", "")
        if (params.get("client_id"), params.get("client_secret")) != (
            self.oauth_client_id,
            self.oauth_client_secret,
        ):
            return _answer(_error_of("incorrect_client_credentials"), wants_json)
        if params.get("grant_type") == "refresh_token":
            held = self.refresh_tokens.pop(params.get("refresh_token", ""), None)
            if held is None or held[1] <= self.clock():
                return _answer(_error_of("bad_refresh_token"), wants_json)
            return _answer(self._new_user_token(held[0])[0], wants_json)
        code = self._codes.pop(params.get("code", ""), None)
        if code is None or code.expires_at <= self.clock():
            return _answer(_error_of("bad_verification_code"), wants_json)
        if params.get("redirect_uri") and params["redirect_uri"] != code.redirect_uri:
            return _answer(_error_of("redirect_uri_mismatch"), wants_json)
        return _answer(self._new_user_token(code.login)[0], wants_json)

    async def _authenticated_user(self, request: web.Request) -> web.Response:
        grant = self._user_grant(request.headers.get("Authorization", ""))
        if grant is None:
            raise _Answer(403, "Resource not accessible by integration")
        user = self._user(grant.login)
        return web.json_response(user | {"name": user.get("name"), "email": user.get("email")})

    async def _delete_app_token(self, request: web.Request) -> web.Response:
        """DELETE /applications/{client_id}/token: the App revokes one user token, with Basic
        auth client_id:client_secret. 204 when revoked; 404 for credentials that are not this
        App's and for a token it does not know (or revoked already); 422 without a token.
        Whether GitHub also ends the token's refresh token is not documented: the fake keeps
        it working, the harsher case for whoever relies on the revocation."""
        expected = f"{self.oauth_client_id}:{self.oauth_client_secret}".encode()
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        try:
            credentials = base64.b64decode(sent, validate=True)
        except ValueError:
            credentials = b""
        if (
            request.match_info["client_id"] != self.oauth_client_id
            or scheme.lower() != "basic"
            or credentials != expected
        ):
            raise _Answer(404)
        body = request[JSON_BODY]
        access = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            raise _Answer(422, "Validation Failed", [{"resource": "token", "code": "missing"}])
        grant = self.user_tokens.get(access)
        if grant is None or grant.revoked:
            raise _Answer(404)
        grant.revoked = True
        return web.Response(status=204)

    def _new_user_token(self, login: str, ttl: float | None = None) -> tuple[dict[str, Any], str]:
        access = "ghu_" + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(36))
        refresh = "ghr_" + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(76))
        lifetime = self.user_token_ttl if ttl is None else ttl
        self.user_tokens[access] = UserGrant(access, login, self.clock() + lifetime)
        self.refresh_tokens[refresh] = (login, self.clock() + REFRESH_TOKEN_TTL)
        answer = {
            "access_token": access,
            "expires_in": int(lifetime),
            "refresh_token": refresh,
            "refresh_token_expires_in": int(REFRESH_TOKEN_TTL),
            "scope": "",
            "token_type": "bearer",
        }
        return answer, login


def _error_of(code: str) -> dict[str, str]:
    descriptions = {
        "bad_verification_code": "The code passed is incorrect or expired.",
        "incorrect_client_credentials": "The client_id and/or client_secret passed are incorrect.",
        "redirect_uri_mismatch": "The redirect_uri MUST match the registered callback URL.",
        "bad_refresh_token": "The refresh token passed is incorrect or expired.",
    }
    return {"error": code, "error_description": descriptions[code], "error_uri": DOCS}


def _answer(values: dict[str, Any], wants_json: bool) -> web.Response:
    """HTTP 200 always, errors too; form-encoded unless the client asked for JSON."""
    if wants_json:
        return web.json_response(values)
    return web.Response(
        body=urlencode({k: str(v) for k, v in values.items()}).encode(),
        content_type="application/x-www-form-urlencoded",
        charset="utf-8",
    )
