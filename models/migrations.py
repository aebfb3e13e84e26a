"""Applying sql/: create the database if missing, then every schema file not applied yet."""
import re
from pathlib import Path

import pymysql

from .connection import mysql_connect_args

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
CREATE_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migration (
  version VARCHAR(255) NOT NULL PRIMARY KEY,
  applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""
APPLIED = "SELECT version FROM schema_migration"
RECORD = "INSERT INTO schema_migration (version) VALUES (%(version)s)"
# Whether a `-- only if ...` line holds (docs/DECISIONS.md, "Conditional steps"): one query
# for every kind, so that only named constants reach execute().
CONDITION = """
SELECT 1 FROM information_schema.COLUMNS WHERE %(kind)s = 'column'
  AND TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %(table)s AND COLUMN_NAME = %(name)s
UNION ALL SELECT 1 FROM information_schema.STATISTICS WHERE %(kind)s = 'index'
  AND TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %(table)s AND INDEX_NAME = %(name)s
UNION ALL SELECT 1 FROM information_schema.TABLES WHERE %(kind)s = 'other table collation'
  AND TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %(table)s AND TABLE_COLLATION <> %(name)s
UNION ALL SELECT 1 FROM information_schema.SCHEMATA WHERE %(kind)s = 'other database collation'
  AND SCHEMA_NAME = DATABASE() AND DEFAULT_COLLATION_NAME <> %(name)s
LIMIT 1
"""
CONDITIONS = [  # (what the line says after "-- only if", what CONDITION asks, whether it must find a row)
    (r"column `(?P<table>\w+)`\.`(?P<name>\w+)` is missing", "column", False),
    (r"index `(?P<table>\w+)`\.`(?P<name>\w+)` exists", "index", True),
    (r"index `(?P<table>\w+)`\.`(?P<name>\w+)` is missing", "index", False),
    (r"table `(?P<table>\w+)` is not (?P<name>\w+)", "other table collation", True),
    (r"database is not (?P<name>\w+)", "other database collation", True),
]


def condition(line: str) -> tuple[dict, bool]:
    """(parameters of CONDITION, whether it must find a row) for one `-- only if ...` line."""
    said = line.strip().removeprefix("-- only if").strip()
    for pattern, kind, must_find in CONDITIONS:
        if found := re.fullmatch(pattern, said):
            return {"kind": kind, "table": None} | found.groupdict(), must_find
    raise ValueError(f"cannot read this condition: {line.strip()!r}")


def statements(text: str) -> list[tuple[list[tuple[dict, bool]], str]]:
    """The statements of a schema file (split at a ';' that ends a line), each with the
    conditions of the `-- only if ...` lines above it; other comment lines are dropped."""
    found, conditions, lines = [], [], []
    for line in text.splitlines():
        if line.lstrip().startswith("-- only if"):
            conditions.append(condition(line))
        elif not line.lstrip().startswith("--"):
            lines.append(line)
            if line.rstrip().endswith(";"):
                found.append((conditions, "\n".join(lines).strip().removesuffix(";").rstrip()))
                conditions, lines = [], []
    found.append((conditions, "\n".join(lines).strip()))
    return [(c, s) for c, s in found if s]


def holds(cur, conditions) -> bool:
    """Whether every condition holds in the current database."""
    for params, must_find in conditions:
        cur.execute(CONDITION, params)
        if (cur.fetchone() is not None) != must_find:
            return False
    return True


def init_db(config) -> list[str]:
    """Create the database if missing and apply the sql/ files not applied yet; return their names."""
    name = config["MYSQL_DATABASE"]
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"MYSQL_DATABASE must be letters, digits and _: {name!r}")
    # No read timeout: taking over a big table (sql/005) can run for minutes.
    conn = pymysql.connect(**mysql_connect_args(config, database=False) | {"read_timeout": None})
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            cur.execute(f"USE `{name}`")
            cur.execute(CREATE_MIGRATIONS)
            cur.execute(APPLIED)
            done = {row["version"] for row in cur.fetchall()}
            applied = []
            for path in sorted(SQL_DIR.glob("*.sql")):
                if path.name in done:
                    continue
                for conditions, statement in statements(path.read_text()):
                    if holds(cur, conditions):
                        cur.execute(statement)
                cur.execute(RECORD, {"version": path.name})
                applied.append(path.name)
        return applied
    finally:
        conn.close()
