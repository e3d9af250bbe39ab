"""The contents API: files and directory listings at a ref."""

from __future__ import annotations

import base64
from urllib.parse import unquote

from aiohttp import web

from tests.fakes.github.state import (
    GitHubState,
    _Answer,
    _git,
)


class ContentsMixin(GitHubState):
    """GET /repos/{owner}/{repo}/contents/{path}: files and directories, read from the bare repo."""

    async def _contents(self, request: web.Request) -> web.Response:
        state = self._state(request)
        full = state["data"]["full_name"]
        path = unquote(request.match_info["path"]).strip("/")
        ref = request.query.get("ref") or state["data"]["default_branch"]
        git_dir = str(self.bare_path(full))
        code, out = await _git(
            "--git-dir", git_dir, "rev-parse", "--verify", "--quiet", f"{ref}:{path}"
        )
        if code != 0:
            raise _Answer(404)
        sha = out.decode().strip()
        _, kind = await _git("--git-dir", git_dir, "cat-file", "-t", sha)
        api = f"{state['data']['url']}/contents/{path}"
        if kind.strip() == b"tree":
            _, listing = await _git("--git-dir", git_dir, "ls-tree", "-l", sha)
            entries = []
            for line in listing.decode().splitlines():
                meta, _, name = line.partition("\t")
                _, entry_type, entry_sha, size = meta.split()
                entry_path = f"{path}/{name}" if path else name
                entries.append(
                    {
                        "type": "dir" if entry_type == "tree" else "file",
                        "name": name,
                        "path": entry_path,
                        "sha": entry_sha,
                        "size": 0 if size == "-" else int(size),
                        "url": f"{state['data']['url']}/contents/{entry_path}?ref={ref}",
                    }
                )
            return web.json_response(entries)
        _, content = await _git("--git-dir", git_dir, "cat-file", "blob", sha)
        if "application/vnd.github.raw" in request.headers.get("Accept", ""):
            return web.Response(body=content, content_type="application/vnd.github.raw")
        too_big = len(content) > 1_000_000  # GitHub leaves these out of the JSON
        return web.json_response(
            {
                "type": "file",
                "encoding": "none" if too_big else "base64",
                "size": len(content),
                "name": path.rpartition("/")[2],
                "path": path,
                "content": "" if too_big else base64.encodebytes(content).decode(),
                "sha": sha,
                "url": f"{api}?ref={ref}",
                "git_url": f"{state['data']['url']}/git/blobs/{sha}",
                "html_url": f"{state['data']['html_url']}/blob/{ref}/{path}",
                "download_url": f"{self.url}/raw/{full}/{ref}/{path}",
            }
        )
