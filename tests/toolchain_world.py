"""Small repositories of each toolchain, each with one dependency from a local registry and a
failing test the agent fixes by turning `a - b` into `a + b` (tests, benchmarks).

Each project is a mapping of path → text; `None` deletes (the calc world's Python files), so
`fake_github.commit_files(REPO, project)` turns octo-org/calc into that repository.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.fakes.registries import (
    CRATE,
    CRATE_VERSION,
    GO_MODULE,
    GO_VERSION,
    NPM_PACKAGE,
    NPM_VERSION,
    LocalRegistries,
    go_sum,
)

BUG, FIX = "a - b", "a + b"
# The calc world's files that are not part of these repositories.
NOT_PYTHON: dict[str, str | None] = {"calc.py": None, "test_calc.py": None, "AGENTS.md": None}
# The sandbox reaches the host's loopback through Honk's proxy under this name.
HOST = "localhost"
# Debian's mvn and java read their configuration through symlinks into /etc, which the
# sandbox shows only in part: the operator binds these (HONK_SANDBOX_RO_PATHS).
MAVEN_LOCAL_REPOSITORY = "/usr/share/maven-repo"


def honk_yml(verify: str, setup: str | None = None, env: dict[str, str] | None = None) -> str:
    """`verify:`, `setup:` and `env:`; the review's outcome checks off (they would re-run
    the toolchain's tests several times: covered elsewhere)."""
    lines = [f"verify: {json.dumps(verify)}"]
    if setup:
        lines.append(f"setup: {json.dumps(setup)}")
    if env:
        lines += ["env:", *(f"  {name}: {json.dumps(value)}" for name, value in env.items())]
    return "\n".join([*lines, "review:", "  outcome: off", ""])


def node_project(
    registries: LocalRegistries, dependency: str = NPM_PACKAGE
) -> dict[str, str | None]:
    """`npm ci` from the registry (a package-lock naming its tarball), `node --test`.
    `dependency` other than the registry's package makes `npm install` fail with its 404."""
    registry = registries.npm_url(HOST)
    names = [dependency, *registries.npm_packages[1:]]
    dependencies = {name: f"^{NPM_VERSION}" for name in names}
    manifest = {
        "name": "calc",
        "version": "1.0.0",
        "private": True,
        "scripts": {"test": "node --test"},
        "dependencies": dependencies,
    }
    packages: dict[str, object] = {
        "": {"name": "calc", "version": "1.0.0", "dependencies": dependencies}
    }
    for name in registries.npm_packages:
        packages[f"node_modules/{name}"] = {
            "version": NPM_VERSION,
            "resolved": f"{registry}{registries.tarball_path(name)}",
            "integrity": registries.integrity(name),
            "license": "MIT",
        }
    lock = {
        "name": "calc",
        "version": "1.0.0",
        "lockfileVersion": 3,
        "requires": True,
        "packages": packages,
    }
    files: dict[str, str | None] = {
        **NOT_PYTHON,
        "package.json": json.dumps(manifest, indent=2) + "\n",
        ".npmrc": f"registry={registry}\nupdate-notifier=false\naudit=false\nfund=false\n",
        "calc.js": (
            f"const pad = require('{NPM_PACKAGE}');\n\n"
            f"exports.add = (a, b) => {BUG};\nexports.show = (n) => pad(n, 4);\n"
        ),
        "calc.test.js": (
            "const test = require('node:test');\nconst assert = require('node:assert');\n"
            "const { add, show } = require('./calc');\n\n"
            "test('adds', () => {\n  assert.strictEqual(show(add(2, 3)), '...5');\n});\n"
        ),
    }
    if dependency == NPM_PACKAGE:
        files["package-lock.json"] = json.dumps(lock, indent=2) + "\n"
        files[".github/honk.yml"] = honk_yml("node --test", "npm ci")
    else:
        files[".github/honk.yml"] = honk_yml("node --test", "npm install")
    return files


def crate_project(registries: LocalRegistries) -> dict[str, str | None]:
    """crates-io replaced by the sparse registry (`.cargo/config.toml`); `cargo fetch`, then
    `cargo test --offline` (verification has no network)."""
    return {
        **NOT_PYTHON,
        "Cargo.toml": (
            '[package]\nname = "calc"\nversion = "0.1.0"\nedition = "2021"\n\n'
            "[dependencies]\n"
            + "".join(f'{name} = "{CRATE_VERSION}"\n' for name in registries.crates)
        ),
        ".cargo/config.toml": (
            '[source.crates-io]\nreplace-with = "mirror"\n\n'
            f'[source.mirror]\nregistry = "{registries.cargo_index(HOST)}"\n'
        ),
        "src/lib.rs": (
            f"pub fn add(a: i32, b: i32) -> i32 {{\n    {BUG}\n}}\n\n"
            "pub fn show(n: i32) -> String {\n"
            f"    {CRATE}::pad(&n.to_string(), 4)\n}}\n\n"
            "#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n"
            '        assert_eq!(super::show(super::add(2, 3)), "...5");\n    }\n}\n'
        ),
        ".github/honk.yml": honk_yml("cargo test --offline", "cargo fetch"),
    }


