"""Write one logical set of journeys in every source format (canonical, GA4, Segment, Snowplow, REES46).

Each writer renders the same events in the real shape of its export (field names, nesting, id and time
conventions), so that loading any of them must give the same sessions, funnels and transitions. Only
the REES46 vocabulary is used for event names (view_item, add_to_cart, remove_from_cart, purchase),
because REES46 can express nothing else; times are whole seconds (REES46's resolution).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline.db import Database
from pipeline.ingest.adapters import SNOWPLOW_COLUMNS

T0 = dt.datetime(2025, 1, 6, 9, 0, 0)
COUNTRY_NAMES = {"DE": "Germany", "CZ": "Czechia", "GB": "United Kingdom", "US": "United States"}
SEGMENT_NAMES = {"view_item": "Product Viewed", "add_to_cart": "Product Added", "remove_from_cart": "Product Removed",
                 "purchase": "Order Completed"}
SNOWPLOW_ACTIONS = {"view_item": "View Item", "add_to_cart": "add-to-cart", "remove_from_cart": "Remove From Cart"}
REES46_TYPES = {"view_item": "view", "add_to_cart": "cart", "remove_from_cart": "remove_from_cart",
                "purchase": "purchase"}


@dataclass
class Step:
    name: str
    seconds: int  # after T0
    product: str
    price: float


@dataclass
class Session:
    steps: list[Step]
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None


@dataclass
class User:
    user_id: str
    anonymous_id: str
    device: str  # desktop / mobile
    country: str  # ISO alpha-2
    sessions: list[Session] = field(default_factory=list)


def _steps(start_minutes: int, *names_products: tuple[str, str, float], gap_seconds: int = 70) -> list[Step]:
    return [Step(name, start_minutes * 60 + i * gap_seconds, product, price)
            for i, (name, product, price) in enumerate(names_products)]


def journeys() -> list[User]:
    """Five users, eight sessions: converters, a cart abandoner, a remover, a repeat buyer, a browser."""
    scarf, hat, boots = ("SKU-1", 25.0), ("SKU-2", 34.5), ("SKU-3", 89.0)
    v, a, r, p = "view_item", "add_to_cart", "remove_from_cart", "purchase"
    return [
        User("C1", "anon-1", "desktop", "DE", [
            Session(_steps(0, (v, *scarf), (a, *scarf), (p, *scarf)), "google", "cpc", "winter_sale"),
        ]),
        User("C2", "anon-2", "mobile", "CZ", [
            Session(_steps(5, (v, *hat), (v, *boots), (a, *boots)), "facebook", "paid_social", "winter_sale"),
            Session(_steps(300, (v, *boots), (a, *boots), (p, *boots)), "newsletter", "email", "jan_promo"),
        ]),
        User("C3", "anon-3", "desktop", "GB", [
            Session(_steps(12, (v, *scarf), (a, *scarf), (r, *scarf), (v, *hat))),
        ]),
        User("C4", "anon-4", "mobile", "US", [
            Session(_steps(20, (v, *hat), (a, *hat), (p, *hat)), "google", "organic"),
            Session(_steps(200, (v, *scarf), (p, *scarf))),
            Session(_steps(24 * 60, (v, *boots))),
        ]),
        User("C5", "anon-5", "desktop", "DE", [
            Session(_steps(45, (v, *boots), (v, *hat), (v, *scarf), gap_seconds=300), "bing", "cpc", "brand"),
        ]),
    ]


def _events(users: list[User]):
    """(user, session number, session, step index, step, ts) for every step, in time order per user."""
    for user in users:
        for number, session in enumerate(user.sessions, start=1):
            for index, step in enumerate(session.steps):
                yield user, number, session, index, step, T0 + dt.timedelta(seconds=step.seconds)


def _page(step: Step) -> str:
    return f"https://shop.example.com/p/{step.product.lower()}"


def _iso(ts: dt.datetime, millis: int = 0) -> str:
    return (ts + dt.timedelta(milliseconds=millis)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _session_uuid(user: User, number: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{user.user_id}/{number}"))


def write_canonical(users: list[User], path: Path) -> Path:
    rows = []
    for user, number, session, index, step, ts in _events(users):
        first = index == 0
        rows.append({
            "event_id": f"{user.user_id}-{number}-{index}", "user_id": user.user_id, "anonymous_id": user.anonymous_id,
            "session_id": f"{user.user_id}-s{number}", "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "event_name": step.name,
            "source": session.source if first else None, "medium": session.medium if first else None,
            "campaign": session.campaign if first else None, "page_url": _page(step), "product_id": step.product,
            "revenue": step.price if step.name == "purchase" else None,
            "currency": "EUR" if step.name == "purchase" else None, "device": user.device, "country": user.country,
        })
    pl.DataFrame(rows).write_csv(path)
    return path


def _ga4_param(key: str, string: str | None = None, integer: int | None = None, double: float | None = None) -> dict:
    return {"key": key, "value": {"string_value": string, "int_value": None if integer is None else str(integer),
                                  "float_value": None, "double_value": double}}


def write_ga4(users: list[User], path: Path) -> Path:
    """BigQuery NDJSON export: INT64 as strings, event_params key/value lists, items, ecommerce."""
    lines = []
    for user, number, session, index, step, ts in _events(users):
        micros = int(ts.replace(tzinfo=dt.UTC).timestamp()) * 1_000_000
        session_id = int((T0 + dt.timedelta(seconds=session.steps[0].seconds)).replace(tzinfo=dt.UTC).timestamp())
        params = [_ga4_param("ga_session_id", integer=session_id), _ga4_param("ga_session_number", integer=number),
                  _ga4_param("page_location", _page(step)), _ga4_param("currency", "EUR"),
                  _ga4_param("value", double=step.price)]
        if index == 0 and session.source:
            params += [_ga4_param("source", session.source), _ga4_param("medium", session.medium)]
            if session.campaign:
                params.append(_ga4_param("campaign", session.campaign))
        is_purchase = step.name == "purchase"
        lines.append({
            "event_date": ts.strftime("%Y%m%d"), "event_timestamp": str(micros), "event_name": step.name,
            "event_params": params, "event_previous_timestamp": None, "event_bundle_sequence_id": str(index + 1),
            "user_id": user.user_id, "user_pseudo_id": user.anonymous_id,
            "privacy_info": {"analytics_storage": "Yes", "ads_storage": "Yes", "uses_transient_token": "No"},
            "user_properties": [], "user_first_touch_timestamp": "1736154000000000",
            "device": {"category": user.device, "operating_system": "Web", "language": "en-us",
                       "web_info": {"browser": "Chrome", "browser_version": "131.0", "hostname": "shop.example.com"}},
            "geo": {"city": "(not set)", "country": COUNTRY_NAMES[user.country], "continent": "(not set)"},
            "app_info": None, "traffic_source": {"name": "(direct)", "medium": "(none)", "source": "(direct)"},
            "stream_id": "4567890123", "platform": "WEB",
            "ecommerce": {"transaction_id": f"T-{user.user_id}-{number}" if is_purchase else None,
                          "purchase_revenue": step.price if is_purchase else None,
                          "total_item_quantity": "1" if is_purchase else None},
            "items": [{"item_id": step.product, "item_name": step.product, "price": step.price, "quantity": "1"}],
            "collected_traffic_source": None, "is_active_user": True,
        })
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


GA4_PARQUET_COLUMNS = {
    "event_date": "VARCHAR", "event_timestamp": "BIGINT", "event_name": "VARCHAR",
    "event_params": "STRUCT(key VARCHAR, value STRUCT(string_value VARCHAR, int_value BIGINT, float_value DOUBLE, "
                    "double_value DOUBLE))[]",
    "user_id": "VARCHAR", "user_pseudo_id": "VARCHAR",
    "device": "STRUCT(category VARCHAR, operating_system VARCHAR, language VARCHAR)",
    "geo": "STRUCT(city VARCHAR, country VARCHAR, continent VARCHAR)",
    "traffic_source": "STRUCT(name VARCHAR, medium VARCHAR, source VARCHAR)", "stream_id": "VARCHAR",
    "platform": "VARCHAR", "ecommerce": "STRUCT(transaction_id VARCHAR, purchase_revenue DOUBLE, "
                                        "total_item_quantity BIGINT)",
    "items": "STRUCT(item_id VARCHAR, item_name VARCHAR, price DOUBLE, quantity BIGINT)[]",
}


def ga4_parquet(ndjson: Path, path: Path) -> Path:
    """The same export as BigQuery's Parquet: typed INT64/FLOAT64 columns and nested structs."""
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in GA4_PARQUET_COLUMNS.items()) + "}"
    with Database(":memory:") as db:
        db.execute(f"copy (select * from read_json($src, columns = {columns})) to $out (format parquet)",
                   {"src": str(ndjson), "out": str(path)})
    return path


