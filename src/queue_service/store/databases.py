"""Whole databases: aim a conninfo at another database, create and drop one
(the benchmark's scratch database, the tests' per-test copies)."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from queue_service.store.queries import Q


def url_for_database(base: str, dbname: str) -> str:
    """``base`` (a URI, host or ``?host=/socket/dir``, or key=value conninfo) aimed at ``dbname``.

    URIs stay URIs (for drivers that only take URIs); other conninfo stays key=value.
    """
    if base.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(base)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "dbname"]
        url = urlunsplit(
            parts._replace(
                path="/" + quote(dbname, safe=""),
                query=urlencode(query, safe="/", quote_via=quote),
            )
        )
    else:
        url = make_conninfo(base, dbname=dbname)
    if conninfo_to_dict(url).get("dbname") != dbname:
        raise ValueError(f"could not aim conninfo at database {dbname!r}")
    return url


def create_database(admin_conninfo: str, name: str, template: str | None = None) -> str:
    """(Re)create database ``name`` on the server; returns a conninfo for it."""
    with psycopg.connect(admin_conninfo, autocommit=True) as admin:
        drop_database_on(admin, name)
        if template is None:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        else:
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
    return url_for_database(admin_conninfo, name)


def drop_database(admin_conninfo: str, name: str) -> None:
    with psycopg.connect(admin_conninfo, autocommit=True) as admin:
        drop_database_on(admin, name)


def drop_database_on(admin: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def analyze_engine_tables(conninfo: str) -> None:
    """ANALYZE the engine's live and finished tables now, as the connecting
    (owning) user: the engine role may not."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(Q["bench_analyze"])
