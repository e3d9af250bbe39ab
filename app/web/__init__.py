"""The HTTP side: GitHub's webhooks and health (server), Slack's endpoints, first-run set-up."""

from app.web.server import SERVICES, SETTINGS, create_app

__all__ = ["SERVICES", "SETTINGS", "create_app"]
