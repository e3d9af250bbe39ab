"""Take docs/run-page.png: a real run's page at desktop width, as Debian's chromium shows it.

    python docs/render_run_page.py   # runs one browser test, copies its desktop screenshot

The run is the browser test's own (tests/web/test_run_page_browser.py): the calc world's issue
labelled, the scripted agent fixing add() in the bubblewrap sandbox, the fake judge
approving, the PR opened on the fake GitHub; the page is read signed in, 1280 px wide,
whole. The test writes test-artifacts/run-page-outcome-desktop.png; this copies it here,
only when the test passed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = (
    "tests/web/test_run_page_browser.py::test_the_first_screen_of_a_finished_run_shows_its_outcome"
)
SHOT = ROOT / "test-artifacts" / "run-page-outcome-desktop.png"
PICTURE = ROOT / "docs" / "run-page.png"


def main() -> int:
    SHOT.unlink(missing_ok=True)  # never copy a picture an earlier run left
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-o", "addopts=", "-q", TEST],
        cwd=ROOT,
        check=False,
    )
    if ran.returncode != 0 or not SHOT.is_file():
        print(f"the browser test failed; {PICTURE} is unchanged", file=sys.stderr)
        return 1
    shutil.copyfile(SHOT, PICTURE)
    print(f"wrote {PICTURE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
