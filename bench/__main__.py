"""Run every benchmark and print its figures: `python -m bench`."""

from __future__ import annotations

import asyncio
import sys

from bench import checkout, run_page, webhook_to_pr


def main() -> int:
    quick = "--quick" in sys.argv
    asyncio.run(checkout.main(quick=quick))
    asyncio.run(webhook_to_pr.main(quick=quick))
    asyncio.run(run_page.main(quick=quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
