"""Test commands: which runner a command is, how to make it write a report, how to run only
some files (pure).

A command is a known runner when it is one plain invocation of pytest, `go test`,
`node --test`, `cargo test`, jest, vitest or mocha (no pipes, substitutions or redirections);
Honk then adds what makes it write a structured report. Anything else still runs, judged by
its exit status alone (`EXIT_STATUS`), and the review says so.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from app.review import files as material
from app.review import reports
from app.review.reports import Results, UnreadableReport

PYTEST, GO, NODE, CARGO, JEST, VITEST, MOCHA = (
    "pytest", "go", "node", "cargo", "jest", "vitest", "mocha",
)  # fmt: skip
EXIT_STATUS = "exit status"  # a command Honk cannot read a report from
_SHELL = re.compile(r"[|;<>`$()&\n]")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Options that take a value as the next word (`-k expr`), per runner; `--opt=value` never does.
_VALUE_OPTIONS: dict[str, frozenset[str]] = {
    PYTEST: _words(
        "-k -m -p -c -o -W -n -r --rootdir --confcutdir --ignore --ignore-glob --deselect "
        "--basetemp --tb --durations --maxfail --junitxml --junit-xml --junit-prefix --log-level "
        "--cov --cov-report --cov-config --timeout --dist --import-mode --override-ini "
        "--log-file --log-cli-level --capture --color --pyargs"
    ),
    GO: _words(
        "-run -skip -count -timeout -tags -p -parallel -cpu -bench -benchtime -coverprofile "
        "-covermode -coverpkg -o -exec -vet -ldflags -gcflags -mod -shuffle -cpuprofile "
        "-memprofile -blockprofile -mutexprofile -outputdir -trace -fuzz -fuzztime"
    ),
    NODE: _words(
        "--test-name-pattern --test-skip-pattern --test-reporter --test-reporter-destination "
        "--test-concurrency --test-timeout --require -r --import --loader "
        "--experimental-loader --conditions -C"
    ),
    CARGO: _words(
        "-p --package --test --bin --example --bench --features -F --target -j --jobs "
        "--manifest-path --profile --target-dir --exclude --color --config -Z"
    ),
    JEST: _words(
        "-t --testNamePattern -c --config --testPathPattern --testPathIgnorePatterns "
        "--reporters --outputFile -w --maxWorkers --testTimeout --selectProjects --shard "
        "--rootDir --roots --env --testEnvironment --coverageReporters --json"
    )
    - {"--json"},
    VITEST: _words(
        "-t --testNamePattern -c --config --reporter --outputFile --dir -r --root --project "
        "--pool --environment --shard --mode"
    ),
    MOCHA: _words(
        "-R --reporter -O --reporter-option --reporter-options -r --require --config "
        "-t --timeout -g --grep -f --fgrep -u --ui --spec --ignore --extension --file "
        "--package -s --slow -j --jobs"
    ),
}
# Options Honk replaces with its own (a report of its own, no stopping at the first failure).
_DROPPED: dict[str, frozenset[str]] = {
    PYTEST: frozenset({"--junitxml", "--junit-xml", "-x", "--exitfirst", "--maxfail", "--lf"}),
    GO: frozenset({"-json", "-count", "-failfast", "-o"}),
    NODE: frozenset({"--test-reporter", "--test-reporter-destination", "--watch"}),
    CARGO: frozenset(),
    JEST: frozenset({"--json", "--outputFile", "--reporters", "--watch", "--watchAll", "--bail"}),
    VITEST: frozenset({"--reporter", "--outputFile", "--watch", "-w", "--bail"}),
    MOCHA: frozenset({"-R", "--reporter", "-O", "--reporter-option", "--reporter-options"}),
}


@dataclass(frozen=True)
class Runner:
    """One test command as Honk runs it for the review."""

    kind: str
    command: str  # as the repository wrote it (or Honk's default)
    head: tuple[str, ...] = ()  # words up to the runner's own (`python -m pytest`)
    options: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()  # positional words: files, directories, packages, filters
    after: tuple[str, ...] = ()  # cargo: what follows `--` (libtest's own options)
    reads: tuple[str, ...] = field(default=())  # repository files the command itself reads

    @property
    def reported(self) -> bool:
        return self.kind != EXIT_STATUS

    def invocation(self, report: str, *, helper: str = "", only: Sequence[str] = ()) -> str:
        """The shell command that runs the tests and writes the report to `report` (a path as
        the sandbox sees it). `only` runs just those test files (their packages, for go);
        `helper` is where NODE_REPORTER was written."""
        if self.kind == EXIT_STATUS:
            return self.command
        head = list(self.head)
        options = list(self.options)
        paths = list(only) if only else list(self.paths)
        quoted = shlex.quote(report)
        if self.kind == PYTEST:
            extra = [
                "-p", "no:cacheprovider", "--continue-on-collection-errors",
                f"--junitxml={report}", "-o", "junit_family=xunit1",
            ]  # fmt: skip
            return shlex.join([*head, *options, *extra, *paths])
        if self.kind == GO:
            packages = _go_packages(only) if only else paths
            words = [*head, "-json", "-count=1", *options, *packages]
            offline = "GOPROXY=off GOTOOLCHAIN=local GOFLAGS=-mod=mod"
            return f"{offline} {shlex.join(words)} > {quoted} 2>&1"
        if self.kind == NODE:
            extra = [f"--test-reporter={helper}", f"--test-reporter-destination={report}"]
            return shlex.join([*head, *extra, *options, *paths])
        if self.kind == CARGO:
            extra = ["--no-fail-fast"] + ([] if "--offline" in options else ["--offline"])
            tail = ["--", *self.after] if self.after else []
            words = [*head, *options, *extra, *self.paths, *tail]
            return f"CARGO_TERM_COLOR=never {shlex.join(words)} > {quoted} 2>&1"
        bin_path = 'PATH="$PWD/node_modules/.bin:$PATH" '
        if self.kind == JEST:
            extra = ["--ci", "--json", f"--outputFile={report}"]
            by_path = ["--runTestsByPath"] if only else []
            return bin_path + shlex.join([*head, *options, *extra, *by_path, *paths])
        if self.kind == VITEST:
            extra = ["--reporter=junit", f"--outputFile={report}"]
            return bin_path + shlex.join([*head, *options, *extra, *paths])
        extra = ["--reporter=xunit", f"--reporter-option=output={report}"]
        return bin_path + shlex.join([*head, *options, *extra, *paths])

    def read(self, raw: bytes | None, exit_code: int | None, *, root: str) -> Results:
        """The run's results from its report (`raw`, None when it wrote none)."""
        if self.kind == EXIT_STATUS:
            return Results(exit_code, why="Honk cannot read a report from this command")
        if raw is None or not raw.strip():
            return Results(exit_code, why=f"{self.kind} wrote no report")
        try:
            if self.kind == GO:
                tests, broken = reports.parse_go_json(raw)
            elif self.kind == NODE:
                tests, broken = reports.parse_node_events(raw, root=root)
            elif self.kind == CARGO:
                tests, broken = reports.parse_libtest(raw)
            elif self.kind == JEST:
                tests, broken = reports.parse_jest_json(raw, root=root)
            else:
                tests, broken = reports.parse_junit(raw, root=root)
        except UnreadableReport as exc:
            return Results(exit_code, why=str(exc))
        return Results(exit_code, tests, files_failed=broken)

    def runs_file(self, path: str) -> bool:
        """Whether `path` is a test file this runner runs on its own (the fail-to-pass run)."""
        if self.kind == PYTEST:
            return material.is_python_test_module(path)
        if self.kind == GO:
            return material.is_go_test(path)
        if self.kind in (NODE, JEST, VITEST, MOCHA):
            return material.is_js_test_module(path)
        return False

    @property
    def narrows(self) -> bool:
        """Whether the runner can run only some files (else the fail-to-pass run is whole)."""
        return self.kind in (PYTEST, GO, NODE, JEST, VITEST, MOCHA)


