"""Middleware and authorization: scripted answers, App JWTs, installation tokens, git auth."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from tests.fakes.github.state import (
    DOCS_URL,
    JSON_BODY,
    TOKEN,
    Call,
    GitHubState,
    Handler,
    IssuedToken,
    ScriptedAnswer,
    _Answer,
)

REQUIRES_AUTHENTICATION = "Requires authentication"


class AuthMixin(GitHubState):
    """Every request goes through `_middleware`: recorded, scripted answers given, then
    authorized (App JWT, installation token, user token, or public) before its handler runs.

    Like GitHub Enterprise Server in private mode, no REST endpoint answers an anonymous
    request ("Requires authentication"), however public it is on github.com; only what
    GitHub serves to an App flow without credentials is "public" (the manifest conversion,
    the signed log-blob URLs, git's own endpoints, which check their Basic auth)."""

    # --- seeding: scripted answers -------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests matching (method or "*"; `re.search` on the path,
        so anchor with ^ and $) with `status`, before any auth. Any status works: a 200
        scripts a reply too."""
        if body is None:
            body = {"message": HTTPStatus(status).phrase, "documentation_url": DOCS_URL}
        self._scripted.append(
            ScriptedAnswer(
                method.upper(), re.compile(path_regex), status, dict(headers or {}), body, times
            )
        )

    def hold_next(self, method: str, path_regex: str) -> asyncio.Event:
        """The next request matching (as fail_next) is recorded, then waits, unanswered, until
        the returned event is set (and is answered as usual then): a moment to kill its
        sender in."""
        release = asyncio.Event()
        self._held.append((method.upper(), re.compile(path_regex), release))
        return release

    def clear_failures(self) -> None:
        """Forget every scripted answer not yet given."""
        self._scripted.clear()

    # --- plumbing ------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = None
        if request.content_type == "application/json" and request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return _error(400, "Problems parsing JSON")
        self.calls.append(
            Call(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        request[JSON_BODY] = body if body is not None else {}
        for held in self._held:
            if held[0] in ("*", request.method) and held[1].search(request.path):
                self._held.remove(held)
                await held[2].wait()
                break
        scripted = self._take_scripted(request)
        if scripted is not None:
            return scripted
        if request.match_info.http_exception is not None:
            return _error(404)  # GitHub answers unknown routes and methods alike
        try:
            self._authorize(request)
            return await handler(request)
        except _Answer as answer:
            return _error(answer.status, answer.message, answer.errors)

    def _take_scripted(self, request: web.Request) -> web.Response | None:
        for scripted in self._scripted:
            if scripted.method in ("*", request.method) and scripted.pattern.search(request.path):
                scripted.times -= 1
                if scripted.times <= 0:
                    self._scripted.remove(scripted)
                return web.json_response(
                    scripted.body, status=scripted.status, headers=scripted.headers
                )
        return None

    def _authorize(self, request: web.Request) -> None:
        access = self._access.get(request.match_info.route)
        if access == "public":
            return
        header = request.headers.get("Authorization")
        if not header:
            raise _Answer(401, REQUIRES_AUTHENTICATION)
        if access == "jwt" or request.path == "/app" or request.path.startswith("/app/"):
            self._check_jwt(header)
            return
        if self._authorize_user(request, access):
            return
        if access == "user":  # GET /user answers user tokens only
            self._check_token(header)
            raise _Answer(403, "Resource not accessible by integration")
        issued = self._check_token(header)
        request[TOKEN] = issued
        owner, name = request.match_info.get("owner"), request.match_info.get("repo")
        if owner and name:
            state = self._repos.get(f"{owner}/{name}".lower())
            if state is None:
                raise _Answer(404)
            if not self._may_access(issued, state["data"]["full_name"]):
                raise _Answer(403, "Resource not accessible by integration")

    def _check_jwt(self, header: str) -> None:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential:
            raise _Answer(401, "A JSON web token could not be decoded")
        try:
            claims = jwt.decode(
                credential,
                self.public_key_pem,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["iat", "exp", "iss"],
                },
            )
        except jwt.PyJWTError:
            raise _Answer(401, "A JSON web token could not be decoded") from None
        now = self.clock()
        if str(claims["iss"]) != str(self.app_id):
            raise _Answer(401, "Integration not found")
        if claims["iat"] > now:
            raise _Answer(401, "'Issued at' claim ('iat') must be an Integer in the past")
        if claims["exp"] <= now:
            raise _Answer(401, "'Expiration time' claim ('exp') must be in the future")
        if claims["exp"] - claims["iat"] > 600 or claims["exp"] > now + 600:
            raise _Answer(401, "'Expiration time' claim ('exp') is too far in the future")

    def _check_token(self, header: str) -> IssuedToken:
        scheme, _, credential = header.partition(" ")
        issued = self.tokens.get(credential) if scheme.lower() in ("token", "bearer") else None
        if issued is None or issued.revoked or issued.expires_at <= self.clock():
            raise _Answer(401, "Bad credentials")
        return issued

    def _may_access(self, issued: IssuedToken, full_name: str) -> bool:
        allowed = (
            issued.repositories
            if issued.repositories is not None
            else self._installation_repo_names(issued.installation_id)
        )
        return full_name.lower() in {r.lower() for r in allowed}

    def _git_auth(self, authorization: str | None, repo: str) -> bool:
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except ValueError:
            return False
        issued = self.tokens.get(password)
        return (
            user == "x-access-token"
            and issued is not None
            and not issued.revoked
            and issued.expires_at > self.clock()
            and repo.lower() in self._repos
            and self._may_access(issued, repo)
        )

    async def _git_unavailable(self, request: web.Request) -> web.Response:  # pragma: no cover
        return web.Response(status=501, text="git http bridge not available yet\n")


def _error(status: int, message: str | None = None, errors: Any = None) -> web.Response:
    body: dict[str, Any] = {
        "message": message or HTTPStatus(status).phrase,
        "documentation_url": DOCS_URL,
        "status": str(status),
    }
    if errors is not None:
        body["errors"] = errors
    return web.json_response(body, status=status)


def public_key_of(private_key_pem: str) -> str:
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
