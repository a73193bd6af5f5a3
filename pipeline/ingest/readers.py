"""How a source file becomes the scratch table ``_ingest_src`` (the only place that opens source files).

Reads CSV/TSV, Parquet and NDJSON files (plain or .gz) through DuckDB's readers; writes nothing but
the scratch table. Two shapes: the canonical column mapping reads CSV/TSV/Parquet as typed columns
(``struct`` style) and NDJSON as lines with an ``obj`` column; format adapters always get
``_journeys_row, line, obj`` (``json`` style), where ``obj`` is the record as a JSON object (a CSV row
as an object of strings, a Parquet row via ``to_json``), so one adapter SQL file serves every file
kind it accepts. The path is always a bound parameter; the SQL here is our own text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Kind = Literal["csv", "tsv", "parquet", "ndjson"]
# DuckDB's CSV reader stops the whole file at a line longer than max_line_size (2 MB by default):
# every read here allows 16 MB, so a long field (a huge URL or property) loads instead.
MAX_LINE_BYTES = 16 * 1024 * 1024

SUFFIXES: dict[str, Kind] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "ndjson",
}

# NDJSON is read as lines so that one malformed line is quarantined instead of failing the file;
# the line number is the physical line (blank lines are counted but are not records).
_NDJSON_SQL = (
    "select _journeys_row, line, "
    "case when json_valid(line) then (case when json_type(line) = 'OBJECT' then line end) end as obj "
    "from (select row_number() over () as _journeys_row, line "
    "from read_csv($path, columns = {'line': 'VARCHAR'}, header = false, delim = '\x01', "
    "quote = '', escape = '', auto_detect = false, max_line_size = 16777216, "
    "store_rejects = true, rejects_table = 'src_rejects', rejects_scan = 'src_reject_scans')"
    ") where line is not null and trim(line) <> ''"
)

# Canonical mapping: typed columns (struct style), NDJSON as lines.
READ_SQL: dict[Kind, str] = {
    "csv": (
        "select row_number() over () as _journeys_row, * "
        "from read_csv($path, all_varchar = true, header = true, max_line_size = 16777216, "
        "store_rejects = true, rejects_table = 'src_rejects', rejects_scan = 'src_reject_scans')"
    ),
    "tsv": (
        "select row_number() over () as _journeys_row, * "
        "from read_csv($path, all_varchar = true, header = true, delim = '\t', max_line_size = 16777216, "
        "store_rejects = true, rejects_table = 'src_rejects', rejects_scan = 'src_reject_scans')"
    ),
    "parquet": (
        "select file_row_number + 1 as _journeys_row, * exclude (file_row_number) "
        "from read_parquet($path, file_row_number = true)"
    ),
    "ndjson": _NDJSON_SQL,
}

# Format adapters: every record as a JSON object `obj` (json style); `line` is its original text.
JSON_READ_SQL: dict[Kind, str] = {
    "csv": (
        "select _journeys_row, cast(obj as varchar) as line, obj from ("
        "select row_number() over () as _journeys_row, to_json(t) as obj "
        "from read_csv($path, all_varchar = true, header = true, delim = ',', max_line_size = 16777216, "
        "store_rejects = true, rejects_table = 'src_rejects', rejects_scan = 'src_reject_scans') as t)"
    ),
    "parquet": (
        "select file_row_number + 1 as _journeys_row, cast(obj as varchar) as line, obj from ("
        "select file_row_number, json_merge_patch(to_json(t), '{\"file_row_number\": null}') as obj "
        "from read_parquet($path, file_row_number = true) as t)"
    ),
    "ndjson": _NDJSON_SQL,
}


def headerless_tsv_sql(columns: tuple[str, ...], *, has_header: bool) -> str:
    """A TSV with fixed, known columns (Snowplow enriched events), every field as text, no quoting.

    ``columns`` are names from this repository's own declarations, never from a user or a file.
    A line with too few or too many fields is a reject (quarantined as ``malformed_row``).
    """
    spec = ", ".join(f"'{name}': 'VARCHAR'" for name in columns)
    header = "true" if has_header else "false"
    # Only our own constants are joined here; the path is a bound parameter.
    return (
        "select _journeys_row, cast(obj as varchar) as line, obj from ("  # noqa: S608
        "select row_number() over () as _journeys_row, to_json(t) as obj "
        f"from read_csv($path, columns = {{{spec}}}, header = {header}, delim = '\t', quote = '', "
        "escape = '', auto_detect = false, max_line_size = 16777216, "
        "store_rejects = true, rejects_table = 'src_rejects', rejects_scan = 'src_reject_scans') as t)"
    )


# Sniffing: the first lines of a text file (any delimiter), and the keys of the first JSON objects.
FIRST_LINES_SQL = (
    "select line from read_csv($path, columns = {'line': 'VARCHAR'}, header = false, delim = '\x01', "
    "quote = '', escape = '', auto_detect = false, max_line_size = 16777216, ignore_errors = true) "
    "where line is not null and trim(line) <> '' limit $n_lines"
)
CSV_COLUMNS_SQL = (
    "select * from read_csv($path, all_varchar = true, header = true, delim = ',', max_line_size = 16777216, "
    "ignore_errors = true) limit 0"
)
TSV_COLUMNS_SQL = (
    "select * from read_csv($path, all_varchar = true, header = true, delim = '\t', max_line_size = 16777216, "
    "ignore_errors = true) limit 0"
)
PARQUET_COLUMNS_SQL = "select * from read_parquet($path) limit 0"
JSON_KEYS_SQL = (
    "select distinct unnest(json_keys(line)) as key from ("
    "select line from read_csv($path, columns = {'line': 'VARCHAR'}, header = false, delim = '\x01', "
    "quote = '', escape = '', auto_detect = false, max_line_size = 16777216, ignore_errors = true) "
    "where case when json_valid(line) then json_type(line) = 'OBJECT' else false end limit $sniff_rows)"
)


class UnknownFileType(ValueError):
    """The file name has no suffix we read."""


def file_kind(path: Path) -> Kind:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in SUFFIXES:
        return SUFFIXES[suffixes[-1]]
    raise UnknownFileType(
        f"{path}: unknown file type (expected .csv, .tsv, .parquet, .ndjson/.jsonl/.json, optionally .gz)"
    )
