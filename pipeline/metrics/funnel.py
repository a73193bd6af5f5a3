"""Funnels: how many journeys reach each step, how fast, who drops where and what they saw first.

Reads ``staging.stg_touchpoints`` (with ``stg_users``, ``stg_events`` and ``stg_sessions`` for
breakdowns and why-dropped) through the parameterised queries ``sql/analysis/funnel_*.sql``;
writes only the temp table ``funnel_units`` (and a registered view of segments) for the duration of
a request, so a read-only database works.

The work is set-based SQL: ``funnel_units.sql`` decides, in one recursive query with one window
pass per step, how far each unit (journey or attempt) went; ``funnel_steps.sql``,
``funnel_dropped.sql`` and ``funnel_why.sql`` summarise those units. Python validates the request,
resolves step names against the data, and adds rates, Wilson intervals and tests (``stats``).

Exact semantics (also in the SQL headers):

- Steps: ``"view_item,add_to_cart|view_cart,stage:Purchase"``; a step is one or more alternatives
  (``|``), each an event name, a touchpoint or a stage (``event:``/``touchpoint:``/``stage:``
  prefix, or a bare name resolved in that order against the values present).
- Journey rows are ordered by ts, then channel step before event, then event_id; a later step
  must come strictly later in that order (so same-timestamp events convert in event_id order).
- ``ordered``: steps in order, anything between. ``strict``: steps in order with no event
  between two consecutive steps (synthetic channel steps neither count nor break adjacency).
  ``unordered``: step k = did any k distinct steps within the window after the first of them.
  ``open``: entry at any step, then in order from there: step k = did step k (entering at k is
  allowed); continuing into k = the last step-(k-1) row before some step-k row is within the
  windows of it with no active exclusion between (entering at k-1 is always the best entry, so this
  equals "some in-order path from an entry reached k-1 then k"); conversion from first uses the
  closed (ordered) path from step 1, so every rate stays in [0, 1].
  ``reach``: step k = did step k at all; continuing into k = did both k-1 and k.
- ``window``: last step at most this long after step 1 (the same attempt's step 1; a journey
  converts if any attempt does; the bound is inclusive). ``step_windows``: entry j-1 bounds the
  time from step j-1 to j.
- Per step: n_entered; conversion_from_previous = entered k-1 and continued into k / entered k-1
  (closed modes: n_k / n_(k-1)); conversion_from_first = reached k from step 1 / entered 1;
  n_dropped = entered k, did not continue into k+1 (0 at the last step); times from the latest
  path of the first row that reached the unit's furthest step (unordered: when the k-th distinct
  step was first done; reach: none).
- Exclusions (PostHog style): ``"X@a-b"`` (1-based steps, default the whole funnel): a path does
  not count as reaching step j (a < j <= b) if an X row lies strictly between its steps j-1 and
  j; an earlier or later clean attempt still counts. An exclusion may not name a step in its range.
- Counting: ``users`` (a user counts once at a step if any of their journeys is there),
  ``sessions`` (scope session) or ``conversions`` (ordered/strict: the journey is cut after every
  row that completes the funnel, and each piece is an attempt counted on its own).
- Unordered exclusions span the whole funnel; an exclusion row ends the attempt.
- Breakdowns: channel/device/country of the journey's first row, cohort = month of the user's
  first_seen_at, variant = first value of a stg_events.properties key in the journey, segment =
  a caller's mapping user_key -> segment; each group is tested against all the others on the final
  conversion (pooled two-proportion z, Benjamini-Hochberg across groups; with count users and scope
  session a user can sit in several groups, so the groups are then not disjoint).
- Drill-down and why-dropped work on units (journeys or attempts): dropped at k = entered k, did
  not continue into k+1; why-dropped compares what they saw before their first step-k row (and
  their first-row attributes, landing page) with those who continued: odds ratio of dropping.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, get_args

import numpy as np
import polars as pl

from pipeline.db import Database, DatabaseError, load_sql, sql_params
from pipeline.metrics.stats import benjamini_hochberg, odds_ratio, two_proportion_test, wilson_interval

Mode = Literal["ordered", "strict", "unordered", "open", "reach"]
Scope = Literal["user", "session"]
Count = Literal["users", "sessions", "conversions"]
By = Literal["channel", "device", "country", "segment", "variant", "cohort"]
StepKind = Literal["event", "touchpoint", "stage"]

MODES: tuple[str, ...] = get_args(Mode)
SCOPES: tuple[str, ...] = get_args(Scope)
COUNTS: tuple[str, ...] = get_args(Count)
BREAKDOWNS: tuple[str, ...] = get_args(By)
STEP_KINDS: tuple[str, ...] = get_args(StepKind)
CLOSED_MODES = ("ordered", "strict")
MAX_STEPS = 30
QUANTILE_NAMES = ("p25", "median", "p75", "p90")  # the order of the quantile lists in funnel_steps.sql

Duration = str | dt.timedelta | int | float | None
Segments = Mapping[str, str] | pl.DataFrame

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RANGE = re.compile(r"^(.*)@\s*(\d+)\s*-\s*(\d+)\s*$")

UNITS_TABLE = "funnel_units"
SEGMENTS_VIEW = "funnel_segments"


class FunnelError(ValueError):
    """A funnel that cannot be computed as asked (a bad step or option): a usage error."""


@dataclasses.dataclass(frozen=True)
class StepRef:
    kind: str  # one of STEP_KINDS
    value: str


@dataclasses.dataclass(frozen=True)
class FunnelStep:
    label: str
    refs: tuple[StepRef, ...]


@dataclasses.dataclass(frozen=True)
class Exclusion:
    step: FunnelStep
    from_step: int  # 1-based, the exclusion applies strictly between from_step and to_step
    to_step: int


@dataclasses.dataclass(frozen=True)
class FunnelSpec:
    """A validated funnel request; ``params()`` are the SQL parameters of funnel_units.sql."""

    steps: tuple[FunnelStep, ...]
    mode: str = "ordered"
    scope: str = "user"
    count: str = "users"
    window_us: int | None = None
    step_windows_us: tuple[int | None, ...] = ()
    exclusions: tuple[Exclusion, ...] = ()
    by: str | None = None
    variant_key: str | None = None
    segments: pl.DataFrame | None = None

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    def params(self) -> dict[str, Any]:
        step_items = [(i, r) for i, s in enumerate(self.steps, 1) for r in s.refs]
        excl_items = [(i, r) for i, e in enumerate(self.exclusions, 1) for r in e.step.refs]
        active = [
            sum(1 << (i - 1) for i, e in enumerate(self.exclusions, 1) if e.from_step < j <= e.to_step)
            for j in range(1, self.n_steps + 1)
        ]
        return {
            "scope": self.scope,
            "mode": self.mode,
            "count": self.count,
            "n_steps": self.n_steps,
            "step_index": [i for i, _ in step_items],
            "step_kind": [r.kind for _, r in step_items],
            "step_value": [r.value for _, r in step_items],
            "excl_index": [i for i, _ in excl_items],
            "excl_kind": [r.kind for _, r in excl_items],
            "excl_value": [r.value for _, r in excl_items],
            "excl_active": active,
            "window_us": self.window_us,
            "step_window_us": [None, *self.step_windows_us] if self.step_windows_us else [None] * self.n_steps,
            "by": self.by or "none",
            "variant_key": self.variant_key,
            "simple_ordered": self.is_simple_ordered,
        }

    @property
    def is_simple_ordered(self) -> bool:
        """Ordered, without windows or exclusions, counting journeys: funnel_units.sql's fast walk."""
        return (self.mode == "ordered" and self.window_us is None and all(w is None for w in self.step_windows_us)
                and not self.exclusions and self.count != "conversions")

    def step_labels(self) -> list[str]:
        if self.mode == "unordered":
            return [f"any {k} of {self.n_steps}" for k in range(1, self.n_steps + 1)]
        return [s.label for s in self.steps]


