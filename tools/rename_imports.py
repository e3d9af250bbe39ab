"""Rewrite code written before the domain types (issue 24, item 5) to the new names: the
renamed modules, the review verdicts and installation states as StrEnums, the one `is_bot`.

    python tools/rename_imports.py FILE...          rewrite the files in place
    python tools/rename_imports.py --check FILE...  only list what would change (exit 1 if any)

Renamed modules (import paths, file paths in docs and the import contracts alike):
    app.actions           -> app.run_requests
    app.going_live        -> app.as_person
    app.ci.live           -> app.ci.after_merge
    app.runs.test_syntax  -> app.runs.tests_in_diffs
Names:
    APPROVED, RECOVERED, VETOED, OUTCOME, UNAVAILABLE, SKIPPED (app.runs.review)
        -> ReviewVerdict.<NAME> (app.models)
    ACTIVE, SUSPENDED, DELETED (app.installations) -> InstallationState.<NAME>
    ADDED, REMOVED (app.installations)             -> RepositoryState.<NAME>
    is_bot (app.handlers.context)                  -> is_bot (app.github.users)
    SignIn.session_live (app.web.signin)           -> SignIn.session_valid
    run_page.live (app.web.pages.run_page)         -> run_page.stream (the URL stays /live)

A constant is rewritten only in a file that imports it by name from its old module, so a
`SKIPPED` of app/review/reports.py is left alone. Run `ruff check --fix` and `ruff format`
afterwards: the new imports are added where the old ones were, not sorted.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MODULES = {
    "app.actions": "app.run_requests",
    "app.going_live": "app.as_person",
    "app.ci.live": "app.ci.after_merge",
    "app.runs.test_syntax": "app.runs.tests_in_diffs",
}
# old module -> (new module, enum, its members that were constants of the old module)
CONSTANTS: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "app.runs.review": [
        (
            "app.models",
            "ReviewVerdict",
            ("APPROVED", "RECOVERED", "VETOED", "OUTCOME", "UNAVAILABLE", "SKIPPED"),
        )
    ],
    "app.installations": [
        ("app.installations", "InstallationState", ("ACTIVE", "SUSPENDED", "DELETED")),
        ("app.installations", "RepositoryState", ("ADDED", "REMOVED")),
    ],
}
# (old module, name) -> new module, for names that moved as they are
MOVED = {("app.handlers.context", "is_bot"): "app.github.users"}
ATTRIBUTES = {"session_live": "session_valid", "run_page.live": "run_page.stream"}

IMPORT = re.compile(
    r"^(?P<indent>[ \t]*)from (?P<module>[\w.]+) import (?P<names>\([^)]*\)|[^\n]+)", re.M
)


def _modules(text: str) -> str:
    for old, new in MODULES.items():
        text = re.sub(rf"(?<![\w.]){re.escape(old)}(?![\w])", new, text)
        old_path, new_path = old.replace(".", "/") + ".py", new.replace(".", "/") + ".py"
        text = text.replace(old_path, new_path)
        package, _, name = old.rpartition(".")
        new_name = new.rpartition(".")[2]
        # `from app.runs import test_syntax [as x]`, then `test_syntax.is_test_file`
        pattern = rf"^([ \t]*from {re.escape(package)} import [^\n]*?)\b{name}\b"
        if re.search(pattern, text, re.M):
            text = re.sub(pattern, rf"\g<1>{new_name}", text, flags=re.M)
            text = re.sub(rf"(?<![\w.]){name}\.", f"{new_name}.", text)
    return text


def _split(names: str) -> list[str]:
    return [n.strip() for n in names.strip("()").replace("\n", " ").split(",") if n.strip()]


def _imports(text: str) -> str:
    for match in reversed(list(IMPORT.finditer(text))):
        module, indent = match["module"], match["indent"]
        names = _split(match["names"])
        kept, added, renamed = list(names), [], []
        for new_module, enum, members in CONSTANTS.get(module, []):
            found = [n for n in names if n in members]
            if found:
                kept = [n for n in kept if n not in found]
                added.append(f"{indent}from {new_module} import {enum}")
                renamed += [(n, f"{enum}.{n}") for n in found]
        for name in names:
            if (module, name) in MOVED:
                kept.remove(name)
                added.append(f"{indent}from {MOVED[module, name]} import {name}")
        if not added:
            continue
        lines = [f"{indent}from {module} import {', '.join(kept)}"] if kept else []
        text = text[: match.start()] + "\n".join(lines + added) + text[match.end() :]
        for old, new in renamed:
            text = re.sub(rf"(?<![\w.\"']){old}(?![\w\"'])", new, text)
    return text


def _attributes(text: str) -> str:
    for old, new in ATTRIBUTES.items():
        text = re.sub(rf"(?<![\w]){re.escape(old)}(?![\w])", new, text)
    return text


def rewrite(text: str) -> str:
    return _attributes(_imports(_modules(text)))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    changed = []
    for name in (a for a in argv if a != "--check"):
        path = Path(name)
        before = path.read_text()
        after = rewrite(before)
        if after != before:
            changed.append(name)
            if not check:
                path.write_text(after)
    for name in changed:
        print(("would rewrite " if check else "rewrote ") + name)
    return 1 if check and changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
