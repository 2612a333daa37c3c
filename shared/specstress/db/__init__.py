"""Database layer: table definitions, engine, migrations, the analysis views' SQL (`views/`)
and the pipeline's fact queries.
"""
