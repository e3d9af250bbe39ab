"""Run every benchmark and print its figures: `python -m bench`."""

from __future__ import annotations

import asyncio
import sys

from bench import checkout, review, webhook_to_pr


def main() -> int:
    quick = "--quick" in sys.argv
    asyncio.run(checkout.main(quick=quick))
    asyncio.run(webhook_to_pr.main(quick=quick))
    review.main(quick=quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
