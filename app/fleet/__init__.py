"""Fleet changes: one request taken to every repository that needs it (docs/fleet.md).

Above the run requests and below the handlers: a fleet queues ordinary runs (kind FLEET),
follows them through the store, and reports on its own page, issue and Slack thread.
"""
