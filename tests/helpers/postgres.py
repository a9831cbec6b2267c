"""A throwaway PostgreSQL database on the local server (trust auth, user postgres), dropped after use."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from sqlalchemy import create_engine, text

PG_SERVER: Final = "postgresql+psycopg://postgres@127.0.0.1:5432"


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create a new empty database and yield its URL; drop it (closing its connections) at the end."""
    name = f"edgehouse_t_{secrets.token_hex(6)}"
    admin = create_engine(f"{PG_SERVER}/test", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield f"{PG_SERVER}/{name}"
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
