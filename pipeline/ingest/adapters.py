"""Format adapters: which formats exist, how each is recognised, read and mapped to the canonical event.

Reads the first lines / keys / columns of a source file (through ``pipeline.db``) to detect its
format; writes nothing. An adapter is declared data, not code: the file kinds it accepts, the
columns or keys that identify it, the SQL file ``sql/ingest/adapters/<format>.sql`` that turns the
scratch table ``_ingest_src`` into canonical text fields (``src_fields``), and its extra steps (side
tables filled after the events, the partition a re-load replaces). The mapping of each format is
documented field by field in ``docs/adapters.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.db import SQL_DIR, Database, load_sql, sql_params
from pipeline.ingest import readers
from pipeline.ingest.readers import Kind

Format = Literal["auto", "canonical", "ga4", "segment", "snowplow", "rees46"]
FORMATS: tuple[str, ...] = ("auto", "canonical", "ga4", "segment", "snowplow", "rees46")

SEEDS_DIR = SQL_DIR / "seeds"
EVENT_NAMES_SEED = SEEDS_DIR / "adapter_event_names.csv"
COUNTRY_CODES_SEED = SEEDS_DIR / "country_codes.csv"
SNIFF_ROWS = 1000  # NDJSON objects whose keys are read to detect the format
SNIFF_LINES = 20  # TSV lines looked at to recognise a headerless Snowplow file

# The Snowplow canonical event model: the 131 fields of an enriched-event TSV line, in order.
SNOWPLOW_COLUMNS: tuple[str, ...] = (
    "app_id", "platform", "etl_tstamp", "collector_tstamp", "dvce_created_tstamp", "event", "event_id",
    "txn_id", "name_tracker", "v_tracker", "v_collector", "v_etl", "user_id", "user_ipaddress",
    "user_fingerprint", "domain_userid", "domain_sessionidx", "network_userid", "geo_country", "geo_region",
    "geo_city", "geo_zipcode", "geo_latitude", "geo_longitude", "geo_region_name", "ip_isp",
    "ip_organization", "ip_domain", "ip_netspeed", "page_url", "page_title", "page_referrer",
    "page_urlscheme", "page_urlhost", "page_urlport", "page_urlpath", "page_urlquery", "page_urlfragment",
    "refr_urlscheme", "refr_urlhost", "refr_urlport", "refr_urlpath", "refr_urlquery", "refr_urlfragment",
    "refr_medium", "refr_source", "refr_term", "mkt_medium", "mkt_source", "mkt_term", "mkt_content",
    "mkt_campaign", "contexts", "se_category", "se_action", "se_label", "se_property", "se_value",
    "unstruct_event", "tr_orderid", "tr_affiliation", "tr_total", "tr_tax", "tr_shipping", "tr_city",
    "tr_state", "tr_country", "ti_orderid", "ti_sku", "ti_name", "ti_category", "ti_price", "ti_quantity",
    "pp_xoffset_min", "pp_xoffset_max", "pp_yoffset_min", "pp_yoffset_max", "useragent", "br_name",
    "br_family", "br_version", "br_type", "br_renderengine", "br_lang", "br_features_pdf",
    "br_features_flash", "br_features_java", "br_features_director", "br_features_quicktime",
    "br_features_realplayer", "br_features_windowsmedia", "br_features_gears", "br_features_silverlight",
    "br_cookies", "br_colordepth", "br_viewwidth", "br_viewheight", "os_name", "os_family",
    "os_manufacturer", "os_timezone", "dvce_type", "dvce_ismobile", "dvce_screenwidth", "dvce_screenheight",
    "doc_charset", "doc_width", "doc_height", "tr_currency", "tr_total_base", "tr_tax_base",
    "tr_shipping_base", "ti_currency", "ti_price_base", "base_currency", "geo_timezone", "mkt_clickid",
    "mkt_network", "etl_tags", "dvce_sent_tstamp", "refr_domain_userid", "refr_device_tstamp",
    "derived_contexts", "domain_sessionid", "derived_tstamp", "event_vendor", "event_name", "event_format",
    "event_version", "event_fingerprint", "true_tstamp",
)

_GA4_FILE_DAY = re.compile(r"events_(?:intraday_)?(\d{8})")


@dataclass(frozen=True)
class SideTable:
    """A raw table an adapter fills after its events: ``insert into <table> <select of sql>``."""

    table: str  # raw.<name>, created by pipeline.ingest.ensure_raw_tables
    sql: str  # path under sql/, reads _ingest_src and raw.events (file_id = $file_id)


@dataclass(frozen=True)
class Adapter:
    name: str
    title: str
    kinds: tuple[Kind, ...]
    signature: tuple[str, ...]  # columns/keys that all appear in a file of this format
    sql: str | None = None  # sql/ingest/adapters/<name>.sql; None = the generated canonical mapping
    side_tables: tuple[SideTable, ...] = ()
    replaces_days: bool = False  # a re-load replaces the (event_date, stream_id) partitions it holds

    def fields_sql(self) -> str:
        if self.sql is None:  # pragma: no cover - the canonical mapping is generated, not loaded
            raise ValueError("the canonical mapping has no SQL file")
        return load_sql(self.sql).strip().rstrip(";")

    def params(self, path: Path) -> dict[str, object]:
        """Values for the adapter SQL's parameters (seed paths, the day in a GA4 file name)."""
        match = _GA4_FILE_DAY.search(path.name)
        values: dict[str, object] = {
            "event_names_path": str(EVENT_NAMES_SEED),
            "country_codes_path": str(COUNTRY_CODES_SEED),
            "file_day": match.group(1) if match else None,
        }
        needed = sql_params(self.fields_sql())
        return {k: v for k, v in values.items() if k in needed}


