"""Every GitHub event Honk handles, one module per event family, joined into one router."""

from gidgethub import routing

from app.handlers import installation, issues

router = routing.Router(issues.router, installation.router)

__all__ = ["router"]
