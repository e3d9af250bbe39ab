"""Every GitHub event Honk handles, one module per event family, joined into one router."""

from gidgethub import routing

from app.handlers import authorizations, checks, comments, fleet, installation, issues, pulls

router = routing.Router(
    issues.router,
    installation.router,
    comments.router,
    checks.router,
    pulls.router,
    authorizations.router,
    fleet.router,
)

__all__ = ["router"]
