"""Honk's GitHub side: App authentication and the REST client."""

from app.github.auth import GitHubApp, InstallationToken
from app.github.client import GitHubClient, convert_manifest

__all__ = ["GitHubApp", "GitHubClient", "InstallationToken", "convert_manifest"]
