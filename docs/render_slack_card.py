"""Render the go-live card (app/slack/card.py) as Slack would show it on a phone, for the README.

    python docs/render_slack_card.py               # docs/slack-card.new.png and .new.json
    python docs/render_slack_card.py --overwrite   # docs/slack-card.png and slack-card.json

The blocks are the real builder's; the HTML is a small mock of Slack's look (mrkdwn bold,
code, links, a few emoji), screenshot by Debian's chromium through Playwright.

Without a font that has the card's emoji, chromium draws a box for each: the script refuses
to run (exit 2) rather than write such a picture. Debian: apt-get install fonts-noto-color-emoji.
It writes beside the committed picture unless told to replace it, so a look comes first.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.slack.card import CardFacts, ChangedFile, ready_card

HERE = Path(__file__).resolve().parent
AVATAR = "🪿"
EMOJI = {
    ":white_check_mark:": "✅",
    ":test_tube:": "🧪",
    ":mag:": "🔍",
    ":wrench:": "🔧",
    ":rocket:": "🚀",
}
FACTS = CardFacts(
    run_id=41,
    sha="3f9c2e1d0b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e",
    pr_number=13,
    pr_url="https://github.com/octo-org/calc/pull/13",
    pr_title="add() returns the wrong sum",
    base="main",
    summary="Fixed `add`: it subtracted instead of adding. `python -m pytest -q` passes.",
    files=(ChangedFile("calc.py", 1, 1), ChangedFile("test_calc.py", 4, 0)),
    files_total=2,
    verification="Honk ran `python -m pytest -q`: **passed**.",
    checks_passed=3,
    review="Review: approved. The change makes add() add and tests it.",
    links=(("preview (deployment)", "https://pr-13.calc.example.com"),),
    cost="$0.14",
    run_url="https://honk.example.com/runs/41",
    extra=("Asked for by `alice`",),
)


def mrkdwn(text: str) -> str:
    """Slack's mrkdwn (already escaped by the builder) as HTML."""
    for code, emoji in EMOJI.items():
        text = text.replace(code, emoji)
    text = re.sub(r"<(https?://[^|>]+)\|([^>]+)>", r'<a href="\1">\2</a>', text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*([^*\n]+)\*", r"<b>\1</b>", text)
    return text.replace("\n", "<br>")


def block_html(block: dict[str, Any]) -> str:
    kind = block["type"]
    if kind == "section":
        return f'<div class="section">{mrkdwn(block["text"]["text"])}</div>'
    if kind == "context":
        return (
            '<div class="context">'
            + "".join(mrkdwn(e["text"]) for e in block["elements"])
            + "</div>"
        )
    if kind == "actions":
        buttons = []
        for element in block["elements"]:
            style = element.get("style", "")
            buttons.append(
                f'<span class="button {style}">{html.escape(element["text"]["text"])}</span>'
            )
        return '<div class="actions">' + "".join(buttons) + "</div>"
    return ""


def page(blocks: list[dict[str, Any]]) -> str:
    body = "".join(block_html(b) for b in blocks)
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; font: 15px/1.4 -apple-system, "Segoe UI", Lato, sans-serif; color: #1d1c1d;
  background: #fff; }}
.message {{ display: flex; gap: 10px; padding: 14px 14px 18px; }}
.avatar {{ width: 36px; height: 36px; border-radius: 6px; background: #f2c744; flex: none;
  display: flex; align-items: center; justify-content: center; font-size: 20px; }}
.name {{ font-weight: 700; }} .app {{ font-size: 11px; color: #616061; background: #e8e8e8;
  padding: 0 4px; border-radius: 3px; margin-left: 4px; }}
.section {{ margin: 6px 0; }} .context {{ margin: 6px 0; font-size: 12.5px; color: #616061; }}
code {{ font-size: 12px; color: #c01343; background: #f6f6f6; border: 1px solid #ddd;
  border-radius: 3px; padding: 0 3px; }} a {{ color: #1264a3; text-decoration: none; }}
.actions {{ display: flex; flex-wrap: wrap; gap: 8px; margin: 10px 0 4px; }}
.button {{ border: 1px solid #bbb; border-radius: 4px; padding: 4px 12px; font-weight: 700;
  font-size: 13px; }} .primary {{ background: #007a5a; color: #fff; border-color: #007a5a; }}
.danger {{ color: #e01e5a; border-color: #e01e5a; }}
</style></head><body><div class="message"><div class="avatar">{AVATAR}</div><div>
<div><span class="name">Honk</span><span class="app">APP</span></div>{body}</div></div>
</body></html>"""


def missing_emoji() -> list[str]:
    """The card's emoji no installed font has (fontconfig's view, which chromium shares)."""
    if shutil.which("fc-list") is None:
        return [AVATAR, *EMOJI.values()]  # no fontconfig: nothing can be shown to be there
    missing = []
    for emoji in [AVATAR, *EMOJI.values()]:
        pattern = ":charset=" + " ".join(f"{ord(c):x}" for c in emoji)
        found = subprocess.run(
            ["fc-list", "--format", "%{family}\\n", pattern],
            capture_output=True,
            text=True,
            check=False,
        )
        if not found.stdout.strip():
            missing.append(emoji)
    return missing


def output_paths(overwrite: bool) -> tuple[Path, Path]:
    """The picture and its Block Kit: the committed files only when asked to replace them."""
    stem = "slack-card" if overwrite else "slack-card.new"
    return HERE / f"{stem}.png", HERE / f"{stem}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--overwrite", action="store_true", help="replace docs/slack-card.png and .json"
    )
    args = parser.parse_args(argv)
    missing = missing_emoji()
    if missing:
        print(
            f"render_slack_card: no installed font has {' '.join(missing)}; chromium would draw "
            "boxes instead. Install an emoji font (Debian: apt-get install "
            "fonts-noto-color-emoji) and run again. Nothing was written.",
            file=sys.stderr,
        )
        return 2
    from playwright.sync_api import sync_playwright

    picture, block_kit = output_paths(args.overwrite)
    _text, blocks = ready_card(FACTS)
    block_kit.write_text(json.dumps({"blocks": blocks}, indent=2) + "\n")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless"]
        )
        tab = browser.new_page(viewport={"width": 390, "height": 700}, device_scale_factor=2)
        tab.set_content(page(blocks))
        tab.locator(".message").screenshot(path=str(picture))
        browser.close()
    print(f"wrote {picture.relative_to(HERE.parent)} and {block_kit.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
