"""The review's checks of what a change does, apart from how its diff reads: the tests'
outcome (outcome.py) and the test files parsed (the tamper package)."""
