"""Toolchains found, not configured by hand: discovery on fake home trees (small scripts stand
in for the programs), the versions a checkout declares and the choice among those found, the
settings; then real bwrap with this machine's rustup toolchains, and one run issue -> PR for a
Rust crate whose `verify: cargo test` passes in the sandbox."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from app.cli.doctor_check import PASS, WARN
from app.cli.doctor_host import check_toolchains
from app.config import ConfigError, Settings
from app.workspace.command_env import sandbox_env
from app.workspace.toolchain_versions import (
    MAX_DECLARATION_BYTES,
    Declared,
    choose,
    read_declared,
)
from app.workspace.toolchains import Toolchain, Toolchains, discover

TRIPLE = "x86_64-unknown-linux-gnu"


def program(path: Path, output: str = "") -> Path:
    """An executable script standing in for a toolchain's program: it prints `output`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(0o755)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def found_as(found: tuple[Toolchain, ...]) -> set[tuple[str, str, str]]:
    return {(t.language, t.version, t.source) for t in found}


def only(found: tuple[Toolchain, ...], language: str, version: str) -> Toolchain:
    matches = [t for t in found if t.language == language and t.version == version]
    assert len(matches) == 1, found
    return matches[0]


# -- discovery ---------------------------------------------------------------------------


def rustup_tree(rustup: Path) -> None:
    stable = rustup / "toolchains" / f"stable-{TRIPLE}"
    program(stable / "bin" / "rustc", "rustc 0.0.0 (the manifest says otherwise)")
    program(stable / "bin" / "cargo", "cargo 1.95.0")
    write(
        stable / "lib" / "rustlib" / "multirust-channel-manifest.toml",
        'manifest-version = "2"\n\n[pkg.cargo]\nversion = "0.96.0 (f2d3ce0bd 2026-03-21)"\n\n'
        '[pkg.rustc]\nversion = "1.95.0 (59807616e 2026-04-14)"\n',
    )
    # No manifest: the version is what its rustc says.
    nightly = rustup / "toolchains" / f"nightly-{TRIPLE}"
    program(nightly / "bin" / "rustc", "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)")
    program(rustup / "toolchains" / f"1.82.0-{TRIPLE}" / "bin" / "rustc", "rustc 1.82.0 (f6e5 x)")
    write(rustup / "settings.toml", f'version = "12"\ndefault_toolchain = "stable-{TRIPLE}"\n')


