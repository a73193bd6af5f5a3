"""staging.stg_identity / stg_events / stg_sessions / stg_users on literal rows, exact expected output."""

from __future__ import annotations

import datetime as dt

from pipeline.build import build, model_params
from tests.conftest import T0, load_events, make_journeys


def _build(db, cfg, frame):
    load_events(db, frame)
    return build(db, cfg)


def test_sessions_split_on_inactivity_exactly_at_the_timeout(db, cfg):
    # gaps: 30 min (same session: the rule is "more than"), then 31 min (new session)
    frame = make_journeys({"u1": [("page_view", 0), ("view_item", 30), ("add_to_cart", 61)]})
    _build(db, cfg, frame)
    events = db.query("select event_id, session_key, session_index, session_event_index from staging.stg_events "
                      "order by event_id")
    assert events.rows() == [("u1-0", "u1:1", 1, 1), ("u1-1", "u1:1", 1, 2), ("u1-2", "u1:2", 2, 1)]


def test_timeout_is_configurable(db, cfg):
    cfg["sessions"]["timeout_minutes"] = 10
    frame = make_journeys({"u1": [("page_view", 0), ("view_item", 11), ("add_to_cart", 20)]})
    _build(db, cfg, frame)
    assert db.scalar("select count(*) from staging.stg_sessions") == 2


def test_source_session_ids_kept_when_asked(db, cfg):
    frame = make_journeys({"u1": [
        ("page_view", 0, {"session_id": "s1"}),
        ("view_item", 1, {"session_id": "s2"}),
        ("view_item", 200, {"session_id": "s2"}),
    ]})
    _build(db, cfg, frame)
    assert db.scalar("select count(*) from staging.stg_sessions") == 2  # inactivity: 0-1 | 200
    cfg["sessions"]["session_source"] = "source"
    build(db, cfg)
    sessions = db.query("select source_session_id, n_events from staging.stg_sessions order by session_index")
    assert sessions.rows() == [("s1", 1), ("s2", 2)]


def test_identity_stitching_joins_earlier_anonymous_events(db, cfg):
    frame = make_journeys({
        "visit": [
            ("page_view", 0, {"user_id": None, "anonymous_id": "a1"}),
            ("view_item", 5, {"user_id": None, "anonymous_id": "a1"}),
            ("sign_up", 300, {"user_id": "u7", "anonymous_id": "a1"}),
            ("purchase", 305, {"user_id": "u7", "anonymous_id": "a2", "revenue": 20.0}),
        ],
        "stranger": [("page_view", 0, {"user_id": None, "anonymous_id": "a9"})],
    })
    _build(db, cfg, frame)
    keys = db.query("select event_id, user_key from staging.stg_events order by event_id").rows()
    assert keys == [("stranger-0", "a9"), ("visit-0", "u7"), ("visit-1", "u7"), ("visit-2", "u7"), ("visit-3", "u7")]
    users = db.query("select user_key, n_sessions, n_events, n_purchases, revenue, is_customer "
                     "from staging.stg_users order by user_key").rows()
    assert [u[:4] for u in users] == [("a9", 1, 1, 0), ("u7", 2, 4, 1)]
    assert float(users[1][4]) == 20.0 and users[1][5] is True


def test_channel_grouping_from_source_medium_and_given_channel_kept(db, cfg):
    cases = {
        "g_cpc": ("google", "cpc", None, "Paid Search"),
        "g_org": ("Google", "organic", None, "Organic Search"),
        "fb_paid": ("facebook", "paid_social", None, "Paid Social"),
        "fb": ("facebook", "social", None, "Organic Social"),
        "mail": ("newsletter", "email", None, "Email"),
        "ref": ("blog.example.org", "referral", None, "Referral"),
        "direct": (None, None, None, "Direct"),
        "direct2": ("(direct)", "(none)", None, "Direct"),
        "disp": ("google", "display", None, "Display"),
        "aff": ("partner", "affiliate", None, "Affiliates"),
        "odd": ("someone", "carrier_pigeon", None, "Other"),
        "given": ("google", "cpc", "TV", "TV"),
    }
    frame = make_journeys({
        name: [("page_view", 0, {"source": s, "medium": m, "channel": c})] for name, (s, m, c, _) in cases.items()
    })
    _build(db, cfg, frame)
    got = dict(db.query("select user_key, channel from staging.stg_sessions").rows())
    assert got == {name: expected for name, (*_, expected) in cases.items()}


def test_session_attributes_exact(db, cfg):
    frame = make_journeys({"u1": [
        ("page_view", 0, {"page_url": "/home", "source": "google", "medium": "cpc", "campaign": "brand",
                          "device": "mobile", "country": "DE"}),
        ("view_item", 2, {"page_url": "/product/1", "source": "google", "medium": "cpc", "device": "mobile"}),
        ("purchase", 5, {"page_url": "/thanks", "revenue": 12.5}),
        ("purchase", 6, {"page_url": "/thanks", "revenue": 7.5}),
    ]})
    _build(db, cfg, frame)
    row = db.query("select * from staging.stg_sessions").to_dicts()[0]
    assert row["session_key"] == "u1:1"
    assert row["started_at"] == T0 and row["ended_at"] == T0 + dt.timedelta(minutes=6)
    assert row["duration_seconds"] == 360
    assert (row["n_events"], row["n_purchases"], row["has_purchase"]) == (4, 2, True)
    assert float(row["revenue"]) == 20.0
    assert (row["entry_source"], row["entry_medium"], row["entry_campaign"], row["channel"]) == (
        "google", "cpc", "brand", "Paid Search")
    assert (row["landing_page"], row["exit_page"], row["device"], row["country"]) == (
        "/home", "/thanks", "mobile", "DE")


def test_every_event_in_exactly_one_session_and_order_invariant(db, cfg, tmp_path):
    spec = {f"u{i}": [("page_view", m) for m in (0, 10, 50, 51, 200, 230, 261)] for i in range(5)}
    frame = make_journeys(spec)
    _build(db, cfg, frame)
    first = db.query("select event_id, session_key from staging.stg_events order by event_id")
    assert first.height == frame.height and first["event_id"].n_unique() == frame.height
    # the same rows in another order give the same sessions
    from pipeline.db import Database

    other = Database(tmp_path / "other.duckdb")
    load_events(other, frame.sample(fraction=1.0, shuffle=True, seed=3))
    build(other, cfg)
    assert other.query("select event_id, session_key from staging.stg_events order by event_id").equals(first)
    other.close()


def test_model_params_name_every_parameter_the_models_use(cfg):
    from pipeline.build import discover_models
    from pipeline.db import load_sql, sql_params

    used = set().union(*(sql_params(load_sql(m)) for models in discover_models().values() for m in models))
    assert used <= set(model_params(cfg))
