"""Database layer: table definitions, engine, migrations and queries."""