# -- parsing and validation ----------------------------------------------------------------------


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    if close:
        return f"; did you mean '{close[0]}'?"
    shown = sorted(options)[:12]
    return f"; valid values include: {', '.join(shown)}" if shown else "; the data has no journeys (run build)"


def _choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        hint = _suggest(str(value), choices) if isinstance(value, str) else ""
        raise FunnelError(f"{name} must be one of {', '.join(choices)}, not {value!r}{hint}")
    return value


def parse_duration(value: Duration, name: str = "window") -> int | None:
    """Microseconds from ``'30m'``, ``'1h'``, ``'7d'``, ``'2w'``, ``'45s'``, a timedelta or seconds;
    ``None``/``'none'`` means no limit."""
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        micros = value // dt.timedelta(microseconds=1)
    elif isinstance(value, bool):
        raise FunnelError(f"{name} must be a duration like 30m, 1h, 7d or none, not {value!r}")
    elif isinstance(value, int | float):
        micros = round(value * 1_000_000)
    elif isinstance(value, str):
        if value.strip().lower() == "none":
            return None
        match = _DURATION.match(value)
        if not match:
            raise FunnelError(f"{name} must be a duration like 30m, 1h, 7d or none, not {value!r}")
        micros = round(float(match.group(1)) * _SECONDS[match.group(2).lower()] * 1_000_000)
    else:
        raise FunnelError(f"{name} must be a duration like 30m, 1h, 7d or none, not {value!r}")
    if micros <= 0:
        raise FunnelError(f"{name} must be longer than zero, not {value!r}")
    return int(micros)