def test_rustup_toolchains_are_found_by_their_own_bin_never_the_proxies(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rustup_tree(home / ".rustup")
    program(home / ".cargo" / "bin" / "cargo", "rustup's proxy: it may download")
    program(home / ".cargo" / "bin" / "rustc", "rustup's proxy: it may download")
    found = discover(home, system=tmp_path / "root")
    assert found_as(found) == {
        ("rust", "1.95.0", "rustup"),
        ("rust", "1.97.0-nightly", "rustup"),
        ("rust", "1.82.0", "rustup"),
    }
    stable = only(found, "rust", "1.95.0")
    assert stable.bin_dir == str(home / ".rustup" / "toolchains" / f"stable-{TRIPLE}" / "bin")
    assert stable.names == ("stable",) and stable.default
    nightly = only(found, "rust", "1.97.0-nightly")
    assert nightly.names == ("nightly",) and not nightly.default
    assert not any(".cargo" in t.bin_dir for t in found)


def test_rustup_home_and_nvm_dir_are_read_from_their_variables(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rustup_tree(tmp_path / "elsewhere" / "rustup")
    program(tmp_path / "nvm" / "versions" / "node" / "v22.3.0" / "bin" / "node", "v22.3.0")
    program(home / ".nvm" / "versions" / "node" / "v18.0.0" / "bin" / "node", "v18.0.0")
    env = {"RUSTUP_HOME": str(tmp_path / "elsewhere" / "rustup"), "NVM_DIR": str(tmp_path / "nvm")}
    found = discover(home, env=env, system=tmp_path / "root")
    assert ("rust", "1.95.0", "rustup") in found_as(found)
    assert ("node", "22.3.0", "nvm") in found_as(found)
    assert ("node", "18.0.0", "nvm") not in found_as(found)  # NVM_DIR wins over ~/.nvm


def test_node_from_nvm_fnm_volta_and_the_system(tmp_path: Path) -> None:
    home, system = tmp_path / "home", tmp_path / "root"
    program(home / ".nvm" / "versions" / "node" / "v20.1.0" / "bin" / "node", "v20.1.0")
    program(home / ".nvm" / "versions" / "node" / "v22.3.0" / "bin" / "node", "v22.3.0")
    fnm = home / ".local" / "share" / "fnm" / "node-versions" / "v18.20.0"
    program(fnm / "installation" / "bin" / "node", "v18.20.0")
    program(home / ".volta" / "tools" / "image" / "node" / "16.20.2" / "bin" / "node", "v16.20.2")
    program(system / "usr" / "bin" / "node", "v12.22.12")  # its version only from running it
    found = discover(home, system=system)
    assert found_as(found) == {
        ("node", "20.1.0", "nvm"),
        ("node", "22.3.0", "nvm"),
        ("node", "18.20.0", "fnm"),
        ("node", "16.20.2", "volta"),
        ("node", "12.22.12", "system"),
    }
    assert only(found, "node", "18.20.0").bin_dir == str(fnm / "installation" / "bin")
    system_node = only(found, "node", "12.22.12")
    assert system_node.default and system_node.bin_dir == str(system / "usr" / "bin")


def test_go_from_debian_usr_local_and_sdk_with_goroot_and_no_downloads(tmp_path: Path) -> None:
    home, system = tmp_path / "home", tmp_path / "root"
    debian = system / "usr" / "lib" / "go-1.22"
    program(debian / "bin" / "go", "never run: VERSION says it")
    write(debian / "VERSION", "go1.22.5\ntime 2024-07-01T00:00:00Z\n")
    (system / "usr" / "bin").mkdir(parents=True)
    os.symlink("../lib/go-1.22/bin/go", system / "usr" / "bin" / "go")  # as Debian links it
    program(system / "usr" / "local" / "go" / "bin" / "go", "x")
    write(system / "usr" / "local" / "go" / "VERSION", "go1.23.1\n")
    program(home / "sdk" / "go1.21.0" / "bin" / "go", "go version go1.21.0 linux/amd64")
    found = discover(home, system=system)
    assert found_as(found) == {
        ("go", "1.22.5", "system"),
        ("go", "1.23.1", "system"),
        ("go", "1.21.0", "go-sdk"),
    }
    debian_go = only(found, "go", "1.22.5")
    assert debian_go.default  # what /usr/bin/go runs
    assert dict(debian_go.env) == {"GOROOT": str(debian), "GOTOOLCHAIN": "local"}
    assert not only(found, "go", "1.23.1").default


def test_java_maven_gradle_from_the_system_and_sdkman(tmp_path: Path) -> None:
    home, system = tmp_path / "home", tmp_path / "root"
    jvm = system / "usr" / "lib" / "jvm"
    program(jvm / "java-17-openjdk-amd64" / "bin" / "java", "x")
    write(jvm / "java-17-openjdk-amd64" / "release", 'JAVA_VERSION="17.0.9"\n')
    os.symlink("java-17-openjdk-amd64", jvm / "java-1.17.0-openjdk-amd64")  # the same JDK
    (jvm / "openjdk-17").mkdir()  # sources only: no JDK
    candidates = home / ".sdkman" / "candidates"
    program(candidates / "java" / "21.0.2-tem" / "bin" / "java", "x")
    write(candidates / "java" / "21.0.2-tem" / "release", 'JAVA_VERSION="21.0.2"\n')
    os.symlink("21.0.2-tem", candidates / "java" / "current")
    program(candidates / "maven" / "3.9.6" / "bin" / "mvn", "x")
    program(candidates / "gradle" / "8.5" / "bin" / "gradle", "x")
    found = discover(home, system=system)
    assert found_as(found) == {
        ("java", "17.0.9", "system"),
        ("java", "21.0.2", "sdkman"),
        ("maven", "3.9.6", "sdkman"),
        ("gradle", "8.5", "sdkman"),
    }
    java = only(found, "java", "21.0.2")
    assert dict(java.env) == {"JAVA_HOME": str(candidates / "java" / "21.0.2-tem")}


def test_python_from_pyenv_and_the_system(tmp_path: Path) -> None:
    home, system = tmp_path / "home", tmp_path / "root"
    program(home / ".pyenv" / "versions" / "3.11.7" / "bin" / "python3", "x")
    program(home / ".pyenv" / "versions" / "3.12.1" / "bin" / "python3", "x")
    program(system / "usr" / "bin" / "python3", "Python 3.10.12")
    found = discover(home, system=system)
    assert found_as(found) == {
        ("python", "3.11.7", "pyenv"),
        ("python", "3.12.1", "pyenv"),
        ("python", "3.10.12", "system"),
    }


def test_mise_asdf_and_the_operators_paths(tmp_path: Path) -> None:
    home, system = tmp_path / "home", tmp_path / "root"
    mise = home / ".local" / "share" / "mise" / "installs"
    program(mise / "node" / "20.11.0" / "bin" / "node", "x")
    os.symlink("20.11.0", mise / "node" / "20")  # mise's alias: the same install
    program(mise / "python" / "3.12.2" / "bin" / "python3", "x")
    asdf = home / ".asdf" / "installs"
    program(asdf / "nodejs" / "18.19.0" / "bin" / "node", "x")
    program(asdf / "golang" / "1.21.6" / "go" / "bin" / "go", "x")
    write(asdf / "golang" / "1.21.6" / "go" / "VERSION", "go1.21.6\n")
    program(asdf / "java" / "temurin-17.0.9+9" / "bin" / "java", "x")
    program(asdf / "ruby" / "3.3.0" / "bin" / "ruby", "x")  # not a language Honk offers
    opt_go = program(tmp_path / "opt" / "go" / "bin" / "go", "go version go1.20.3 linux/amd64")
    found = discover(home, system=system, extra=[("go", str(tmp_path / "opt" / "go"))])
    assert found_as(found) == {
        ("node", "20.11.0", "mise"),
        ("python", "3.12.2", "mise"),
        ("node", "18.19.0", "asdf"),
        ("go", "1.21.6", "asdf"),
        ("java", "17.0.9", "asdf"),
        ("go", "1.20.3", "setting"),
    }
    assert dict(only(found, "go", "1.21.6").env)["GOROOT"] == str(asdf / "golang/1.21.6/go")
    assert only(found, "go", "1.20.3").bin_dir == str(opt_go.parent)


def test_an_empty_home_finds_nothing(tmp_path: Path) -> None:
    assert discover(tmp_path / "home", system=tmp_path / "root") == ()


def test_what_a_sandbox_is_given_path_order_roots_and_variables() -> None:
    rust = Toolchain("rust", "1.95.0", "rustup", "/h/.rustup/t/stable", "/h/.rustup/t/stable/bin")
    go = Toolchain("go", "1.22.5", "system", "/usr/lib/go-1.22", "/usr/lib/go-1.22/bin",
                   env=(("GOROOT", "/usr/lib/go-1.22"), ("GOTOOLCHAIN", "local")))  # fmt: skip
    node = Toolchain("node", "20.1.0", "system", "/usr", "/usr/bin")
    given = Toolchains.of([rust, go, node])
    # /usr is bound already and /usr/bin on PATH already: nothing added for them.
    assert given.bin_dirs == ("/h/.rustup/t/stable/bin", "/usr/lib/go-1.22/bin")
    assert given.ro_paths == ("/h/.rustup/t/stable",)
    env = sandbox_env(venv="/workspace/x/.venv", toolchains=given)
    path = env["PATH"].split(":")
    assert path[:3] == ["/workspace/x/.venv/bin", "/h/.rustup/t/stable/bin", "/usr/lib/go-1.22/bin"]
    assert path[-3:] == ["/usr/local/bin", "/usr/bin", "/bin"]
    assert env["GOROOT"] == "/usr/lib/go-1.22" and env["GOTOOLCHAIN"] == "local"
    assert env["HOME"] == "/tmp"


# -- declared versions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (".nvmrc", "v20.1.0\n", ("node", "v20.1.0", "20.1.0")),
        (".nvmrc", "# the team's\nlts/*\n", ("node", "lts/*", "lts/*")),
        (".node-version", "20\n", ("node", "20", "20")),
        ("rust-toolchain.toml", '[toolchain]\nchannel = "1.78"\n', ("rust", "1.78", "1.78")),
        (
            "rust-toolchain.toml",
            '[toolchain]\nchannel = "nightly"\ncomponents = ["rustfmt"]\n',
            ("rust", "nightly", "nightly"),
        ),
        ("rust-toolchain", "stable\n", ("rust", "stable", "stable")),
        (".python-version", "3.11\n3.10\n", ("python", "3.11", "3.11")),
        (".java-version", "17\n", ("java", "17", "17")),
    ],
)
def test_each_declaration_file_is_read(
    tmp_path: Path, name: str, text: str, expected: tuple[str, str, str]
) -> None:
    write(tmp_path / name, text)
    declared = read_declared(tmp_path)
    assert [(d.language, d.asked, d.spec) for d in declared] == [expected]
    assert declared[0].file == name


