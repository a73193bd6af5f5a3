"""Configuration: ``journeys.toml`` validated against built-in defaults before any compute.

Reads one TOML file (optional); writes nothing. Every key has a type and a default here; an unknown
section or key, a wrong type or a value outside its closed list is a ``ConfigError`` that names the
file and key and suggests the closest valid one.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Key:
    type: type
    default: Any
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    doc: str = ""


SCHEMA: dict[str, dict[str, Key]] = {
    "mapping": {
        name: Key(str, "", doc=f"CSV replacing the built-in sql/seeds/{name}.csv ('' = built-in)")
        for name in ("channel_groups", "touchpoint_rules", "channel_touchpoints", "touchpoint_stages", "stages")
    },
    "ingest": {
        "future_tolerance_hours": Key(
            float, 24.0, minimum=0, doc="events later than load time + this are quarantined as future"
        ),
    },
    "sessions": {
        "timeout_minutes": Key(float, 30.0, minimum=1, maximum=24 * 60, doc="inactivity gap that ends a session"),
        "session_source": Key(
            str, "inactivity", choices=("inactivity", "source"),
            doc="'source' keeps the session id of the input where it has one",
        ),
    },
}


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else f"; valid: {', '.join(sorted(options))}"


def defaults() -> dict[str, dict[str, Any]]:
    return {section: {k: key.default for k, key in keys.items()} for section, keys in SCHEMA.items()}


def validate(data: dict[str, Any], origin: str = "config") -> dict[str, dict[str, Any]]:
    """Merge ``data`` over the defaults; raise ConfigError naming ``origin`` and the key."""
    result = defaults()
    for section, values in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"{origin}: unknown section [{section}]{_suggest(section, list(SCHEMA))}")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table of keys")
        for name, value in values.items():
            keys = SCHEMA[section]
            if name not in keys:
                raise ConfigError(f"{origin}: unknown key {section}.{name}{_suggest(name, list(keys))}")
            result[section][name] = _check(origin, f"{section}.{name}", keys[name], value)
    return result


def _check(origin: str, dotted: str, key: Key, value: Any) -> Any:
    if key.type is float and isinstance(value, int | float) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, key.type) or isinstance(value, bool) and key.type is not bool:
        raise ConfigError(f"{origin}: {dotted} must be a {key.type.__name__}, got {value!r}")
    if key.choices is not None and value not in key.choices:
        options = [str(c) for c in key.choices]
        raise ConfigError(f"{origin}: {dotted} = {value!r} is not allowed{_suggest(str(value), options)}")
    if key.minimum is not None and value < key.minimum:
        raise ConfigError(f"{origin}: {dotted} must be >= {key.minimum}, got {value!r}")
    if key.maximum is not None and value > key.maximum:
        raise ConfigError(f"{origin}: {dotted} must be <= {key.maximum}, got {value!r}")
    return value


def load(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Load ``path`` (or ``./journeys.toml`` when it exists) over the defaults."""
    if path is None:
        candidate = Path("journeys.toml")
        if not candidate.is_file():
            return defaults()
        path = candidate
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return validate(data, str(p))
