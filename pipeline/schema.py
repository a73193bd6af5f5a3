"""The canonical event: column names and types shared by ingest, SQL models and adapters.

Reads nothing, writes nothing. ``CANONICAL_COLUMNS`` is the one place that names the columns of
``raw.events`` (besides the load bookkeeping columns ``file_id`` and ``row_number``).
"""

from __future__ import annotations

# name -> DuckDB type, in storage order (DESIGN.md section 2).
CANONICAL_COLUMNS: dict[str, str] = {
    "event_id": "varchar",
    "user_id": "varchar",
    "anonymous_id": "varchar",
    "session_id": "varchar",
    "ts": "timestamp",
    "event_name": "varchar",
    "raw_event_name": "varchar",
    "source": "varchar",
    "medium": "varchar",
    "campaign": "varchar",
    "channel": "varchar",
    "page_url": "varchar",
    "referrer": "varchar",
    "product_id": "varchar",
    "revenue": "decimal(18,2)",
    "currency": "varchar",
    "device": "varchar",
    "country": "varchar",
    "properties": "json",
}

REQUIRED_COLUMNS = ("ts", "event_name")
IDENTITY_COLUMNS = ("user_id", "anonymous_id")

# Closed list of quarantine reasons (raw.quarantine.reason).
QUARANTINE_REASONS = (
    "malformed_row",  # the parser could not split the record (CSV column count, bad quoting)
    "malformed_json",  # an NDJSON line that is not a JSON object
    "missing_value",  # a required field is empty
    "missing_identity",  # neither user_id nor anonymous_id
    "invalid_timestamp",  # ts present but not a timestamp or epoch number
    "invalid_number",  # revenue present but not a number
    "invalid_value",  # a value outside its allowed form (currency, country, event name length)
    "future_timestamp",  # ts later than the load time plus the configured tolerance
)