def test_go_mod_names_a_toolchain_and_a_minimum(tmp_path: Path) -> None:
    write(tmp_path / "go.mod", "module x\n\ngo 1.21 // at least\n\ntoolchain go1.22.1\n")
    declared = read_declared(tmp_path)
    assert declared == (
        Declared("go", "go1.22.1", "go.mod", spec="1.22.1"),
        Declared("go", "1.21", "go.mod", minimum=True),
    )


def test_tool_versions_fills_in_what_the_languages_own_files_do_not_say(tmp_path: Path) -> None:
    write(
        tmp_path / ".tool-versions",
        "# asdf\nnodejs 20.1.0 18.0.0\nrust 1.78.0\ngolang 1.22\npython system\n"
        "java temurin-17\nruby 3.3.0\n",
    )
    write(tmp_path / ".nvmrc", "22\n")  # wins over .tool-versions' nodejs
    declared = {d.language: (d.asked, d.spec, d.file) for d in read_declared(tmp_path)}
    assert declared == {
        "node": ("22", "22", ".nvmrc"),
        "rust": ("1.78.0", "1.78.0", ".tool-versions"),
        "go": ("1.22", "1.22", ".tool-versions"),
        "java": ("temurin-17", "17", ".tool-versions"),
    }


def test_a_declaration_linking_out_or_too_large_is_not_read(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    write(tmp_path / "outside" / "rust-toolchain", "nightly\n")
    os.symlink(tmp_path / "outside" / "rust-toolchain", checkout / "rust-toolchain")
    write(checkout / ".nvmrc", "20\n" + " " * MAX_DECLARATION_BYTES)
    (checkout / ".python-version").mkdir()  # not a regular file
    assert read_declared(checkout) == ()
    # A link inside the checkout is followed.
    write(checkout / "config" / "rust-toolchain", "stable\n")
    (checkout / "rust-toolchain").unlink()
    os.symlink("config/rust-toolchain", checkout / "rust-toolchain")
    assert [d.asked for d in read_declared(checkout)] == ["stable"]


# -- the choice --------------------------------------------------------------------------

RUSTS = (
    Toolchain("rust", "1.95.0", "rustup", "/r/stable", "/r/stable/bin", names=("stable",),
              default=True),
    Toolchain("rust", "1.82.2", "rustup", "/r/1.82.2", "/r/1.82.2/bin", names=("1.82.2",)),
    Toolchain("rust", "1.97.0-nightly", "rustup", "/r/nightly", "/r/nightly/bin",
              names=("nightly",)),
)  # fmt: skip
NODES = (
    Toolchain("node", "20.1.0", "nvm", "/n/20", "/n/20/bin"),
    Toolchain("node", "21.7.0", "nvm", "/n/21", "/n/21/bin"),
    Toolchain("node", "18.19.0", "nvm", "/n/18", "/n/18/bin"),
)
GOS = (
    Toolchain("go", "1.19.8", "system", "/usr/lib/go-1.19", "/usr/lib/go-1.19/bin", default=True),
    Toolchain("go", "1.22.5", "go-sdk", "/g/1.22.5", "/g/1.22.5/bin"),
)
PYTHONS = (Toolchain("python", "3.11.7", "pyenv", "/p/3.11.7", "/p/3.11.7/bin"),)
FOUND = RUSTS + NODES + GOS + PYTHONS


def chosen(declared: list[Declared], defaults: dict[str, str] | None = None) -> dict[str, str]:
    choice = choose(FOUND, declared, defaults)
    return {t.language: t.version for t in choice.chosen}


def test_without_declarations_each_language_gets_the_hosts_default_or_the_newest() -> None:
    choice = choose(FOUND)
    assert {t.language: t.version for t in choice.chosen} == {
        "rust": "1.95.0",  # rustup's default
        "node": "21.7.0",  # the newest
        "go": "1.19.8",  # what /usr/bin/go runs
    }  # Python: the sandbox's own
    assert choice.notes == ()
    assert choice.toolchains.bin_dirs == ("/r/stable/bin", "/n/21/bin", "/usr/lib/go-1.19/bin")


@pytest.mark.parametrize(
    ("language", "asked", "version"),
    [
        ("rust", "1.82", "1.82.2"),  # a prefix
        ("rust", "1.82.2", "1.82.2"),
        ("rust", "stable", "1.95.0"),
        ("rust", "nightly", "1.97.0-nightly"),
        ("rust", "1.97", "1.97.0-nightly"),
        ("node", "20", "20.1.0"),
        ("node", "v18.19.0", "18.19.0"),
        ("node", "lts/*", "20.1.0"),  # even majors are the LTS lines
        ("node", "lts/hydrogen", "18.19.0"),
        ("node", "node", "21.7.0"),
        ("go", "1.22", "1.22.5"),
        ("python", "3.11", "3.11.7"),
    ],
)
def test_a_declared_version_chooses_among_those_found(
    language: str, asked: str, version: str
) -> None:
    spec = asked.removeprefix("v")
    choice = choose(FOUND, [Declared(language, asked, "f", spec=spec)])
    assert {t.language: t.version for t in choice.chosen}[language] == version
    assert choice.notes == ()


def test_a_version_honk_does_not_have_is_said_plainly_and_the_default_used() -> None:
    choice = choose(FOUND, [Declared("rust", "1.78", "rust-toolchain.toml")])
    assert choice.notes == (
        "`rust-toolchain.toml` asks for Rust `1.78`; this Honk has 1.97.0-nightly, 1.95.0 and "
        "1.82.2. The run goes on with 1.95.0.",
    )
    assert {t.language: t.version for t in choice.chosen}["rust"] == "1.95.0"
    missing = choose(FOUND, [Declared("java", "17", ".java-version")])
    assert missing.notes == (
        "`.java-version` asks for Java `17`; this Honk has no Java toolchain.",
    )
    lts = choose(NODES, [Declared("node", "lts/argon", ".nvmrc")])
    assert lts.notes == (
        "`.nvmrc` asks for Node.js `lts/argon`; this Honk has 21.7.0, 20.1.0 and 18.19.0. "
        "The run goes on with 21.7.0.",
    )


def test_go_mods_minimum_keeps_the_default_when_it_is_enough() -> None:
    assert chosen([Declared("go", "1.18", "go.mod", minimum=True)])["go"] == "1.19.8"
    assert chosen([Declared("go", "1.21", "go.mod", minimum=True)])["go"] == "1.22.5"
    toolchain = [
        Declared("go", "go1.22.9", "go.mod", spec="1.22.9"),  # not here: the minimum decides
        Declared("go", "1.20", "go.mod", minimum=True),
    ]
    assert chosen(toolchain)["go"] == "1.22.5"
    choice = choose(GOS, [Declared("go", "1.23", "go.mod", minimum=True)])
    assert choice.notes == (
        "`go.mod` asks for Go `1.23`; this Honk has 1.22.5 and 1.19.8. "
        "The run goes on with 1.19.8.",
    )


def test_the_operators_defaults_apply_when_nothing_is_declared() -> None:
    assert chosen([], {"node": "20", "rust": "nightly", "python": "3.11"}) == {
        "rust": "1.97.0-nightly",
        "node": "20.1.0",
        "go": "1.19.8",
        "python": "3.11.7",
    }
    assert chosen([Declared("node", "18", ".nvmrc")], {"node": "20"})["node"] == "18.19.0"
    choice = choose(NODES, defaults={"node": "16"})
    assert choice.notes == (
        "HONK_TOOLCHAIN_DEFAULTS asks for Node.js `16`; this Honk has 21.7.0, 20.1.0 and 18.19.0.",
    )
    assert [t.version for t in choice.chosen] == ["21.7.0"]


def test_a_declared_version_is_inert_markdown() -> None:
    choice = choose(NODES, [Declared("node", "`](http://x) @alice", ".nvmrc")])
    assert "@alice" in choice.notes[0] and "](http://x)" in choice.notes[0]
    assert choice.notes[0].startswith("`.nvmrc` asks for Node.js ``")


# -- settings ----------------------------------------------------------------------------


def test_the_settings_add_roots_and_pin_defaults() -> None:
    settings = Settings.from_env(
        {
            "HONK_TOOLCHAIN_PATHS": "go=/opt/go1.22/, java=/opt/jdk-21",
            "HONK_TOOLCHAIN_DEFAULTS": "node=20,rust=1.95",
            "RUSTUP_HOME": "/srv/rustup",
            "NVM_DIR": "",
        },
        env_file=None,
    )
    assert settings.sandbox.toolchain_paths == (("go", "/opt/go1.22"), ("java", "/opt/jdk-21"))
    assert settings.sandbox.toolchain_defaults == (("node", "20"), ("rust", "1.95"))
    assert settings.sandbox.toolchain_env == (("RUSTUP_HOME", "/srv/rustup"),)
    unset = Settings.from_env({}, env_file=None)
    assert (
        unset.sandbox.toolchain_paths
        == unset.sandbox.toolchain_defaults
        == unset.sandbox.toolchain_env
        == ()
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "HONK_TOOLCHAIN_PATHS",
            "go",
            "HONK_TOOLCHAIN_PATHS is a list of language=an absolute "
            "path, comma-separated (got 'go')",
        ),
        (
            "HONK_TOOLCHAIN_PATHS",
            "go=opt/go",
            "HONK_TOOLCHAIN_PATHS: go='opt/go' is not an absolute path",
        ),
        (
            "HONK_TOOLCHAIN_PATHS",
            "ruby=/opt/ruby",
            "HONK_TOOLCHAIN_PATHS: 'ruby' is not one of: "
            "rust, node, go, java, python, maven, gradle",
        ),
        (
            "HONK_TOOLCHAIN_DEFAULTS",
            "node=20 && rm",
            "HONK_TOOLCHAIN_DEFAULTS: node='20 && rm' is not a version",
        ),
        ("HONK_TOOLCHAIN_DEFAULTS", "node=20,node=18", "HONK_TOOLCHAIN_DEFAULTS names node twice"),
    ],
)
def test_a_wrong_toolchain_setting_is_one_line(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value}, env_file=None)
    assert str(raised.value) == message


