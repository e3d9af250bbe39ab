"""How each setting's text becomes its value: the parsers the declarations name, and the
one-line `ConfigError` a wrong value stops start-up with."""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from app.network_policy import NetworkSettingError, parse_items

DEFAULT_MODEL = "claude-sonnet-4-6"
GITHUB_API_URL = "https://api.github.com"
GITHUB_URL = "https://github.com"
SLACK_API_URL = "https://slack.com/api/"
# The languages whose toolchains Honk finds on its host (app/workspace/toolchains.py).
TOOLCHAIN_LANGUAGES = ("rust", "node", "go", "java", "python", "maven", "gradle")
# Where version managers keep their toolchains when not in their default place under HOME:
# read only to find toolchains, never passed to a sandbox.
TOOLCHAIN_ENV = (
    "RUSTUP_HOME",
    "NVM_DIR",
    "FNM_DIR",
    "VOLTA_HOME",
    "SDKMAN_DIR",
    "PYENV_ROOT",
    "MISE_DATA_DIR",
    "ASDF_DATA_DIR",
)
_VERSION_SPEC = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+/*-]{0,63}")


class ConfigError(ValueError):
    """A setting is missing or wrong: one line naming the variable and what it must be.

    It may echo a value that is not a secret (a number, a choice, a path), never a secret's.
    """


def default_checkout_dir() -> Path:
    """Disk-backed temporary space outside the data directory, one directory per user."""
    base = Path("/var/tmp")
    if not base.is_dir():
        base = Path(tempfile.gettempdir())
    return base / f"honk-checkouts-{os.getuid()}"


def _sandbox_python(value: str | None) -> Path | None:
    """HONK_SANDBOX_PYTHON: the prefix of a Python installation or venv, not Honk's own venv."""
    if value is None:
        return None
    prefix = Path(value).absolute()
    interpreter = prefix / "bin" / "python3"
    if not (interpreter.is_file() and os.access(interpreter, os.X_OK)):
        raise ConfigError(
            f"HONK_SANDBOX_PYTHON: {interpreter} is not an executable; give the prefix of a "
            "Python installation or virtualenv (the directory that holds bin/python3)"
        )
    own = Path(sys.prefix).resolve()
    if sys.prefix != sys.base_prefix and own in (prefix.resolve(), *prefix.resolve().parents):
        raise ConfigError(
            f"HONK_SANDBOX_PYTHON: {prefix} is Honk's own virtualenv, whose packages the "
            "sandbox never shows; make a virtualenv for the sandbox, or leave it unset for "
            f"the Python Honk's venv was made from ({sys.base_prefix})"
        )
    return prefix


def _toolchain_pairs(value: str | None, name: str) -> tuple[tuple[str, str], ...]:
    """`lang=value` items, comma-separated: HONK_TOOLCHAIN_PATHS (absolute paths) and
    HONK_TOOLCHAIN_DEFAULTS (versions, one per language)."""
    pairs: list[tuple[str, str]] = []
    paths = name == "HONK_TOOLCHAIN_PATHS"
    what = "an absolute path" if paths else "a version"
    for item in (value or "").split(","):
        if not item.strip():
            continue
        language, sep, given = (part.strip() for part in item.partition("="))
        if not sep or not given:
            raise ConfigError(
                f"{name} is a list of language={what}, comma-separated (got {_shown(item.strip())})"
            )
        if language not in TOOLCHAIN_LANGUAGES:
            raise ConfigError(
                f"{name}: {_shown(language)} is not one of: {', '.join(TOOLCHAIN_LANGUAGES)}"
            )
        if paths and not given.startswith("/"):
            raise ConfigError(f"{name}: {language}={_shown(given)} is not an absolute path")
        if not paths:
            if not _VERSION_SPEC.fullmatch(given):
                raise ConfigError(f"{name}: {language}={_shown(given)} is not a version")
            if any(known == language for known, _ in pairs):
                raise ConfigError(f"{name} names {language} twice")
        pairs.append((language, (given.rstrip("/") or "/") if paths else given))
    return tuple(pairs)


def _absolute(value: str | None) -> Path | None:
    return Path(value).absolute() if value else None


def _int(value: str | None, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    try:
        number = int(value or "")
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {_shown(value)})") from None
    if number < minimum or (maximum is not None and number > maximum):
        allowed = (
            f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        )
        raise ConfigError(f"{name} must be {allowed} (got {number})")
    return number


def _float(value: str, name: str, zero_ok: bool = False) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number (got {_shown(value)})") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number (got {_shown(value)})")
    if number < 0 or (number == 0 and not zero_ok):
        allowed = "0 or more" if zero_ok else "more than 0"
        raise ConfigError(f"{name} must be {allowed} (got {value.strip()})")
    return number


def _share(value: str, name: str) -> float:
    """A fraction from 0 up to, not including, 1 (a share that leaves something)."""
    number = _float(value, name, zero_ok=True)
    if number >= 1:
        raise ConfigError(f"{name} must be from 0 up to, not including, 1 (got {value.strip()})")
    return number


def _shown(value: str | None) -> str:
    """A non-secret value as given, quoted and cut short, for an error message."""
    text = value or ""
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise ConfigError(f"{name} must be on or off (got {_shown(value)})")


def _choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of: {', '.join(choices)} (got {_shown(value)})")
    return value


def _url(value: str, name: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name} must be an http(s) URL")
    return value.rstrip("/") if not value.endswith("/api/") else value


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _database_url(value: str) -> str:
    scheme = value.split(":", 1)[0]
    if scheme.startswith("postgresql") and "+" not in scheme:
        value = "postgresql+asyncpg" + value[len(scheme) :]
    elif scheme == "sqlite":
        value = "sqlite+aiosqlite" + value[len(scheme) :]
    if value.split(":", 1)[0] not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise ConfigError("DATABASE_URL must be sqlite:// or postgresql://")
    return value


def _fernet_key(value: str | None, name: str) -> str | None:
    """A Fernet key (32 url-safe base64 bytes), as `honk serve`'s set-up writes it."""
    if value is None:
        return None
    from cryptography.fernet import Fernet

    try:
        Fernet(value.encode())
    except (ValueError, TypeError):
        raise ConfigError(
            f"{name} must be a Fernet key (32 url-safe base64-encoded bytes; "
            'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key())")'
        ) from None
    return value


def _private_key(literal: str | None, path: str | None) -> str | None:
    if literal:
        key = literal.replace("\\n", "\n").strip() + "\n"
    elif path:
        try:
            key = Path(path).read_text()
        except OSError as exc:
            # The path and the OS's reason say what to fix; the file's content is never shown.
            raise ConfigError(f"PRIVATE_KEY_PATH {path} cannot be read: {_reason(exc)}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"PRIVATE_KEY_PATH {path} is not a text (PEM) file") from None
    else:
        return None
    if "PRIVATE KEY-----" not in key:
        raise ConfigError(
            "PRIVATE_KEY is not a PEM private key"
            if literal
            else f"PRIVATE_KEY_PATH {path} does not hold a PEM private key"
        )
    # Parse once so a broken key stops start-up, not the first webhook.
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            "PRIVATE_KEY cannot be parsed"
            if literal
            else f"PRIVATE_KEY_PATH {path} cannot be parsed as a private key"
        ) from None
    return key


def _reason(exc: OSError) -> str:
    """The OS's words for why a file could not be used, e.g. "No such file or directory"."""
    return exc.strerror or type(exc).__name__


# -- The parsers a declaration names: (text as set, variable name) -> value ------------------

T = TypeVar("T")
Parse = Callable[[str, str], T]


def text(value: str, name: str) -> str:
    return value


def whole(minimum: int = 1, maximum: int | None = None) -> Parse[int]:
    return lambda value, name: _int(value, name, minimum, maximum)


def number(zero_ok: bool = False) -> Parse[float]:
    return lambda value, name: _float(value, name, zero_ok)


def share(value: str, name: str) -> float:
    return _share(value, name)


def switch(value: str, name: str) -> bool:
    return _bool(value, name)


def one_of(*choices: str, upper: bool = False) -> Parse[str]:
    return lambda value, name: _choice(value.upper() if upper else value, name, choices)


def url(value: str, name: str) -> str:
    return _url(value, name)


def slashed_url(value: str, name: str) -> str:
    return _slash(_url(value, name))


def path(value: str, name: str) -> Path:
    return Path(value)


def absolute(value: str, name: str) -> Path:
    return Path(value).absolute()


def path_list(value: str, name: str) -> tuple[str, ...]:
    return tuple(p for p in value.split(os.pathsep) if p)


def sandbox_python(value: str, name: str) -> Path | None:
    return _sandbox_python(value)


def toolchain_pairs(value: str, name: str) -> tuple[tuple[str, str], ...]:
    return _toolchain_pairs(value, name)


def fernet_key(value: str, name: str) -> str | None:
    return _fernet_key(value, name)


def database_url(value: str, name: str) -> str:
    return _database_url(value)


def optional_int(value: str, name: str) -> int | None:
    return _int(value, name)


def optional_url(value: str, name: str) -> str | None:
    return _url(value, name)


def optional_path(value: str, name: str) -> Path | None:
    return Path(value).absolute()


def optional_text(value: str, name: str) -> str | None:
    return value


def network_allow(value: str, name: str) -> tuple[str, ...] | None:
    """HONK_NETWORK_ALLOW: "pypi npm *.internal.example mirror.internal:3141", or "*"."""
    try:
        return parse_items(value.replace(",", " ").split(), name)
    except NetworkSettingError as exc:
        raise ConfigError(str(exc) if "HONK_" in str(exc) else f"{name}: {exc}") from None


def network_presets(value: str, name: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """HONK_NETWORK_PRESETS: "pypi=mirror.internal:3141; tools=a.example b.example"."""
    overrides: dict[str, tuple[str, ...]] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        preset, sep, entries = part.partition("=")
        if not sep:
            raise ConfigError(f"{name} is a list of name=host,host separated by ;")
        overrides[preset.strip().lower()] = tuple(entries.replace(",", " ").split())
    return tuple(overrides.items())


def private_key(literal: str | None, path: str | None) -> str | None:
    return _private_key(literal, path)