def _go_packages(files: Iterable[str]) -> list[str]:
    dirs = sorted({str(PurePosixPath(f).parent) for f in files})
    return ["./" + d if d != "." else "." for d in dirs]


def parse(command: str, scripts: Mapping[str, str] | None = None) -> Runner:
    """The runner of one command; EXIT_STATUS when it is none Honk knows (or uses the shell).

    `scripts` are package.json's: `npm test` is the runner its `test` script names.
    """
    command = command.strip()
    unknown = Runner(EXIT_STATUS, command, reads=_program_file(command))
    if not command or _SHELL.search(command):
        return unknown
    try:
        words = shlex.split(command)
    except ValueError:
        return unknown
    script = _npm_script(words)
    if script is not None:
        text = (scripts or {}).get(script)
        if not text:
            return unknown
        inner = parse(text)
        reads = tuple(dict.fromkeys([*inner.reads, "package.json"]))
        return Runner(
            inner.kind, command, inner.head, inner.options, inner.paths, inner.after, reads
        )
    found = _find_runner(words)
    if found is None:
        return unknown
    kind, at = found
    head, rest = tuple(words[: at + 1]), words[at + 1 :]
    after: list[str] = []
    if kind == CARGO and "--" in rest:
        index = rest.index("--")
        rest, after = rest[:index], rest[index + 1 :]
    if kind == VITEST and rest[:1] == ["run"]:
        head, rest = (*head, "run"), rest[1:]
    elif kind == VITEST:
        head = (*head, "run")
    options, paths = _split(kind, rest)
    return Runner(kind, command, head, tuple(options), tuple(paths), tuple(after))


def _npm_script(words: list[str]) -> str | None:
    if not words or PurePosixPath(words[0]).name not in ("npm", "yarn", "pnpm"):
        return None
    rest = words[1:]
    if rest[:1] in (["test"], ["t"]) and len(rest) == 1:
        return "test"
    if len(rest) == 2 and rest[0] in ("run", "run-script"):
        return rest[1]
    return None


