"""Package registries on loopback, one server in a thread: npm, a Cargo sparse index and a Go
module proxy, each with one package built at test time.

Each answers as the real service does, refusals included (404 for a package it does not
hold), so real `npm`, `cargo` and `go` install from it. (Maven's tests use Debian's own
local repository, /usr/share/maven-repo, offline: see tests/workspace/test_registries.py.)
A thread of its own, so one server serves a whole test module whatever event loop each test
runs. `paths` lists what was asked for (a test counts downloads by it).

    npm      http://HOST/npm/            (`--registry` or `.npmrc` `registry=`)
    cargo    sparse+http://HOST/cargo/index/   (a `[source]` replacing crates-io)
    go       http://HOST/go              (GOPROXY); the same files in `go_dir` (file://)
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

NPM_PACKAGE = "honk-pad"
NPM_VERSION = "1.0.0"
NPM_INDEX = "module.exports = (text, width) => String(text).padStart(width, '.');\n"

CRATE = "honk_pad"
CRATE_VERSION = "1.0.0"
CRATE_LIB = (
    "pub fn pad(text: &str, width: usize) -> String {\n"
    '    format!("{:.>width$}", text, width = width)\n}\n'
)
CRATE_DOWNLOAD_PATH = f"/cargo/api/v1/crates/{CRATE}/{CRATE_VERSION}/download"

GO_MODULE = "example.com/honkpad"
GO_VERSION = "v1.0.0"
GO_SOURCE = (
    'package honkpad\n\nimport "strings"\n\n'
    "// Pad puts dots before text up to width.\n"
    "func Pad(text string, width int) string {\n"
    "\tif len(text) >= width {\n\t\treturn text\n\t}\n"
    '\treturn strings.Repeat(".", width-len(text)) + text\n}\n'
)
GO_TIME = "2026-01-01T00:00:00Z"


def _tar_gz(files: dict[str, bytes]) -> bytes:
    """A deterministic tar.gz of `files` (name → bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def npm_tarball(name: str = NPM_PACKAGE, version: str = NPM_VERSION) -> bytes:
    manifest = {"name": name, "version": version, "main": "index.js", "license": "MIT"}
    return _tar_gz(
        {
            "package/package.json": json.dumps(manifest, indent=2).encode(),
            "package/index.js": NPM_INDEX.encode(),
        }
    )


def crate_file(name: str = CRATE, version: str = CRATE_VERSION) -> bytes:
    manifest = f'[package]\nname = "{name}"\nversion = "{version}"\nedition = "2021"\n'
    return _tar_gz(
        {
            f"{name}-{version}/Cargo.toml": manifest.encode(),
            f"{name}-{version}/src/lib.rs": CRATE_LIB.encode(),
        }
    )


def sparse_index_path(name: str) -> str:
    """Where a crate's index file is: `1/a`, `2/ab`, `3/a/abc`, `ab/cd/abcd`."""
    name = name.lower()
    if len(name) <= 2:
        return f"{len(name)}/{name}"
    if len(name) == 3:
        return f"3/{name[0]}/{name}"
    return f"{name[:2]}/{name[2:4]}/{name}"


def go_module_files(module: str = GO_MODULE) -> dict[str, bytes]:
    return {"go.mod": f"module {module}\n\ngo 1.19\n".encode(), "pad.go": GO_SOURCE.encode()}


def go_zip(module: str = GO_MODULE, version: str = GO_VERSION) -> bytes:
    """The module's zip as a proxy serves it: every entry under `module@version/`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in go_module_files(module).items():
            archive.writestr(f"{module}@{version}/{name}", data)
    return buffer.getvalue()


def _hash1(files: dict[str, bytes]) -> str:
    """Go's dirhash "h1:": sha256 of the sorted "<sha256>  <name>\\n" lines."""
    lines = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items())
    )
    return "h1:" + base64.b64encode(hashlib.sha256(lines.encode()).digest()).decode()


def go_sum(module: str = GO_MODULE, version: str = GO_VERSION) -> str:
    """The go.sum lines a module requiring `module@version` holds (so no checksum database
    is asked)."""
    files = go_module_files(module)
    tree = _hash1({f"{module}@{version}/{name}": data for name, data in files.items()})
    mod = _hash1({"go.mod": files["go.mod"]})
    return f"{module} {version} {tree}\n{module} {version}/go.mod {mod}\n"


Answer = tuple[int, bytes, str]


