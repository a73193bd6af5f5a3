"""Each adapter on a small hand-written fixture in the real shape of its export, expected rows exact.

Fixtures: tests/fixtures/adapters/<format>/. Every fixture has a duplicate, a malformed or truncated
line and a row that breaks the contract, so the accounting n_read = n_loaded + n_duplicate +
n_quarantined is checked with every reason an adapter can produce.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from datetime import datetime as dt
from decimal import Decimal

import pytest

from pipeline.build import build
from pipeline.db import Database
from pipeline.ingest import ingest_files
from tests.conftest import REPO
from tests.ingest import formats

FIXTURES = REPO / "tests" / "fixtures" / "adapters"
COLUMNS = (
    "event_id, user_id, anonymous_id, session_id, ts, event_name, raw_event_name, source, medium, campaign, "
    "channel, page_url, referrer, product_id, revenue, currency, device, country"
)


FIELDS = tuple(c.strip() for c in COLUMNS.split(","))


def _row(event_id: str, **fields) -> tuple:
    """An expected raw.events row: the canonical columns in order (unnamed ones null), properties last."""
    unknown = set(fields) - set(FIELDS) - {"properties"}
    assert not unknown, unknown
    return (event_id, *(fields.get(name) for name in FIELDS[1:]), fields.get("properties"))


def _events(db: Database) -> list[tuple]:
    """raw.events in file order, every canonical column, properties parsed."""
    out = []
    for row in db.query(f"select {COLUMNS}, properties from raw.events order by file_id, row_number").rows():
        out.append((*row[:-1], json.loads(row[-1]) if row[-1] else None))
    return out


def _quarantine(db: Database) -> list[tuple]:
    return db.query(
        "select row_number, line_number, field, reason from raw.quarantine "
        "order by file_id, coalesce(row_number, line_number)"
    ).rows()


def _counts(result) -> tuple:
    return (result.status, result.format, result.n_read, result.n_loaded, result.n_duplicate, result.n_quarantined)


# -- GA4 -------------------------------------------------------------------------------------------

GA4_EVENTS = [
    _row(
        "ec7febc92c49ba0f6e19b42ca80683a5",
        anonymous_id="1432189245.1736154000",
        session_id="1432189245.1736154000:1736154000",
        ts=dt(2025, 1, 6, 9, 0, 0),
        event_name="session_start",
        raw_event_name="session_start",
        source="google",
        medium="cpc",
        campaign="winter_sale",
        page_url="https://shop.example.com/?utm_source=google&utm_medium=cpc&utm_campaign=winter_sale&email=[redacted]",
        device="desktop",
        country="DE",
        properties={
            "ga_session_number": 1,
            "page_title": "Shop",
            "event_date": "20250106",
            "stream_id": "4567890123",
            "platform": "WEB",
            "geo_country": "Germany",
            "traffic_source": {"name": "winter_sale", "medium": "cpc", "source": "google"},
        },
    ),
    _row(
        "c9e7eb896602d89773805cae54f1c8e5",
        anonymous_id="1432189245.1736154000",
        session_id="1432189245.1736154000:1736154000",
        ts=dt(2025, 1, 6, 9, 0, 0, 120000),
        event_name="page_view",
        raw_event_name="page_view",
        source="google",
        medium="cpc",
        campaign="winter_sale",
        page_url="https://shop.example.com/?utm_source=google&utm_medium=cpc&utm_campaign=winter_sale&email=[redacted]",
        referrer="https://www.google.com/",
        device="desktop",
        country="DE",
        properties={
            "ga_session_number": 1,
            "page_title": "Shop",
            "engaged_session_event": 1,
            "event_date": "20250106",
            "stream_id": "4567890123",
            "platform": "WEB",
            "geo_country": "Germany",
            "traffic_source": {"name": "winter_sale", "medium": "cpc", "source": "google"},
        },
    ),
    _row(
        "9ff3cd684b66ec2a820c7fc565fa8476",
        anonymous_id="1432189245.1736154000",
        session_id="1432189245.1736154000:1736154000",
        ts=dt(2025, 1, 6, 9, 1, 30),
        event_name="view_item",
        raw_event_name="view_item",
        page_url="https://shop.example.com/p/sku-1",
        product_id="SKU-1",
        currency="EUR",
        device="desktop",
        country="DE",
        properties={
            "value": 25.0,
            "event_date": "20250106",
            "stream_id": "4567890123",
            "platform": "WEB",
            "geo_country": "Germany",
            "traffic_source": {"name": "winter_sale", "medium": "cpc", "source": "google"},
        },
    ),
    _row(
        "e1619c02cecbfae1707da42763a1265d",
        anonymous_id="1432189245.1736154000",
        session_id="1432189245.1736154000:1736154000",
        ts=dt(2025, 1, 6, 9, 2, 10),
        event_name="add_to_cart",
        raw_event_name="add_to_cart",
        page_url="https://shop.example.com/p/sku-1",
        product_id="SKU-1",
        currency="EUR",
        device="desktop",
        country="DE",
        properties={
            "value": 25.0,
            "event_date": "20250106",
            "stream_id": "4567890123",
            "platform": "WEB",
            "geo_country": "Germany",
            "traffic_source": {"name": "winter_sale", "medium": "cpc", "source": "google"},
        },
    ),
    _row(
        "d02e96d4237d9f209d78cccac04bfef9",
        user_id="C1001",
        anonymous_id="1432189245.1736154000",
        session_id="1432189245.1736154000:1736154000",
        ts=dt(2025, 1, 6, 9, 3, 0),
        event_name="login",
        raw_event_name="login",
        device="desktop",
        country="DE",
        properties={
            "method": "email",
            "event_date": "20250106",
            "stream_id": "4567890123",
            "platform": "WEB",
            "geo_country": "Germany",
            "traffic_source": {"name": "winter_sale", "medium": "cpc", "source": "google"},
        },
    ),
    _row(
        "ee9662c7940af573c25e9f9e7a248529",
        user_id="C1001",
        anonymous_id="1432189245.1736154000",
        session_id="1432189245.1736154000:1736154000",
        ts=dt(2025, 1, 6, 9, 5, 0),
        event_name="purchase",
        raw_event_name="purchase",
        page_url="https://shop.example.com/checkout/done",
        product_id="SKU-1",
        revenue=Decimal("59.50"),
        currency="EUR",
        device="desktop",
        country="DE",
        properties={
            "value": 59.5,
            "event_date": "20250106",
            "stream_id": "4567890123",
            "platform": "WEB",
            "transaction_id": "T-1001",
            "geo_country": "Germany",
            "traffic_source": {"name": "winter_sale", "medium": "cpc", "source": "google"},
        },
    ),
    _row(
        "a8aa4b7e7239114189cab82d9a5ec38f",
        anonymous_id="987654321.1736160000",
        session_id="987654321.1736160000:1736160000",
        ts=dt(2025, 1, 6, 10, 40, 0),
        event_name="page_view",
        raw_event_name="page_view",
        page_url="https://shop.example.com/p/sku-2",
        device="mobile",
        country="CZ",
        properties={
            "ga_session_number": 3,
            "page_title": "Beanie Hat",
            "event_date": "20250106",
            "stream_id": "4567890123",
            "platform": "WEB",
            "geo_country": "Czechia",
            "traffic_source": {"name": "(direct)", "medium": "(none)", "source": "(direct)"},
        },
    ),
    _row(
        "4d1c598a8b5c539bbb4e6ad0cdf14bdb",
        anonymous_id="987654321.1736160000",
        session_id="987654321.1736160000:1736160000",
        ts=dt(2025, 1, 6, 10, 40, 20),
        event_name="scroll",
        raw_event_name="scroll",
        page_url="https://shop.example.com/p/sku-2",
        device="mobile",
        country="CZ",
        properties={
            "percent_scrolled": 90,
            "event_date": "20250106",
            "stream_id": "4567890123",
            "platform": "WEB",
            "geo_country": "Czechia",
            "traffic_source": {"name": "(direct)", "medium": "(none)", "source": "(direct)"},
        },
    ),
    _row(
        "a5ee3c1854a8753a0fa59b67dfdb8ef1",
        anonymous_id="555000111.1736170000",
        session_id="555000111.1736170000:1736170000",
        ts=dt(2025, 1, 6, 13, 26, 40),
        event_name="page_view",
        raw_event_name="page_view",
        source="google",
        medium="cpc",
        page_url="https://shop.example.com/",
        device="desktop",
        properties={
            "event_date": "20250106",
            "stream_id": "4567890123",
            "platform": "WEB",
            "geo_country": "(not set)",
            "traffic_source": {"name": "(direct)", "medium": "(none)", "source": "(direct)"},
        },
    ),
]


def test_ga4_export_maps_params_sessions_traffic_country_and_dedupes(db):
    [r] = ingest_files(db, [FIXTURES / "ga4" / "events_20250106.json"])
    assert _counts(r) == ("loaded", "ga4", 11, 9, 1, 1)
    assert r.message.startswith("detected ga4 (GA4 BigQuery export: keys event_timestamp, event_name, user_pseudo_id")
    assert r.epoch_units == ["us"]
    assert _events(db) == GA4_EVENTS
    assert _quarantine(db) == [(None, 8, "<line>", "malformed_json")]


def test_ga4_event_id_is_the_documented_hash(db):
    """md5 of event_date|stream_id|user_pseudo_id|ga_session_id|event_name|event_timestamp|event_params."""
    line = (FIXTURES / "ga4" / "events_20250106.json").read_text().splitlines()[0]
    event = json.loads(line)
    params = [
        {
            "key": p["key"],
            "value": {
                "string_value": p["value"]["string_value"],
                "int_value": None if p["value"]["int_value"] is None else int(p["value"]["int_value"]),
                "float_value": p["value"]["float_value"],
                "double_value": p["value"]["double_value"],
            },
        }
        for p in event["event_params"]
    ]
    session = next(p["value"]["int_value"] for p in event["event_params"] if p["key"] == "ga_session_id")
    text = "|".join(
        [
            event["event_date"],
            event["stream_id"],
            event["user_pseudo_id"],
            session,
            event["event_name"],
            event["event_timestamp"],
            json.dumps(params, separators=(",", ":")),
        ]
    )
    assert hashlib.md5(text.encode()).hexdigest() == GA4_EVENTS[0][0]


def test_ga4_items_go_to_a_side_table_one_row_per_item(db):
    ingest_files(db, [FIXTURES / "ga4" / "events_20250106.json"])
    items = db.query(
        "select event_id, item_index, item_id, item_name, item_brand, item_category, item_category2, price, quantity "
        "from raw.ga4_items order by event_id, item_index"
    ).rows()
    view, cart, purchase = GA4_EVENTS[2][0], GA4_EVENTS[3][0], GA4_EVENTS[5][0]
    scarf = ("SKU-1", "Wool Scarf", "Nordwind", "Accessories", "Scarves", Decimal("25.00"), 1)
    hat = ("SKU-2", "Beanie Hat", "Nordwind", "Accessories", "Hats", Decimal("34.50"), 1)
    assert items == sorted([(view, 1, *scarf), (cart, 1, *scarf), (purchase, 1, *scarf), (purchase, 2, *hat)])


def test_ga4_parquet_export_loads_the_same_events_as_ndjson(tmp_path):
    ndjson = formats.write_ga4(formats.journeys(), tmp_path / "events_20250106.json")
    parquet = formats.ga4_parquet(ndjson, tmp_path / "events_20250106.parquet")
    loaded = {}
    for path in (ndjson, parquet):
        with Database(tmp_path / f"{path.suffix[1:]}.duckdb") as db:
            [r] = ingest_files(db, [path])
            assert (r.format, r.kind, r.n_quarantined) == ("ga4", path.suffix[1:].replace("json", "ndjson"), 0)
            loaded[path.suffix] = (
                _events(db),
                db.query("select * exclude (file_id) from raw.ga4_items order by event_id, item_index").rows(),
            )
    assert loaded[".json"] == loaded[".parquet"]
    assert len(loaded[".json"][0]) == 22 and len(loaded[".json"][1]) == 22


def test_reloading_a_ga4_day_replaces_that_day_atomically(db, tmp_path, monkeypatch):
    day = FIXTURES / "ga4" / "events_20250106.json"
    [first] = ingest_files(db, [day])
    other_day = tmp_path / "events_20250107.json"
    other = json.loads(day.read_text().splitlines()[0])
    other.update(event_date="20250107", event_timestamp="1736240400000000")
    other_day.write_text(json.dumps(other) + "\n")
    ingest_files(db, [other_day])
    # GA4 rewrites the last three days: the new export of 2025-01-06 lost the scroll and gained a purchase
    lines = [json.loads(x) for x in day.read_text().splitlines() if x.startswith("{") and x.endswith("}")]
    lines = [x for x in lines if x["event_name"] != "scroll"]
    extra = dict(lines[-1], event_name="purchase", event_timestamp="1736170100000000")
    rewrite = tmp_path / "rewrite" / "events_20250106.json"
    rewrite.parent.mkdir()
    rewrite.write_text("".join(json.dumps(x) + "\n" for x in [*lines, extra]))
    before = {t: db.table(t) for t in ("raw.events", "raw.ga4_items", "raw.manifest")}

    import pipeline.ingest as ingest_mod

    real_load_sql = ingest_mod.load_sql

    def failing_items(relpath):  # the side table is written after the day's deletion and the new events
        if relpath.endswith("ga4_items.sql"):
            raise OSError("disk full (injected after the day was replaced)")
        return real_load_sql(relpath)

    monkeypatch.setattr(ingest_mod, "load_sql", failing_items)
    with pytest.raises(OSError):
        ingest_files(db, [rewrite])
    monkeypatch.undo()
    for table, frame in before.items():
        assert db.table(table).equals(frame), table

    [again] = ingest_files(db, [rewrite])
    assert _counts(again) == ("loaded", "ga4", 10, 9, 1, 0)
    assert again.n_replaced == 9 and "replaced 9 events of day(s) 20250106" in again.message
    days = db.query(
        "select properties ->> 'event_date' as day, event_name, file_id from raw.events order by day, ts"
    ).rows()
    assert [d for d in days if d[0] == "20250107"] == [("20250107", "session_start", 2)]
    jan6 = [(name, file_id) for d, name, file_id in days if d == "20250106"]
    assert jan6 == [
        (name, 3)
        for name in (
            "session_start",
            "page_view",
            "view_item",
            "add_to_cart",
            "login",
            "purchase",
            "page_view",
            "page_view",
            "purchase",
        )
    ]
    # the first load's items went with its events; the new file's four items replaced them
    assert db.query("select file_id, count(*) from raw.ga4_items group by file_id").rows() == [(3, 4)]
    manifest = db.query("select file_id, format, kind, n_loaded, n_replaced from raw.manifest order by file_id").rows()
    assert manifest == [(1, "ga4", "ndjson", 9, 0), (2, "ga4", "ndjson", 1, 0), (3, "ga4", "ndjson", 9, 9)]
    assert first.n_loaded == 9


# -- Segment ---------------------------------------------------------------------------------------

SEGMENT_EVENTS = [
    _row(
        "ajs-next-1736154000000-0001",
        anonymous_id="anon-7f3a",
        ts=dt(2025, 1, 6, 9, 0, 0, 500000),
        event_name="page_view",
        raw_event_name="page",
        source="newsletter",
        medium="email",
        campaign="jan_promo",
        page_url="https://shop.example.com/?utm_source=newsletter&utm_medium=email&utm_campaign=jan_promo&email=[redacted]",
        referrer="https://www.google.com/",
        country="DE",
        properties={
            "path": "/",
            "title": "Nordwind Shop",
            "type": "page",
            "name": "Home",
            "sentAt": "2025-01-06T09:00:00.200Z",
            "receivedAt": "2025-01-06T09:00:00.700Z",
            "campaign_content": "hero_banner",
        },
    ),
    _row(
        "ajs-next-1736154090000-0002",
        anonymous_id="anon-7f3a",
        ts=dt(2025, 1, 6, 9, 1, 30, 300000),
        event_name="view_item",
        raw_event_name="Product Viewed",
        page_url="https://shop.example.com/p/sku-1",
        referrer="https://shop.example.com/",
        product_id="SKU-1",
        currency="EUR",
        country="DE",
        properties={
            "product_id": "SKU-1",
            "sku": "NW-SCARF-G",
            "category": "Accessories",
            "name": "Wool Scarf",
            "brand": "Nordwind",
            "variant": "grey",
            "price": 25.0,
            "quantity": 1,
            "currency": "EUR",
            "type": "track",
            "sentAt": "2025-01-06T09:01:30.000Z",
            "receivedAt": "2025-01-06T09:01:30.300Z",
        },
    ),
    _row(
        "ajs-next-1736154150000-0003",
        user_id="C2002",
        anonymous_id="anon-7f3a",
        ts=dt(2025, 1, 6, 9, 2, 30, 200000),
        event_name="identify",
        raw_event_name="identify",
        page_url="https://shop.example.com/login",
        properties={"type": "identify", "sentAt": "2025-01-06T09:02:30.100Z", "receivedAt": "2025-01-06T09:02:30.300Z"},
    ),
    _row(
        "ajs-next-1736154200000-0004",
        user_id="C2002",
        anonymous_id="anon-7f3a",
        ts=dt(2025, 1, 6, 9, 3, 20, 400000),
        event_name="add_to_cart",
        raw_event_name="Product Added",
        page_url="https://shop.example.com/p/sku-1",
        product_id="SKU-1",
        currency="EUR",
        properties={
            "cart_id": "c-88",
            "product_id": "SKU-1",
            "name": "Wool Scarf",
            "price": 25.0,
            "quantity": 1,
            "currency": "EUR",
            "type": "track",
            "sentAt": "2025-01-06T09:03:20.000Z",
            "receivedAt": "2025-01-06T09:03:20.400Z",
        },
    ),
    _row(
        "ajs-next-1736154300000-0005",
        user_id="C2002",
        anonymous_id="anon-7f3a",
        ts=dt(2025, 1, 6, 9, 5, 0),
        event_name="begin_checkout",
        raw_event_name="Checkout Started",
        page_url="https://shop.example.com/checkout",
        product_id="SKU-1",
        currency="EUR",
        properties={
            "order_id": "O-77",
            "value": 59.5,
            "revenue": 59.5,
            "currency": "EUR",
            "products": [
                {"product_id": "SKU-1", "price": 25.0, "quantity": 1},
                {"product_id": "SKU-2", "price": 34.5, "quantity": 1},
            ],
            "type": "track",
            "sentAt": "2025-01-06T09:05:00.000Z",
            "receivedAt": "2025-01-06T09:05:00.000Z",
        },
    ),
    _row(
        "ajs-next-1736154420000-0006",
        user_id="C2002",
        anonymous_id="anon-7f3a",
        ts=dt(2025, 1, 6, 9, 7, 0, 250000),
        event_name="purchase",
        raw_event_name="Order Completed",
        page_url="https://shop.example.com/checkout/done",
        product_id="SKU-1",
        revenue=Decimal("59.50"),
        currency="EUR",
        properties={
            "checkout_id": "chk-1",
            "order_id": "O-77",
            "affiliation": "Online Store",
            "total": 64.45,
            "subtotal": 59.5,
            "revenue": 59.5,
            "shipping": 4.95,
            "tax": 0,
            "currency": "eur",
            "products": [
                {"product_id": "SKU-1", "sku": "NW-SCARF-G", "name": "Wool Scarf", "price": 25.0, "quantity": 1},
                {"product_id": "SKU-2", "sku": "NW-HAT-N", "name": "Beanie Hat", "price": 34.5, "quantity": 1},
            ],
            "type": "track",
            "sentAt": "2025-01-06T09:07:00.000Z",
            "receivedAt": "2025-01-06T09:07:00.250Z",
        },
    ),
    _row(
        "srv-5c1d-0007",
        user_id="C2002",
        ts=dt(2025, 1, 6, 9, 8, 2),
        event_name="newsletter_subscribed",
        raw_event_name="Newsletter Subscribed",
        properties={
            "list": "weekly",
            "type": "track",
            "sentAt": "2025-01-06T09:08:01.000Z",
            "receivedAt": "2025-01-06T09:08:03.000Z",
            "originalTimestamp": "2025-01-06T09:08:00.000Z",
        },
    ),
    _row(
        "ios-8e2f-0008",
        user_id="C2002",
        anonymous_id="5D3C6E1A-9B77-4F5E-8A1C-2F0B1A3C4D5E",
        ts=dt(2025, 1, 7, 18, 30, 2),
        event_name="screen_view",
        raw_event_name="screen",
        device="ios",
        country="DE",
        properties={
            "order_id": "O-77",
            "type": "screen",
            "name": "Order Status",
            "sentAt": "2025-01-07T18:30:10.000Z",
            "receivedAt": "2025-01-07T18:30:12.000Z",
        },
    ),
    _row(
        "ajs-next-1736160000000-0009",
        anonymous_id="anon-0b1c",
        ts=dt(2025, 1, 6, 10, 40, 0),
        event_name="view_item",
        raw_event_name="Product Viewed",
        product_id="SKU-9",
        properties={
            "product_id": "SKU-9",
            "type": "track",
            "sentAt": "not a time",
            "receivedAt": "2025-01-06T10:40:00.500Z",
        },
    ),
    _row(
        "ajs-next-1736160300000-0012",
        anonymous_id="anon-0b1c",
        ts=dt(2025, 1, 6, 10, 50, 0),
        event_name="search",
        raw_event_name="Products Searched",
        page_url="https://shop.example.com/search?q=wool+hat",
        properties={
            "query": "wool hat",
            "type": "track",
            "sentAt": "2025-01-06T10:45:05.000Z",
            "receivedAt": "2025-01-06T10:50:05.000Z",
        },
    ),
    _row(
        "srv-5c1d-0010",
        user_id="C0999",
        ts=dt(2025, 1, 6, 11, 0, 0),
        event_name="refund",
        raw_event_name="Order Refunded",
        revenue=Decimal("-20.00"),
        currency="EUR",
        properties={
            "order_id": "O-41",
            "total": 20,
            "currency": "EUR",
            "type": "track",
            "receivedAt": "2025-01-06T11:00:01.000Z",
        },
    ),
]


def test_segment_calls_map_names_campaigns_clock_skew_and_dedupe_on_message_id(db):
    [r] = ingest_files(db, [FIXTURES / "segment" / "calls.ndjson"])
    assert _counts(r) == ("loaded", "segment", 14, 11, 1, 2)
    assert "detected segment" in r.message
    assert _events(db) == SEGMENT_EVENTS
    assert _quarantine(db) == [
        (13, None, "user_id|anonymous_id", "missing_identity"),
        (None, 14, "<line>", "malformed_json"),
    ]
    # the duplicate messageId (line 5, a retry received later) is not loaded; the first copy is
    assert db.scalar("select row_number from raw.events where event_id = 'ajs-next-1736154200000-0004'") == 4


def test_segment_identify_stitches_the_anonymous_visit_to_the_customer(db, cfg):
    ingest_files(db, [FIXTURES / "segment" / "calls.ndjson"])
    build(db, cfg)
    assert db.query("select anonymous_id, user_id from staging.stg_identity order by anonymous_id").rows() == [
        ("5D3C6E1A-9B77-4F5E-8A1C-2F0B1A3C4D5E", "C2002"),
        ("anon-7f3a", "C2002"),
    ]
    keys = dict(db.query("select event_id, user_key from staging.stg_events").rows())
    assert keys["ajs-next-1736154000000-0001"] == "C2002"  # the anonymous landing page view
    assert keys["ajs-next-1736160000000-0009"] == "anon-0b1c"


# -- Snowplow --------------------------------------------------------------------------------------

SNOWPLOW_TSV_EVENTS = [
    _row(
        "4f8a7d2e-0c1b-4a5e-9f3d-1e2c3b4a5d01",
        anonymous_id="du-5b21",
        session_id="0b9c4a7e-4d1f-4d7e-9a1b-3c2d1e0f9a8b",
        ts=dt(2025, 1, 6, 9, 0, 0, 250000),
        event_name="page_view",
        raw_event_name="page_view",
        source="facebook",
        medium="paid_social",
        campaign="winter_sale",
        page_url="https://shop.example.com/?utm_source=facebook&utm_medium=paid_social&utm_campaign=winter_sale",
        referrer="https://l.facebook.com/",
        device="desktop",
        country="GB",
        properties={
            "app_id": "shop",
            "platform": "web",
            "event": "page_view",
            "event_vendor": "com.snowplowanalytics.snowplow",
            "collector_tstamp": "2025-01-06 09:00:00.350",
            "dvce_created_tstamp": "2025-01-06 09:00:00.100",
            "domain_sessionidx": "2",
            "network_userid": "nu-1f4e",
            "page_title": "Nordwind Shop",
            "refr_source": "Facebook",
            "refr_medium": "social",
            "geo_region": "ENG",
            "geo_city": "London",
        },
    ),
    _row(
        "4f8a7d2e-0c1b-4a5e-9f3d-1e2c3b4a5d02",
        anonymous_id="du-5b21",
        session_id="0b9c4a7e-4d1f-4d7e-9a1b-3c2d1e0f9a8b",
        ts=dt(2025, 1, 6, 9, 1, 30),
        event_name="view_item",
        raw_event_name="View Item",
        page_url="https://shop.example.com/p/sku-1",
        referrer="https://shop.example.com/",
        country="GB",
        properties={
            "app_id": "shop",
            "platform": "web",
            "event": "struct",
            "event_vendor": "com.google.analytics",
            "collector_tstamp": "2025-01-06 09:01:30.000",
            "dvce_created_tstamp": "2025-01-06 09:01:29.900",
            "domain_sessionidx": "2",
            "network_userid": "nu-1f4e",
            "se_category": "ecommerce",
            "se_label": "SKU-1",
            "se_property": "Accessories",
            "refr_medium": "internal",
            "geo_region": "ENG",
            "geo_city": "London",
        },
    ),
    _row(
        "4f8a7d2e-0c1b-4a5e-9f3d-1e2c3b4a5d03",
        anonymous_id="du-5b21",
        session_id="0b9c4a7e-4d1f-4d7e-9a1b-3c2d1e0f9a8b",
        ts=dt(2025, 1, 6, 9, 2, 10, 400000),
        event_name="add_to_cart",
        raw_event_name="add_to_cart",
        page_url="https://shop.example.com/p/sku-1",
        product_id="SKU-1",
        country="GB",
        properties={
            "app_id": "shop",
            "platform": "web",
            "event": "unstruct",
            "event_vendor": "com.snowplowanalytics.snowplow",
            "collector_tstamp": "2025-01-06 09:02:10.500",
            "domain_sessionidx": "2",
            "network_userid": "nu-1f4e",
            "refr_medium": "internal",
            "geo_region": "ENG",
            "geo_city": "London",
        },
    ),
    _row(
        "4f8a7d2e-0c1b-4a5e-9f3d-1e2c3b4a5d04",
        user_id="C3003",
        anonymous_id="du-5b21",
        session_id="0b9c4a7e-4d1f-4d7e-9a1b-3c2d1e0f9a8b",
        ts=dt(2025, 1, 6, 9, 5, 0, 500000),
        event_name="purchase",
        raw_event_name="transaction",
        page_url="https://shop.example.com/checkout/done?order=O-9001&email=[redacted]",
        revenue=Decimal("59.50"),
        currency="GBP",
        country="GB",
        properties={
            "app_id": "shop",
            "platform": "web",
            "event": "transaction",
            "event_vendor": "com.snowplowanalytics.snowplow",
            "collector_tstamp": "2025-01-06 09:05:00.700",
            "domain_sessionidx": "2",
            "network_userid": "nu-1f4e",
            "tr_orderid": "O-9001",
            "tr_affiliation": "web",
            "tr_tax": "9.92",
            "tr_shipping": "0.00",
            "refr_medium": "internal",
            "geo_region": "ENG",
            "geo_city": "London",
        },
    ),
    _row(
        "4f8a7d2e-0c1b-4a5e-9f3d-1e2c3b4a5d05",
        user_id="C3003",
        anonymous_id="du-5b21",
        session_id="0b9c4a7e-4d1f-4d7e-9a1b-3c2d1e0f9a8b",
        ts=dt(2025, 1, 6, 9, 5, 0, 510000),
        event_name="transaction_item",
        raw_event_name="transaction_item",
        page_url="https://shop.example.com/checkout/done?order=O-9001",
        product_id="SKU-1",
        currency="GBP",
        country="GB",
        properties={
            "app_id": "shop",
            "platform": "web",
            "event": "transaction_item",
            "event_vendor": "com.snowplowanalytics.snowplow",
            "collector_tstamp": "2025-01-06 09:05:00.700",
            "domain_sessionidx": "2",
            "network_userid": "nu-1f4e",
            "ti_orderid": "O-9001",
            "ti_name": "Wool Scarf",
            "ti_category": "Accessories",
            "ti_price": "25.00",
            "ti_quantity": "1",
            "refr_medium": "internal",
            "geo_region": "ENG",
            "geo_city": "London",
        },
    ),
    _row(
        "9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c01",
        anonymous_id="du-77aa",
        session_id="7e6d5c4b-3a29-4c8d-b7e6-f5a4b3c2d1e0",
        ts=dt(2025, 1, 6, 11, 14, 59, 800000),
        event_name="page_view",
        raw_event_name="page_view",
        source="Google",
        medium="search",
        page_url="https://shop.example.com/p/sku-2",
        referrer="https://www.google.com/",
        device="mobile",
        country="IE",
        properties={
            "app_id": "shop",
            "platform": "web",
            "event": "page_view",
            "event_vendor": "com.snowplowanalytics.snowplow",
            "collector_tstamp": "2025-01-06 11:15:00.000",
            "domain_sessionidx": "1",
            "network_userid": "nu-88bb",
            "refr_source": "Google",
            "refr_medium": "search",
            "geo_region": "L",
            "geo_city": "Dublin",
        },
    ),
]

SNOWPLOW_JSON_EVENTS = [
    _row(
        "c1d2e3f4-0000-4a00-8000-000000000001",
        anonymous_id="du-9c9c",
        session_id="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        ts=dt(2025, 1, 6, 12, 0, 0, 300000),
        event_name="page_view",
        raw_event_name="page_view",
        source="newsletter",
        medium="email",
        campaign="jan_promo",
        page_url="https://shop.example.com/?utm_source=newsletter&utm_medium=email&utm_campaign=jan_promo",
        device="desktop",
        country="FR",
        properties={
            "app_id": "shop",
            "platform": "web",
            "event": "page_view",
            "event_vendor": "com.snowplowanalytics.snowplow",
            "collector_tstamp": "2025-01-06T12:00:00.400Z",
            "dvce_created_tstamp": "2025-01-06T12:00:00.100Z",
            "domain_sessionidx": "4",
            "network_userid": "nu-9d9d",
            "page_title": "Nordwind Shop",
            "geo_city": "Lyon",
        },
    ),
    _row(
        "c1d2e3f4-0000-4a00-8000-000000000002",
        anonymous_id="du-9c9c",
        session_id="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        ts=dt(2025, 1, 6, 12, 1, 0, 300000),
        event_name="add_to_cart",
        raw_event_name="add_to_cart",
        page_url="https://shop.example.com/p/sku-2",
        product_id="SKU-2",
        device="desktop",
        country="FR",
        properties={
            "app_id": "shop",
            "platform": "web",
            "event": "unstruct",
            "event_vendor": "com.snowplowanalytics.snowplow",
            "collector_tstamp": "2025-01-06T12:01:00.400Z",
            "domain_sessionidx": "4",
            "refr_medium": "internal",
        },
    ),
    _row(
        "c1d2e3f4-0000-4a00-8000-000000000003",
        user_id="C4004",
        anonymous_id="du-9c9c",
        session_id="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        ts=dt(2025, 1, 6, 12, 3, 0, 300000),
        event_name="purchase",
        raw_event_name="transaction",
        page_url="https://shop.example.com/checkout/done",
        revenue=Decimal("34.50"),
        currency="EUR",
        device="desktop",
        country="FR",
        properties={
            "app_id": "shop",
            "platform": "web",
            "event": "transaction",
            "event_vendor": "com.snowplowanalytics.snowplow",
            "collector_tstamp": "2025-01-06T12:03:00.400Z",
            "domain_sessionidx": "4",
            "tr_orderid": "O-9100",
        },
    ),
]


def test_snowplow_tsv_keeps_the_earliest_collected_duplicate_and_quarantines_a_cut_line(db):
    [r] = ingest_files(db, [FIXTURES / "snowplow" / "enriched.tsv"])
    assert _counts(r) == ("loaded", "snowplow", 9, 6, 1, 2)
    assert r.message == "detected snowplow (Snowplow enriched events: 131 Snowplow TSV fields)"
    assert _events(db) == SNOWPLOW_TSV_EVENTS
    assert _quarantine(db) == [(8, None, "ts", "invalid_timestamp"), (None, 9, "<row>", "malformed_row")]
    # line 2 is a retry collected at 09:01:40; line 3, collected at 09:01:30, is the one kept
    assert db.scalar("select row_number from raw.events where event_id like '%5d02'") == 3


def test_snowplow_tsv_with_the_documented_header_line_loads_the_same(db, tmp_path):
    from pipeline.ingest.adapters import SNOWPLOW_COLUMNS

    path = tmp_path / "with_header.tsv"
    path.write_text("\t".join(SNOWPLOW_COLUMNS) + "\n" + (FIXTURES / "snowplow" / "enriched.tsv").read_text())
    [r] = ingest_files(db, [path], fmt="snowplow")
    assert _counts(r) == ("loaded", "snowplow", 9, 6, 1, 2)
    assert [e[:-1] for e in _events(db)] == [e[:-1] for e in SNOWPLOW_TSV_EVENTS]


def test_snowplow_analytics_sdk_json(db):
    [r] = ingest_files(db, [FIXTURES / "snowplow" / "enriched.json"])
    assert _counts(r) == ("loaded", "snowplow", 4, 3, 0, 1)
    assert _events(db) == SNOWPLOW_JSON_EVENTS
    assert _quarantine(db) == [(None, 4, "<line>", "malformed_json")]


# -- REES46 ----------------------------------------------------------------------------------------

REES46_EVENTS = [
    _row(
        "23f00ccee9f7fd85a143f8ef2d289038",
        user_id="541312140",
        session_id="72d76fde-8bb3-4e00-8c23-a032dfed738c",
        ts=dt(2019, 10, 1, 0, 0, 0),
        event_name="view_item",
        raw_event_name="view",
        product_id="44600062",
        properties={"category_id": "2103807459595387724", "brand": "shiseido", "price": 35.79},
    ),
    _row(
        "b68cd4f97d015f02d793945bae6690d1",
        user_id="535871217",
        session_id="c6bd7419-2748-4c56-95b4-8cec9ff8b80d",
        ts=dt(2019, 10, 1, 0, 0, 5),
        event_name="view_item",
        raw_event_name="view",
        product_id="1004237",
        properties={
            "category_id": "2053013555631882655",
            "category_code": "electronics.smartphone",
            "brand": "apple",
            "price": 1081.98,
        },
    ),
    _row(
        "5450dd1b6d5f98fdd57c641fbf46261a",
        user_id="535871217",
        session_id="c6bd7419-2748-4c56-95b4-8cec9ff8b80d",
        ts=dt(2019, 10, 1, 0, 1, 10),
        event_name="add_to_cart",
        raw_event_name="cart",
        product_id="1004237",
        properties={
            "category_id": "2053013555631882655",
            "category_code": "electronics.smartphone",
            "brand": "apple",
            "price": 1081.98,
        },
    ),
    _row(
        "c9f8f07acd5412704062d5e2488cea34",
        user_id="535871217",
        session_id="c6bd7419-2748-4c56-95b4-8cec9ff8b80d",
        ts=dt(2019, 10, 1, 0, 2, 0),
        event_name="remove_from_cart",
        raw_event_name="remove_from_cart",
        product_id="1004237",
        properties={
            "category_id": "2053013555631882655",
            "category_code": "electronics.smartphone",
            "brand": "apple",
            "price": 1081.98,
        },
    ),
    _row(
        "d4e98470d446e489df7579e3d41739c7",
        user_id="535871217",
        session_id="c6bd7419-2748-4c56-95b4-8cec9ff8b80d",
        ts=dt(2019, 10, 1, 0, 2, 30),
        event_name="add_to_cart",
        raw_event_name="cart",
        product_id="1004249",
        properties={
            "category_id": "2053013555631882655",
            "category_code": "electronics.smartphone",
            "brand": "apple",
            "price": 738.51,
        },
    ),
    _row(
        "350830906909a2fa5fb9b0f0cd95cb5c",
        user_id="535871217",
        session_id="c6bd7419-2748-4c56-95b4-8cec9ff8b80d",
        ts=dt(2019, 10, 1, 0, 3, 45),
        event_name="purchase",
        raw_event_name="purchase",
        product_id="1004249",
        revenue=Decimal("738.51"),
        properties={
            "category_id": "2053013555631882655",
            "category_code": "electronics.smartphone",
            "brand": "apple",
            "price": 738.51,
        },
    ),
    _row(
        "9bb8377b2765576ca40c19d0c39d290f",
        user_id="535871217",
        session_id="c6bd7419-2748-4c56-95b4-8cec9ff8b80d",
        ts=dt(2019, 10, 1, 0, 4, 0),
        event_name="view_item",
        raw_event_name="view",
        product_id="1004249",
        properties={
            "category_id": "2053013555631882655",
            "category_code": "electronics.smartphone",
            "brand": "apple",
            "price": 738.51,
        },
    ),
    _row(
        "7f0ac8c482f336e6716350d47ad727ac",
        user_id="520403301",
        session_id="9e1a8c55-2f0d-4c1e-8b7a-5d4c3b2a1f00",
        ts=dt(2019, 10, 1, 0, 4, 30),
        event_name="view_item",
        raw_event_name="view",
        product_id="10900305",
        properties={
            "category_id": "2053013555069845885",
            "category_code": "appliances.kitchen.mixer",
            "brand": "elenberg",
            "price": 25.71,
        },
    ),
]


def test_rees46_csv_maps_event_types_keeps_ids_as_text_and_drops_exact_duplicates(db):
    [r] = ingest_files(db, [FIXTURES / "rees46" / "2019-Oct-sample.csv"])
    assert _counts(r) == ("loaded", "rees46", 10, 8, 1, 1)
    assert _events(db) == REES46_EVENTS
    assert _quarantine(db) == [(None, 11, "<row>", "malformed_row")]
    cut = db.scalar("select original_text from raw.quarantine")
    assert cut == "2019-10-01 00:05:00 UTC,view,5100816,2053013553375346967,,xiaomi,29.51,541312140"


# -- detection, explicit formats, CLI --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "fmt", "message"),
    [
        (
            "segment/calls.ndjson",
            "ga4",
            "does not look like GA4 BigQuery export (--format ga4): missing "
            "event_timestamp, event_name, user_pseudo_id",
        ),
        ("rees46/2019-Oct-sample.csv", "segment", "--format segment reads ndjson files, not csv"),
        ("ga4/events_20250106.json", "rees46", "--format rees46 reads csv or parquet files, not ndjson"),
    ],
)
def test_an_explicit_format_that_does_not_fit_rejects_the_file(db, fixture, fmt, message):
    [r] = ingest_files(db, [FIXTURES / fixture], fmt=fmt)
    assert r.status == "rejected" and message in r.message, r.message
    assert db.scalar("select count(*) from raw.manifest") == 0


def test_explicit_formats_load_like_auto(db):
    results = ingest_files(db, [FIXTURES / "ga4" / "events_20250106.json"], fmt="ga4")
    assert results[0].message == "format ga4 (GA4 BigQuery export)" and results[0].n_loaded == 9


def test_a_column_map_only_applies_to_the_canonical_format(db, tmp_path):
    with pytest.raises(ValueError, match="--map applies to --format canonical"):
        ingest_files(db, [FIXTURES / "rees46" / "2019-Oct-sample.csv"], fmt="rees46", column_map={"ts": "x"})
    copy = tmp_path / "rees.csv"
    shutil.copy(FIXTURES / "rees46" / "2019-Oct-sample.csv", copy)
    [r] = ingest_files(
        db, [copy], column_map={"ts": "event_time", "event_name": "event_type", "session_id": "user_session"}
    )
    assert (r.format, r.n_loaded, r.n_duplicate) == (
        "canonical",
        8,
        1,
    ) and r.message == "format canonical (--map given)"


def test_cli_format_choice_and_detection_in_the_json_summary(tmp_path):
    dbfile = tmp_path / "cli.duckdb"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "ingest",
            str(FIXTURES / "segment" / "calls.ndjson"),
            str(FIXTURES / "snowplow" / "enriched.tsv"),
            "--db",
            str(dbfile),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    files = json.loads(run.stdout)["files"]
    assert [(f["format"], f["kind"]) for f in files] == [("segment", "ndjson"), ("snowplow", "tsv")]
    assert all(f["message"].startswith("detected ") for f in files)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "ingest",
            str(FIXTURES / "segment" / "calls.ndjson"),
            "--db",
            str(dbfile),
            "--format",
            "mixpanel",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert bad.returncode == 2 and "snowplow" in bad.stderr