# -- honk doctor -------------------------------------------------------------------------


async def test_doctor_lists_what_was_found_and_warns_of_a_root_holding_nothing(
    tmp_path: Path,
) -> None:
    await asyncio.to_thread(program, tmp_path / "opt" / "go" / "bin" / "go", "go version go1.20.3")
    settings = Settings().with_overrides(
        toolchain_paths=(("go", str(tmp_path / "opt" / "go")),),
        toolchain_defaults=(("go", "1.20"),),
    )
    check = await check_toolchains(settings.sandbox)
    assert check.status == PASS, check.detail
    assert f"go 1.20.3 (setting, {tmp_path}/opt/go)" in check.detail
    assert check.detail.split(" found: ")[0].isdigit()
    wrong = Settings().with_overrides(
        toolchain_paths=(
            ("java", str(tmp_path / "opt" / "none")),
            *settings.sandbox.toolchain_paths,
        ),
        toolchain_defaults=(("go", "0.1"),),
    )
    check = await check_toolchains(wrong.sandbox)
    assert check.status == WARN
    assert check.detail.startswith(
        f"HONK_TOOLCHAIN_PATHS: java={tmp_path}/opt/none holds no java toolchain "
        "HONK_TOOLCHAIN_DEFAULTS asks for Go `0.1`; this Honk has"
    )
