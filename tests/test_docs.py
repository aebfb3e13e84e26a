"""The documents users read stay true to the code."""
import base64
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import bearer, token_for
from live import serving
from openapi_schema_validator import OAS30Validator, validate
from openapi_spec_validator import validate as validate_spec

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


def test_the_document_is_valid_openapi(document):
    validate_spec(document)


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
                assert response["content"]["application/json"]["example"]["meta"]["code"] in response["x-codes"]
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


def test_uids_stop_below_the_customer_range_and_other_ids_are_int64(document, app):
    uid_max = app.config["CUSTOMER_ID_BASE"] - 1
    path_params = {p["name"]: p["schema"] for item in document["paths"].values() for p in item.get("parameters", ())}
    assert path_params["uid"]["maximum"] == path_params["mid"]["maximum"] == uid_max
    assert path_params["gid"] == {"type": "integer", "format": "int64", "minimum": 0}
    peer = document["components"]["schemas"]["PeerMessage"]["properties"]
    assert peer["sender"]["maximum"] == peer["receiver"]["maximum"] == uid_max
    receiver = document["components"]["schemas"]["GroupMessage"]["properties"]["receiver"]
    assert receiver["format"] == "int64" and "maximum" not in receiver


def numbers(node):
    """Every number in a JSON document, keys' values and list items alike."""
    if isinstance(node, dict):
        for value in node.values():
            yield from numbers(value)
    elif isinstance(node, list):
        for value in node:
            yield from numbers(value)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield node


def test_no_bound_in_the_document_is_past_what_javascript_holds_exactly(document):
    """Swagger UI and ReDoc are JavaScript: 2^63 - 1 would show as 9223372036854776000."""
    assert max(numbers(document)) <= 2**53  # 2^53: the first client id (an example)
    assert "9223372036854775807" not in json.dumps(document)


def test_the_introduction_teaches_auth_errors_paging_idempotency_and_v2(document):
    intro = document["info"]["description"]
    for words in ("Authorization: Basic", "md5hex", "Bearer", '{"data":', '"meta"', "Retry-After", "?after=",
                  "Idempotency-Key", "/v2", "429", "im_message_queue", "2^53"):
        assert words in intro, words
    secret, appid = re.search(r"For app `(\d+)` with secret `(\w+)`", intro).group(2, 1)
    digest = hashlib.md5(secret.encode()).hexdigest()
    assert f"md5hex(`{secret}`) = `{digest}`" in intro
    header = base64.b64encode(f"{appid}:{digest}".encode()).decode()
    assert f"Authorization: Basic {header}" in intro


def test_every_operation_has_a_one_line_summary_and_a_description(document):
    for path, method, operation in operations(document):
        assert operation["summary"] and "\n" not in operation["summary"], (path, method)
        assert len(operation.get("description", "")) > 40, (path, method)


def schema_at(document, schema):
    return document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema


def test_every_request_body_and_answer_has_an_example_that_its_schema_takes(document):
    for path, method, operation in operations(document):
        bodies = [operation["responses"]["200"]] + ([operation["requestBody"]] if "requestBody" in operation else [])
        for body in bodies:
            if "application/json" not in body["content"]:
                continue  # bytes (an upload, a download): nothing to show
            content = body["content"]["application/json"]
            assert "example" in content, (path, method)
            validate(content["example"], {**content["schema"], "components": document["components"]},
                     cls=OAS30Validator)


