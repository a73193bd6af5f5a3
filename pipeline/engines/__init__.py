"""Engines that run the ``sql/`` models besides DuckDB (the default, in ``pipeline.db``).

``pipeline.engines.spark`` runs the same models on PySpark (the ``journeys[spark]`` extra). Nothing
here is imported by the DuckDB path, so the extra stays optional.
"""

from __future__ import annotations

ENGINES = ("duckdb", "spark")
