"""A run's settings, each declared once: the agent, the review, the sandbox, its network."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.config.declare import Getter, Group, setting
from app.config.parse import (
    DEFAULT_MODEL,
    TOOLCHAIN_ENV,
    ConfigError,
    default_checkout_dir,
    network_allow,
    network_presets,
    number,
    one_of,
    optional_path,
    optional_text,
    optional_url,
    path,
    path_list,
    sandbox_python,
    switch,
    text,
    toolchain_pairs,
    whole,
)
from app.network_policy import Cap, NetworkSettingError, Presets, is_preset_name

LIMITS = "Limits of a run"


@dataclass(frozen=True)
class AgentSettings(Group):
    """The model the agent talks to, and a run's limits (a repository's .github/honk.yml may
    lower them: repo_config.run_limits)."""

    section = "The model"

    anthropic_api_key: str | None = setting(
        "ANTHROPIC_API_KEY",
        optional_text,
        None,
        "the key for Anthropic's Messages API (the agent and the review's judge)",
        secret=True,
    )
    anthropic_base_url: str | None = setting(
        "ANTHROPIC_BASE_URL",
        optional_url,
        None,
        "another address for the API (a gateway or proxy); unset, the SDK's own",
    )
    model: str = setting(
        "HONK_MODEL", text, DEFAULT_MODEL, "the model the agent uses (a repository's `model:` wins)"
    )
    max_turns: int = setting(
        "HONK_MAX_TURNS",
        whole(1),
        40,
        (
            "the agent's turns per run (at least 1); a repository's `limits.turns` may lower "
            "it, never raise it"
        ),
        section=LIMITS,
    )
    max_minutes: float = setting(
        "HONK_MAX_MINUTES",
        number(),
        30.0,
        "minutes per run (more than 0); `limits.minutes` may lower it",
        section=LIMITS,
    )
    max_tokens: int = setting(
        "HONK_MAX_TOKENS",
        whole(1),
        3_000_000,
        "tokens per run (at least 1); the operator's alone",
        section=LIMITS,
    )
    command_timeout: float = setting(
        "HONK_COMMAND_TIMEOUT",
        number(),
        600.0,
        "seconds per sandboxed command; the whole command is killed at it",
        section=LIMITS,
    )
    output_limit: int = setting(
        "HONK_OUTPUT_LIMIT",
        whole(1000),
        30_000,
        "characters of a command's output the agent is shown (at least 1000)",
        section=LIMITS,
    )
    ci_repair_rounds: int = setting(
        "HONK_CI_REPAIR_ROUNDS",
        whole(0),
        2,
        (
            "automatic CI repair rounds per PR, 0 for none (a repository's "
            "`limits.ci_repair_rounds` wins)"
        ),
        section=LIMITS,
    )
    # The editor tool reads and writes files up to this size.
    editor_max_file_mb: int = setting(
        "HONK_EDITOR_MAX_FILE_MB",
        whole(1, 1024),
        10,
        "the largest file the editor tool reads or writes, MiB (1 to 1024)",
        section="The sandbox",
    )


@dataclass(frozen=True)
class ReviewSettings(Group):
    """The review before a PR (app/runs/review.py): the judge's model, whether it runs by
    default, whether a repository may turn the checks off, the diff it sees."""

    section = "The model"

    model: str = setting(
        "HONK_REVIEW_MODEL",
        text,
        DEFAULT_MODEL,
        "the review's model judge (a repository's `review.model` wins)",
        follows="HONK_MODEL",
        flat="review_model",
    )
    model_judge: bool = setting(
        "HONK_MODEL_JUDGE",
        switch,
        True,
        (
            "the model judge by default; `off` leaves the deterministic checks alone (a "
            "repository's `review.model_judge` wins)"
        ),
    )
    checks_optional: bool = setting(
        "HONK_REVIEW_CHECKS_OPTIONAL",
        switch,
        False,
        "`on` lets a repository turn the deterministic checks off (`review.checks: off`)",
        flat="review_checks_optional",
    )
    outcome_optional: bool = setting(
        "HONK_REVIEW_OUTCOME_OPTIONAL",
        switch,
        False,
        (
            "`on` lets a repository turn the review's test outcome checks off (`review.outcome:"
            " off`); otherwise they always run "
            "([review.md](review.md#what-the-tests-do-not-how-the-diff-reads))"
        ),
        flat="review_outcome_optional",
    )
    diff_chars: int = setting(
        "HONK_REVIEW_DIFF_CHARS",
        whole(1000),
        60_000,
        "the most of the diff the judge is shown (at least 1000)",
        flat="review_diff_chars",
    )


def manager(env: str, doc: str) -> str | None:
    """A version manager's directory: read only to find toolchains, never given a sandbox."""
    return setting(env, optional_text, None, doc)