def _find_runner(words: list[str]) -> tuple[str, int] | None:
    """(kind, index of the runner's own word) in `words`, after env assignments and wrappers
    (`uv run`, `poetry run`, `npx`)."""
    for index, word in enumerate(words):
        name = PurePosixPath(word).name
        following = words[index + 1] if index + 1 < len(words) else ""
        if name in ("pytest", "py.test"):
            return PYTEST, index
        if re.fullmatch(r"python[\d.]*", name) and following == "-m":
            module = words[index + 2] if index + 2 < len(words) else ""
            return (PYTEST, index + 2) if module == "pytest" else None
        if name == "go" and following == "test":
            return GO, index + 1
        if name == "cargo" and following == "test":
            return CARGO, index + 1
        if name == "node":
            return (NODE, index) if "--test" in words[index + 1 :] else None
        if name in ("jest", "vitest", "mocha"):
            return {"jest": JEST, "vitest": VITEST, "mocha": MOCHA}[name], index
        if "=" in word and not word.startswith("-"):
            continue  # VAR=value before the command
        if name in ("npx", "uv", "poetry", "pipenv", "pdm", "hatch", "run", "exec", "--"):
            continue
        return None
    return None


def _split(kind: str, words: list[str]) -> tuple[list[str], list[str]]:
    """(options with their values, positional words), leaving out the options Honk sets."""
    takes_value = _VALUE_OPTIONS.get(kind, frozenset())
    dropped = _DROPPED.get(kind, frozenset())
    options: list[str] = []
    paths: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word.startswith("-") and word != "-":
            name = word.split("=", 1)[0]
            value: list[str] = []
            if "=" not in word and name in takes_value and index < len(words):
                value = [words[index]]
                index += 1
            if name not in dropped:
                options += [word, *value]
        else:
            paths.append(word)
    return options, paths


def _program_file(command: str) -> tuple[str, ...]:
    """The repository file an unknown command runs or reads (`./run-tests.sh`, `make`)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return ()
    if not words:
        return ()
    first = words[0]
    if first in ("make", "gmake"):
        return ("Makefile", "GNUmakefile")
    if first in ("tox", "nox"):
        return ("tox.ini",) if first == "tox" else ("noxfile.py",)
    if first.startswith("./") or (("/" in first) and not first.startswith("/")):
        return (first.removeprefix("./"),)
    if first in ("bash", "sh") and len(words) > 1 and not words[1].startswith("-"):
        return (words[1].removeprefix("./"),)
    return ()


# -- which commands ------------------------------------------------------------------------


def from_verify(verify: str | None, scripts: Mapping[str, str] | None = None) -> list[Runner]:
    """The known runners among `verify:`'s commands (a list is joined as `( a ) && ( b )`)."""
    if not verify:
        return []
    runners = [parse(_unwrap(piece), scripts) for piece in _pieces(verify)]
    return [runner for runner in runners if runner.reported]


def _pieces(command: str) -> list[str]:
    return [piece for piece in re.split(r"\s*&&\s*", command) if piece.strip()]


def _unwrap(piece: str) -> str:
    piece = piece.strip()
    while piece.startswith("(") and piece.endswith(")"):
        piece = piece[1:-1].strip()
    return piece


def defaults(paths: Sequence[str], package_json: str | None) -> list[Runner]:
    """Honk's own choice from the repository's files, one runner per language found."""
    names = set(paths)
    runners: list[Runner] = []
    if any(
        material.is_python_test_module(p) or PurePosixPath(p).name in ("conftest.py", "pytest.ini")
        for p in paths
    ):
        runners.append(parse("python -m pytest -q"))
    if "go.mod" in names:
        runners.append(parse("go test ./..."))
    scripts = package_scripts(package_json)
    if "package.json" in names:
        test_script = scripts.get("test", "")
        if test_script and parse(test_script).reported:
            runners.append(parse("npm test", scripts))
        elif any(material.is_js_test_module(p) for p in paths):
            runners.append(parse("node --test"))
    elif any(material.is_js_test_module(p) for p in paths):
        runners.append(parse("node --test"))
    if "Cargo.toml" in names:
        runners.append(parse("cargo test"))
    return runners


def package_scripts(package_json: str | None) -> dict[str, str]:
    if not package_json:
        return {}
    try:
        data = json.loads(package_json)
    except json.JSONDecodeError:
        return {}
    scripts = data.get("scripts") if isinstance(data, dict) else None
    if not isinstance(scripts, dict):
        return {}
    return {str(k): str(v) for k, v in scripts.items() if isinstance(v, str)}


def choose(
    *,
    configured: Sequence[str],
    verify: str | None,
    paths: Sequence[str],
    package_json: str | None,
) -> tuple[list[Runner], str]:
    """The runners the outcome checks use, and where they came from (for the run page):
    `review: tests:` first, else `verify:` when it is a known runner, else Honk's defaults."""
    scripts = package_scripts(package_json)
    if configured:
        return [parse(command, scripts) for command in configured], "`review: tests:`"
    chosen = from_verify(verify, scripts)
    if chosen:
        return chosen, "`verify:`"
    return defaults(paths, package_json), "Honk's defaults for the repository's files"
