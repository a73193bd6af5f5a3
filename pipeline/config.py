"""Configuration: ``journeys.toml`` validated against built-in defaults before any compute.

Reads one TOML file (optional); writes nothing. Every key has a type and a default here; an unknown
section or key, a wrong type or a value outside its closed list is a ``ConfigError`` that names the
file and key and suggests the closest valid one.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A DuckDB memory size: digits and a unit, nothing else (Database.set_memory_limit places it in a
# statement, so it is checked here and there)
MEMORY_LIMIT = r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)"


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
    pattern: str | None = None  # a full-match regex for string values
    form: str = ""  # what the pattern accepts, in words, for its error message

    def __post_init__(self) -> None:
        # the error for a value the pattern refuses says `must be <form>`: an empty form would
        # leave the user with "must be " and no hint
        if self.pattern is not None and not self.form:
            raise ValueError(f"a Key with pattern {self.pattern!r} must say its form")


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
        "timeout_minutes": Key(
            int, 30, minimum=1, maximum=24 * 60, doc="inactivity gap (whole minutes) that ends a session"
        ),
        "session_source": Key(
            str, "inactivity", choices=("inactivity", "source"),
            doc="'source' keeps the session id of the input where it has one",
        ),
    },
    "engine": {
        "memory_limit": Key(
            str, "", doc="DuckDB memory cap for ingest, build and report, e.g. '8GB' (larger sorts spill to "
            "disk); '' = DuckDB's default (80% of RAM)", pattern=f"({MEMORY_LIMIT})?",
            form="a size such as '8GB' or '512MiB' (KB, MB, GB, TB, KiB, MiB, GiB, TiB), or ''",
        ),
    },
    "privacy": {
        "pseudonymise_user_ids": Key(
            bool, False,
            doc="store HMAC-SHA256(JOURNEYS_PSEUDONYM_KEY, user_id) instead of user ids (pipeline/privacy.py); "
            "once on, the database stays pseudonymised",
        ),
    },
}


# -- segments ------------------------------------------------------------------------------------
# ``[[segments]]`` (a TOML array of tables): named user segments as structured filters, e.g.
#   [[segments]]
#   name = "mobile_de"
#   match = "all"                      # all | any: every filter or at least one must hold
#   filters = [{field = "device", op = "eq", value = "mobile"}, {field = "country", op = "eq", value = "DE"}]
# A user belongs to a segment when one of their sessions (with the user's attributes on every session)
# satisfies the filters. Fields come from this closed list (name -> kind); pipeline.metrics.segments
# compiles them to SQL with bound parameters only.
SEGMENT_FIELDS: dict[str, str] = {
    # user attributes (staging.stg_users, plus derived visitor_type and value_tier)
    "acquisition_channel": "text",
    "first_device": "text",
    "first_country": "text",
    "visitor_type": "text",  # 'new' (one session) | 'returning' (more than one)
    "value_tier": "text",  # 'none' (no purchase) | 'low' | 'mid' | 'high' (terciles of buyers' revenue)
    "n_sessions": "number",
    "n_purchases": "number",
    "revenue": "number",
    "is_customer": "bool",
    "first_seen_at": "timestamp",
    "last_seen_at": "timestamp",
    # session attributes (staging.stg_sessions)
    "channel": "text",
    "device": "text",
    "country": "text",
    "landing_page": "text",
    "exit_page": "text",
    "entry_source": "text",
    "entry_medium": "text",
    "entry_campaign": "text",
    "entry_touchpoint": "text",
    "session_index": "number",
    "session_duration_seconds": "number",
    "session_revenue": "number",
    "session_started_at": "timestamp",
}
SEGMENT_OPS: dict[str, tuple[str, ...]] = {  # op -> the field kinds it applies to
    "eq": ("text", "number", "bool", "timestamp"),
    "ne": ("text", "number", "bool", "timestamp"),
    "in": ("text", "number"),
    "not_in": ("text", "number"),
    "gt": ("number", "timestamp"),
    "ge": ("number", "timestamp"),
    "lt": ("number", "timestamp"),
    "le": ("number", "timestamp"),
    "contains": ("text",),
}
SEGMENT_MATCH = ("all", "any")
_SEGMENT_KEYS = ("name", "match", "filters")
_FILTER_KEYS = ("field", "op", "value")


def validate_segments(value: Any, origin: str = "config") -> list[dict[str, Any]]:
    """Check ``[[segments]]``; return ``[{name, match, filters: [{field, op, value}]}]`` (values normalised)."""
    if not isinstance(value, list):
        raise ConfigError(f"{origin}: segments must be an array of tables ([[segments]])")
    result: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, segment in enumerate(value):
        where = f"segments[{i}]"
        if not isinstance(segment, dict):
            raise ConfigError(f"{origin}: {where} must be a table with name, match and filters")
        for key in segment:
            if key not in _SEGMENT_KEYS:
                raise ConfigError(f"{origin}: unknown key {where}.{key}{_suggest(key, list(_SEGMENT_KEYS))}")
        name = segment.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{origin}: {where}.name must be a non-empty string")
        if name in seen:
            raise ConfigError(f"{origin}: {where}.name {name!r} is used twice")
        seen.add(name)
        match = segment.get("match", "all")
        if match not in SEGMENT_MATCH:
            hint = _suggest(str(match), list(SEGMENT_MATCH))
            raise ConfigError(f"{origin}: {where}.match = {match!r} is not allowed{hint}")
        filters = segment.get("filters")
        if not isinstance(filters, list) or not filters:
            raise ConfigError(f"{origin}: {where}.filters must be a non-empty array of {{field, op, value}} tables")
        checked = [validate_segment_filter(f, origin, f"{where}.filters[{j}]") for j, f in enumerate(filters)]
        result.append({"name": name, "match": match, "filters": checked})
    return result


def validate_segment_filter(item: Any, origin: str, where: str) -> dict[str, Any]:
    """One ``{field, op, value}``: field and op from the closed lists, a value of the field's kind."""
    if not isinstance(item, dict):
        raise ConfigError(f"{origin}: {where} must be a table {{field, op, value}}")
    for key in item:
        if key not in _FILTER_KEYS:
            raise ConfigError(f"{origin}: unknown key {where}.{key}{_suggest(key, list(_FILTER_KEYS))}")
    for key in _FILTER_KEYS:
        if key not in item:
            raise ConfigError(f"{origin}: {where} needs a {key}")
    field, op, value = item["field"], item["op"], item["value"]
    if field not in SEGMENT_FIELDS:
        hint = _suggest(str(field), list(SEGMENT_FIELDS))
        raise ConfigError(f"{origin}: {where}.field {field!r} is not a segment field{hint}")
    if op not in SEGMENT_OPS:
        raise ConfigError(f"{origin}: {where}.op {op!r} is not an operator{_suggest(str(op), list(SEGMENT_OPS))}")
    kind = SEGMENT_FIELDS[field]
    if kind not in SEGMENT_OPS[op]:
        valid = [o for o, kinds in SEGMENT_OPS.items() if kind in kinds]
        raise ConfigError(
            f"{origin}: {where}: op {op!r} does not apply to {kind} field {field!r}; valid: {', '.join(valid)}"
        )
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{origin}: {where}.value must be a non-empty array for op {op!r}")
        value = [_segment_value(origin, where, field, kind, v) for v in value]
    else:
        value = _segment_value(origin, where, field, kind, value)
    return {"field": field, "op": op, "value": value}


