"""One command's output: stdout and stderr read as they come, head and tail kept within a
bound, its input written; what the command's run returns (`CommandResult`)."""

from __future__ import annotations

import asyncio
import codecs
from dataclasses import dataclass

_READ_CHUNK = 64 * 1024


@dataclass
class CommandResult:
    exit_code: int | None
    output: str
    timed_out: bool = False
    truncated: bool = False
    # Which of the sandbox's limits ended or marked the command, for the agent to read.
    limit: str | None = None


class OutputCap:
    """Keeps the head and tail of a stream within `limit` characters, counting the cut."""

    def __init__(self, limit: int) -> None:
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head = ""
        self.tail = ""
        self.cut = 0

    def feed(self, text: str) -> None:
        if len(self.head) < self.head_limit:
            room = self.head_limit - len(self.head)
            self.head, text = self.head + text[:room], text[room:]
        self.tail += text
        if len(self.tail) > self.tail_limit:
            self.cut += len(self.tail) - self.tail_limit
            self.tail = self.tail[-self.tail_limit :] if self.tail_limit else ""

    def text(self) -> str:
        if not self.cut:
            return self.head + self.tail
        return f"{self.head}\n[... {self.cut} characters cut ...]\n{self.tail}"


async def read_into(stream: asyncio.StreamReader, cap: OutputCap) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := await stream.read(_READ_CHUNK):
        cap.feed(decoder.decode(chunk))
    cap.feed(decoder.decode(b"", final=True))


async def write_input(stdin: asyncio.StreamWriter | None, text: str | None) -> None:
    if stdin is None:
        return
    try:
        if text:
            stdin.write(text.encode())
            await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        stdin.close()
