"""The local registries are real enough for the real clients: `npm ci`, `cargo fetch`/`cargo
test`, `go mod download`/`go test` install from them on the host, and refusals read as the
real services' do. Then the same clients in Honk's sandbox, reaching the host's loopback only
through Honk's egress proxy (Go through a file:// proxy instead). Maven, offline from Debian's
local repository, is tested end to end only (tests/e2e/test_registries_e2e.py): it is slow."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest

from app.network_policy import Cap, Presets, compile_rules
from app.workspace.egress import EgressProxy, proxy_config
from app.workspace.run_home import SandboxHome, make_home
from app.workspace.sandbox import Sandbox
from app.workspace.toolchain_versions import choose
from app.workspace.toolchains import discover
from tests.fakes.registries import (
    CRATE,
    CRATE_DOWNLOAD_PATH,
    GO_MODULE,
    GO_VERSION,
    NPM_PACKAGE,
    LocalRegistries,
    sparse_index_path,
)
from tests.toolchain_world import (
    crate_project,
    go_project,
    node_project,
)

TARBALL = f"/npm/{NPM_PACKAGE}/-/{NPM_PACKAGE}-1.0.0.tgz"
GO_ZIP = f"/go/{GO_MODULE}/@v/{GO_VERSION}.zip"
# rustup's toolchain, used directly (no rustup proxy, so no RUSTUP_HOME needed).


@pytest.fixture(scope="module")
def registries() -> Iterator[LocalRegistries]:
    with LocalRegistries() as served:
        yield served


def write(root: Path, files: Mapping[str, str | None]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if text is not None:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
    return root


def host(cwd: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A client on the host, its caches in the test's own directories."""
    return subprocess.run(
        argv, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


def cargo() -> str:
    found = shutil.which("cargo") or shutil.which("cargo", path="/root/.cargo/bin")
    if found is None:
        pytest.fail("no cargo on this machine (.ci/run installs Debian's where rustup's is absent)")
    return found


def test_the_sparse_index_paths_are_cargos() -> None:
    assert [sparse_index_path(n) for n in ("a", "ab", "abc", "abcd", "Honk_Pad")] == [
        "1/a",
        "2/ab",
        "3/a/abc",
        "ab/cd/abcd",
        "ho/nk/honk_pad",
    ]


def test_npm_ci_installs_from_the_registry_and_an_unknown_package_is_npms_404(
    registries: LocalRegistries, tmp_path: Path
) -> None:
    cache = str(tmp_path / "npm-cache")
    project = write(tmp_path / "node", node_project(registries))
    done = host(project, "npm", "ci", npm_config_cache=cache)
    assert done.returncode == 0, done.stderr
    assert (project / "node_modules" / NPM_PACKAGE / "index.js").is_file()
    assert TARBALL in registries.paths
    # The dependency is used: the failing test shows its padding.
    tested = host(project, "node", "--test")
    assert tested.returncode != 0 and "'..-1'" in tested.stdout

    missing = write(tmp_path / "missing", node_project(registries, dependency="honk-missing"))
    refused = host(missing, "npm", "install", npm_config_cache=cache)
    assert refused.returncode != 0
    assert (
        f"404 Not Found - GET http://localhost:{registries.port}/npm/honk-missing" in refused.stderr
    )


def test_cargo_fetches_from_the_sparse_registry_and_tests_offline(
    registries: LocalRegistries, tmp_path: Path
) -> None:
    binary = cargo()
    home = str(tmp_path / "cargo-home")
    project = write(tmp_path / "crate", crate_project(registries))
    fetched = host(project, binary, "fetch", CARGO_HOME=home)
    assert fetched.returncode == 0, fetched.stderr
    assert CRATE_DOWNLOAD_PATH in registries.paths
    assert f'name = "{CRATE}"' in (project / "Cargo.lock").read_text()
    tested = host(project, binary, "test", "--offline", CARGO_HOME=home)
    assert tested.returncode != 0 and '"..-1"' in tested.stdout + tested.stderr

    unknown = write(tmp_path / "unknown", crate_project(registries))
    manifest = unknown / "Cargo.toml"
    manifest.write_text(manifest.read_text().replace(CRATE, "honk_missing"))
    refused = host(unknown, binary, "fetch", CARGO_HOME=home)
    assert refused.returncode != 0
    assert "no matching package named `honk_missing` found" in refused.stderr


def test_go_downloads_from_the_proxy_over_http_and_from_its_directory(
    registries: LocalRegistries, tmp_path: Path
) -> None:
    project = write(tmp_path / "go", go_project(registries))
    env = {"GOMODCACHE": str(tmp_path / "mod"), "GOFLAGS": "-modcacherw", "GOSUMDB": "off"}
    tested = host(project, "go", "test", "./...", GOPROXY=registries.goproxy(), **env)
    # go.sum's hashes matched what the proxy served (else: "SECURITY ERROR").
    assert tested.returncode != 0 and '"..-1"' in tested.stdout, tested.stderr
    assert GO_ZIP in registries.paths

    # The project's setup: the same module from the proxy's files, into the module cache.
    env["GOMODCACHE"] = str(tmp_path / "mod-from-files")
    files = {**env, "GOPROXY": f"file://{registries.go_dir}"}  # the repository's env:
    downloaded = host(project, "bash", "-c", _setup(project), **files)
    assert downloaded.returncode == 0, downloaded.stderr
    assert list((tmp_path / "mod-from-files").glob(f"{GO_MODULE}@*/pad.go"))

    unknown = host(
        project,
        "go",
        "mod",
        "download",
        "example.com/missing@v1.0.0",
        GOPROXY=registries.goproxy(),
        **env,
    )
    assert unknown.returncode != 0 and "404 Not Found" in unknown.stderr


def _setup(project: Path) -> str:
    text = (project / ".github" / "honk.yml").read_text()
    line = next(line for line in text.splitlines() if line.startswith("setup: "))
    return str(line.removeprefix("setup: ").strip('"'))


# In the sandbox: setup's proxy, the operator allowing the registry as `localhost:<port>`.


@pytest.fixture
async def setup_proxy(registries: LocalRegistries) -> AsyncIterator[EgressProxy]:
    listed = f"localhost:{registries.port}"
    cap = Cap((listed,), Presets.with_overrides({}))
    rules = compile_rules([listed], setting="setup_network", cap=cap)
    proxy = await EgressProxy.start(
        proxy_config(rules, setting="setup_network", cap=cap), phase="setup"
    )
    try:
        yield proxy
    finally:
        await proxy.stop()


def sandbox(root: Path, proxy: EgressProxy | None, *ro_paths: str) -> Sandbox:
    box = Sandbox(root, ro_paths=ro_paths)
    box.proxy = proxy.sandbox if proxy else None
    return box


@pytest.mark.bwrap
async def test_npm_and_cargo_in_the_sandbox_reach_the_registry_through_honks_proxy(
    registries: LocalRegistries, setup_proxy: EgressProxy, tmp_path: Path
) -> None:
    node = write(tmp_path / "node", node_project(registries))
    installed = await sandbox(node, setup_proxy).run("npm ci")
    assert installed.exit_code == 0, installed.output
    tested = await sandbox(node, None).run("node --test")  # offline, as verify: runs
    assert tested.exit_code != 0 and "'..-1'" in tested.output

    # The host's Rust as Honk finds it (rustup's, outside /usr, here), by its own bin dir.
    rust = choose(await asyncio.to_thread(discover)).toolchains
    assert rust.bin_dirs or shutil.which("cargo", path="/usr/bin"), "no Rust toolchain found"
    crate = write(tmp_path / "crate", crate_project(registries))
    box = sandbox(crate, setup_proxy)
    box.toolchains = rust
    path = "CARGO_HOME=$PWD/.cargo-home"
    fetched = await box.run(f"{path} cargo fetch")
    assert fetched.exit_code == 0, fetched.output
    offline = sandbox(crate, None)
    offline.toolchains = rust
    tested = await offline.run(f"{path} cargo test --offline")
    assert tested.exit_code != 0 and '"..-1"' in tested.output
    summary = await setup_proxy.stop()
    hosts = {(record.host, record.port) for record in summary.allowed}
    assert hosts == {("localhost", registries.port)} and not summary.refused


@pytest.mark.bwrap
async def test_go_never_proxies_loopback_so_the_sandbox_reads_the_proxys_directory(
    registries: LocalRegistries, setup_proxy: EgressProxy, tmp_path: Path
) -> None:
    project = write(tmp_path / "go", go_project(registries))
    # Go's net/http sends no request for localhost or a loopback address through a proxy:
    # this dials the sandbox's own loopback, where nothing listens.
    direct = await sandbox(project, setup_proxy, str(registries.go_dir)).run(
        f"GOPROXY={registries.goproxy('localhost')} go mod download"
    )
    assert direct.exit_code != 0 and "connection refused" in direct.output
    # Setup fills the module cache in the run's home; the offline `go test` builds from it.
    home = SandboxHome(make_home(tmp_path / "home"))
    setup = sandbox(project, setup_proxy, str(registries.go_dir))
    setup.home = home
    setup.repository_env = {"GOPROXY": f"file://{registries.go_dir}"}  # the repository's env:
    downloaded = await setup.run(_setup(project))
    assert downloaded.exit_code == 0, downloaded.output
    offline = sandbox(project, None)
    offline.home = home
    tested = await offline.run("go test ./...")
    assert tested.exit_code != 0 and '"..-1"' in tested.output


@pytest.mark.bwrap
async def test_npm_through_the_proxy_never_reuses_a_socket_the_proxy_closes(
    tmp_path: Path,
) -> None:
    """npm keeps 15 sockets for its downloads; the proxy takes one request per connection.
    Unless the response says `Connection: close`, npm sends its 16th download on a socket the
    proxy has closed, gets ECONNRESET, and retries 10 s later (a 4x slower setup)."""
    with LocalRegistries(extra=19) as many:
        listed = f"localhost:{many.port}"
        cap = Cap((listed,), Presets.with_overrides({}))
        rules = compile_rules([listed], setting="setup_network", cap=cap)
        proxy = await EgressProxy.start(
            proxy_config(rules, setting="setup_network", cap=cap), phase="setup"
        )
        try:
            node = write(tmp_path / "node", node_project(many))
            installed = await sandbox(node, proxy).run("npm ci --loglevel=http")
        finally:
            await proxy.stop()
    assert installed.exit_code == 0, installed.output
    assert "added 20 packages" in installed.output
    assert "attempt 1 failed" not in installed.output, installed.output
