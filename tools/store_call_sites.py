"""Rewrite calls of the store's old flat methods (`store.add_step(...)`) to its parts
(`store.runs.add_step(...)`): for code written against the store before it was a composition.

    python tools/store_call_sites.py FILE...          rewrite the files in place
    python tools/store_call_sites.py --check FILE...  only list what would change (exit 1 if any)

Each `<receiver>.<old name>` becomes `<receiver>.<part>.<new name>`, whatever the receiver
(`store`, `self.store`, `ctx.store`, `other`, `store_of(client)` ...). The old names are the
store's own, so a match elsewhere is unlikely; every rewrite is printed for review. Receivers
that are the part already (`store.runs.add_step`), and attributes of `tables` (the
`run_events` table) are left alone, so running it twice changes nothing more.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# old method (or attribute) of Store -> (part, new name)
MAPPING: dict[str, tuple[str, str]] = {
    # store.inbox
    "record_delivery": ("inbox", "record"),
    "record_claimed": ("inbox", "record_claimed"),
    "close_inbox": ("inbox", "close"),
    "renew_deliveries": ("inbox", "renew"),
    "renew_delivery": ("inbox", "renew_one"),
    "claim_deliveries": ("inbox", "claim"),
    "claim_delivery": ("inbox", "claim_one"),
    "finish_deliveries": ("inbox", "finish"),
    "finish_delivery": ("inbox", "finish_one"),
    "delivery_body": ("inbox", "body"),
    "count_deliveries": ("inbox", "count"),
    "oldest_pending": ("inbox", "oldest_pending"),
    "prune_deliveries": ("inbox", "prune"),
    "delivery_retry_delay": ("inbox", "retry_delay"),
    # store.runs
    "enqueue_run": ("runs", "enqueue"),
    "claim_run": ("runs", "claim"),
    "renew_lease": ("runs", "renew_lease"),
    "release_run": ("runs", "release"),
    "get_run": ("runs", "get"),
    "update_run": ("runs", "update"),
    "save_run": ("runs", "save"),
    "add_step": ("runs", "add_step"),
    "add_usage": ("runs", "add_usage"),
    "finish_run": ("runs", "finish"),
    "request_cancel": ("runs", "request_cancel"),
    "find_runs": ("runs", "find"),
    "newest_run": ("runs", "newest"),
    "cancel_runs": ("runs", "cancel_all"),
    # store.stats
    "count_runs_by_state": ("stats", "runs_by_state"),
    "review_counts": ("stats", "review_counts"),
    # store.kv (app code goes through kv.Namespace; tests call these directly)
    "get_kv": ("kv", "get"),
    "put_kv": ("kv", "put"),
    "put_kv_if_absent": ("kv", "put_if_absent"),
    "delete_kv": ("kv", "delete"),
    "prune_kv": ("kv", "prune"),
    # store.events
    "add_run_event": ("events", "add"),
    "run_events": ("events", "read"),
    "run_event_totals": ("events", "totals"),
    # store.connections
    "put_connection": ("connections", "put"),
    "get_connection": ("connections", "get"),
    "swap_connection_secret": ("connections", "swap_secret"),
    "delete_connection": ("connections", "delete"),
    "delete_connections_of": ("connections", "delete_all_of"),
}
LEAVE_ALONE = {"tables", "metadata", "sqlite_lane"}  # receivers that are not a store
NAMES = "|".join(sorted(MAPPING, key=len, reverse=True))
# `<receiver>.<old name>`: a name, or a call's closing parenthesis (`store_of(client).get_kv`).
OLD = re.compile(rf"(?P<receiver>[A-Za-z_]\w*|\))\.(?P<name>{NAMES})\b")


def rewrite(text: str) -> tuple[str, list[str]]:
    """`text` with the old names rewritten (calls, references and assignments alike), and
    one line per rewrite."""
    notes: list[str] = []

    def new(match: re.Match[str]) -> str:
        receiver, name = match["receiver"], match["name"]
        part, renamed = MAPPING[name]
        if receiver in LEAVE_ALONE or receiver == part:
            return match[0]
        notes.append(f"{receiver}.{name} -> {receiver}.{part}.{renamed}")
        return f"{receiver}.{part}.{renamed}"

    return OLD.sub(new, text), notes


def main(argv: list[str]) -> int:
    check = "--check" in argv
    files = [Path(arg) for arg in argv if arg != "--check"]
    changed = 0
    for path in files:
        text = path.read_text()
        new_text, notes = rewrite(text)
        for note in notes:
            print(f"{path}: {note}")
        if new_text != text:
            changed += 1
            if not check:
                path.write_text(new_text)
    print(f"{changed} file(s) {'to change' if check else 'changed'}", file=sys.stderr)
    return 1 if check and changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