def split_steps(steps: str | Sequence[str]) -> list[str]:
    """``"a,b|c"`` or ``["a", "b|c"]`` -> ``["a", "b|c"]`` (stripped); empty steps are an error."""
    items = steps.split(",") if isinstance(steps, str) else list(steps)
    out = []
    for position, item in enumerate(items, 1):
        if not isinstance(item, str) or not item.strip():
            raise FunnelError(f"step {position} is empty; write steps like view_item,add_to_cart,purchase")
        out.append(item.strip())
    return out


def step_values(db: Database) -> dict[str, list[str]]:
    """The event names, touchpoints and stages present in the journeys (what steps can name)."""
    if not db.has_table("staging", "stg_touchpoints"):
        raise DatabaseError("table staging.stg_touchpoints does not exist; run `journeys build` first")
    frame = _run(db, "funnel_values", {})
    return {
        kind: sorted({v for v in frame[column].to_list() if v is not None})
        for kind, column in (("event", "event_name"), ("touchpoint", "touchpoint"), ("stage", "stage"))
    }


def resolve_step(text: str, values: Mapping[str, Sequence[str]]) -> FunnelStep:
    """One step (``a|touchpoint:b``) resolved against the values present."""
    refs: list[StepRef] = []
    for token in (t.strip() for t in text.split("|")):
        if not token:
            raise FunnelError(f"step {text!r} has an empty alternative (check the '|')")
        prefix, sep, rest = token.partition(":")
        if sep and prefix.strip().lower() in STEP_KINDS:
            kind, value = prefix.strip().lower(), rest.strip()
            if value not in values[kind]:
                raise FunnelError(f"unknown {kind} {value!r} in step {text!r}{_suggest(value, values[kind])}")
            ref = StepRef(kind, value)
        else:
            kind = next((k for k in STEP_KINDS if token in values[k]), None)
            if kind is None:
                every = sorted({v for k in STEP_KINDS for v in values[k]})
                raise FunnelError(
                    f"unknown step {token!r}: not an event name, touchpoint or stage in the data"
                    f"{_suggest(token, every)}"
                )
            ref = StepRef(kind, token)
        if ref not in refs:
            refs.append(ref)
    return FunnelStep(label=text, refs=tuple(refs))


def _segments_frame(segments: Segments) -> pl.DataFrame:
    if isinstance(segments, pl.DataFrame):
        missing = {"user_key", "segment"} - set(segments.columns)
        if missing:
            raise FunnelError(
                f"segments frame needs columns user_key and segment (missing {', '.join(sorted(missing))})"
            )
        frame = segments.select(pl.col("user_key").cast(pl.Utf8), pl.col("segment").cast(pl.Utf8))
    elif isinstance(segments, Mapping):
        frame = pl.DataFrame(
            {
                "user_key": [str(k) for k in segments],
                "segment": [None if v is None else str(v) for v in segments.values()],
            },
            schema={"user_key": pl.Utf8, "segment": pl.Utf8},
        )
    else:
        raise FunnelError("segments must be a mapping user_key -> segment or a frame with user_key, segment")
    if frame["user_key"].is_duplicated().any():
        raise FunnelError("segments name a user_key more than once; give each user one segment")
    return frame


