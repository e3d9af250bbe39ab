"""Slack: run threads and Block Kit messages (notify.py, blocks.py)."""
