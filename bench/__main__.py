"""Run the benchmarks and print their figures: `python -m bench [NAME ...] [--quick]`.

`--rounds N` sets how many alternating rounds `ingest` runs of each server (default 3);
`--repos N` how many repositories `fleet` takes its change to (default 200).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench import (
    checkout,
    environments,
    fleet,
    ingest,
    proxy,
    review,
    run_page,
    sandbox,
    webhook_to_pr,
)

NAMES = (
    "checkout",
    "sandbox",
    "pr",
    "review",
    "run_page",
    "ingest",
    "proxy",
    "environments",
    "fleet",
)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"of {', '.join(NAMES)}")
    parser.add_argument("--quick", action="store_true", help="smaller inputs")
    parser.add_argument("--rounds", type=int, default=3, help="ingest: rounds of each server")
    parser.add_argument("--repos", type=int, default=200, help="fleet: how many repositories")
    arguments = parser.parse_args()
    quick, chosen = arguments.quick, arguments.names or list(NAMES)
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
        asyncio.run(review.outcome_main(quick=quick))
    if "run_page" in chosen:
        asyncio.run(run_page.main(quick=quick))
    if "ingest" in chosen:
        asyncio.run(ingest.main(count=1000 if quick else 3000, rounds=arguments.rounds))
    if "proxy" in chosen:
        asyncio.run(proxy.main(quick=quick))
    if "environments" in chosen:
        asyncio.run(environments.main(quick=quick))
    if "fleet" in chosen:
        asyncio.run(fleet.main(repos=arguments.repos, quick=quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
