"""Segments: config validation with suggestions, every filter operator compiled and run on literal
users, bound parameters (a SQL payload is a literal), built-in families, value tiers, summary, CLI."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from pipeline.build import build
from pipeline.config import ConfigError, load
from pipeline.db import Database
from pipeline.metrics import stats
from pipeline.metrics.segments import (
    Segment,
    SegmentError,
    builtin_segments,
    compile_segments,
    from_config,
    segment_members,
    segment_summary,
    segments,
)
from tests.conftest import REPO, load_events, make_journeys

SITE = "https://shop.example.com"
# ana: one session, mobile in DE via paid search, buys 30.
# ben: s1 desktop in FR, s2 (a day later) mobile in FR, buys 10 in s2.
# cy: tablet in US, lands on a sale page, never buys.
# dee: no device, DE, buys 20.
USERS = {
    "ana": [("view_item", 0, {"device": "mobile", "country": "DE", "source": "google", "medium": "cpc"}),
            ("purchase", 1, {"device": "mobile", "country": "DE", "revenue": 30.0})],
    "ben": [("view_item", 0, {"device": "desktop", "country": "FR"}),
            ("view_item", 1440, {"device": "mobile", "country": "FR"}),
            ("purchase", 1441, {"device": "mobile", "country": "FR", "revenue": 10.0})],
    "cy": [("page_view", 0, {"device": "tablet", "country": "US", "page_url": f"{SITE}/sale?x=1"})],
    "dee": [("view_item", 0, {"country": "DE"}), ("purchase", 1, {"country": "DE", "revenue": 20.0})],
}


@pytest.fixture
def people(db, cfg):
    load_events(db, make_journeys(USERS))
    build(db, cfg)
    return db


def _members(db, *filters, match="all"):
    return segment_members(db, Segment.of("s", *filters, match=match))


@pytest.mark.parametrize(("filters", "expected"), [
    ((("device", "eq", "mobile"),), ["ana", "ben"]),  # ben's second session is on mobile
    ((("first_device", "eq", "mobile"),), ["ana"]),
    ((("first_device", "ne", "mobile"),), ["ben", "cy", "dee"]),  # ne also matches dee's missing device
    ((("first_device", "in", ["mobile", "tablet"]),), ["ana", "cy"]),
    ((("first_device", "not_in", ["mobile", "tablet"]),), ["ben", "dee"]),
    ((("revenue", "gt", 10),), ["ana", "dee"]),
    ((("revenue", "ge", 10),), ["ana", "ben", "dee"]),
    ((("revenue", "lt", 10),), ["cy"]),
    ((("revenue", "le", 10),), ["ben", "cy"]),
    ((("n_sessions", "ge", 2),), ["ben"]),
    ((("n_sessions", "in", [1]),), ["ana", "cy", "dee"]),
    ((("landing_page", "contains", "sale"),), ["cy"]),
    ((("is_customer", "eq", True),), ["ana", "ben", "dee"]),
    ((("session_started_at", "ge", dt.datetime(2025, 1, 7)),), ["ben"]),
    ((("first_seen_at", "lt", "2025-01-07"),), ["ana", "ben", "cy", "dee"]),
    ((("visitor_type", "eq", "returning"),), ["ben"]),
    ((("entry_touchpoint", "eq", "landing_page"),), ["cy"]),
    ((("channel", "eq", "Paid Search"),), ["ana"]),
    # all: the filters hold on one session; ben was mobile and in FR in s2, never desktop in DE
    ((("device", "eq", "mobile"), ("country", "eq", "FR")), ["ben"]),
    ((("device", "eq", "desktop"), ("country", "eq", "DE")), []),
], ids=lambda v: str(v)[:60])
def test_every_operator_on_literal_users(people, filters, expected):
    assert _members(people, *filters) == expected


def test_match_any_and_value_tiers(people):
    either = _members(people, ("first_device", "eq", "tablet"), ("first_country", "eq", "FR"), match="any")
    assert either == ["ben", "cy"]
    # buyers' revenue 10 (ben), 20 (dee), 30 (ana): terciles by quantile_cont at 1/3 and 2/3 are 16.67 and
    # 23.33, so ben is low, dee mid, ana high; cy bought nothing
    tiers = {t: _members(people, ("value_tier", "eq", t)) for t in ("none", "low", "mid", "high")}
    assert tiers == {"none": ["cy"], "low": ["ben"], "mid": ["dee"], "high": ["ana"]}


def test_sql_in_a_value_is_a_literal(people):
    payload = "x' or 1=1 --"
    assert _members(people, ("device", "eq", payload)) == []
    assert _members(people, ("device", "in", [payload, "') or ('1'='1"])) == []
    assert _members(people, ("landing_page", "contains", "%' or '1'='1")) == []
    # the name is bound too: it comes back unchanged and nothing is dropped
    evil = Segment.of("x'); drop table staging.stg_users; --", ("device", "eq", "mobile"))
    assert segment_members(people, evil) == ["ana", "ben"]
    assert people.has_table("staging", "stg_users")
    sql, params = compile_segments([Segment.of("s", ("device", "eq", payload))])
    assert payload not in sql and params["s0_f0"] == payload and "$s0_f0" in sql


def test_compiled_sql_uses_only_closed_columns_and_parameters():
    sql, params = compile_segments([
        Segment.of("a", ("device", "in", ["mobile"]), ("revenue", "gt", 5)),
        Segment.of("b", ("country", "ne", "DE"), match="any"),
    ])
    assert "coalesce(list_contains(cast($s0_f0 as varchar[]), device), false)" in sql
    assert "(revenue > cast($s0_f1 as double))" in sql
    assert "country is distinct from cast($s1_f0 as varchar)" in sql
    assert params == {"s0_f0": ["mobile"], "s0_f1": 5.0, "s0_name": "a", "s1_f0": "DE", "s1_name": "b"}


@pytest.mark.parametrize(("toml", "message"), [
    ('[[segments]]\nname = "m"\nfilters = [{field = "devise", op = "eq", value = "mobile"}]\n',
     "segments[0].filters[0].field 'devise' is not a segment field; did you mean 'device'?"),
    ('[[segments]]\nname = "m"\nfilters = [{field = "device", op = "not_int", value = ["a"]}]\n',
     "did you mean 'not_in'?"),
    ('[[segments]]\nname = "m"\nfilters = [{field = "device", op = "gt", value = "a"}]\n',
     "op 'gt' does not apply to text field 'device'; valid: eq, ne, in, not_in, contains"),
    ('[[segments]]\nname = "m"\nfilters = [{field = "revenue", op = "gt", value = "lots"}]\n',
     "value for revenue must be a number"),
    ('[[segments]]\nname = "m"\nfilters = [{field = "device", op = "in", value = "mobile"}]\n',
     "must be a non-empty array for op 'in'"),
    ('[[segments]]\nname = "m"\nmatch = "every"\nfilters = [{field = "device", op = "eq", value = "a"}]\n',
     "segments[0].match = 'every' is not allowed"),
    ('[[segments]]\nname = "m"\nfilter = []\n', "unknown key segments[0].filter; did you mean 'filters'?"),
    ('[[segments]]\nname = "m"\nfilters = [{field = "device", op = "eq"}]\n', "filters[0] needs a value"),
    ('[[segments]]\nname = "m"\nfilters = [{field = "device", op = "eq", value = "a"}]\n'
     '[[segments]]\nname = "m"\nfilters = [{field = "device", op = "eq", value = "b"}]\n', "'m' is used twice"),
    ("segments = 3\n", "segments must be an array of tables"),
    ("[segmnts]\nx = 1\n", "did you mean 'segments'?"),
])
def test_config_segments_are_validated_with_suggestions(tmp_path, toml, message):
    path = tmp_path / "journeys.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert message in str(err.value) and "journeys.toml" in str(err.value)


def test_config_segments_load_and_resolve(people, tmp_path):
    path = tmp_path / "journeys.toml"
    path.write_text(
        '[[segments]]\nname = "mobile_de"\nmatch = "all"\n'
        'filters = [{field = "device", op = "eq", value = "mobile"}, {field = "country", op = "eq", value = "DE"}]\n'
        '[[segments]]\nname = "since_jan_7"\n'
        'filters = [{field = "session_started_at", op = "ge", value = 2025-01-07}]\n'
    )
    cfg = load(path)
    assert cfg["segments"][1]["filters"][0]["value"] == dt.datetime(2025, 1, 7)
    chosen = from_config(cfg)
    assert [s.name for s in chosen] == ["mobile_de", "since_jan_7"]
    known = segments(people, cfg)
    assert segment_members(people, "mobile_de", cfg) == ["ana"]
    assert segment_members(people, known["since_jan_7"]) == ["ben"]
    with pytest.raises(SegmentError, match="did you mean 'mobile_de'"):
        segment_members(people, "mobile_d", cfg)
    clash = {"segments": [{"name": "device:mobile", "filters": [{"field": "device", "op": "eq", "value": "x"}]}]}
    with pytest.raises(SegmentError, match="is a built-in segment"):
        segments(people, clash)
    with pytest.raises(SegmentError, match="did you mean 'revenue'"):
        Segment.of("bad", ("revenu", "gt", 1))


def test_builtin_segments_and_summary(people):
    names = [s.name for s in builtin_segments(people)]
    assert names == [
        "visitor_type:new", "visitor_type:returning", "device:desktop", "device:mobile", "device:tablet",
        "acquisition_channel:Direct", "acquisition_channel:Paid Search", "country:DE", "country:FR", "country:US",
        "value_tier:none", "value_tier:low", "value_tier:mid", "value_tier:high",
    ]
    summary = segment_summary(people, builtin_segments(people))
    rows = {r["segment"]: r for r in summary.iter_rows(named=True)}
    # DE: ana and dee, both buy (30 + 20); one session each
    de = rows["country:DE"]
    assert (de["n_users"], de["n_customers"], de["n_sessions"], de["revenue"]) == (2, 2, 2, 50.0)
    assert de["share_of_users"] == pytest.approx(2 / 4) and de["revenue_per_user"] == pytest.approx(25.0)
    # new (one session): ana, cy, dee -> 2 customers of 3
    new = rows["visitor_type:new"]
    assert (new["n_users"], new["n_customers"]) == (3, 2)
    low, high = stats.wilson_interval(2, 3)
    assert (new["conversion_rate_low"], new["conversion_rate_high"]) == (pytest.approx(low), pytest.approx(high))
    empty = segment_summary(people, [Segment.of("nobody", ("device", "eq", "watch"))]).row(0, named=True)
    assert (empty["n_users"], empty["conversion_rate"]) == (0, None)


def test_segments_command(tmp_path, cfg):
    path = tmp_path / "cli.duckdb"
    database = Database(path)
    load_events(database, make_journeys(USERS))
    build(database, cfg)
    database.close()
    toml = tmp_path / "journeys.toml"
    toml.write_text('[[segments]]\nname = "mobile_de"\n'
                    'filters = [{field = "device", op = "eq", value = "mobile"}, {field = "country", op = "eq", '
                    'value = "DE"}]\n')
    run = subprocess.run([sys.executable, "-m", "pipeline", "segments", "--db", str(path), "--config", str(toml),
                          "--segment", "mobile_de", "--segment", "country:DE", "--format", "json"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    assert [(r["segment"], r["n_users"]) for r in json.loads(run.stdout)] == [("mobile_de", 1), ("country:DE", 2)]
    bad = subprocess.run([sys.executable, "-m", "pipeline", "segments", "--db", str(path), "--segment", "mobile"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 2 and "unknown segment 'mobile'" in bad.stderr
