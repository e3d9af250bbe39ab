"""A package registry on loopback (a PEP 503 simple index with one real wheel), in a thread.

It stands in for the hosts a sandbox reaches through Honk's egress proxy: a thread of its
own, so one server serves a whole test module (whatever event loop each test runs), and
it answers `/` with its own name, so a test can tell which server a request reached.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WHEEL_NAME = "honk_probe"
WHEEL_VERSION = "1.0"


def build_wheel(name: str = WHEEL_NAME, version: str = WHEEL_VERSION) -> tuple[str, bytes]:
    """A minimal valid pure-Python wheel: (file name, bytes)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{dist}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n"
        ).encode(),
        f"{dist}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: honk-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return f"{name}-{version}-py3-none-any.whl", buffer.getvalue()


class LoopbackRegistry:
    """`with LoopbackRegistry("name") as r: r.port`; `r.paths` lists what was asked for."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.paths: list[str] = []
        self.wheel_file, self.wheel = build_wheel()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                registry.paths.append(self.path)
                status, body, kind = registry.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str) -> tuple[int, bytes, str]:
        project = WHEEL_NAME.replace("_", "-")
        if path == f"/simple/{project}/":
            digest = hashlib.sha256(self.wheel).hexdigest()
            link = f'<a href="/files/{self.wheel_file}#sha256={digest}">{self.wheel_file}</a>'
            page = f"<!DOCTYPE html><html><body>{link}</body></html>"
            return 200, page.encode(), "text/html"
        if path == f"/files/{self.wheel_file}":
            return 200, self.wheel, "application/octet-stream"
        if path.startswith("/simple/"):
            return 404, b"not found", "text/plain"
        return 200, f"hello from {self.name}\n".encode(), "text/plain"

    def __enter__(self) -> LoopbackRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