def _empty_segments() -> pl.DataFrame:
    return pl.DataFrame(schema={"user_key": pl.Utf8, "segment": pl.Utf8})


def check_options(
    n_steps: int,
    *,
    mode: str = "ordered",
    scope: str = "user",
    window: Duration = None,
    step_windows: Sequence[Duration] | str | None = None,
    exclude: Sequence[str] | str = (),
    count: str | None = None,
    by: str | None = None,
    variant_key: str | None = None,
    segments: Segments | None = None,
) -> dict[str, Any]:
    """Every rule that does not need the data; returns the normalised options."""
    _choice("mode", mode, MODES)
    _choice("scope", scope, SCOPES)
    if count is None:
        count = "sessions" if scope == "session" else "users"
    _choice("count", count, COUNTS)
    if not 2 <= n_steps <= MAX_STEPS:
        raise FunnelError(f"a funnel needs 2 to {MAX_STEPS} steps, got {n_steps}")
    if count == "sessions" and scope != "session":
        raise FunnelError("count sessions needs scope session (a user journey spans sessions)")
    if count == "conversions" and mode not in CLOSED_MODES:
        raise FunnelError(f"count conversions needs mode ordered or strict, not {mode!r}")
    window_us = parse_duration(window, "window")
    if isinstance(step_windows, str):
        step_windows = [w.strip() for w in step_windows.split(",")]
    step_windows_us: tuple[int | None, ...] = ()
    if step_windows is not None:
        if len(step_windows) != n_steps - 1:
            raise FunnelError(
                f"step windows need {n_steps - 1} values (one per step after the first), got {len(step_windows)}"
            )
        step_windows_us = tuple(parse_duration(w, f"step window {i}") for i, w in enumerate(step_windows, 2))
        if all(w is None for w in step_windows_us):
            step_windows_us = ()
    if isinstance(exclude, str):
        exclude = [exclude]
    if mode == "reach" and (window_us is not None or step_windows_us or exclude):
        raise FunnelError("mode reach counts every step at any time: it takes no window, step windows or exclusions")
    if mode == "unordered" and step_windows_us:
        raise FunnelError("mode unordered has no step order, so no step windows (use window)")
    if by is not None:
        _choice("by", by, BREAKDOWNS)
    if by == "variant" and not variant_key:
        raise FunnelError("by variant needs variant_key: the stg_events.properties key that holds the variant")
    if variant_key and by != "variant":
        raise FunnelError("variant_key only applies with by variant")
    if by == "segment" and segments is None:
        raise FunnelError("by segment needs segments: a mapping user_key -> segment (Python API)")
    if segments is not None and by != "segment":
        raise FunnelError("segments only apply with by segment")
    return {
        "mode": mode, "scope": scope, "count": count, "window_us": window_us, "step_windows_us": step_windows_us,
        "exclude": list(exclude), "by": by, "variant_key": variant_key,
        "segments": None if segments is None else _segments_frame(segments),
    }


def _parse_exclusion(
    text: str, steps: Sequence[FunnelStep], values: Mapping[str, Sequence[str]], mode: str
) -> Exclusion:
    if not isinstance(text, str) or not text.strip():
        raise FunnelError("an exclusion is empty; write it like live_chat or live_chat@2-3")
    n = len(steps)
    match = _RANGE.match(text)
    if match is None and "@" in text:
        raise FunnelError(f"exclusion {text!r}: write the step range as EVENT@a-b, e.g. live_chat@2-3")
    body, from_step, to_step = (match.group(1), int(match.group(2)), int(match.group(3))) if match else (text, 1, n)
    if not 1 <= from_step < to_step <= n:
        raise FunnelError(f"exclusion {text!r}: the range must be a-b with 1 <= a < b <= {n}")
    if mode == "unordered" and (from_step, to_step) != (1, n):
        raise FunnelError(f"exclusion {text!r}: an unordered funnel only takes exclusions over the whole funnel")
    step = resolve_step(body.strip(), values)
    for index in range(from_step, to_step + 1):
        shared = set(step.refs) & set(steps[index - 1].refs)
        if shared:
            ref = sorted(shared, key=lambda r: (r.kind, r.value))[0]
            raise FunnelError(
                f"exclusion {text!r}: {ref.kind} {ref.value!r} is also step {index}; a row cannot be both"
            )
    return Exclusion(step=step, from_step=from_step, to_step=to_step)