def write_segment(users: list[User], path: Path) -> Path:
    """Segment track calls (e-commerce spec names); every other call has a 90 s client clock skew."""
    lines = []
    for user, number, session, index, step, ts in _events(users):
        skew = 90 if (number + index) % 2 else 0  # device clock behind by 90 s
        sent = ts - dt.timedelta(seconds=skew) + dt.timedelta(milliseconds=400)
        properties = {"product_id": step.product, "name": step.product, "price": step.price, "quantity": 1,
                      "currency": "EUR", "url": _page(step)}
        if step.name == "purchase":
            properties = {"order_id": f"O-{user.user_id}-{number}", "revenue": step.price, "total": step.price + 4.95,
                          "currency": "EUR", "products": [{"product_id": step.product, "price": step.price}]}
        context = {"library": {"name": "analytics.js", "version": "next-1.70.0"},
                   "location": {"country": COUNTRY_NAMES[user.country]},
                   "page": {"url": _page(step), "path": f"/p/{step.product.lower()}"}}
        if index == 0 and session.source:
            context["campaign"] = {k: v for k, v in (("source", session.source), ("medium", session.medium),
                                                     ("name", session.campaign)) if v}
        lines.append({
            "type": "track", "event": SEGMENT_NAMES[step.name], "properties": properties, "context": context,
            "userId": user.user_id, "anonymousId": user.anonymous_id,
            "messageId": f"ajs-next-{user.user_id}-{number}-{index}",
            "timestamp": _iso(ts - dt.timedelta(seconds=skew)), "sentAt": _iso(sent),
            "receivedAt": _iso(sent + dt.timedelta(seconds=skew)), "integrations": {}, "version": 2,
        })
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def write_snowplow(users: list[User], path: Path) -> Path:
    """Snowplow enriched TSV (131 fields, no header): structured events, transactions, mkt_* fields."""
    lines = []
    for user, number, session, index, step, ts in _events(users):
        stamp = ts.strftime("%Y-%m-%d %H:%M:%S.000")
        row: dict[str, str | None] = {
            "app_id": "shop", "platform": "web", "collector_tstamp": stamp, "derived_tstamp": stamp,
            "dvce_created_tstamp": stamp,
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{user.user_id}/{number}/{index}")),
            "v_tracker": "js-3.24.0", "v_collector": "ssc-3.2.0-kinesis", "v_etl": "snowplow-enrich-kinesis-5.1.0",
            "user_id": user.user_id, "domain_userid": user.anonymous_id, "domain_sessionidx": str(number),
            "domain_sessionid": _session_uuid(user, number), "geo_country": user.country, "page_url": _page(step),
            "dvce_type": "Computer" if user.device == "desktop" else "Mobile",
            "dvce_ismobile": "0" if user.device == "desktop" else "1",
            "event_vendor": "com.snowplowanalytics.snowplow", "event_format": "jsonschema", "event_version": "1-0-0",
        }
        if index == 0 and session.source:
            row.update(mkt_source=session.source, mkt_medium=session.medium, mkt_campaign=session.campaign)
        else:
            row.update(refr_medium="internal", refr_urlhost="shop.example.com")
        if step.name == "purchase":
            row.update(event="transaction", event_name="transaction", tr_orderid=f"O-{user.user_id}-{number}",
                       tr_total=f"{step.price:.2f}", tr_currency="EUR")
        else:
            row.update(event="struct", event_name="event", se_category="ecommerce",
                       se_action=SNOWPLOW_ACTIONS[step.name], se_label=step.product)
        lines.append("\t".join(row.get(c) or "" for c in SNOWPLOW_COLUMNS))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_rees46(users: list[User], path: Path) -> Path:
    lines = ["event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"]
    for user, number, _session, _index, step, ts in _events(users):
        lines.append(",".join([
            ts.strftime("%Y-%m-%d %H:%M:%S UTC"), REES46_TYPES[step.name], step.product, "2053013555631882655",
            "apparel.accessories", "nordwind", f"{step.price:.2f}", user.user_id, _session_uuid(user, number),
        ]))
    path.write_text("\n".join(lines) + "\n")
    return path


WRITERS = {
    "canonical": ("events.csv", write_canonical),
    "ga4": ("events_20250106.json", write_ga4),
    "segment": ("segment.ndjson", write_segment),
    "snowplow": ("enriched.tsv", write_snowplow),
    "rees46": ("2019-Oct.csv", write_rees46),
}

# Session columns a format cannot carry (beyond the source's own session id, never compared).
NOT_CARRIED = {
    "rees46": {"entry_source", "entry_medium", "entry_campaign", "channel", "device", "country", "landing_page",
               "exit_page"},
    "segment": {"device"},  # analytics.js sends no device category
}