ADAPTERS: dict[str, Adapter] = {
    "ga4": Adapter(
        name="ga4",
        title="GA4 BigQuery export",
        kinds=("ndjson", "parquet"),
        signature=("event_timestamp", "event_name", "user_pseudo_id"),
        sql="ingest/adapters/ga4.sql",
        side_tables=(SideTable("raw.ga4_items", "ingest/adapters/ga4_items.sql"),),
        replaces_days=True,
    ),
    "segment": Adapter(
        name="segment",
        title="Segment calls",
        kinds=("ndjson",),
        signature=("messageId", "type", "timestamp"),
        sql="ingest/adapters/segment.sql",
    ),
    "snowplow": Adapter(
        name="snowplow",
        title="Snowplow enriched events",
        kinds=("tsv", "ndjson"),
        signature=("event_id", "collector_tstamp", "v_collector"),
        sql="ingest/adapters/snowplow.sql",
    ),
    "rees46": Adapter(
        name="rees46",
        title="REES46 e-commerce CSV",
        kinds=("csv", "parquet"),
        signature=("event_time", "event_type", "product_id", "user_id", "user_session"),
        sql="ingest/adapters/rees46.sql",
    ),
    "canonical": Adapter(
        name="canonical",
        title="canonical columns",
        kinds=("csv", "tsv", "parquet", "ndjson"),
        signature=(),
    ),
}

DETECTION_ORDER = ("ga4", "segment", "snowplow", "rees46")


class NotThisFormat(ValueError):
    """The file cannot be read with the format asked for; the message says why."""


@dataclass(frozen=True)
class Sniffed:
    names: frozenset[str]  # column names or JSON keys seen
    snowplow_tsv: bool = False  # a TSV whose lines have the 131 Snowplow fields
    has_header: bool = True


def sniff(db: Database, path: Path, kind: Kind) -> Sniffed:
    """The column names or JSON keys of a file (a sample of it), to detect and check its format."""
    bound = {"path": str(path)}
    if kind == "ndjson":
        keys = db.query(readers.JSON_KEYS_SQL, {**bound, "sniff_rows": SNIFF_ROWS})["key"].to_list()
        return Sniffed(frozenset(keys))
    if kind == "parquet":
        return Sniffed(_column_names(db, readers.PARQUET_COLUMNS_SQL, bound))
    if kind == "tsv":
        lines = db.query(readers.FIRST_LINES_SQL, {**bound, "n_lines": SNIFF_LINES})["line"].to_list()
        rows = [tuple(line.rstrip("\r").split("\t")) for line in lines]
        if rows and rows[0] == SNOWPLOW_COLUMNS:
            return Sniffed(frozenset(SNOWPLOW_COLUMNS), snowplow_tsv=True, has_header=True)
        # headerless: any of the first lines has the 131 fields (the first one may be a cut line)
        if any(len(fields) == len(SNOWPLOW_COLUMNS) for fields in rows):
            return Sniffed(frozenset(SNOWPLOW_COLUMNS), snowplow_tsv=True, has_header=False)
        return Sniffed(_column_names(db, readers.TSV_COLUMNS_SQL, bound))
    return Sniffed(_column_names(db, readers.CSV_COLUMNS_SQL, bound))


def _column_names(db: Database, sql: str, bound: dict[str, object]) -> frozenset[str]:
    """Column names as data (``describe``): a header may hold anything, NUL characters included,
    which a polars frame cannot take as column names."""
    return frozenset(db.query(f"describe {sql}", bound)["column_name"].to_list())


def resolve(
    db: Database, path: Path, kind: Kind, fmt: str, *, has_column_map: bool
) -> tuple[Adapter, Sniffed, str]:
    """The adapter for a file, what was sniffed, and a sentence saying how it was chosen."""
    if fmt == "canonical" or (fmt == "auto" and has_column_map):
        how = "format canonical" + (" (--map given)" if fmt == "auto" else "")
        return ADAPTERS["canonical"], Sniffed(frozenset()), how
    sniffed = sniff(db, path, kind)
    if fmt == "auto":
        for name in DETECTION_ORDER:
            adapter = ADAPTERS[name]
            if kind in adapter.kinds and set(adapter.signature) <= sniffed.names:
                shown = "131 Snowplow TSV fields" if sniffed.snowplow_tsv and not sniffed.has_header else (
                    ("columns " if kind in ("csv", "tsv", "parquet") else "keys ") + ", ".join(adapter.signature))
                return adapter, sniffed, f"detected {name} ({adapter.title}: {shown})"
        return ADAPTERS["canonical"], Sniffed(frozenset()), "detected canonical (no adapter signature matched)"
    adapter = ADAPTERS[fmt]
    if kind not in adapter.kinds:
        raise NotThisFormat(
            f"{path}: --format {fmt} reads {' or '.join(adapter.kinds)} files, not {kind}"
        )
    missing = [name for name in adapter.signature if name not in sniffed.names]
    if missing:
        raise NotThisFormat(
            f"{path}: does not look like {adapter.title} (--format {fmt}): missing {', '.join(missing)}"
        )
    return adapter, sniffed, f"format {fmt} ({adapter.title})"


def read_sql(adapter: Adapter, kind: Kind, sniffed: Sniffed) -> str:
    """The SQL that reads a file of this adapter into ``_ingest_src`` (json style: line, obj)."""
    if adapter.name == "snowplow" and kind == "tsv":
        return readers.headerless_tsv_sql(SNOWPLOW_COLUMNS, has_header=sniffed.has_header)
    return readers.JSON_READ_SQL[kind]