def funnel_spec(
    db: Database,
    steps: str | Sequence[str],
    *,
    mode: str = "ordered",
    scope: str = "user",
    window: Duration = None,
    step_windows: Sequence[Duration] | str | None = None,
    exclude: Sequence[str] | str = (),
    count: str | None = None,
    by: str | None = None,
    variant_key: str | None = None,
    segments: Segments | None = None,
) -> FunnelSpec:
    """Validate a funnel request (options first, then steps against the data) into a FunnelSpec."""
    texts = split_steps(steps)
    options = check_options(
        len(texts), mode=mode, scope=scope, window=window, step_windows=step_windows, exclude=exclude,
        count=count, by=by, variant_key=variant_key, segments=segments,
    )
    values = step_values(db)
    resolved = tuple(resolve_step(t, values) for t in texts)
    exclusions = tuple(_parse_exclusion(e, resolved, values, options["mode"]) for e in options.pop("exclude"))
    return FunnelSpec(steps=resolved, exclusions=exclusions, **options)


# -- running the queries -------------------------------------------------------------------------


def _sql(name: str, params: Mapping[str, Any]) -> tuple[str, str]:
    relpath = f"analysis/{name}.sql"
    sql = load_sql(relpath)
    missing = sorted(sql_params(sql) - set(params))
    if missing:
        raise DatabaseError(f"sql/{relpath}: no value given for parameter(s) {', '.join(missing)}")
    return relpath, sql


def _run(db: Database, name: str, params: Mapping[str, Any]) -> pl.DataFrame:
    relpath, sql = _sql(name, params)
    try:
        return db.query(sql, params)
    except DatabaseError as exc:
        raise DatabaseError(f"sql/{relpath}: {exc}") from exc


@contextlib.contextmanager
def _registered(db: Database, name: str, frame: pl.DataFrame) -> Iterator[None]:
    db.register(name, frame)
    try:
        yield
    finally:
        db.unregister(name)


def funnel_units(db: Database, spec: FunnelSpec) -> pl.DataFrame:
    """One row per unit (journey, or attempt when counting conversions) with per-step lists:
    reached, continued, from_first, seconds_from_previous, seconds_from_first, step_pos."""
    with _units_table(db, spec):
        return db.query(f"select * from {UNITS_TABLE} order by journey_key, attempt")  # noqa: S608 - our name


@contextlib.contextmanager
def _units_table(db: Database, spec: FunnelSpec) -> Iterator[None]:
    """The units as temp table ``funnel_units`` (a read-only database allows temp tables) while the
    summary queries run; dropped afterwards."""
    segments = spec.segments if spec.segments is not None else _empty_segments()
    relpath, sql = _sql("funnel_units", spec.params())
    with _registered(db, SEGMENTS_VIEW, segments):
        try:
            db.materialize(UNITS_TABLE, sql, spec.params(), temp=True)
        except DatabaseError as exc:
            raise DatabaseError(f"sql/{relpath}: {exc}") from exc
    try:
        yield
    finally:
        db.execute(f"drop table if exists {UNITS_TABLE}")


def _check_step(spec: FunnelSpec, step: int, what: str) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step < spec.n_steps:
        raise FunnelError(f"{what} must be a step number from 1 to {spec.n_steps - 1} (the last step has no drop), "
                          f"not {step!r}")
    return step


def _nan_to_null(frame: pl.DataFrame) -> pl.DataFrame:
    floats = [c for c, t in frame.schema.items() if t in (pl.Float64, pl.Float32)]
    return frame.with_columns(pl.col(c).fill_nan(None) for c in floats)


