"""Package caches across runs (real git, real cp): keyed by lock files, per installation and
repository, copied in and out, never following a link out of the home, pruned LRU."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from app import metrics
from app.config import ConfigError, Settings
from app.workspace.caches import (
    HIT,
    MISS,
    PARTIAL,
    CacheScope,
    PackageCaches,
    Restored,
    head_key,
    key_at,
    lock_files_at,
    lock_key,
)
from app.workspace.limits import MIB
from app.workspace.mounts import honk_hidden
from app.workspace.run_home import make_home
from tests.fakes.git_http import run_git

WIDGETS = CacheScope.repository(7, "octo/widgets")
GADGETS = CacheScope.repository(7, "octo/gadgets")
OTHER_INSTALLATION = CacheScope.repository(8, "octo/widgets")
KEY_A = lock_key([("requirements.txt", "a" * 40)])
KEY_B = lock_key([("requirements.txt", "b" * 40)])


def restores(result: str) -> float:
    value = metrics.registry.get_sample_value("honk_cache_restores_total", {"result": result})
    return value or 0.0


def new_home(tmp_path: Path, name: str) -> Path:
    return make_home(tmp_path / name)


def fill(home: Path, relative: str, name: str, data: bytes = b"cached\n") -> Path:
    path = home / relative / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def caches(tmp_path: Path) -> PackageCaches:
    return PackageCaches(tmp_path / "caches", 64 * MIB)


async def test_lock_files_at_a_commit_make_the_key(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    await run_git("init", "-q", "-b", "main", str(repo))
    assert await head_key(repo) == lock_key(())  # no commit yet: no lock files
    files = {
        "README.md": "# x\n",
        "requirements-dev.txt": "pytest\n",
        "web/package-lock.json": "{}\n",
        "svc/go.sum": "x v1 h1:abc\n",
        "src/lock.py": "x = 1\n",
    }
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    await run_git("add", "-A", cwd=repo)
    await run_git("commit", "-q", "-m", "one", cwd=repo)
    found = dict(await lock_files_at(repo, "HEAD"))
    assert sorted(found) == ["requirements-dev.txt", "svc/go.sum", "web/package-lock.json"]
    first = await key_at(repo, "HEAD")
    assert first == await head_key(repo) == lock_key(reversed(list(found.items())))
    # A change outside the lock files keeps the key; a lock file's change moves it.
    (repo / "README.md").write_text("# y\n")
    await run_git("commit", "-qam", "readme", cwd=repo)
    assert await key_at(repo, "HEAD") == first
    (repo / "svc/go.sum").write_text("x v2 h1:def\n")
    await run_git("commit", "-qam", "bump", cwd=repo)
    assert await key_at(repo, "HEAD") != first
    assert await key_at(repo, "HEAD~2") == first  # the base commit's files decide


async def test_a_second_run_restores_what_setup_saved(
    caches: PackageCaches, tmp_path: Path
) -> None:
    first = new_home(tmp_path, "run1")
    hits, misses = restores(HIT), restores(MISS)
    restored = await caches.restore(WIDGETS, KEY_A, first)
    assert restored.result == MISS and restores(MISS) == misses + 1
    assert "No package cache yet" in restored.describe()
    # Setup downloads; then the agent writes into the same cache after the save.
    fill(first, ".cache/pip", "wheel.whl", b"w" * 5000)
    fill(first, "go/pkg/mod/cache", "mod.zip")
    fill(first, "not-a-cache", "notes.txt")
    saved = await caches.save(WIDGETS, first, restored)
    assert saved is not None and saved >= 5000
    fill(first, ".cache/pip", "poisoned.whl")

    second = new_home(tmp_path, "run2")
    again = await caches.restore(WIDGETS, KEY_A, second)
    assert again.result == HIT and restores(HIT) == hits + 1
    assert again.bytes == saved
    assert f"key {KEY_A[:12]}" in again.describe()
    assert (second / ".cache/pip/wheel.whl").read_bytes() == b"w" * 5000
    assert (second / "go/pkg/mod/cache/mod.zip").exists()
    assert not (second / ".cache/pip/poisoned.whl").exists()  # only what setup left
    assert not (second / "not-a-cache").exists()  # only the cache directories
    # An exact hit setup did not change is not saved again; a changed one is.
    assert await caches.save(WIDGETS, second, again) is None
    fill(second, ".cache/pip", "more.whl")
    assert await caches.save(WIDGETS, second, again) is not None
    third = new_home(tmp_path, "run3")
    assert (await caches.restore(WIDGETS, KEY_A, third)).result == HIT
    assert (third / ".cache/pip/more.whl").exists()


async def test_a_changed_lock_file_restores_the_latest_entry_as_partial(
    caches: PackageCaches, tmp_path: Path
) -> None:
    home = new_home(tmp_path, "run1")
    fill(home, ".npm/_cacache", "index")
    await caches.save(WIDGETS, home, await caches.restore(WIDGETS, KEY_A, home))
    partials = restores(PARTIAL)
    later = new_home(tmp_path, "run2")
    restored = await caches.restore(WIDGETS, KEY_B, later)
    assert restored.result == PARTIAL and restores(PARTIAL) == partials + 1
    assert restored.from_key == KEY_A and restored.key == KEY_B
    assert "from an earlier lock file" in restored.describe()
    assert (later / ".npm/_cacache/index").exists()
    # Saved under the new key: both entries are there now.
    fill(later, ".npm/_cacache", "newer")
    await caches.save(WIDGETS, later, restored)
    assert (await caches.restore(WIDGETS, KEY_B, new_home(tmp_path, "run3"))).result == HIT
    assert (await caches.restore(WIDGETS, KEY_A, new_home(tmp_path, "run4"))).result == HIT


async def test_another_repository_or_installation_never_sees_an_entry(
    caches: PackageCaches, tmp_path: Path
) -> None:
    home = new_home(tmp_path, "run1")
    fill(home, ".cargo/registry/cache", "serde.crate")
    await caches.save(WIDGETS, home, await caches.restore(WIDGETS, KEY_A, home))
    for scope in (GADGETS, OTHER_INSTALLATION, CacheScope.directory(tmp_path)):
        other = new_home(tmp_path, f"other-{scope.owner}-{scope.name}")
        assert (await caches.restore(scope, KEY_A, other)).result == MISS
        assert not (other / ".cargo").exists()


async def test_a_link_out_of_the_home_is_never_followed(
    caches: PackageCaches, tmp_path: Path
) -> None:
    """Setup made ~/.cache a link to a host directory: nothing of it is copied out."""
    secret_dir = tmp_path / "host-secrets" / "pip"
    secret_dir.mkdir(parents=True)
    (secret_dir / "id_rsa").write_text("PRIVATE\n")
    home = new_home(tmp_path, "run1")
    os.symlink(tmp_path / "host-secrets", home / ".cache")
    fill(home, ".npm", "ok")
    (home / ".npm" / "escape").symlink_to(secret_dir)  # kept as a link, not followed
    restored = await caches.restore(WIDGETS, KEY_A, home)
    assert await caches.save(WIDGETS, home, restored) is not None
    later = new_home(tmp_path, "run2")
    await caches.restore(WIDGETS, KEY_A, later)
    assert not (later / ".cache").is_symlink() and not (later / ".cache").exists()
    assert (later / ".npm" / "escape").is_symlink()
    copied = [p for p in (tmp_path / "caches").rglob("*") if p.name == "id_rsa"]
    assert copied == []


async def test_entries_are_pruned_least_recently_used_past_the_cap(tmp_path: Path) -> None:
    caches = PackageCaches(tmp_path / "caches", 300 * 1024)
    scopes = [CacheScope.repository(7, f"octo/repo{i}") for i in range(3)]
    for index, scope in enumerate(scopes):
        home = new_home(tmp_path, f"run{index}")
        fill(home, ".cache/pip", "wheel", os.urandom(120 * 1024))
        assert await caches.save(scope, home, await caches.restore(scope, KEY_A, home))
        meta = next((tmp_path / "caches").glob(f"*/{scope.name}/{KEY_A}/meta.json"))
        os.utime(meta, (time.time() - 3600 * (3 - index),) * 2)  # repo0 is the oldest
    # Three entries of 120 KiB would pass 300 KiB: the least recently used went.
    assert (await caches.restore(scopes[0], KEY_A, new_home(tmp_path, "a"))).result == MISS
    assert (await caches.restore(scopes[1], KEY_A, new_home(tmp_path, "b"))).result == HIT
    # repo1 was just used: a fourth entry pushes out repo2, now the least recently used.
    fourth = CacheScope.repository(7, "octo/repo3")
    home = new_home(tmp_path, "run3")
    fill(home, ".cache/pip", "wheel", os.urandom(120 * 1024))
    assert await caches.save(fourth, home, await caches.restore(fourth, KEY_A, home))
    assert (await caches.restore(scopes[2], KEY_A, new_home(tmp_path, "c"))).result == MISS
    assert (await caches.restore(scopes[1], KEY_A, new_home(tmp_path, "d"))).result == HIT
    # An entry bigger than the whole cap is never saved.
    huge = new_home(tmp_path, "huge")
    fill(huge, ".cache/pip", "wheel", os.urandom(400 * 1024))
    other = CacheScope.repository(7, "octo/huge")
    assert await caches.save(other, huge, Restored(MISS, KEY_A)) is None


def test_the_settings(base_settings: Settings) -> None:
    def parse(**values: str) -> Settings:
        return Settings.from_env(
            {"HONK_DATA_DIR": str(base_settings.store.data_dir), **values}, env_file=None
        )

    default = parse()
    assert default.sandbox.cache_max_mb == 10240
    assert default.package_cache_dir == base_settings.store.data_dir / "caches"
    assert PackageCaches.for_settings(parse(HONK_CACHE_MAX_MB="0")) is None
    elsewhere = parse(HONK_CACHE_DIR="/srv/honk-caches")
    assert elsewhere.package_cache_dir == Path("/srv/honk-caches")
    assert "/srv/honk-caches" in honk_hidden(elsewhere).secrets  # never shown in a sandbox
    with pytest.raises(ConfigError, match=r"^HONK_CACHE_MAX_MB must be a whole number"):
        parse(HONK_CACHE_MAX_MB="lots")
    with pytest.raises(ConfigError, match=r"^HONK_CACHE_MAX_MB must be"):
        parse(HONK_CACHE_MAX_MB="-1")