@dataclass(frozen=True)
class SandboxSettings(Group):
    """The sandbox (docs/security.md, "The sandbox"), its toolchains, checkouts and caches."""

    section = "The sandbox"

    # "bwrap", or "off" (unsafe, an explicit opt-out).
    mode: str = setting(
        "HONK_SANDBOX",
        one_of("bwrap", "off"),
        "bwrap",
        (
            "`off` runs agent commands unsandboxed, without limits and with the host's network:"
            " **unsafe**, for a trusted local checkout only"
        ),
        flat="sandbox",
    )
    ro_paths: tuple[str, ...] = setting(
        "HONK_SANDBOX_RO_PATHS",
        path_list,
        (),
        (
            "more read-only paths for the sandbox, `:`-separated: toolchains outside `/usr` (a "
            "Node or JDK under `/opt`)"
        ),
        flat="sandbox_ro_paths",
    )
    # A prefix holding bin/python3; None: the installation Honk's venv was made from.
    python: Path | None = setting(
        "HONK_SANDBOX_PYTHON",
        sandbox_python,
        None,
        (
            "the Python sandboxed commands get as `python`: the prefix of an installation or "
            "virtualenv (the directory holding `bin/python3`, which must be an executable; "
            "Honk's own venv is refused). Unset: the installation Honk's venv was made from "
            "(`sys.base_prefix`), never Honk's venv. A repository's own `.venv` (made by "
            "`setup:`) comes before it on `PATH`; see "
            "[repository-config.md](repository-config.md)"
        ),
        flat="sandbox_python",
    )
    # More toolchain roots (language, path), and each language's version when a repository
    # declares none (language, version).
    toolchain_paths: tuple[tuple[str, str], ...] = setting(
        "HONK_TOOLCHAIN_PATHS",
        toolchain_pairs,
        (),
        (
            "more toolchain roots, `language=path` comma-separated "
            "(`go=/opt/go1.22,java=/opt/jdk-21`): the program in `path/bin` or `path`; "
            "languages `rust`, `node`, `go`, `java`, `python`, `maven`, `gradle`. See "
            "[repository-config.md](repository-config.md#how-honk-finds-toolchains)"
        ),
    )
    toolchain_defaults: tuple[tuple[str, str], ...] = setting(
        "HONK_TOOLCHAIN_DEFAULTS",
        toolchain_pairs,
        (),
        (
            "the version a language gets when a repository declares none, `language=version` "
            "comma-separated (`node=20,rust=1.95`; a prefix matches, or `stable`, `nightly`, "
            "`lts/*`). Unset: the host's own default (what `/usr/bin` runs, rustup's default "
            "toolchain), else the newest release; Python: the sandbox's Python"
        ),
    )
    rustup_home: str | None = manager(
        "RUSTUP_HOME", "where rustup keeps its toolchains, read to find them (unset: `~/.rustup`)"
    )
    nvm_dir: str | None = manager(
        "NVM_DIR", "nvm's directory, read to find its Node versions (unset: `~/.nvm`)"
    )
    fnm_dir: str | None = manager(
        "FNM_DIR", "fnm's directory (unset: `~/.local/share/fnm` and `~/.fnm`)"
    )
    volta_home: str | None = manager("VOLTA_HOME", "Volta's directory (unset: `~/.volta`)")
    sdkman_dir: str | None = manager(
        "SDKMAN_DIR", "SDKMAN's directory, for its Java, Maven and Gradle (unset: `~/.sdkman`)"
    )
    pyenv_root: str | None = manager("PYENV_ROOT", "pyenv's directory (unset: `~/.pyenv`)")
    mise_data_dir: str | None = manager(
        "MISE_DATA_DIR", "mise's data directory (unset: `~/.local/share/mise`)"
    )
    asdf_data_dir: str | None = manager("ASDF_DATA_DIR", "asdf's data directory (unset: `~/.asdf`)")
    # Per sandboxed command: tasks, memory, any one file, /tmp and /dev/shm each, and how
    # much the checkout's work tree may hold.
    max_processes: int = setting(
        "HONK_SANDBOX_MAX_PROCESSES",
        whole(16),
        512,
        "processes and threads per sandboxed command (at least 16)",
        flat="sandbox_max_processes",
    )
    memory_mb: int = setting(
        "HONK_SANDBOX_MEMORY_MB",
        whole(64),
        4096,
        (
            "memory of a sandboxed command's processes together, MiB (at least 64), in a memory"
            " cgroup per command; without one, each process's address space (`RLIMIT_AS`), at "
            "most 128 processes per command and Honk's watch on their total "
            "([security.md](security.md#the-sandbox))"
        ),
        flat="sandbox_memory_mb",
    )
    file_size_mb: int = setting(
        "HONK_SANDBOX_FILE_SIZE_MB",
        whole(1),
        1024,
        "the largest file a sandboxed command may write, MiB",
        flat="sandbox_file_size_mb",
    )
    tmp_mb: int = setting(
        "HONK_SANDBOX_TMP_MB",
        whole(1),
        512,
        "size of the sandbox's `/tmp` and of its `/dev/shm` (RAM), MiB each",
        flat="sandbox_tmp_mb",
    )
    disk_mb: int = setting(
        "HONK_SANDBOX_DISK_MB",
        whole(1),
        10240,
        (
            "what the checkout's work tree and the run's home (`$HOME`, with the package caches"
            " restored into it) may hold together, MiB"
        ),
        flat="sandbox_disk_mb",
    )
    # Package caches kept across runs per repository (workspace/caches.py): their total, MiB
    # (0: off), and where (None: data_dir/caches, Settings.package_cache_dir).
    cache_max_mb: int = setting(
        "HONK_CACHE_MAX_MB",
        whole(0),
        10240,
        (
            "package caches kept across runs, per repository, MiB in all (least recently used "
            "pruned first); `0`: off ([what Honk caches](operations.md#what-honk-caches))"
        ),
    )
    cache_dir: Path | None = setting(
        "HONK_CACHE_DIR",
        optional_path,
        None,
        (
            "where those caches are kept; unset: `HONK_DATA_DIR/caches`. Best on "
            "`HONK_CHECKOUT_DIR`'s filesystem (copies share blocks where it can reflink); never"
            " shown in a sandbox"
        ),
    )
    # Per-run checkouts, under opaque names: the sandbox's mount table shows this path.
    checkout_dir: Path = setting(
        "HONK_CHECKOUT_DIR",
        path,
        Path(),
        (
            "per-run checkouts, under opaque names; best on the data directory's filesystem "
            "(`<uid>` is Honk's user id; without `/var/tmp`, the system's temporary directory)"
        ),
        shown="`/var/tmp/honk-checkouts-<uid>`",
        factory=default_checkout_dir,
    )

    @property
    def toolchain_env(self) -> tuple[tuple[str, str], ...]:
        """Where version managers keep their toolchains: (variable, value) of those set."""
        values = (
            self.rustup_home,
            self.nvm_dir,
            self.fnm_dir,
            self.volta_home,
            self.sdkman_dir,
            self.pyenv_root,
            self.mise_data_dir,
            self.asdf_data_dir,
        )
        return tuple(
            (env, value) for env, value in zip(TOOLCHAIN_ENV, values, strict=True) if value
        )


