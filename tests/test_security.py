"""Security properties that are easiest to state over the code itself, and the logs."""
import ast
import logging
from pathlib import Path

from conftest import bearer, token_for

ROOT = Path(__file__).resolve().parent.parent
# DDL that names the configured database (validated against [A-Za-z0-9_]+ first).
ALLOWED_DYNAMIC_SQL = {("models/migrations.py", "init_db")}


def sql_calls():
    """(file, enclosing function, first argument) of every cursor.execute / executemany in the app."""
    for path in sorted([*ROOT.glob("models/*.py"), *ROOT.glob("views/*.py"), ROOT / "cli.py", ROOT / "app.py"]):
        tree = ast.parse(path.read_text())
        for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            for call in [n for n in ast.walk(func) if isinstance(n, ast.Call)]:
                if isinstance(call.func, ast.Attribute) and call.func.attr in ("execute", "executemany") and call.args:
                    yield str(path.relative_to(ROOT)), func.name, call.args[0]


def test_sql_is_only_named_constants_with_parameters():
    calls = list(sql_calls())
    assert len(calls) > 30
    for path, func, sql in calls:
        if (path, func) in ALLOWED_DYNAMIC_SQL:
            continue
        # A module-level constant (or a conditional between two) is fine; f-strings, % and .format() are not.
        names = [sql] if isinstance(sql, ast.Name) else [sql.body, sql.orelse] if isinstance(sql, ast.IfExp) else []
        assert names and all(isinstance(n, ast.Name) and n.id.isupper() for n in names), f"{path}:{func}"


def test_secrets_are_compared_in_constant_time():
    source = (ROOT / "views/credentials.py").read_text()
    assert "hmac.compare_digest" in source
    assert "secret_md5\"] ==" not in source and "== digest" not in source


def test_secrets_and_tokens_never_reach_the_logs(api, demo, client, caplog):
    caplog.set_level(logging.DEBUG)
    token = token_for(api, 1)
    client.post("/groups", json={"master": 1, "name": "g"}, headers=bearer(token))
    client.post("/groups", json={"master": 1, "name": "g"}, headers=bearer(token + "x"))
    client.post("/auth/grant", json={"uid": 1}, headers={"Authorization": demo["auth"]["Authorization"] + "x"})
    digest = demo["auth"]["Authorization"].split()[1]
    for secret in (demo["secret"], token, digest):
        assert secret not in caplog.text
