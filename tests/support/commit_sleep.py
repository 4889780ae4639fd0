"""A commit that takes as long as a job asks (test support for coalesced
commits): a job whose value is {"sleep": s} makes its transaction sleep s
seconds at COMMIT, through a deferred constraint trigger on jobs. It holds
an insert in flight, and gives a test a commit to cut while it runs."""

from __future__ import annotations

import asyncio
import time

import psycopg

SLEEP_AT_COMMIT = """
CREATE FUNCTION test_sleep_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF jsonb_typeof(NEW.data->'value') = 'object' AND NEW.data->'value' ? 'sleep' THEN
        PERFORM pg_sleep((NEW.data->'value'->>'sleep')::double precision);
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER sleep_at_commit AFTER INSERT ON jobs
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_sleep_at_commit();
"""


async def sleeping_backends(database_url: str) -> list[int]:
    """Backends of this database asleep in the commit trigger, oldest first."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        cur = await c.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event = 'PgSleep' ORDER BY backend_start"
        )
        return [row[0] for row in await cur.fetchall()]


async def until_asleep(database_url: str, besides: tuple[int, ...] = ()) -> list[int]:
    """Wait (up to 10 s) for a backend other than ``besides`` to sleep at commit."""
    deadline = time.monotonic() + 10
    while not (found := [p for p in await sleeping_backends(database_url) if p not in besides]):
        assert time.monotonic() < deadline, "no transaction reached its commit"
        await asyncio.sleep(0.02)
    return found
