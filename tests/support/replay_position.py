"""A plain database that answers `pg_last_wal_replay_lsn()` as a streaming standby would,
with the position the test sets: the suite's and the model's replicas are databases a test
writes when it chooses (so they lag exactly as long as it wants), and a real standby's replay
position can't be held at a chosen value. The service's SQL runs unchanged: the database's
search path puts a `public.pg_last_wal_replay_lsn()` before the catalog's, which reads a
one-row table. A fake only for the position's value; everything else is PostgreSQL's."""

from __future__ import annotations

import psycopg
import sqlalchemy as sa

from progress.invalidation import libpq_dsn


def install(url: str) -> None:
    """Make the database at `url` report a replay position (none until `report`). Before
    any app connects to it: the search path applies to new sessions."""
    name = sa.make_url(url).database
    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS test_replay_position (id int PRIMARY KEY, lsn pg_lsn)"
        )
        conn.execute(
            "INSERT INTO test_replay_position VALUES (1, NULL) ON CONFLICT (id) DO NOTHING"
        )
        conn.execute(
            "CREATE OR REPLACE FUNCTION public.pg_last_wal_replay_lsn() RETURNS pg_lsn"
            " LANGUAGE sql VOLATILE AS 'SELECT lsn FROM test_replay_position WHERE id = 1'"
        )
        conn.execute(f'ALTER DATABASE "{name}" SET search_path = public, pg_catalog')


def report(conn: psycopg.Connection, position: int | None) -> None:
    """From now on the database says it has replayed `position` (None: it can't say)."""
    lsn = None if position is None else f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"
    with conn.transaction():
        conn.execute("UPDATE test_replay_position SET lsn = %s::pg_lsn WHERE id = 1", (lsn,))


def insert_position(conn: psycopg.Connection) -> int:
    """The primary's WAL insert position now: past every commit already made."""
    row = conn.execute("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint").fetchone()
    assert row is not None
    return int(row[0])
