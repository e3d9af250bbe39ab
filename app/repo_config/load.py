"""Loading a repository's config from GitHub: its file over its org's default, parsed once
per blob (`ConfigCache`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol

import gidgethub

from app.repo_config.config import CONFIG_PATH, ORG_DEFAULTS_REPO, RepoConfig
from app.repo_config.parse import parse_config


@dataclass
class ConfigCache:
    """Parsed configs keyed by blob SHA: the same file is parsed once."""

    by_sha: dict[tuple[str, str], RepoConfig] = field(default_factory=dict)
    max_entries: int = 1024

    def parse(self, text: str, sha: str, source: str) -> RepoConfig:
        # The source is part of the key: the same bytes in two repositories name two files.
        key = (sha, source)
        if key not in self.by_sha:
            if len(self.by_sha) >= self.max_entries:
                self.by_sha.clear()
            self.by_sha[key] = parse_config(text, source)
        return self.by_sha[key]


class FileSource(Protocol):
    """What loading a config needs of GitHub: a file's text and blob sha at a ref
    (`GitHubClient.file_text`; repo_config does not import app.github, its sibling)."""

    async def file_text(
        self, repo: str, path: str, ref: str | None = None
    ) -> tuple[str, str] | None: ...


async def load_repo_config(
    gh: FileSource, repo: str, ref: str | None, cache: ConfigCache
) -> RepoConfig:
    """The repository's config over its org's default; raises RepoConfigError when malformed."""
    owner, name = repo.split("/", 1)
    base = RepoConfig()
    if name != ORG_DEFAULTS_REPO:
        found = await _org_default(gh, owner)
        if found:
            base = cache.parse(found[0], found[1], f"{owner}/{ORG_DEFAULTS_REPO}:{CONFIG_PATH}")
    found = await gh.file_text(repo, CONFIG_PATH, ref)
    if not found:
        return base
    return cache.parse(found[0], found[1], CONFIG_PATH).merged_over(base)


async def _org_default(gh: FileSource, owner: str) -> tuple[str, str] | None:
    try:
        return await gh.file_text(f"{owner}/{ORG_DEFAULTS_REPO}", CONFIG_PATH)
    except gidgethub.BadRequest as exc:
        # An installation on selected repositories cannot read the org's `.github`
        # repository (403): then there is no org-wide default for it, not an error.
        if exc.status_code in (HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND):
            return None
        raise
