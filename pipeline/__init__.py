"""Journeys: mine customer journeys from e-commerce clickstream data.

The package is layered like the data: ``ingest`` (source files -> ``raw``), ``build`` (SQL models
``staging`` -> ``paths`` -> ``marts``), analysis modules reading those tables, and ``report``/``export``
writing files. ``db`` is the only module that talks to DuckDB.
"""

__version__ = "0.1.0"

import warnings as _warnings

# pandera imports pyspark's pandas layer when pyspark is installed (the `spark` extra), which warns
# about pandas 3 on every command; nothing here uses pyspark.pandas, so the warning is noise.
_warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
