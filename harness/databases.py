"""Throwaway databases on the machine's PostgreSQL server, created and dropped by name."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
from psycopg import sql

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def run_name(prefix: str, variable: str) -> str:
    """$variable when set, else `prefix` with a suffix of its own: two runs never share."""
    return os.environ.get(variable) or f"{prefix}_{uuid.uuid4().hex[:8]}"


def database_url(name: str, admin_url: str = ADMIN_URL) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + name


def reachable(admin_url: str = ADMIN_URL) -> bool:
    try:
        psycopg.connect(admin_url, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


def recreate(name: str, admin_url: str = ADMIN_URL) -> str:
    """Drop `name` if it exists and create it empty; its URL."""
    _admin(admin_url, "DROP DATABASE IF EXISTS {} WITH (FORCE)", name)
    _admin(admin_url, "CREATE DATABASE {}", name)
    return database_url(name, admin_url)


def names(admin_url: str = ADMIN_URL) -> list[str]:
    """The databases on the server, templates left out."""
    with psycopg.connect(admin_url, connect_timeout=5) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate").fetchall()
    return [name for (name,) in rows]


def drop(name: str, admin_url: str = ADMIN_URL) -> None:
    _admin(admin_url, "DROP DATABASE IF EXISTS {} WITH (FORCE)", name)


@contextlib.contextmanager
def throwaway(name: str, admin_url: str = ADMIN_URL) -> Iterator[str]:
    """A fresh database's URL, dropped on the way out whatever happens."""
    url = recreate(name, admin_url)
    try:
        yield url
    finally:
        drop(name, admin_url)


def _admin(admin_url: str, statement: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL(statement).format(sql.Identifier(name)))