def leaves(node, path=""):
    """(path, schema) of every property and item schema that holds a single value."""
    if isinstance(node, dict):
        if node.get("type") in ("string", "integer", "number", "boolean"):
            yield path, node
        for key, value in node.items():
            if key not in ("example", "examples"):
                yield from leaves(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from leaves(value, f"{path}[{index}]")


def test_no_string_or_id_is_shown_without_an_example(document):
    """Swagger UI and ReDoc show "string" and 0 for a field without one."""
    missing = [path for path, schema in leaves(document["components"]["schemas"])
               if schema["type"] in ("string", "integer") and "example" not in schema and "enum" not in schema
               and schema.get("format") != "binary"]
    assert not missing, missing
    strings = [example for _, schema in leaves(document["components"]["schemas"]) if schema["type"] == "string"
               for example in [schema.get("example")] if example == "string" or example == ""]
    assert not strings


def test_every_path_and_query_parameter_has_an_example(document):
    parameters = [(path, parameter) for path, item in document["paths"].items()
                  for parameter in item.get("parameters", ())]
    parameters += [(path, parameter) for path, _, operation in operations(document)
                   for parameter in operation.get("parameters", ()) if "in" in parameter]
    assert len(parameters) > 30
    missing = [(path, p["name"]) for path, p in parameters if "example" not in p and "example" not in p["schema"]]
    assert not missing, missing


def test_id_fields_of_request_bodies_are_typed(document):
    schemas = document["components"]["schemas"]
    uid = {"type": "integer", "minimum": 0, "maximum": 2**53 - 1}
    member_forms = schemas["GroupCreate"]["properties"]["members"]["items"]["oneOf"]
    assert [form.get("type") or form["$ref"] for form in member_forms] == ["integer", "#/components/schemas/Member"]
    assert uid.items() <= member_forms[0].items()
    for schema, field in (("Friends", "friend_uid"), ("Block", "uid")):
        one, many = schemas[schema]["properties"][field]["oneOf"]
        assert uid.items() <= one.items() and many["type"] == "array" and uid.items() <= many["items"].items()
    assert schemas["Members"]["properties"]["members"]["items"]["oneOf"] == member_forms


def request_forms(document, path, method):
    schema = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return [schema_at(document, form) for form in schema["oneOf"]]


def test_the_bare_array_bodies_are_documented_beside_the_objects(document):
    register = request_forms(document, "/users", "post")
    assert register[0]["type"] == "array" and register[0]["items"] == {"$ref": "#/components/schemas/Member"}
    assert "users" in register[1]["properties"]
    for path, field in (("/users/{uid}/friends", "friend_uid"), ("/users/{uid}/blacklist", "uid")):
        as_object, as_array = request_forms(document, path, "post")
        assert field in as_object["properties"] and as_array["items"]["type"] == "integer", path
    for method in ("post", "delete"):
        as_object, as_array, one = request_forms(document, "/groups/{gid}/members", method)
        assert "members" in as_object["properties"] and as_array["type"] == "array" and "uid" in one["properties"]
    batch, wrapped = request_forms(document, "/messages/peers/batch", "post")
    assert batch["items"] == {"$ref": "#/components/schemas/PeerMessage"} and "messages" in wrapped["properties"]


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


def test_the_server_takes_every_request_example(document, api, client, demo):
    """Sent as they stand (path ids from their examples, the demo app's id for `appid`), no example is
    refused as a bad body: the examples stay within what the server accepts."""
    token = token_for(api, 1003)  # not 1001: the revoke example revokes 1001's token
    assert api.post("/groups", {"master": 1001, "name": "g", "members": [1001, 1003], "group_id": 120045})[0] == 200
    sent = 0
    for path, method, operation in operations(document):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is None:
            continue
        example = body["example"]
        if isinstance(example, dict) and "appid" in example:
            example = {**example, "appid": demo["id"]}
        examples = {p["name"]: p["example"] for p in document["paths"][path].get("parameters", [])}
        url = re.sub(r"\{(\w+)\}", lambda m, examples=examples: str(examples[m.group(1)]), path)
        headers = bearer(token) if operation.get("security") == [{"client": []}] else demo["auth"]
        response = client.open(url, method=method.upper(), json=example, headers=headers)
        meta = (response.get_json() or {}).get("meta", {})
        assert not (response.status_code == 400 and meta.get("code") in (1000, 1001, 1002)), (method, path, meta)
        assert response.status_code < 500, (method, path, response.get_json())
        sent += 1
    assert sent >= 30
