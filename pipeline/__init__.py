"""Journeys: mine customer journeys from e-commerce clickstream data.

The package is layered like the data: ``ingest`` (source files -> ``raw``), ``build`` (SQL models
``staging`` -> ``paths`` -> ``marts``), analysis modules reading those tables, and ``report``/``export``
writing files. ``db`` is the only module that talks to DuckDB.
"""

__version__ = "0.1.0"
