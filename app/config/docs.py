"""docs/configuration.md's tables, written from the declarations: each `## section`'s
`| variable | default | meaning |` table is the rows of the settings declared for it.
`python -m app.config --markdown` prints the file with its tables rewritten;
tests/project/test_docs.py checks that the file already equals that."""

from __future__ import annotations

import re

from app.config.declare import rows
from app.config.settings import GROUPS

HEADER = "| variable | default | meaning |\n| --- | --- | --- |\n"
_SECTION = re.compile(r"^## (.+)$", re.M)
_TABLE = re.compile(r"^\| variable \| default \| meaning \|\n\|[-| ]+\|\n(?:\|.*\n?)*", re.M)


def tables() -> dict[str, str]:
    """The table of each `## section`, as the declarations write it."""
    return {
        section: HEADER + "".join(f"{row}\n" for row in body)
        for section, body in rows(GROUPS).items()
    }


def rewrite(markdown: str) -> str:
    """`markdown` with each section's settings table replaced by the declared one; a section
    the declarations name must exist and hold one table."""
    wanted = tables()
    parts = _SECTION.split(markdown)
    out = [parts[0]]
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        if title in wanted:
            found = list(_TABLE.finditer(body))
            if len(found) != 1:
                raise ValueError(f"## {title} must hold one | variable | default | meaning | table")
            body = body[: found[0].start()] + wanted.pop(title) + body[found[0].end() :]
        out += [f"## {title}", body]
    if wanted:
        raise ValueError(f"no section for the settings of: {', '.join(wanted)}")
    return "".join(out)
