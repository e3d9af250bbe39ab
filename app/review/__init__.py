"""The review's checks of what a change does, apart from how its diff reads."""
