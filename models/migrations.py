"""Applying sql/: create the database if missing, then every schema file not applied yet."""
import re
from pathlib import Path

import pymysql

from .db import mysql_connect_args

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
CREATE_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migration (
  version VARCHAR(255) NOT NULL PRIMARY KEY,
  applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""
APPLIED = "SELECT version FROM schema_migration"
RECORD = "INSERT INTO schema_migration (version) VALUES (%(version)s)"


def statements(text: str) -> list[str]:
    """The statements of a schema file (split at a ';' that ends a line; no comment lines)."""
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*$", text, flags=re.M) if s.strip()]


def init_db(config) -> list[str]:
    """Create the database if missing and apply the sql/ files not applied yet; return their names."""
    name = config["MYSQL_DATABASE"]
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"MYSQL_DATABASE must be letters, digits and _: {name!r}")
    conn = pymysql.connect(**mysql_connect_args(config, database=False))
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
                for statement in statements(path.read_text()):
                    cur.execute(statement)
                cur.execute(RECORD, {"version": path.name})
                applied.append(path.name)
        return applied
    finally:
        conn.close()
