#!/usr/bin/env python
"""Create the PostgreSQL database that DATABASE_URL names if it does not exist (used by
`make up`; connects to the server's `postgres` maintenance database with the same user).
Does nothing for SQLite. Exit 2 with one line when the server cannot be reached."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main() -> int:
    """Create the database if missing; 0 when it exists afterwards."""
    from django.conf import settings  # importing the settings validates them (exit 2)

    db = settings.DATABASES["default"]
    if "postgresql" not in db["ENGINE"]:
        return 0
    import psycopg
    from psycopg import sql

    # libpq keywords; empty ones are left out (libpq defaults)
    params: dict[str, str] = {
        key: str(db[name])
        for key, name in (
            ("host", "HOST"),
            ("port", "PORT"),
            ("user", "USER"),
            ("password", "PASSWORD"),
        )
        if db.get(name)
    }
    try:
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:  # type: ignore[arg-type]
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
                print(f"created database {db['NAME']}")
    except psycopg.Error as exc:
        print(
            f"error: cannot create database {db['NAME']}: {' '.join(str(exc).split())}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
