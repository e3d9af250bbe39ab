"""Run the benchmarks and print their figures: `python -m bench [checkout|pr|ingest] [--quick]`."""

from __future__ import annotations

import asyncio
import sys

from bench import checkout, ingest, webhook_to_pr


def main() -> int:
    quick = "--quick" in sys.argv
    chosen = [a for a in sys.argv[1:] if not a.startswith("-")] or ["checkout", "pr", "ingest"]
    if "checkout" in chosen:
        asyncio.run(checkout.main(quick=quick))
    if "pr" in chosen:
        asyncio.run(webhook_to_pr.main(quick=quick))
    if "ingest" in chosen:
        asyncio.run(ingest.main(count=1000 if quick else 3000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
