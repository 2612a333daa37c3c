"""Database layer: table definitions (`schema`), the engine, migrations and the analysis views'
SQL (`views/`), and the pipeline's fact queries (`store`, `labels`).

The query modules are exported whole, as callers use them (`store.insert_pairs(...)`).
"""

from specstress.db import labels, schema, store
from specstress.db.engine import async_url, create_engine, reading
from specstress.db.migrate import install_views, upgrade
from specstress.db.schema import metadata

__all__ = [
    "async_url",
    "create_engine",
    "install_views",
    "labels",
    "metadata",
    "reading",
    "schema",
    "store",
    "upgrade",
]
