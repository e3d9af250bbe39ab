"""Run the benchmarks and print their figures: `python -m bench [NAME ...] [--quick]`."""

from __future__ import annotations

import asyncio
import sys

from bench import checkout, ingest, proxy, review, run_page, sandbox, webhook_to_pr

NAMES = ("checkout", "sandbox", "pr", "review", "run_page", "ingest", "proxy")


def main() -> int:
    quick = "--quick" in sys.argv
    chosen = [a for a in sys.argv[1:] if not a.startswith("-")] or list(NAMES)
    unknown = [name for name in chosen if name not in NAMES]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
        return 2
    if "checkout" in chosen:
        asyncio.run(checkout.main(quick=quick))
    if "sandbox" in chosen:
        asyncio.run(sandbox.main(quick=quick))
    if "pr" in chosen:
        asyncio.run(webhook_to_pr.main(quick=quick))
    if "review" in chosen:
        review.main(quick=quick)
    if "run_page" in chosen:
        asyncio.run(run_page.main(quick=quick))
    if "ingest" in chosen:
        asyncio.run(ingest.main(count=1000 if quick else 3000))
    if "proxy" in chosen:
        asyncio.run(proxy.main(quick=quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
