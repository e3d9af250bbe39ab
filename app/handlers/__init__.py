"""Every GitHub event Honk handles, one module per event family, joined into one router."""

from gidgethub import routing

from app.handlers import checks, comments, installation, issues

router = routing.Router(issues.router, installation.router, comments.router, checks.router)

__all__ = ["router"]