def summarize(counts: pl.DataFrame, spec: FunnelSpec) -> pl.DataFrame:
    """Rates, Wilson intervals, time quantiles and (with a breakdown) group-vs-rest tests."""
    moved, previous = counts["n_moved_on"].to_numpy(), counts["n_previous"].to_numpy()
    reached_first, first = counts["n_from_first"].to_numpy(), counts["n_first"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        from_previous = np.where(previous > 0, moved / np.maximum(previous, 1), np.nan)
        from_first = np.where(first > 0, reached_first / np.maximum(first, 1), np.nan)
    prev_low, prev_high = wilson_interval(moved, previous)
    first_low, first_high = wilson_interval(reached_first, first)
    labels = spec.step_labels()
    columns: dict[str, Any] = {}
    if spec.by:
        columns[spec.by] = counts["group_value"]
    columns |= {
        "step_index": counts["step_index"].cast(pl.Int64),
        "step": [labels[i - 1] for i in counts["step_index"].to_list()],
        "n_entered": counts["n_entered"].cast(pl.Int64),
        "conversion_from_previous": from_previous,
        "conversion_from_previous_low": prev_low,
        "conversion_from_previous_high": prev_high,
        "conversion_from_first": from_first,
        "conversion_from_first_low": first_low,
        "conversion_from_first_high": first_high,
        "n_dropped": counts["n_dropped"].cast(pl.Int64),
    }
    for source, suffix in (("quantiles_from_previous", "from_previous"), ("quantiles_from_first", "from_first")):
        lists = counts[source].to_list()
        for position, name in enumerate(QUANTILE_NAMES):
            columns[f"{name}_seconds_{suffix}"] = [None if q is None else q[position] for q in lists]
    frame = pl.DataFrame(columns, schema_overrides={
        f"{name}_seconds_{suffix}": pl.Float64 for name in QUANTILE_NAMES for suffix in ("from_previous", "from_first")
    })
    frame = frame.select(
        *([spec.by] if spec.by else []), "step_index", "step", "n_entered",
        "conversion_from_previous", "conversion_from_previous_low", "conversion_from_previous_high",
        "conversion_from_first", "conversion_from_first_low", "conversion_from_first_high", "n_dropped",
        *(f"{q}_seconds_from_previous" for q in ("median", "p25", "p75", "p90")),
        *(f"{q}_seconds_from_first" for q in ("median", "p25", "p75", "p90")),
    )
    if spec.by:
        frame = frame.join(_group_tests(counts, spec), on=spec.by, how="left", maintain_order="left")
    return _nan_to_null(frame)


def _group_tests(counts: pl.DataFrame, spec: FunnelSpec) -> pl.DataFrame:
    """Each group against all the others on the final conversion (n_from_first of the last step /
    n_first): pooled two-proportion z-test, Benjamini-Hochberg across the groups."""
    last = counts.filter(pl.col("step_index") == spec.n_steps).sort("group_value")
    x, n = last["n_from_first"].to_numpy().astype(float), last["n_first"].to_numpy().astype(float)
    z, p = two_proportion_test(x, n, x.sum() - x, n.sum() - n)
    return pl.DataFrame(
        {
            spec.by: last["group_value"],
            "vs_rest_z": z,
            "vs_rest_p_value": p,
            "vs_rest_p_adjusted": benjamini_hochberg(p),
        },
        schema_overrides={"vs_rest_z": pl.Float64, "vs_rest_p_value": pl.Float64, "vs_rest_p_adjusted": pl.Float64},
    )


# -- public API ----------------------------------------------------------------------------------


def funnel(
    db: Database,
    steps: str | Sequence[str],
    *,
    mode: Mode = "ordered",
    scope: Scope = "user",
    window: Duration = None,
    step_windows: Sequence[Duration] | str | None = None,
    exclude: Sequence[str] | str = (),
    count: Count | None = None,
    by: By | None = None,
    variant_key: str | None = None,
    segments: Segments | None = None,
) -> pl.DataFrame:
    """One row per step (per breakdown group): n_entered, conversion from the previous and the
    first step with 95% Wilson intervals, n_dropped, and time quantiles in seconds.

    >>> funnel(db, "view_item,add_to_cart,begin_checkout,purchase", window="7d", by="device")
    """
    spec = funnel_spec(
        db, steps, mode=mode, scope=scope, window=window, step_windows=step_windows, exclude=exclude,
        count=count, by=by, variant_key=variant_key, segments=segments,
    )
    return run_funnel(db, spec)


def run_funnel(db: Database, spec: FunnelSpec) -> pl.DataFrame:
    with _units_table(db, spec):
        counts = _run(db, "funnel_steps", {
            "n_steps": spec.n_steps,
            # only users counted over session journeys have several units each
            "units_are_entities": not (spec.count == "users" and spec.scope == "session"),
        })
    return summarize(counts, spec)


def funnel_dropped(db: Database, steps: str | Sequence[str], at: int, **options: Any) -> pl.DataFrame:
    """The journeys that entered step ``at`` and did not continue into the next step (drill-down):
    ``user_key`` (scope user) or ``session_key`` and ``user_key`` (scope session), sorted."""
    spec = funnel_spec(db, steps, **options)
    return run_dropped(db, spec, at)


def run_dropped(db: Database, spec: FunnelSpec, at: int) -> pl.DataFrame:
    _check_step(spec, at, "dropped-at step")
    with _units_table(db, spec):
        frame = _run(db, "funnel_dropped", {"step": at})
    if spec.scope == "session":
        frame = frame.rename({"journey_key": "session_key"})
    else:
        frame = frame.drop("journey_key")
    if spec.by:
        return frame.rename({"group_value": spec.by})
    return frame.drop("group_value")


def funnel_why(
    db: Database, steps: str | Sequence[str], at: int, *, min_count: int = 5, **options: Any
) -> pl.DataFrame:
    """What is over- or under-represented among those who dropped at step ``at`` (versus those who
    continued): attributes and the events/touchpoints seen before the step, with odds ratios of
    dropping (Woolf 95% interval, Haldane correction on zero cells), chi-square p-values and
    Benjamini-Hochberg adjusted p-values; most significant first."""
    spec = funnel_spec(db, steps, **options)
    return run_why(db, spec, at, min_count=min_count)


def run_why(db: Database, spec: FunnelSpec, at: int, *, min_count: int = 5) -> pl.DataFrame:
    _check_step(spec, at, "why step")
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise FunnelError(f"min_count must be a whole number of at least 1, not {min_count!r}")
    with _units_table(db, spec):
        counts = _run(db, "funnel_why", {"scope": spec.scope, "step": at, "min_count": min_count})
    a = counts["n_dropped_with"].to_numpy().astype(float)
    n_with = counts["n_with"].to_numpy().astype(float)
    n_units = counts["n_units"].to_numpy().astype(float)
    n_dropped = counts["n_dropped"].to_numpy().astype(float)
    b, c = n_with - a, n_dropped - a
    d = (n_units - n_with) - c
    ratio, low, high, p = odds_ratio(a, b, c, d)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame = pl.DataFrame({
            "step_index": [at] * counts.height,
            "step": [spec.step_labels()[at - 1]] * counts.height,
            "feature_kind": counts["feature_kind"],
            "feature": counts["feature"],
            "n_with": counts["n_with"].cast(pl.Int64),
            "n_dropped_with": counts["n_dropped_with"].cast(pl.Int64),
            "drop_rate_with": a / n_with,
            "n_without": (n_units - n_with).astype(np.int64),
            "n_dropped_without": c.astype(np.int64),
            "drop_rate_without": c / (n_units - n_with),
            "odds_ratio": ratio,
            "odds_ratio_low": low,
            "odds_ratio_high": high,
            "p_value": p,
            "p_adjusted": benjamini_hochberg(p),
        }, schema_overrides={"step_index": pl.Int64, "step": pl.Utf8})
    strength = pl.col("odds_ratio").log().abs()
    return _nan_to_null(frame).sort(
        [pl.col("p_adjusted"), strength, "feature_kind", "feature"],
        descending=[False, True, False, False], nulls_last=True,
    )
