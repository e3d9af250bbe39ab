"""What a changed file or line is to the build: CI, lock files, vendored code, test
configuration, secrets. Tables and patterns for the review's deterministic checks."""

from __future__ import annotations

import fnmatch
import re
from pathlib import PurePosixPath

from app.log import TOKEN_SHAPES

# Kinds of change a request must ask for (unless `review: allow:` lists the file).
CI, LOCK, VENDORED, TEST_CONFIG = "ci", "lock", "vendored", "test-config"

_CI_PATHS = (
    ".github/workflows/*",
    ".github/actions/*",
    ".gitlab-ci.yml",
    ".gitlab-ci.yaml",
    ".circleci/*",
    ".travis.yml",
    "Jenkinsfile",
    "azure-pipelines.yml",
    "bitbucket-pipelines.yml",
    ".buildkite/*",
    ".github/honk.yml",
)
_LOCK_NAMES = frozenset(
    {
        "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "bun.lockb",
        "bun.lock", "poetry.lock", "Pipfile.lock", "uv.lock", "pdm.lock", "Cargo.lock",
        "Gemfile.lock", "composer.lock", "go.sum", "mix.lock", "flake.lock", "packages.lock.json",
        "Package.resolved", "pubspec.lock", "gradle.lockfile",
    }
)  # fmt: skip
_VENDOR_DIRS = frozenset({"vendor", "vendored", "_vendor", "third_party", "third-party"})
# Files whose every change is a change of how tests run.
_TEST_CONFIG_FILES = re.compile(
    r"^(pytest\.ini|\.coveragerc|codecov\.ya?ml|\.mocharc\.\w+|karma\.conf\.\w+"
    r"|(jest|vitest|playwright|cypress)\.config\.\w+|phpunit\.xml(\.dist)?|\.rspec|\.simplecov)$"
)
# Lines of shared files (pyproject.toml, setup.cfg, tox.ini, package.json...) that do.
_TEST_CONFIG_LINE = re.compile(
    r"\b(addopts|testpaths|python_files|python_classes|python_functions|norecursedirs"
    r"|collect_ignore\w*|xfail_strict|filterwarnings|fail_under|minimum_coverage"
    r"|coverageThreshold|testPathIgnorePatterns|testMatch|testRegex|passWithNoTests"
    r"|pytest11)\b"  # pytest11: a plugin entry point, loaded into every pytest run
    r"|--cov-fail-under|--fail-under|--deselect|--ignore(-glob)?=|\s-k\s+['\"]?not\b"
    r"|-p\s+no:|\[(tool[.:])?pytest\b|\[(tool\.)?coverage\b|\[coverage:"
)
_SHARED_CONFIG = frozenset({"pyproject.toml", "setup.cfg", "tox.ini", "package.json", "noxfile.py"})
# Anywhere at all: leaving tests out of the run.
_DESELECT = re.compile(r"--deselect\b|--ignore(-glob)?=\S*test|\s-k\s+['\"]?not\s")
# A request "asks for" a kind of change when it names the file or uses these words.
_ASKED = {
    CI: re.compile(r"\bci\b|\bworkflows?\b|github actions|\bpipelines?\b|honk\.yml", re.I),
    LOCK: re.compile(
        r"\block(ed)?\b|lock ?files?|upgrad|\bbump|dependenc|\bpin(ned|ning)?\b", re.I
    ),
    VENDORED: re.compile(r"\bvendor", re.I),
}
# The log redactor's token shapes, and the shapes of a few more services' keys (one diff line
# never holds a whole PEM block: its first line is enough).
_SECRET = re.compile(
    "|".join(
        f"(?:{shape})"
        for shape in (
            *TOKEN_SHAPES,
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
            r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key ids
            r"\b[rs]k_live_[0-9A-Za-z]+",  # Stripe
            r"\bAIza[0-9A-Za-z_-]{30,}",  # Google API keys
            r"\bsk-(proj-)?[A-Za-z0-9_-]{20,}",  # OpenAI-style keys
            r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+",
        )
    )
)
WHAT = {CI: "a CI file", LOCK: "a lock file", VENDORED: "vendored code"}


def kind_of_path(path: str) -> str | None:
    """CI, LOCK or VENDORED for such a file; None for any other."""
    pure = PurePosixPath(path)
    if any(fnmatch.fnmatch(path, glob) for glob in _CI_PATHS):
        return CI
    if pure.name in _LOCK_NAMES:
        return LOCK
    if any(part in _VENDOR_DIRS for part in pure.parts[:-1]):
        return VENDORED
    return None


def asked_for(kind: str, path: str, request: str) -> bool:
    """The request names the file, or speaks of that kind of change."""
    text = request.lower()
    if path.lower() in text or PurePosixPath(path).name.lower() in text:
        return True
    return bool(_ASKED[kind].search(request))


def config_change(path: str, text: str, *, removed: bool) -> str | None:
    """What a changed line does to how tests run, in words; None when it does nothing."""
    name = PurePosixPath(path).name
    line = text.strip()[:100]
    if not line:
        return None
    verb = "removed" if removed else "added"
    if _TEST_CONFIG_FILES.match(name) or (
        name in _SHARED_CONFIG and _TEST_CONFIG_LINE.search(text)
    ):
        return f"the test configuration was changed ({verb} `{line}`)"
    if removed:
        return None
    # conftest.py's hooks and `collect_ignore`, however bound: the parse checks'.
    if _DESELECT.search(text):
        return f"tests are left out of the run: `{line}`"
    return None


def secret_shapes(text: str) -> list[str]:
    return [match.group(0) for match in _SECRET.finditer(text)]
