"""The real `python -m app`: usage mistakes and start-up errors are one line on stderr, exit 2."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("serve", "worker", "migrate", "doctor", "stats", "run")


@dataclass(frozen=True)
class Ran:
    status: int
    out: str
    err: str


def environment(tmp_path: Path, **extra: str | None) -> dict[str, str]:
    """Only what the CLI needs; this checkout's `app` first; data under tmp_path.

    `extra`: more variables; None leaves one out.
    """
    env: dict[str, str | None] = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(ROOT),
        "HOST": "127.0.0.1",
        "HONK_DATA_DIR": str(tmp_path / "data"),
        "HONK_WORKERS": "0",
        "LOG_FORMAT": "text",
        **extra,
    }
    return {name: value for name, value in env.items() if value is not None}


async def honk(tmp_path: Path, *args: str, **env: str | None) -> Ran:
    """`python -m app *args` in tmp_path (no .env there unless a test writes one)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", *args,
        env=environment(tmp_path, **env), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return Ran(process.returncode or 0, out.decode(), err.decode())


@contextlib.contextmanager
def occupied_port() -> Iterator[int]:
    """A port something else is listening on, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def one_line(ran: Ran) -> str:
    """The single stderr line of a refused start; nothing on stdout, no traceback."""
    assert ran.status == 2, ran
    assert ran.out == "", ran
    assert "Traceback" not in ran.err
    lines = ran.err.splitlines()
    assert len(lines) == 1, ran.err
    return lines[0]


# --- help ---------------------------------------------------------------------------


async def test_help_is_for_people(tmp_path: Path) -> None:
    ran = await honk(tmp_path, "--help")
    assert ran.status == 0, ran
    assert "thin" not in ran.out and "parse, call" not in ran.out
    assert "tested pull requests" in ran.out
    for command in COMMANDS:
        # Each command on its own line with a description beside it.
        assert re.search(rf"^ +{command} +\S.+$", ran.out, re.MULTILINE), (command, ran.out)
    run_help = await honk(tmp_path, "run", "--help")
    assert run_help.status == 0
    statuses = run_help.out.split("exit status:", 1)[1]
    for status in ("0", "1", "2", "3"):
        assert re.search(rf"^ +{status} +\S", statuses, re.MULTILINE), run_help.out
    assert "--env-file" in run_help.out  # accepted after the command too
    doctor_help = await honk(tmp_path, "doctor", "--help")
    assert "! a warning" in doctor_help.out and "✗ failed" in doctor_help.out


async def test_a_usage_mistake_is_one_line(tmp_path: Path) -> None:
    line = one_line(await honk(tmp_path, "serve", "--frobnicate"))
    assert line == "honk: unrecognized arguments: --frobnicate; see honk --help"
    line = one_line(await honk(tmp_path, "serv"))
    assert line.startswith("honk: argument command: invalid choice: 'serv'")


# --- ports --------------------------------------------------------------------------


async def test_a_port_in_use_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    with occupied_port() as port:
        from_env = await honk(tmp_path, "serve", PORT=str(port))
        from_flag = await honk(tmp_path, "serve", "--port", str(port))
    for ran in (from_env, from_flag):
        # Nothing logged before it: no "listening", no workers, no set-up hint.
        assert one_line(ran) == f"honk: port {port} on 127.0.0.1 is in use (set PORT or --port)"


async def test_a_metrics_port_in_use_names_its_setting(tmp_path: Path) -> None:
    with occupied_port() as port:
        ran = await honk(tmp_path, "serve", "--port", "0", HONK_METRICS_PORT=str(port))
    assert one_line(ran) == (
        f"honk: port {port} on 127.0.0.1 is in use "
        "(set HONK_METRICS_PORT to a free port, or 0 for none)"
    )


async def test_ports_out_of_range_name_the_range(tmp_path: Path) -> None:
    assert one_line(await honk(tmp_path, "serve", "--port", "70000")) == (
        "honk serve: argument --port: must be between 0 and 65535 (got 70000); "
        "see honk serve --help"
    )
    assert one_line(await honk(tmp_path, "serve", "--port", "http")) == (
        "honk serve: argument --port: must be a whole number from 0 to 65535 (got 'http'); "
        "see honk serve --help"
    )
    assert one_line(await honk(tmp_path, "serve", PORT="70000")) == (
        "honk: configuration error: PORT must be between 0 and 65535 (got 70000)"
    )


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, *args: str, **env: str | None) -> AsyncIterator[list[str]]:
    """`honk serve *args` running; yields its log lines up to "listening on"."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "serve", *args,
        env=environment(tmp_path, **env), cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    lines: list[str] = []
    try:
        while not any("listening on" in line for line in lines):
            line = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
            assert line, f"honk serve ended: {lines}"
            lines.append(line.rstrip("\n"))
        yield lines
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_port_0_takes_a_free_port_and_says_which(tmp_path: Path) -> None:
    async with serving(tmp_path, "--port", "0", PORT="3000") as lines:
        port = int(re.findall(r"listening on 127\.0\.0\.1:(\d+)$", lines[-1])[0])
        assert port not in (0, 3000)
        # The set-up hint names the port really bound.
        hint = next(line for line in lines if "to register the GitHub App" in line)
        assert f"open http://localhost:{port}/ " in hint
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as answer,
        ):
            assert answer.status == 200
            assert (await answer.json())["ok"] is True


# --- --env-file ---------------------------------------------------------------------


async def test_a_missing_env_file_given_on_purpose_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "prod.env"
    for args in (["--env-file", str(missing), "migrate"], ["migrate", "--env-file", str(missing)]):
        assert one_line(await honk(tmp_path, *args)) == (
            f"honk: --env-file {missing} cannot be read: No such file or directory"
        )
    assert one_line(await honk(tmp_path, "doctor", "--env-file", str(tmp_path))) == (
        f"honk: --env-file {tmp_path} cannot be read: Is a directory"
    )
    # No .env in the working directory, none named: fine, the environment alone.
    ran = await honk(tmp_path, "migrate")
    assert ran.status == 0, ran
    assert (tmp_path / "data" / "honk.db").is_file()


async def test_env_file_is_accepted_after_the_command(tmp_path: Path) -> None:
    env_file = tmp_path / "other.env"
    env_file.write_text(f"HONK_DATA_DIR={tmp_path / 'from-file'}\n")
    after = await honk(tmp_path, "migrate", "--env-file", str(env_file), HONK_DATA_DIR=None)
    assert after.status == 0, after
    assert (tmp_path / "from-file" / "honk.db").is_file()
    env_file.write_text("HONK_MAX_TURNS=0\n")
    # Read when given after the command: its mistake is reported.
    assert one_line(await honk(tmp_path, "stats", "--env-file", str(env_file))) == (
        "honk: configuration error: HONK_MAX_TURNS must be at least 1 (got 0)"
    )


async def test_an_unreadable_key_file_names_path_and_reason(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "honk.pem"
    ran = await honk(tmp_path, "serve", APP_ID="1", PRIVATE_KEY_PATH=str(key))
    assert one_line(ran) == (
        f"honk: configuration error: PRIVATE_KEY_PATH {key} cannot be read: "
        "No such file or directory"
    )