def go_project(registries: LocalRegistries) -> dict[str, str | None]:
    """The module proxy as a directory the operator binds (GOPROXY=file://...): Go never
    sends a loopback name through a proxy, so http://localhost:PORT would reach the
    sandbox's own loopback. Setup downloads into the module cache in the run's home, where
    the offline `go test` finds it: no vendoring."""
    return {
        **NOT_PYTHON,
        "go.mod": f"module example.com/calc\n\ngo 1.19\n\nrequire {GO_MODULE} {GO_VERSION}\n",
        "go.sum": go_sum(),
        "calc.go": (
            f'package calc\n\nimport (\n\t"strconv"\n\n\t"{GO_MODULE}"\n)\n\n'
            f"func Add(a, b int) int {{\n\treturn {BUG}\n}}\n\n"
            "func Show(n int) string {\n\treturn honkpad.Pad(strconv.Itoa(n), 4)\n}\n"
        ),
        "calc_test.go": (
            'package calc\n\nimport "testing"\n\nfunc TestAdd(t *testing.T) {\n'
            '\tif got := Show(Add(2, 3)); got != "...5" {\n\t\tt.Fatalf("got %q", got)\n\t}\n}\n'
        ),
        ".github/honk.yml": honk_yml(
            "go test ./...",
            "go mod download",
            env={"GOPROXY": f"file://{registries.go_dir}"},
        ),
    }


SUREFIRE = f"{MAVEN_LOCAL_REPOSITORY}/org/apache/maven/plugins/maven-surefire-plugin/2.22.3"


def maven_missing() -> str | None:
    """Why Maven's tests cannot run here (.ci/run installs what they need), or None."""
    if shutil.which("mvn") is None:
        return "no mvn on this machine"
    if not Path(SUREFIRE).is_dir():
        return f"no {SUREFIRE} (Debian's libsurefire-java and Maven's plugins)"
    return None


MAVEN_VERIFY = f"mvn -o -q -B -Dmaven.repo.local={MAVEN_LOCAL_REPOSITORY} test"


def maven_project() -> dict[str, str | None]:
    """JUnit 4 from Debian's local repository, offline; surefire pinned to Debian's."""
    pom = (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>org.example</groupId>\n  <artifactId>calc</artifactId>\n"
        "  <version>1.0</version>\n"
        "  <properties>\n"
        "    <maven.compiler.source>17</maven.compiler.source>\n"
        "    <maven.compiler.target>17</maven.compiler.target>\n"
        "    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>\n"
        "  </properties>\n"
        "  <dependencies>\n    <dependency>\n"
        "      <groupId>junit</groupId><artifactId>junit</artifactId>\n"
        "      <version>4.13.2</version><scope>test</scope>\n"
        "    </dependency>\n  </dependencies>\n"
        "  <build><plugins><plugin>\n"
        "    <groupId>org.apache.maven.plugins</groupId>\n"
        "    <artifactId>maven-surefire-plugin</artifactId><version>2.22.3</version>\n"
        "  </plugin></plugins></build>\n"
        "</project>\n"
    )
    return {
        **NOT_PYTHON,
        "pom.xml": pom,
        "src/main/java/calc/Calc.java": (
            "package calc;\n\npublic class Calc {\n"
            f"    public static int add(int a, int b) {{\n        return {BUG};\n    }}\n}}\n"
        ),
        "src/test/java/calc/CalcTest.java": (
            "package calc;\n\nimport static org.junit.Assert.assertEquals;\n\n"
            "import org.junit.Test;\n\npublic class CalcTest {\n    @Test\n"
            "    public void adds() {\n        assertEquals(5, Calc.add(2, 3));\n    }\n}\n"
        ),
        ".github/honk.yml": honk_yml(MAVEN_VERIFY),
    }


# The file each project's fix edits.
FIXED_FILE = {
    "node": "calc.js",
    "rust": "src/lib.rs",
    "go": "calc.go",
    "maven": "src/main/java/calc/Calc.java",
}
