"""The run's tracking comment: a checklist of phases, rendered as Markdown and updated in place."""

from __future__ import annotations

from dataclasses import dataclass, field

PHASES: tuple[tuple[str, str], ...] = (
    ("queued", "Queued"),
    ("checkout", "Checked out the repository"),
    ("agent", "Agent working"),
    ("verify", "Verifying"),
    ("review", "Review"),
    ("publish", "Pull request"),
)
MARKER = "<!-- honk:run:{run_id} -->"
_ICONS = {
    "done": "- [x]",
    "active": "- [ ] :hourglass_flowing_sand:",
    "failed": "- [ ] :x:",
    "pending": "- [ ]",
    "skipped": "- [x] ~",
}


@dataclass
class Progress:
    """Where a run is; `render()` is the body of its tracking comment."""

    run_id: int | None  # None until the run is queued
    states: dict[str, str] = field(default_factory=lambda: {"queued": "done"})
    notes: dict[str, str] = field(default_factory=dict)
    # Each sandbox phase's connections through the network proxy, e.g. "setup": "3 requests
    # to pypi.org, files.pythonhosted.org (2.1 MB down, 4.0 kB up)".
    network: dict[str, str] = field(default_factory=dict)
    # What Honk did or did not do of the repository's own environment (a devcontainer.json).
    notices: list[str] = field(default_factory=list)
    outcome: str | None = None  # the closing line once the run has ended
    run_url: str | None = None  # the run's page, when HONK_URL is set

    def start(self, phase: str, note: str = "") -> None:
        for name, _ in PHASES:
            if name == phase:
                break
            if self.states.get(name) in (None, "pending", "active"):
                self.states[name] = "done"
        self.states[phase] = "active"
        if note:
            self.notes[phase] = note

    def done(self, phase: str, note: str = "") -> None:
        self.states[phase] = "done"
        if note:
            self.notes[phase] = note

    def fail(self, reason: str) -> None:
        active = [name for name, _ in PHASES if self.states.get(name) == "active"]
        if active:
            self.states[active[-1]] = "failed"
        self.outcome = reason

    def render(self) -> str:
        title = f"**Honk** run {self.run_id}" if self.run_id else "**Honk**"
        if self.run_url:
            title += f" · [watch it live]({self.run_url})"
        lines = [MARKER.format(run_id=self.run_id or "queued"), title, ""]
        for name, title in PHASES:
            state = self.states.get(name, "pending")
            note = self.notes.get(name)
            text = f"{title}: {note}" if note else title
            if state == "skipped":
                lines.append(f"{_ICONS['skipped']}{text}~")
            else:
                lines.append(f"{_ICONS[state]} {text}")
        if self.notices:
            lines.append("")
            lines += self.notices
        if self.network:
            lines.append("")
            lines += [f"Network ({phase}): {text}" for phase, text in self.network.items()]
        if self.outcome:
            lines += ["", self.outcome]
        return "\n".join(lines)
