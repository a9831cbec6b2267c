"""The cloud database's named migrations, one module each, applied in name order by cloud.db.migrate.

To change the schema:

1. change ``cloud/db/tables.py`` (what the code queries);
2. add ``cloud/db/migrations/NNNN_what_it_does.py`` (the next free number) with a docstring and
   ``def upgrade(conn: Connection) -> None`` that makes the same change on SQLite and PostgreSQL,
   with its own frozen copies of the tables or columns it creates (never import ``tables.py``: it
   moves on, a migration must not). ``table.create(conn)``, ``index.create(conn)`` and
   ``cloud.db.migration_ops`` (``add_column``, ``rebuild_sqlite_table``) cover the usual steps;
3. run ``pytest tests/cloud/test_cloud_migrations.py``: it checks that the migrations build exactly the
   schema of ``tables.py`` on both databases and upgrade a database of the previous release.

Never edit, rename or delete a migration that has shipped.
"""