class LocalRegistries:
    """`with LocalRegistries() as r: r.npm_url`; `r.paths` lists every path asked for."""

    def __init__(self, *, extra: int = 0, delay: float = 0.0) -> None:
        """`extra` more npm packages (`honk-pad-1`...) and crates (`honk_pad_1`...) beside
        the first, alike; `delay` seconds before each answer (a registry far away)."""
        self.paths: list[str] = []
        self.delay = delay
        self.npm_packages = [NPM_PACKAGE] + [f"{NPM_PACKAGE}-{i}" for i in range(1, extra + 1)]
        self.crates = [CRATE] + [f"{CRATE}_{i}" for i in range(1, extra + 1)]
        self.tarballs = {name: npm_tarball(name) for name in self.npm_packages}
        self.crate_files = {name: crate_file(name) for name in self.crates}
        self.tarball = self.tarballs[NPM_PACKAGE]
        self.crate = self.crate_files[CRATE]
        self.go_zip = go_zip()
        self._scratch = tempfile.TemporaryDirectory(prefix="honk-registries-")
        self.go_dir = Path(self._scratch.name) / "goproxy"
        self._write_go_dir()
        registries = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer(head=False)

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def _answer(self, *, head: bool) -> None:
                registries.paths.append(self.path)
                if registries.delay:
                    time.sleep(registries.delay)
                host = self.headers.get("Host") or f"127.0.0.1:{registries.port}"
                status, body, kind = registries.answer(self.path.split("?")[0], host)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # Where each client is pointed (`host` as the client names this server).
    def base(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    def npm_url(self, host: str = "127.0.0.1") -> str:
        return f"{self.base(host)}/npm/"

    def cargo_index(self, host: str = "127.0.0.1") -> str:
        return f"sparse+{self.base(host)}/cargo/index/"

    def goproxy(self, host: str = "127.0.0.1") -> str:
        return f"{self.base(host)}/go"

    def asked(self, prefix: str) -> list[str]:
        return [path for path in self.paths if path.startswith(prefix)]

    def _write_go_dir(self) -> None:
        """The module proxy's files on disk: GOPROXY=file://<go_dir> serves the same."""
        for name, data in self._go_files().items():
            path = self.go_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def _go_files(self) -> dict[str, bytes]:
        prefix = f"{GO_MODULE}/@v/{GO_VERSION}"
        info = json.dumps({"Version": GO_VERSION, "Time": GO_TIME}).encode()
        return {
            f"{GO_MODULE}/@v/list": f"{GO_VERSION}\n".encode(),
            f"{prefix}.info": info,
            f"{prefix}.mod": go_module_files()["go.mod"],
            f"{prefix}.zip": self.go_zip,
            f"{GO_MODULE}/@latest": info,
        }

    def answer(self, path: str, host: str) -> Answer:
        base = f"http://{host}"
        routes: dict[str, Callable[[str, str], Answer]] = {
            "/npm/": self._npm,
            "/cargo/": self._cargo,
            "/go/": self._go,
        }
        for prefix, route in routes.items():
            if path.startswith(prefix):
                return route(unquote(path[len(prefix) :]), base)
        return _not_found()

    def tarball_path(self, name: str) -> str:
        """Where `name`'s tarball is, below the registry's URL."""
        return f"{name}/-/{name}-{NPM_VERSION}.tgz"

    def integrity(self, name: str) -> str:
        return "sha512-" + base64.b64encode(hashlib.sha512(self.tarballs[name]).digest()).decode()

    def _npm(self, rest: str, base: str) -> Answer:
        for name, tarball in self.tarballs.items():
            if rest == self.tarball_path(name):
                return 200, tarball, "application/octet-stream"
        if rest not in self.tarballs:
            # What registry.npmjs.org answers for a package it does not hold.
            return 404, b'{"error":"Not found"}', "application/json"
        version = {
            "name": rest,
            "version": NPM_VERSION,
            "main": "index.js",
            "license": "MIT",
            "dist": {
                "tarball": f"{base}/npm/{self.tarball_path(rest)}",
                "shasum": hashlib.sha1(self.tarballs[rest]).hexdigest(),
                "integrity": self.integrity(rest),
            },
        }
        packument = {
            "name": rest,
            "dist-tags": {"latest": NPM_VERSION},
            "versions": {NPM_VERSION: version},
            "time": {NPM_VERSION: GO_TIME, "modified": GO_TIME, "created": GO_TIME},
        }
        return 200, json.dumps(packument).encode(), "application/json"

    def _cargo(self, rest: str, base: str) -> Answer:
        if rest == "index/config.json":
            config = {"dl": f"{base}/cargo/api/v1/crates", "api": f"{base}/cargo"}
            return 200, json.dumps(config).encode(), "application/json"
        for name, crate in self.crate_files.items():
            if rest == f"index/{sparse_index_path(name)}":
                entry = {
                    "name": name,
                    "vers": CRATE_VERSION,
                    "deps": [],
                    "cksum": hashlib.sha256(crate).hexdigest(),
                    "features": {},
                    "yanked": False,
                }
                return 200, (json.dumps(entry) + "\n").encode(), "text/plain"
            if rest == f"api/v1/crates/{name}/{CRATE_VERSION}/download":
                return 200, crate, "application/gzip"
        return _not_found()

    def _go(self, rest: str, base: str) -> Answer:
        data = self._go_files().get(rest)
        if data is None:
            # proxy.golang.org answers 404 (or 410) "not found: ..." for what it lacks.
            return 404, f"not found: {rest}\n".encode(), "text/plain"
        return 200, data, "application/octet-stream"

    def __enter__(self) -> LocalRegistries:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
        self._scratch.cleanup()


def _not_found() -> Answer:
    return 404, b"Not Found\n", "text/plain"
