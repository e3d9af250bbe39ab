"""Command line: `honk serve | worker | run | migrate | doctor | stats` (thin: parse, call)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from app.config import ConfigError, Settings
from app.log import configure_logging, redact

log = logging.getLogger("app")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="honk", description=__doc__)
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the web service (webhooks) and workers")
    serve.add_argument("--port", type=int, help="override PORT")
    sub.add_parser("worker", help="run workers only, sharing the database with `serve`")
    sub.add_parser("migrate", help="create or upgrade the database schema and exit")
    sub.add_parser("doctor", help="check the configuration against GitHub, Anthropic, Slack")
    stats = sub.add_parser("stats", help="the review's veto and recovery rates per repository")
    stats.add_argument("--days", type=_days, default=30, help="the period (default 30 days)")
    run = sub.add_parser("run", help="run the agent on a local checkout, no GitHub")
    run.add_argument("--repo", type=Path, default=Path("."), help="the checkout (default .)")
    run.add_argument("task", help="what to do, in words")
    args = parser.parse_args(argv)
    if args.command == "doctor":  # reports a broken configuration as a failed check
        from app.cli.doctor import doctor_command

        return doctor_command(args.env_file)

    try:
        settings = Settings.from_env(env_file=args.env_file)
    except ConfigError as exc:
        print(f"honk: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    redact.add(*settings.secrets())
    if args.command == "serve":
        return serve_command(settings.with_overrides(port=args.port) if args.port else settings)
    if args.command == "worker":
        return asyncio.run(worker_command(settings))
    if args.command == "migrate":
        return asyncio.run(migrate_command(settings))
    if args.command == "stats":
        from app.cli.stats import stats_command

        return asyncio.run(stats_command(settings, args.days, sys.stdout))
    if args.command == "run":
        from app.cli.local import run_local

        return asyncio.run(run_local(args.repo, args.task, settings, out=sys.stdout))
    return 2  # pragma: no cover - argparse enforces a command


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("--days must be a whole number") from None
    if days < 1:
        raise argparse.ArgumentTypeError("--days must be at least 1")
    return days


def serve_command(settings: Settings) -> int:
    from aiohttp import web

    from app.web import create_app

    if not settings.github_configured:
        log.warning(
            "APP_ID/PRIVATE_KEY are not set: open http://localhost:%d/ to register the GitHub App",
            settings.port,
        )
    if not settings.webhook_secret:
        log.warning("WEBHOOK_SECRET is not set: every webhook will be refused")
    log.info("listening on %s:%d", settings.host, settings.port)
    web.run_app(
        create_app(settings), host=settings.host, port=settings.port, print=None, access_log=None
    )
    return 0


async def worker_command(settings: Settings) -> int:
    from app.services import open_services

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    workers = settings.workers or 1
    async with open_services(settings, workers=workers):
        log.info("worker process running %d worker(s); Ctrl-C to stop", workers)
        await stop.wait()
    return 0


async def migrate_command(settings: Settings) -> int:
    from app.store import Store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(settings.database_url)
    await store.close()
    print("database schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
