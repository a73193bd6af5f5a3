"""Build: run the SQL models layer by layer (staging -> paths -> marts) in one transaction.

Reads ``raw.*`` and the seed files named in the config; writes every model table of ``sql/``. A
failure leaves the previous tables as they were (the whole build is one transaction).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.db import SQL_DIR, Database, DatabaseError

# Build order. Each model reads only raw tables and models listed before it.
MODELS: dict[str, list[str]] = {
    "staging": [
        "staging/stg_identity.sql",
        "staging/stg_events.sql",
        "staging/stg_sessions.sql",
        "staging/stg_users.sql",
    ],
}

SEEDS_DIR = SQL_DIR / "seeds"


@dataclass
class BuildSummary:
    n_events: int = 0
    n_users: int = 0
    n_sessions: int = 0
    n_unmapped_events: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_events": self.n_events,
            "n_users": self.n_users,
            "n_sessions": self.n_sessions,
            "n_unmapped_events": self.n_unmapped_events,
            "seconds": self.seconds,
            "tables": self.tables,
        }


def model_params(config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The named parameters every model may use, from the validated config."""
    sessions = config["sessions"]
    return {
        "session_timeout_minutes": sessions["timeout_minutes"],
        "session_source": sessions["session_source"],
        "channel_groups_path": str(SEEDS_DIR / "channel_groups.csv"),
    }


def build(db: Database, config: dict[str, dict[str, Any]]) -> BuildSummary:
    if not db.has_table("raw", "events"):
        raise DatabaseError(f"{db.path} has no raw.events; load files with `journeys ingest` first")
    params = model_params(config)
    summary = BuildSummary()
    with db.transaction():
        for layer, models in MODELS.items():
            started = time.perf_counter()
            for relpath in models:
                name = f"{layer}.{relpath.split('/')[-1].removesuffix('.sql')}"
                summary.tables[name] = db.build_model(relpath, params)
            summary.seconds[layer] = round(time.perf_counter() - started, 3)
    summary.n_events = summary.tables["staging.stg_events"]
    summary.n_sessions = summary.tables["staging.stg_sessions"]
    summary.n_users = summary.tables["staging.stg_users"]
    return summary
