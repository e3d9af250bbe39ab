"""Command line: `honk serve | worker | run | migrate | doctor | stats | fleet`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from app.config import ConfigError, Settings
from app.log import configure_logging, redact

log = logging.getLogger("app")

DESCRIPTION = (
    "Honk turns GitHub issues labelled `honk` into tested pull requests, made by a Claude "
    "agent in a sandbox. Settings come from the environment and a dotenv file."
)
MAX_PORT = 65535
RUN_EPILOG = """exit status:
  0  the agent changed the checkout, and its last test run passed (or it ran none)
  1  the agent's last test run failed, or the agent stopped (an error, a limit)
  2  nothing was run: not a git checkout, no ANTHROPIC_API_KEY, no sandbox, ...
  3  the agent finished without changing anything"""
# `honk fleet <word> ID --as LOGIN`: app/fleet/requests.py's FleetCommand, each with its help.
FLEET_STEERING = {
    "continue": "fan out to the rest after the canary",
    "pause": "queue nothing more; what runs finishes",
    "resume": "carry on after a pause",
    "stop": "queue nothing more and cancel what runs; the fleet ends",
    "retry": "take the failed and vetoed repositories up again",
    "rollback": "stop, and close every unmerged PR of the fleet",
}
FLEET_EPILOG = """a selection is one line each: owner/name, owner/*, topic:NAME, language:NAME,
search:CODE QUERY, include:archived, include:forks (docs/fleet.md)."""
DOCTOR_EPILOG = """Each line is one check: ✓ passed, ! a warning (Honk runs, with less),
✗ failed, - skipped. Exit status 1 when a check failed, 0 otherwise (warnings too)."""


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported in one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    # --env-file on every parser, so it may come before or after the command; SUPPRESS:
    # a subcommand that was not given it does not overwrite the value given before it.
    common = _Parser(add_help=False)
    common.add_argument(
        "--env-file",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="read settings from this dotenv file (default: .env, when it exists; '' for "
        "none); variables in the environment win over it",
    )
    parser = _Parser(prog="honk", description=DESCRIPTION, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    def command(
        name: str, summary: str, more: str = "", epilog: str | None = None
    ) -> argparse.ArgumentParser:
        """A subcommand: `summary` is its line in `honk --help`; `more` adds to its own help."""
        return sub.add_parser(
            name,
            help=summary,
            description=textwrap.fill(f"{summary[0].upper()}{summary[1:]}. {more}".strip(), 79),
            epilog=epilog,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    serve = command(
        "serve",
        "run the web service (webhooks, run pages) and workers",
        "It answers GitHub's and Slack's webhooks, serves the run pages and the first-run "
        "set-up page, and runs HONK_WORKERS workers.",
    )
    serve.add_argument(
        "--port",
        type=_port,
        metavar="PORT",
        help=f"the port to listen on, 0 to {MAX_PORT} (default: PORT, else 3000); "
        "0 takes a free port and logs which",
    )
    command("worker", "run workers only, sharing the database with `honk serve`")
    command("migrate", "create or upgrade the database schema, then exit")
    command(
        "doctor",
        "check the configuration against GitHub, Anthropic, Slack",
        "One line per check.",
        epilog=DOCTOR_EPILOG,
    )
    stats = command("stats", "show the review's veto and recovery rates per repository")
    stats.add_argument("--days", type=_days, default=30, help="the period (default 30 days)")
    run = command(
        "run",
        "run the agent on a local git checkout, without GitHub",
        "Its changes are left uncommitted, for you to review with git diff.",
        epilog=RUN_EPILOG,
    )
    run.add_argument("--repo", type=Path, default=Path("."), help="the git checkout (default: .)")
    run.add_argument("task", help="what to do, in words")
    fleet = command(
        "fleet",
        "plan, start and steer fleet changes (one request, many repositories)",
        "The conductor of a running `honk serve` or `honk worker` does the work.",
        epilog=FLEET_EPILOG,
    )
    _fleet_actions(fleet, common)
    return parser


def _fleet_actions(fleet: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """`honk fleet plan | start | status | continue | pause | … `, each with its arguments."""
    actions = fleet.add_subparsers(dest="fleet_action", required=True, metavar="action")

    def action(name: str, summary: str) -> argparse.ArgumentParser:
        return actions.add_parser(
            name, help=summary, description=f"{summary[0].upper()}{summary[1:]}.", parents=[common]
        )

    def selection(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--installation", type=_positive, required=True, metavar="ID", help="its installation"
        )
        parser.add_argument(
            "--as",
            dest="login",
            required=True,
            metavar="LOGIN",
            help="the GitHub login the fleet is for (repositories it cannot write to are left out)",
        )
        given = parser.add_mutually_exclusive_group(required=True)
        given.add_argument("--repos", metavar="TEXT", help="the selection, a line each")
        given.add_argument("--repos-file", type=Path, metavar="FILE", help="the selection's file")

    selection(action("plan", "resolve a selection and print the plan; nothing is stored"))
    start = action("start", "resolve a selection, store the fleet and print its plan")
    selection(start)
    start.add_argument("--request", required=True, metavar="TEXT", help="the change to make")
    start.add_argument(
        "--canary", type=_positive, metavar="N", help="how many to try first (default 1)"
    )
    status = action("status", "a fleet's state, counts and repositories")
    status.add_argument("fleet_id", type=_positive, metavar="ID")
    for word, summary in FLEET_STEERING.items():
        steer = action(word, summary)
        steer.add_argument("fleet_id", type=_positive, metavar="ID")
        steer.add_argument("--as", dest="login", required=True, metavar="LOGIN", help="who asks")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    given = getattr(args, "env_file", None)
    if given and (problem := _unreadable(Path(given))):
        # Given on purpose: a typo must not quietly fall back to the environment alone.
        print(f"honk: --env-file {given} {problem}", file=sys.stderr)
        return 2
    env_file = given if given is not None else ".env"
    if args.command == "doctor":  # reports a broken configuration as a failed check
        from app.cli.doctor import doctor_command

        return doctor_command(env_file)

    try:
        settings = Settings.from_env(env_file=env_file)
    except ConfigError as exc:
        print(f"honk: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log.level, settings.log.format)
    redact.add(*settings.secrets())
    if args.command == "serve":
        port = settings.web.port if args.port is None else args.port
        return serve_command(settings.with_overrides(port=port))
    if args.command == "worker":
        return asyncio.run(worker_command(settings))
    if args.command == "migrate":
        return asyncio.run(migrate_command(settings))
    if args.command == "stats":
        from app.cli.stats import stats_command

        return asyncio.run(stats_command(settings.store, args.days, sys.stdout))
    if args.command == "fleet":
        from app.cli.fleet import fleet_command

        return asyncio.run(fleet_command(settings, args, sys.stdout, sys.stderr))
    if args.command == "run":
        from app.cli.local import run_local

        return asyncio.run(
            run_local(args.repo, args.task, settings, out=sys.stdout, err=sys.stderr)
        )
    return 2  # pragma: no cover - argparse enforces a command


def _unreadable(path: Path) -> str | None:
    """Why `path` cannot be read as a dotenv file, in the OS's words; None when it can."""
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        return f"cannot be read: {exc.strerror or type(exc).__name__}"
    return None if path.is_file() else "is not a file"


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {value!r})") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {days})")
    return days


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more (got {value!r})")
    return int(value)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 0 to {MAX_PORT} (got {value!r})"
        ) from None
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_PORT} (got {port})")
    return port


def serve_command(settings: Settings) -> int:
    from app.cli.listen import ListenError, listen

    # Bound before anything starts or logs "listening": a port in use is one line here.
    sockets: list[socket.socket] = []
    try:
        sockets = listen(settings.web.host, settings.web.port, fix="set PORT or --port")
        metrics = (
            listen(
                "127.0.0.1",
                settings.web.metrics_port,
                fix="set HONK_METRICS_PORT to a free port, or 0 for none",
            )[0]
            if settings.web.metrics_port
            else None
        )
    except ListenError as exc:
        for sock in sockets:
            sock.close()
        print(f"honk: {exc}", file=sys.stderr)
        return 2
    from aiohttp import web

    from app.web import create_app

    # Port 0 took a free port: every hint below names the one really bound.
    settings = settings.with_overrides(port=sockets[0].getsockname()[1])
    if not settings.github.configured:
        log.warning(
            "APP_ID/PRIVATE_KEY are not set: open http://localhost:%d/ to register the GitHub App",
            settings.web.port,
        )
    if not settings.github.webhook_secret:
        log.warning("WEBHOOK_SECRET is not set: every webhook will be refused")
    log.info("listening on %s:%d", settings.web.host, settings.web.port)
    web.run_app(
        create_app(settings, metrics_socket=metrics), sock=sockets, print=None, access_log=None
    )
    return 0


async def worker_command(settings: Settings) -> int:
    from app.services import open_services

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    workers = settings.store.workers or 1
    async with open_services(settings, workers=workers):
        log.info("worker process running %d worker(s); Ctrl-C to stop", workers)
        await stop.wait()
    return 0


async def migrate_command(settings: Settings) -> int:
    from app.store import Store

    settings.store.data_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(settings.store.database_url)
    await store.close()
    print("database schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
