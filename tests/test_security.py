"""Security properties that are easiest to state over the code itself, and the logs."""
import ast
import logging
from pathlib import Path

from helpers import bearer, token_for

ROOT = Path(__file__).resolve().parent.parent
# DDL that names the configured database (validated against [A-Za-z0-9_]+ first); the helpers of
# models/db.py that hand their caller's statement on (their callers are checked instead).
# restore.py's pages and counts are built once, at import, from constant table and column names (never values).
ALLOWED_DYNAMIC_SQL = {("models/migrations.py", "init_db"), ("models/db.py", "defer"), ("models/db.py", "results"),
                       ("models/restore.py", "count"), ("models/restore.py", "_restore_batch"),
                       ("models/restore.py", "take_over")}  # take_over: one of the UPSERT_ constants


def sql_calls():
    """(file, enclosing function, SQL argument) of every cursor.execute / executemany in the app, and
    of every defer(cur, sql) / results(cur, sql)."""
    for path in sorted([*ROOT.glob("models/*.py"), *ROOT.glob("views/*.py"), ROOT / "cli.py", ROOT / "app.py"]):
        tree = ast.parse(path.read_text())
        for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            for call in [n for n in ast.walk(func) if isinstance(n, ast.Call)]:
                if isinstance(call.func, ast.Attribute) and call.func.attr in ("execute", "executemany") and call.args:
                    yield str(path.relative_to(ROOT)), func.name, call.args[0]
                elif isinstance(call.func, ast.Name) and call.func.id in ("defer", "results") and len(call.args) > 1:
                    yield str(path.relative_to(ROOT)), func.name, call.args[1]


def constant(node) -> bool:
    """A module-level constant; or one whose {values} are rows escaped by values(cur, ROW_CONSTANT, rows)."""
    if isinstance(node, ast.Name):
        return node.id.isupper()
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        filled = node.keywords[0].value if len(node.keywords) == 1 and node.keywords[0].arg == "values" else None
        return (constant(node.func.value) and not node.args and isinstance(filled, ast.Call)
                and isinstance(filled.func, ast.Name) and filled.func.id == "values" and constant(filled.args[1]))
    return False


def test_sql_is_only_named_constants_with_parameters():
    calls = list(sql_calls())
    assert len(calls) > 30
    for path, func, sql in calls:
        if (path, func) in ALLOWED_DYNAMIC_SQL:
            continue
        # A module-level constant (or a conditional between two) is fine; f-strings, % and other .format()s are not.
        names = [sql.body, sql.orelse] if isinstance(sql, ast.IfExp) else [sql]
        assert all(constant(n) for n in names), f"{path}:{func}"


def test_the_sql_check_refuses_what_it_should():
    refused = ["f'SELECT {x}'", "'SELECT %s' % x", "QUERY.format(values=x)", "QUERY.format(values=values(cur, row, r))",
               "QUERY.format(x)", "query"]
    assert [constant(ast.parse(source, mode="eval").body) for source in refused] == [False] * len(refused)
    assert constant(ast.parse("QUERY.format(values=values(cur, ROW, rows))", mode="eval").body)


def test_secrets_are_compared_in_constant_time():
    source = (ROOT / "views/authentication.py").read_text()
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
