"""Build: run the SQL models layer by layer (staging -> paths -> marts) in one transaction.

Reads ``raw.*`` and the seed files named in the config; writes every model table of ``sql/``. A
failure leaves the previous tables as they were (the whole build is one transaction).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

from pipeline.db import LAYERS, SQL_DIR, Database, DatabaseError

BUILD_LAYERS = ("staging", "paths", "marts")
_REF = re.compile(r"\b(" + "|".join(LAYERS) + r")\.([a-z0-9_]+)\b")


def discover_models() -> dict[str, list[str]]:
    """Every ``sql/<layer>/*.sql`` in dependency order, found from the tables each file reads.

    A model may read raw tables, models of earlier layers and models of its own layer; the order
    inside a layer is a topological sort of those references (ties by name, so it is stable).
    """
    ordered: dict[str, list[str]] = {}
    for index, layer in enumerate(BUILD_LAYERS):
        files = sorted((SQL_DIR / layer).glob("*.sql"))
        names = {f.stem for f in files}
        graph: dict[str, set[str]] = {}
        for f in files:
            refs = set()
            for ref_layer, table in _REF.findall(f.read_text(encoding="utf-8")):
                if ref_layer == layer and table in names and table != f.stem:
                    refs.add(table)
                elif ref_layer in BUILD_LAYERS[index + 1:]:
                    raise DatabaseError(f"sql/{layer}/{f.name} reads {ref_layer}.{table}, a later layer")
            graph[f.stem] = refs
        sorter = TopologicalSorter(graph)
        try:
            sorter.prepare()
        except CycleError as exc:
            raise DatabaseError(f"sql/{layer}: models read each other in a cycle: {exc.args[1]}") from None
        order: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            order.extend(ready)
            sorter.done(*ready)
        ordered[layer] = [f"{layer}/{stem}.sql" for stem in order]
    return ordered

SEEDS_DIR = SQL_DIR / "seeds"
MAPPING_FILES = ("channel_groups", "touchpoint_rules", "channel_touchpoints", "touchpoint_stages", "stages")


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
        **{f"{name}_path": str(path) for name, path in mapping_paths(config).items()},
    }


def mapping_paths(config: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """The mapping files (built-in seeds unless the config names others)."""
    return {name: Path(config["mapping"][name] or SEEDS_DIR / f"{name}.csv") for name in MAPPING_FILES}


def build(db: Database, config: dict[str, dict[str, Any]]) -> BuildSummary:
    if not db.has_table("raw", "events"):
        raise DatabaseError(f"{db.path} has no raw.events; load files with `journeys ingest` first")
    params = model_params(config)
    from pipeline.mapping import validate_mappings

    validate_mappings(db, mapping_paths(config))
    summary = BuildSummary()
    with db.transaction():
        for layer, models in discover_models().items():
            started = time.perf_counter()
            for relpath in models:
                name = f"{layer}.{relpath.split('/')[-1].removesuffix('.sql')}"
                summary.tables[name] = db.build_model(relpath, params)
            if models:
                summary.seconds[layer] = round(time.perf_counter() - started, 3)
    summary.n_events = summary.tables["staging.stg_events"]
    summary.n_sessions = summary.tables["staging.stg_sessions"]
    summary.n_users = summary.tables["staging.stg_users"]
    summary.n_unmapped_events = int(
        db.scalar("select count(*) from staging.stg_touchpoints where not is_mapped and not is_channel_step")
    )
    return summary