@dataclass(frozen=True)
class NetworkSettings(Group):
    """What repositories may let their sandboxes reach (`network:`, `setup_network:`)."""

    section = "The sandbox's network"

    # Hosts, presets or "*"; None: every preset and no other host.
    allow: tuple[str, ...] | None = setting(
        "HONK_NETWORK_ALLOW",
        network_allow,
        None,
        (
            "what repositories may let their sandboxes reach (`network:`, `setup_network:`): "
            "entries (`pypi.org`, `*.corp.example`, `mirror.internal:3141`, "
            "`tcp://git.corp.example:22`), preset names, or `*` (any host name, never a private"
            " address); `off`: nothing. Unset: every preset and no other host"
        ),
        flat="network_allow",
    )
    # The operator's own presets (replacing a built-in one, e.g. PyPI by a mirror).
    presets: tuple[tuple[str, tuple[str, ...]], ...] = setting(
        "HONK_NETWORK_PRESETS",
        network_presets,
        (),
        (
            "presets of the operator's, new or replacing built-in ones: "
            "`pypi=devpi.internal:3141; tools=a.example b.example`; exact `host:port` entries "
            "here may reach private addresses; `tcp://host:port` entries, here or in "
            "`HONK_NETWORK_ALLOW`, are the only ones whose tunnel may carry something other "
            "than TLS"
        ),
        flat="network_presets",
    )

    def checked(self, get: Getter) -> NetworkSettings:
        try:
            cap = self.cap()
            for item in cap.items or ():
                if is_preset_name(item) and item not in cap.presets.items:
                    cap.presets.rules(item)  # raises: not a preset
        except NetworkSettingError as exc:
            raise ConfigError(
                str(exc) if "HONK_" in str(exc) else f"HONK_NETWORK_ALLOW: {exc}"
            ) from None
        return self

    def cap(self) -> Cap:
        """HONK_NETWORK_ALLOW over the presets (HONK_NETWORK_PRESETS included)."""
        return Cap(self.allow, Presets.with_overrides(dict(self.presets)))
