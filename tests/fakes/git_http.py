"""A real git smart-HTTP server for tests: `git http-backend` run as a CGI behind aiohttp."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web

GitHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CheckAuth = Callable[[str | None, str], bool]

GIT_ROUTE = "/{owner}/{name}.git/{tail:.*}"
_CHUNK = 64 * 1024
# GitHub refuses an App without the `workflows` permission any push that changes a workflow.
PRE_RECEIVE = r"""#!/bin/sh
zero=0000000000000000000000000000000000000000
while read old new ref; do
  [ "$new" = "$zero" ] && continue
  if [ "$old" = "$zero" ]; then commits=$(git rev-list "$new" --not --all)
  else commits=$(git rev-list "$old..$new"); fi
  for commit in $commits; do
    for path in $(git diff-tree --no-commit-id --name-only -r --root "$commit" -- \
        .github/workflows); do
      echo "refusing to allow a GitHub App to create or update workflow '$path'" \
        "without 'workflows' permission" >&2
      exit 1
    done
  done
done
"""


def make_git_handler(repos_root: Path, check_auth: CheckAuth) -> GitHandler:
    """An aiohttp handler for GIT_ROUTE serving bare repos at repos_root/<owner>/<name>.git.

    `check_auth(authorization_header, "owner/name")` runs first; False answers 401 the
    way GitHub does, so a git client reports an authentication failure.
    """

    hooks = repos_root / ".hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    (hooks / "pre-receive").write_text(PRE_RECEIVE)
    (hooks / "pre-receive").chmod(0o755)

    async def handle(request: web.Request) -> web.StreamResponse:
        owner, name = request.match_info["owner"], request.match_info["name"]
        authorization = request.headers.get("Authorization")
        if not check_auth(authorization, f"{owner}/{name}"):
            return web.Response(
                status=401,
                text="Invalid username or token.\n",
                headers={"WWW-Authenticate": 'Basic realm="GitHub"'},
            )
        env = _cgi_env(request, repos_root, _basic_user(authorization))
        env |= {"GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_1": "core.hooksPath"}
        env["GIT_CONFIG_VALUE_1"] = str(hooks)
        return await _run_cgi(request, env)

    return handle


def create_git_app(repos_root: Path, check_auth: CheckAuth | None = None) -> web.Application:
    """A standalone app serving repos_root; by default every request is allowed."""
    app = web.Application()
    app.router.add_route("*", GIT_ROUTE, make_git_handler(repos_root, check_auth or _allow_all))
    return app


def token_auth(tokens: Mapping[str, str] | str) -> CheckAuth:
    """A check_auth accepting GitHub-style `x-access-token:<token>` basic auth.

    `tokens` is one token for every repository, or a mapping "owner/name" -> token.
    """

    def check(authorization: str | None, repo: str) -> bool:
        expected = tokens if isinstance(tokens, str) else tokens.get(repo)
        if not authorization or expected is None:
            return False
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except ValueError:
            return False
        return decoded == f"x-access-token:{expected}"

    return check


async def init_bare_repo(
    repos_root: Path,
    repo: str,
    files: Mapping[str, str] | None = None,
    *,
    branch: str = "main",
) -> Path:
    """Create repos_root/<repo>.git with one commit on `branch` holding `files`."""
    bare = repos_root / f"{repo}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    await run_git("init", "--bare", f"--initial-branch={branch}", str(bare))
    seed = repos_root / f".seed-{repo.replace('/', '-')}"
    await run_git("init", f"--initial-branch={branch}", str(seed))
    for rel, content in (files or {"README.md": "# test\n"}).items():
        target = seed / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    await run_git("add", "-A", cwd=seed)
    await run_git("commit", "-q", "-m", "initial", cwd=seed)
    await run_git("push", "-q", str(bare), f"{branch}:refs/heads/{branch}", cwd=seed)
    shutil.rmtree(seed)
    return bare


async def run_git(*args: str, cwd: Path | None = None) -> str:
    """Run git for test setup and inspection (no credentials, fixed identity)."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=_git_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {err.decode(errors='replace')}")
    return out.decode()


def _allow_all(authorization: str | None, repo: str) -> bool:
    return True


def _git_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.devnull,
        "LANG": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }


def _basic_user(authorization: str | None) -> str:
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(value).decode(errors="replace").partition(":")[0]
    except ValueError:
        return ""


def _cgi_env(request: web.Request, repos_root: Path, user: str) -> dict[str, str]:
    owner, name, tail = (request.match_info[k] for k in ("owner", "name", "tail"))
    env = _git_env() | {
        "GIT_PROJECT_ROOT": str(repos_root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.receivepack",
        "GIT_CONFIG_VALUE_0": "true",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": request.method,
        "PATH_INFO": f"/{owner}/{name}.git/{tail}",
        "QUERY_STRING": request.query_string,
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "REMOTE_USER": user,
        "REMOTE_ADDR": request.remote or "127.0.0.1",
    }
    if request.content_length is not None:
        env["CONTENT_LENGTH"] = str(request.content_length)
    # http-backend inflates gzip bodies itself and speaks protocol v2 when asked.
    for header, var in (
        ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
        ("Git-Protocol", "HTTP_GIT_PROTOCOL"),
    ):
        if header in request.headers:
            env[var] = request.headers[header]
    return env


async def _run_cgi(request: web.Request, env: dict[str, str]) -> web.StreamResponse:
    proc = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    # Feed the body while reading the answer: a large push would otherwise deadlock.
    feeder = asyncio.create_task(_feed(request, proc.stdin))
    stderr = asyncio.create_task(proc.stderr.read())
    try:
        status, headers = await _read_cgi_headers(proc.stdout)
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        async for chunk in _chunks(proc.stdout):
            await response.write(chunk)
        await response.write_eof()
        await feeder
        return response
    finally:
        for task in (feeder, stderr):
            task.cancel()
        # Killed only if it outlives its output (a dropped client): Process.kill() on
        # an exited child reaps it behind asyncio's back ("Unknown child process").
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        for task in (feeder, stderr):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _feed(request: web.Request, stdin: asyncio.StreamWriter) -> None:
    try:
        while chunk := await request.content.read(_CHUNK):
            stdin.write(chunk)
            await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        stdin.close()


async def _read_cgi_headers(stdout: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status, headers = 200, {}
    while line := (await stdout.readline()).decode("latin-1").rstrip("\r\n"):
        key, _, value = line.partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers[key.strip()] = value.strip()
    return status, headers


async def _chunks(stdout: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while chunk := await stdout.read(_CHUNK):
        yield chunk
