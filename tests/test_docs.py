"""The documents users read stay true to the code."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from live import serving

from models import errors

ROOT = Path(__file__).resolve().parent.parent


def test_error_table_lists_every_code_of_the_catalog():
    table = {(int(code), int(status), name) for code, status, name in
             re.findall(r"^\| (\d+) \| (\d+) \| (\w+) \|", (ROOT / "docs/ERRORS.md").read_text(), re.M)}
    catalog = {(cls.code, cls.status, cls.__name__) for cls in vars(errors).values()
               if isinstance(cls, type) and issubclass(cls, errors.ApiError)}
    assert table == catalog


def test_codes_are_unique():
    codes = [cls.code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.ApiError)]
    assert len(codes) == len(set(codes))


# --- the OpenAPI document (/openapi.json) -----------------------------------------------------------

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def document(app):
    return app.test_client().get("/openapi.json").get_json()


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_every_operation_has_a_unique_operation_id(document):
    ids = [operation.get("operationId") for _, _, operation in operations(document)]
    assert None not in ids
    assert len(ids) == len(set(ids)), sorted(ids)


def test_every_operation_declares_its_data_and_its_errors_in_the_envelope(document):
    for path, method, operation in operations(document):
        responses = operation["responses"]
        assert "default" not in responses, (path, method)
        if "application/json" in responses["200"]["content"]:
            success = responses["200"]["content"]["application/json"]["schema"]
            assert success["required"] == ["data"] and "data" in success["properties"], (path, method)
        else:  # a media download: the object's bytes
            assert path.split("/")[1] in ("images", "audios", "files") and method == "get", (path, method)
        for status, response in responses.items():
            assert "X-Request-ID" in response["headers"], (path, method, status)
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
                codes = {cls.code: cls for cls in vars(errors).values()
                         if isinstance(cls, type) and issubclass(cls, errors.ApiError)}
                assert response["x-codes"] and all(codes[c].status == int(status) for c in response["x-codes"])
                assert all(f"`{code}`" in response["description"] for code in response["x-codes"])
            if status in ("429", "503"):
                assert "Retry-After" in response["headers"], (path, method, status)


def test_the_error_schema_is_the_envelope(document):
    schemas = document["components"]["schemas"]
    assert schemas["Error"]["required"] == ["meta"]
    assert set(schemas["ErrorMeta"]["properties"]) == {"code", "message"}
    assert "PaginationMetadata" not in schemas
    assert not document["components"].get("responses")


def test_client_aliases_are_served_but_documented_once(document, app):
    assert not [path for path in document["paths"] if path.startswith("/client/")]
    assert any(rule.rule.startswith("/client/groups") for rule in app.url_map.iter_rules())


def test_uids_stop_below_the_customer_range_and_ids_below_2_63(document, app):
    uid_max = app.config["CUSTOMER_ID_BASE"] - 1
    path_params = {p["name"]: p["schema"] for item in document["paths"].values() for p in item.get("parameters", ())}
    assert path_params["uid"]["maximum"] == path_params["mid"]["maximum"] == uid_max
    assert path_params["gid"]["maximum"] == 2**63 - 1
    peer = document["components"]["schemas"]["PeerMessage"]["properties"]
    assert peer["sender"]["maximum"] == peer["receiver"]["maximum"] == uid_max
    assert document["components"]["schemas"]["GroupMessage"]["properties"]["receiver"]["maximum"] == 2**63 - 1


def test_flags_are_documented_as_the_0_or_1_they_are(document):
    schemas = document["components"]["schemas"]
    assert schemas["Group"]["properties"]["super"] == {"type": "integer", "enum": [0, 1]}
    assert schemas["GroupMember"]["properties"]["mute"] == {"type": "integer", "enum": [0, 1]}


def test_idempotency_key_is_documented_where_it_is_read(document):
    idempotent = {operation["operationId"] for _, _, operation in operations(document)
                  if {"$ref": "#/components/parameters/Idempotency-Key"} in operation.get("parameters", ())}
    assert idempotent == {"groups_create", "messages_peer", "messages_peer_batch", "messages_group", "messages_system",
                          "messages_notification", "messages_group_notification", "messages_room", "messages_customer"}


# --- /docs and /redoc work offline ----------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_docs_pages_load_their_assets_from_the_service(client):
    for page, assets in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))):
        html = client.get(page).get_data(as_text=True)
        for src in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert src.startswith("/"), (page, src)  # nothing from another host
            response = client.get(src)
            assert response.status_code == 200, (page, src)
            response.close()
        assert all(asset in html for asset in assets), html


def dump_dom(url: str, tmp_path) -> str:
    """The page as headless Chromium renders it, with every address but 127.0.0.1 unreachable."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={tmp_path}", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
               "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
               "--virtual-time-budget=10000", "--dump-dom", url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_swagger_ui_renders_every_operation_offline(app, tmp_path):
    with serving(app) as base:
        dom = dump_dom(base + "/docs", tmp_path)
    ids = [operation["operationId"] for _, _, operation in operations(app.test_client().get("/openapi.json").json)]
    missing = [operation_id for operation_id in ids if operation_id not in dom]
    assert not missing, dom[:3000]
    assert "/groups/{gid}/members/{mid}" in dom


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_redoc_renders_offline(app, tmp_path):
    with serving(app) as base:
        dom = dump_dom(base + "/redoc", tmp_path)
    assert "Create a group" in dom and "/groups/{gid}/members" in dom, dom[:3000]
