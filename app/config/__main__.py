"""`python -m app.config --markdown [FILE]`: docs/configuration.md with its settings tables
written from the declarations (to standard output; `--write` rewrites FILE in place)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.config.docs import rewrite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.config")
    parser.add_argument("--markdown", action="store_true", required=True)
    parser.add_argument("file", nargs="?", default="docs/configuration.md", type=Path)
    parser.add_argument("--write", action="store_true", help="rewrite FILE in place")
    args = parser.parse_args(argv)
    text = rewrite(args.file.read_text())
    if args.write:
        args.file.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
