"""PII: redaction before storage, IP truncation, keyed-hash pseudonymisation, and a seeded search.

The seeded test plants 1,000 e-mail addresses and 1,000 IP addresses (IPv4 and IPv6) in the places
they turn up in real exports: user ids, page URLs (query parameters, paths, %40-encoded, IP hosts),
referrers, UTM fields, nested properties, X-Forwarded-For lists, Segment ``context.ip`` and traits,
rows that are quarantined and lines the parser cannot split, and the header of a rejected file.
With ``privacy.pseudonymise_user_ids = true`` it loads them (API and ``journeys run``), builds,
writes the report and CSV/Parquet exports, and then finds none of them:

- in the bytes of the database file and its WAL (the first load writes uncompressed, so strings are
  searchable as bytes, which a positive control proves), of the report, the CSV exports and the
  command output (stdout/stderr of every command);
- in any text value of any table (a logical scan, which compression cannot hide) and any string
  value of the Parquet exports.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import urllib.parse
from pathlib import Path

import polars as pl
import pytest

from pipeline import config, privacy
from pipeline.build import build
from pipeline.db import Database
from pipeline.ingest import ingest_files
from pipeline.privacy import PrivacyError, PseudonymKey
from tests.reliability.helpers import KEY, cli

N = 1000
FIRST = ["anna", "jan", "petra", "tomas", "eva", "lukas", "marie", "jakub", "lea", "noah"]
DOMAINS = ["example.com", "mail.example.org", "firma.example.cz", "shop.example.co.uk"]


def _pii(seed: int = 1234):
    rng = random.Random(seed)
    emails = [f"{rng.choice(FIRST)}.{rng.choice(FIRST)}{i}+tag@{rng.choice(DOMAINS)}" for i in range(N)]
    ipv4 = [f"{rng.randint(11, 223)}.{rng.randint(11, 254)}.{rng.randint(11, 254)}.{rng.randint(11, 254)}"
            for _ in range(N // 2)]
    ipv6 = [":".join(f"{rng.randint(0x1000, 0xFFFF):x}" for _ in range(8)) for _ in range(N // 4)]
    ipv6 += [f"2001:db8:{rng.randint(0x1000, 0xFFFF):x}:{rng.randint(0x1000, 0xFFFF):x}::{rng.randint(0x10, 0xFF):x}"
             for _ in range(N // 4)]
    return emails, ipv4, ipv6


def _canonical_file(path: Path, emails, ips, rng: random.Random, start: int) -> None:
    columns = ["event_id", "user_id", "anonymous_id", "ts", "event_name", "page_url", "referrer", "source",
               "campaign", "customer_email", "client_ip", "x_forwarded_for", "note"]
    lines = [",".join(columns)]
    for i, (email, ip) in enumerate(zip(emails, ips, strict=True)):
        n = start + i
        host = f"[{ip}]" if ":" in ip else ip
        url = rng.choice([
            f"https://shop.example.com/account?email={email}&step=2",
            f"https://shop.example.com/track?u={urllib.parse.quote(email)}",
            f"https://shop.example.com/u/{email}/orders",
            f"http://{host}:8080/admin?next=/cart",
        ])
        row = [
            f"ev-{n}", email if n % 3 == 0 else f"cust-{n}", f"anon-{n % 97}",
            "2025-01-06T09:00:00Z" if n % 17 else "not a time",  # every 17th row is quarantined
            rng.choice(["page_view", "view_item", "add_to_cart"]), url,
            f"https://mail.example.com/inbox?to={email}&from=http://{host}/", ip if n % 5 == 0 else "newsletter",
            f"winter_{email}", email, ip, f"{ip}, 10.0.0.1", f"contact {email} from {ip} please",
        ]
        lines.append(",".join('"' + v.replace('"', '""') + '"' for v in row))
        if n % 50 == 0:  # a line the parser cannot split, with PII in it
            lines.append(f"broken,{email},{ip},too,many,fields,,,,,,,,,,,,")
    path.write_text("\n".join(lines) + "\n")


def _segment_file(path: Path, emails, ips, start: int) -> None:
    calls = []
    for i, (email, ip) in enumerate(zip(emails, ips, strict=True)):
        kind = "identify" if i % 4 == 0 else "track"
        calls.append({
            "messageId": f"msg-{start + i}", "type": kind, "event": "Product Viewed", "userId": email,
            "anonymousId": f"anon-{i % 97}", "timestamp": "2025-01-06T10:00:00Z" if i % 19 else "yesterday",
            "context": {"ip": ip, "page": {"url": f"https://shop.example.com/?email={email}"},
                        "campaign": {"source": "newsletter", "name": f"spring {email}"}},
            "traits": {"email": email, "phone": "+420 777 123 456"},
            "properties": {"email": email, "buyer": {"contact": {"mail": email, "ip": ip}}, "product_id": "p1"},
        })
    path.write_text("".join(json.dumps(c) + "\n" for c in calls))


def _needles(emails, ipv4, ipv6) -> list[str]:
    return emails + [e.replace("@", "%40") for e in emails] + [urllib.parse.quote(e) for e in emails] + ipv4 + ipv6


# Every needle consists of characters of one of these classes, so any occurrence lies inside a
# maximal run of that class that also holds the needle's separator (@ or %40, three dots, two
# colons): scanning those runs finds every occurrence, quickly.
_RUNS = {
    "email": (rb"[A-Za-z0-9._%+@-]{6,}", lambda run: b"@" in run or b"%40" in run),
    "ipv4": (rb"[0-9.]{7,}", lambda run: run.count(b".") >= 3),
    "ipv6": (rb"[0-9A-Fa-f:]{7,}", lambda run: run.count(b":") >= 2),
}


def _found_in_bytes(data: bytes, needles: list[str]) -> list[str]:
    blobs = {name: b"\n".join({r for r in re.findall(pattern, data) if keep(r)})
             for name, (pattern, keep) in _RUNS.items()}
    found = []
    for needle in needles:
        kind = "email" if ("@" in needle or "%40" in needle) else ("ipv6" if ":" in needle else "ipv4")
        if blobs[kind] and needle.encode() in blobs[kind]:
            found.append(needle)
    return found


def _found_in_tables(db: Database, needles: list[str]) -> dict[str, list[str]]:
    columns = db.query(
        "select schema_name, table_name, column_name from duckdb_columns() where database_name = current_database() "
        "and (data_type like 'VARCHAR%' or data_type = 'JSON') order by all"
    )
    hits = {}
    for schema, table, column in columns.iter_rows():
        text = db.scalar(
            f'select string_agg(v, chr(10)) from (select distinct "{column}"::varchar as v from "{schema}"."{table}")'  # noqa: S608
        )
        found = _found_in_bytes((text or "").encode(), needles)
        if found:
            hits[f"{schema}.{table}.{column}"] = found[:3]
    return hits


def test_no_email_or_ip_reaches_the_database_report_exports_or_logs(tmp_path, sim_files):
    emails, ipv4, ipv6 = _pii()
    ips = ipv4 + ipv6
    rng = random.Random(7)
    toml = tmp_path / "journeys.toml"
    toml.write_text("[privacy]\npseudonymise_user_ids = true\n")
    cfg = config.load(toml)
    first, landing = tmp_path / "first.csv", tmp_path / "landing"
    landing.mkdir()
    _canonical_file(first, emails[:600], ips[:600], rng, 0)
    _segment_file(landing / "segment.ndjson", emails[600:], ips[600:], 600)
    (landing / "rejected.csv").write_text(f"event_id,{emails[0]},when\n1,2,3\n")  # PII in a rejected header
    db_path = tmp_path / "j.duckdb"

    # The first load through the API, uncompressed, so that stored strings are visible as bytes.
    with Database(db_path) as db:
        db.execute("pragma force_compression = 'uncompressed'")
        # the planted PII among a realistic clickstream (purchases, so every analysis and export runs)
        result, *rest = ingest_files(db, [first, *sim_files], privacy_settings=cfg["privacy"],
                                     pseudonym_key=PseudonymKey.from_text(KEY))
        assert result.n_quarantined > 0 and result.n_loaded > 500 and all(r.status == "loaded" for r in rest)
        build(db, cfg)
        db.execute("checkpoint")
    control = Path(db_path).read_bytes()
    assert b"shop.example.com/track?u=[email]" in control, "positive control: stored strings are searchable as bytes"

    outputs = []
    run = cli("run", "--landing", str(landing), "--db", str(db_path), "--out", str(tmp_path / "reports"),
              JOURNEYS_PSEUDONYM_KEY=KEY)
    assert run.returncode == 1 and "rejected.csv" in run.stderr  # the rejected file: a partial run
    outputs += [run.stdout, run.stderr]
    exported = cli("export", "all", "--format", "csv", "--db", str(db_path), "--out", str(tmp_path / "x_csv"))
    assert exported.returncode == 0, exported.stderr
    outputs += [exported.stdout, exported.stderr]
    with Database(db_path, read_only=True) as db:  # Parquet through the API (the same code, no start-up)
        from pipeline.export import export

        export(db, ["all"], "parquet", tmp_path / "x_parquet")
    again = cli("ingest", str(first), str(landing / "rejected.csv"), "--db", str(db_path), "--json",
                JOURNEYS_PSEUDONYM_KEY=KEY)
    outputs += [again.stdout, again.stderr]

    needles = _needles(emails, ipv4, ipv6)
    assert _found_in_bytes(b"x " + emails[5].encode() + b" y", needles) == [emails[5]]  # the scanner works
    for path in [db_path, Path(f"{db_path}.wal"), *sorted((tmp_path / "reports").iterdir()),
                 *sorted((tmp_path / "x_csv").iterdir())]:
        if path.exists():
            assert _found_in_bytes(path.read_bytes(), needles) == [], path
    assert len(list((tmp_path / "x_csv").iterdir())) > 5 and (tmp_path / "reports" / "report.html").is_file()
    assert _found_in_bytes("\n".join(outputs).encode(), needles) == []
    with Database(db_path, read_only=True) as db:
        assert _found_in_tables(db, needles) == {}
        assert db.scalar("select count(*) from raw.events") > 1000
        assert db.scalar("select count(*) from raw.quarantine where original_text like '%[email]%'") > 0
    for path in sorted((tmp_path / "x_parquet").iterdir()):
        frame = pl.read_parquet(path)
        for name, dtype in frame.schema.items():
            if dtype == pl.String:
                text = "\n".join(v for v in frame[name].to_list() if v)
                assert _found_in_bytes(text.encode(), needles) == [], (path.name, name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://x.example/?email=a.b@c.de&x=1", "https://x.example/?email=[redacted]&x=1"),
        ("https://x.example/u/a.b%40c.de/orders", "https://x.example/u/[email]/orders"),
        ("http://203.0.113.77:8080/a", "http://203.0.113.0:8080/a"),
        ("https://[2001:db8:85a3:8d3:1319:8a2e:370:7348]/p", "https://[2001:db8:85a3::]/p"),
        ("https://[2001:db8:85a3::7]/p", "https://[2001:db8:85a3::]/p"),
        ("fe80::1", "fe80::"),
        ("Chrome/120.0.6099.109 at 09:00:00", "Chrome/120.0.6099.109 at 09:00:00"),
        ("203.0.113.0", "203.0.113.0"),
    ],
)
def test_redaction_in_sql_matches_the_documented_rule(tmp_path, value, expected):
    path = tmp_path / "one.csv"
    pl.DataFrame({"event_id": ["e1"], "user_id": ["u1"], "ts": ["2025-01-06T09:00:00Z"], "event_name": ["page_view"],
                  "page_url": [value], "note": [value]}).write_csv(path)
    with Database(tmp_path / "r.duckdb") as db:
        ingest_files(db, [path])
        page_url, note = db.query("select page_url, properties ->> 'note' from raw.events").row(0)
    assert page_url == expected
    assert note == expected
    assert privacy.redact_text(value) == expected


def test_pseudonymised_ids_are_keyed_hashes_consistent_across_files_and_sticky(tmp_path):
    key = PseudonymKey.from_text(KEY)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    pl.DataFrame({"event_id": ["u1-1"], "user_id": ["u1"], "anonymous_id": ["c1"], "session_id": ["u1-s1"],
                  "ts": ["2025-01-06T09:00:00Z"], "event_name": ["page_view"]}).write_csv(a)
    pl.DataFrame({"event_id": ["c1-2"], "user_id": [None], "anonymous_id": ["c1"], "session_id": ["x"],
                  "ts": ["2025-01-06T09:05:00Z"], "event_name": ["purchase"]}).write_csv(b)
    db_path = tmp_path / "p.duckdb"
    with Database(db_path) as db:
        ingest_files(db, [a], privacy_settings={"pseudonymise_user_ids": True}, pseudonym_key=key)
    done = cli("ingest", str(b), "--db", str(db_path), JOURNEYS_PSEUDONYM_KEY=KEY)  # no config: the database decides
    assert done.returncode == 0, done.stderr
    with Database(db_path) as db:
        rows = db.query("select event_id, user_id, session_id from raw.events order by ts").rows()
        assert rows[0] == (key.hash("u1-1"), key.hash("u1"), key.hash("u1-s1"))
        assert rows[1][0] == key.hash("c1-2")
        build(db, config.defaults())
        assert db.query("select distinct user_key from staging.stg_events").to_series().to_list() == [key.hash("u1")]
    wrong = cli("ingest", str(b), "--db", str(db_path), JOURNEYS_PSEUDONYM_KEY="another-key-of-enough-length")
    assert wrong.returncode == 1 and "is not the key this database was written with" in wrong.stderr
    missing = cli("ingest", str(b), "--db", str(db_path))
    assert missing.returncode == 1 and "set JOURNEYS_PSEUDONYM_KEY" in missing.stderr
    short = cli("ingest", str(b), "--db", str(db_path), JOURNEYS_PSEUDONYM_KEY="short")
    assert short.returncode == 1 and "at least 16 characters" in short.stderr


def test_pseudonymisation_cannot_be_turned_on_for_a_database_holding_raw_ids(tmp_path):
    path = tmp_path / "a.csv"
    pl.DataFrame({"user_id": ["u1"], "ts": ["2025-01-06T09:00:00Z"], "event_name": ["page_view"]}).write_csv(path)
    with Database(tmp_path / "plain.duckdb") as db:
        ingest_files(db, [path])
        shutil.copy(path, tmp_path / "b.csv")
        with pytest.raises(PrivacyError, match="already holds raw user ids"):
            ingest_files(db, [tmp_path / "b.csv"], privacy_settings={"pseudonymise_user_ids": True},
                         pseudonym_key=PseudonymKey.from_text(KEY))
