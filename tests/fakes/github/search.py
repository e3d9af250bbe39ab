"""GitHub's code search (GET /search/code), over the fake's repositories' default branches.

What it understands of GitHub's query syntax: words and "quoted phrases" (each must appear
in a file, case-insensitively), and the qualifiers `org:`, `user:`, `repo:` (the scope: one
of each kind must hold, the kinds together), `path:`, `filename:`, `extension:`,
`language:` and `fork:true|only`. Like GitHub it searches the repositories the token may
read and every public one, leaves forks out unless `fork:` says otherwise, answers at most
the first 1000 results, and refuses a query it cannot parse, or one of qualifiers alone,
with a 422. Repositories with git are searched with `git grep` on their default branch;
those without (add_repo(git=False)) over the files they were seeded with.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from typing import Any

from aiohttp import web

from tests.fakes.github.state import TOKEN, GitHubState, IssuedToken, _Answer, _git

MAX_RESULTS = 1000  # GitHub answers only the first thousand results of a search
MAX_QUERY = 256  # characters, GitHub's limit on a search's text
QUALIFIERS = frozenset(
    {"org", "user", "repo", "path", "filename", "extension", "language", "fork", "in"}
)
TOKENS = re.compile(r'(?:(\w+):)?(?:"([^"]*)"|(\S+))')
EXTENSIONS = {
    "py": "python",
    "go": "go",
    "js": "javascript",
    "ts": "typescript",
    "rb": "ruby",
    "rs": "rust",
    "java": "java",
    "c": "c",
    "h": "c",
    "md": "markdown",
}
UNPARSABLE = "ERROR_TYPE_QUERY_PARSING_FATAL unable to parse query!"
QUALIFIERS_ONLY = (
    "Search text is required when searching source code. "
    "Searches that use qualifiers only are not allowed."
)


class _Query:
    """A code search query, read as the fake understands it."""

    def __init__(self, text: str) -> None:
        if text.count('"') % 2:
            raise _invalid(UNPARSABLE)
        self.terms: list[str] = []
        self.qualifiers: dict[str, list[str]] = {}
        for match in TOKENS.finditer(text):
            key, quoted, bare = match.group(1), match.group(2), match.group(3)
            value = quoted if quoted is not None else bare
            if key is not None and key.lower() in QUALIFIERS:
                self.qualifiers.setdefault(key.lower(), []).append(value)
            elif key is not None:
                self.terms.append(f"{key}:{value}")
            elif value:
                self.terms.append(value)
        self.words = [t for t in self.terms if t.upper() not in ("AND", "OR", "NOT")]
        if not self.words:
            raise _invalid(QUALIFIERS_ONLY)
        if len(" ".join(self.words)) > MAX_QUERY:
            raise _invalid("The search is longer than 256 characters.")

    def values(self, key: str) -> list[str]:
        return [v.lower() for v in self.qualifiers.get(key, [])]

    def scopes(self, data: dict[str, Any]) -> bool:
        """Whether the repository is within the query's org:, user: and repo: qualifiers."""
        owner = data["owner"]["login"].lower()
        owners = self.values("org") + self.values("user")
        repos = self.values("repo")
        return (not owners or owner in owners) and (not repos or data["full_name"].lower() in repos)

    def takes_fork(self, data: dict[str, Any]) -> bool:
        forks = self.values("fork")
        if "only" in forks:
            return bool(data["fork"])
        return not data["fork"] or "true" in forks

    def takes_path(self, path: str) -> bool:
        name = posixpath.basename(path).lower()
        extension = name.rpartition(".")[2] if "." in name else ""
        checks = [
            all(p.strip("/").lower() in path.lower() for p in self.values("path")),
            all(f == name for f in self.values("filename")),
            all(e.lstrip(".") == extension for e in self.values("extension")),
            all(EXTENSIONS.get(extension) == lang for lang in self.values("language")),
        ]
        return all(checks)

    def takes_text(self, text: str) -> bool:
        lowered = text.lower()
        return all(word.lower() in lowered for word in self.words)


class SearchMixin(GitHubState):
    """Answers GET /search/code."""

    async def _search_code(self, request: web.Request) -> web.Response:
        query = _Query(request.query.get("q", ""))
        try:
            per_page = min(max(int(request.query.get("per_page", 30)), 1), 100)
            page = max(int(request.query.get("page", 1)), 1)
        except ValueError:
            raise _Answer(422, "Invalid pagination parameters") from None
        if (page - 1) * per_page >= MAX_RESULTS:
            raise _Answer(422, "Only the first 1000 search results are available")
        items: list[dict[str, Any]] = []
        for key in sorted(self._repos):
            data = self._repos[key]["data"]
            if not (self._searchable(request[TOKEN], data) and query.scopes(data)):
                continue
            if not query.takes_fork(data):
                continue
            for path, text in await self._files_matching(key, query):
                items.append(self._search_item(data, path, text))
        # total_count tells every result; only the first thousand can be paged to.
        extra = {"total_count": len(items), "incomplete_results": False}
        return self._page(request, items[:MAX_RESULTS], "items", extra)

    def _searchable(self, issued: IssuedToken, data: dict[str, Any]) -> bool:
        """Public, or readable with the token (as the auth middleware's `_may_access`)."""
        if not data["private"]:
            return True
        allowed = issued.repositories
        if allowed is None:
            allowed = tuple(self._installation_repo_names(issued.installation_id))
        return data["full_name"].lower() in {name.lower() for name in allowed}

    async def _files_matching(self, key: str, query: _Query) -> list[tuple[str, str]]:
        state = self._repos[key]
        code: dict[str, str] | None = state.get("code")
        if code is not None:
            return [
                (path, text)
                for path, text in sorted(code.items())
                if query.takes_path(path) and query.takes_text(text)
            ]
        data = state["data"]
        patterns = [arg for word in query.words for arg in ("-e", word)]
        bare = str(self.repos_root / f"{data['full_name']}.git")
        branch = f"refs/heads/{data['default_branch']}"
        status, out = await _git(
            "--git-dir", bare, "grep", "-I", "-l", "-i", "-F", "--all-match", *patterns, branch
        )
        if status != 0:  # 1: nothing matched (or an empty repository)
            return []
        found = []
        for line in out.decode().splitlines():
            path = line.removeprefix(f"{branch}:")
            if query.takes_path(path):
                found.append((path, ""))
        return found

    def _search_item(self, data: dict[str, Any], path: str, text: str) -> dict[str, Any]:
        sha = hashlib.sha1(f"{data['full_name']}:{path}:{text}".encode()).hexdigest()
        api = data["url"]
        repository = {
            key: data[key]
            for key in (
                "id",
                "node_id",
                "name",
                "full_name",
                "owner",
                "private",
                "html_url",
                "description",
                "fork",
                "url",
            )
            if key in data
        }
        return {
            "name": posixpath.basename(path),
            "path": path,
            "sha": sha,
            "url": f"{api}/contents/{path}?ref={sha}",
            "git_url": f"{api}/git/blobs/{sha}",
            "html_url": f"{data['html_url']}/blob/{sha}/{path}",
            "repository": repository,
            "score": 1.0,
        }


def _invalid(message: str) -> _Answer:
    return _Answer(
        422,
        "Validation Failed",
        [{"message": message, "resource": "Search", "field": "q", "code": "invalid"}],
    )