def _segment_value(origin: str, where: str, field: str, kind: str, value: Any) -> Any:
    import datetime as dt

    if kind == "text" and isinstance(value, str):
        return value
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "timestamp":
        if isinstance(value, dt.datetime):
            return value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone(dt.UTC).replace(tzinfo=None)
        if isinstance(value, dt.date):
            return dt.datetime(value.year, value.month, value.day)
        if isinstance(value, str):
            try:
                return _segment_value(origin, where, field, kind, dt.datetime.fromisoformat(value))
            except ValueError:
                pass
    raise ConfigError(f"{origin}: {where}.value for {field} must be a {kind}, got {value!r}")


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else f"; valid: {', '.join(sorted(options))}"


def defaults() -> dict[str, Any]:
    result: dict[str, Any] = {section: {k: key.default for k, key in keys.items()} for section, keys in SCHEMA.items()}
    result["segments"] = []
    return result


def validate(data: dict[str, Any], origin: str = "config") -> dict[str, Any]:
    """Merge ``data`` over the defaults; raise ConfigError naming ``origin`` and the key."""
    result = defaults()
    for section, values in data.items():
        if section == "segments":
            result["segments"] = validate_segments(values, origin)
            continue
        if section not in SCHEMA:
            raise ConfigError(f"{origin}: unknown section [{section}]{_suggest(section, [*SCHEMA, 'segments'])}")
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
        kind = {int: "whole number", float: "number", str: "string", bool: "true or false"}[key.type]
        raise ConfigError(f"{origin}: {dotted} must be a {kind}, got {value!r}")
    if key.choices is not None and value not in key.choices:
        options = [str(c) for c in key.choices]
        raise ConfigError(f"{origin}: {dotted} = {value!r} is not allowed{_suggest(str(value), options)}")
    if key.pattern is not None and not re.fullmatch(key.pattern, value):
        raise ConfigError(f"{origin}: {dotted} = {value!r} must be {key.form}")
    if key.minimum is not None and value < key.minimum:
        raise ConfigError(f"{origin}: {dotted} must be >= {key.minimum}, got {value!r}")
    if key.maximum is not None and value > key.maximum:
        raise ConfigError(f"{origin}: {dotted} must be <= {key.maximum}, got {value!r}")
    return value


def load(path: str | Path | None = None) -> dict[str, Any]:
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
