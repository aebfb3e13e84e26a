"""The OpenAPI document tells the truth: schemathesis checks every answer against it, and a
client generated from it (openapi-python-client) works against a live server."""
import base64
import hashlib
import importlib
import inspect
import json
import os
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
import schemathesis
from helpers import TEST_CONFIG, bearer, token_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live import serving
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app import create_app

EXAMPLES = int(os.environ.get("OPENAPI_EXAMPLES", 12))
HYPOTHESIS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
# not_a_server_error would count 501: the documented answer of a router-backed read without the
# router configured (code 7004); the test checks for 5xx itself below.
CHECKS = [status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
SCHEMA = schemathesis.openapi.from_wsgi("/openapi.json", create_app(TEST_CONFIG))
OPERATIONS = {op.ok().label: op.ok() for op in SCHEMA.get_all_operations()}


@pytest.fixture
def world(api, demo):
    """A user with a token, a group it is the master of with a second member, and a store with a seller."""
    token = token_for(api, 7, "Seven")
    status, body = api.post("/groups", {"master": 7, "name": "g", "members": [7, 8]})
    assert status == 200, body
    store = api.post("/stores", {"name": "s"})[1]["data"]["store_id"]
    api.post(f"/stores/{store}/sellers", {"name": "ann"})
    return {"token": token, "gid": body["data"]["group_id"], "mid": 8, "uid": 7, "store_id": store,
            "seller_id": None}


def documented_codes(operation, status: int) -> list[int]:
    return operation.definition.raw["responses"][str(status)].get("x-codes", [])


@pytest.mark.parametrize("label", sorted(OPERATIONS))
@HYPOTHESIS
@given(data=st.data())
def test_every_answer_matches_the_document(demo, world, label, data):
    operation = OPERATIONS[label]
    case = data.draw(operation.as_strategy())
    security = operation.definition.raw.get("security", [])
    as_client = security == [{"client": []}] or len(security) == 2 and data.draw(st.booleans(), label="as client")
    # Half the time, ids that exist, so that the answers with data are checked too.
    for name in ("gid", "mid", "uid", "store_id"):
        if name in (case.path_parameters or {}) and data.draw(st.booleans(), label=f"real {name}"):
            case.path_parameters[name] = world[name]
    headers = bearer(world["token"]) if as_client else demo["auth"]
    response = case.call_and_validate(headers=headers, checks=CHECKS)
    if response.status_code >= 400:
        code = response.json()["meta"]["code"]
        assert code in documented_codes(operation, response.status_code), (label, response.status_code, code)
        assert response.status_code < 500 or (response.status_code, code) == (501, 7004), (label, code)


# --- a generated client works ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def generated(app, tmp_path_factory):
    """The package openapi-python-client makes from the document, imported (generated offline)."""
    folder = tmp_path_factory.mktemp("client")
    (folder / "openapi.json").write_text(json.dumps(app.test_client().get("/openapi.json").get_json()))
    bin_dir = str(Path(sys.executable).parent)  # its post-generation hook runs ruff from the venv
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}  # no network needed
    result = subprocess.run([sys.executable, "-m", "openapi_python_client", "generate", "--path", "openapi.json",
                             "--output-path", "im_api_client", "--meta", "none"],
                            cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("im_api_client")
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.split(".")[0] == "im_api_client"]:
            del sys.modules[name]


def test_a_generated_client_calls_a_live_server(app, demo, generated):
    from im_api_client.api.auth import auth_grant
    from im_api_client.api.group import group_get, group_members_add, groups_create, groups_list
    from im_api_client.api.message import messages_peer
    from im_api_client.models import Grant, GroupCreate, GroupDetail, Members, PeerMessage

    digest = hashlib.md5(demo["secret"].encode()).hexdigest()
    basic = base64.b64encode(f"{demo['id']}:{digest}".encode()).decode()
    with serving(app) as base:
        server = generated.AuthenticatedClient(base_url=base, token=basic, prefix="Basic")
        token = auth_grant.sync(client=server, body=Grant(uid=1, user_name="Alice")).data.token
        assert isinstance(token, str) and token

        created = groups_create.sync(client=server, body=GroupCreate(master=1, name="friends", members=[1, 2]))
        group_id = created.data.group_id
        added = group_members_add.sync(client=server, gid=group_id, body=Members(members=[3]))
        assert added.data.success is True

        group = group_get.sync(client=server, gid=group_id).data
        assert isinstance(group, GroupDetail)
        assert (group.id, group.name, group.master, group.super_) == (group_id, "friends", 1, 0)
        assert [member.uid for member in group.members] == [1, 2, 3]

        sent = messages_peer.sync(client=server, body=PeerMessage(sender=1, receiver=2, content="hi"),
                                  idempotency_key="once")
        again = messages_peer.sync(client=server, body=PeerMessage(sender=1, receiver=2, content="hi"),
                                   idempotency_key="once")
        assert isinstance(sent.data.id, int) and again.data.id == sent.data.id

        alice = generated.AuthenticatedClient(base_url=base, token=token)  # Bearer
        mine = groups_list.sync(client=alice).data
        assert [g.id for g in mine] == [group_id]


def spelled(hint) -> str:
    """A type hint as written, without spaces or module names: list[int|Member]|Unset."""
    if isinstance(hint, str):
        return hint.replace(" ", "")
    if isinstance(hint, types.UnionType):
        return "|".join(spelled(arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        return f"list[{spelled(typing.get_args(hint)[0])}]"
    return hint.__name__


def annotation(function, name: str) -> str:
    return spelled(inspect.signature(function).parameters[name].annotation)


def test_the_generated_client_types_ids_as_integers_and_takes_the_bare_arrays(generated):
    from im_api_client.api.group import group_members_add, groups_create
    from im_api_client.api.relationship import user_blacklist_add, user_friends_add
    from im_api_client.api.user import users_register
    from im_api_client.models import Block, Friends, Grant, GroupCreate, Members, PeerMessage

    assert Grant.__annotations__["uid"] == "int"
    assert Friends.__annotations__["friend_uid"].replace(" ", "") == Block.__annotations__["uid"].replace(" ", "") \
        == "int|list[int]"
    assert GroupCreate.__annotations__["members"].replace(" ", "") == "list[int|Member]|Unset"
    assert Members.__annotations__["members"].replace(" ", "") == "list[int|Member]"
    assert (PeerMessage.__annotations__["sender"], PeerMessage.__annotations__["receiver"]) == ("int", "int")
    assert annotation(users_register.sync, "body") == "list[Member]|Register"
    assert annotation(user_friends_add.sync, "body") == "Friends|list[int]"
    assert annotation(user_blacklist_add.sync, "body") == "Block|list[int]"
    assert annotation(group_members_add.sync, "body") == "list[int|Member]|Member|Members"
    assert annotation(groups_create.sync, "body") == "GroupCreate"


def test_the_generated_client_sends_the_bare_array_bodies(app, demo, generated, db):
    from im_api_client.api.relationship import user_friends_add
    from im_api_client.api.user import users_register
    from im_api_client.models import Member

    digest = hashlib.md5(demo["secret"].encode()).hexdigest()
    basic = base64.b64encode(f"{demo['id']}:{digest}".encode()).decode()
    with serving(app) as base:
        server = generated.AuthenticatedClient(base_url=base, token=basic, prefix="Basic")
        registered = users_register.sync(client=server, body=[Member(uid=11, name="Eleven"), Member(uid=12)])
        assert [(item.uid, item.error) for item in registered.data] == [(11, generated.types.UNSET),
                                                                        (12, generated.types.UNSET)]
        assert user_friends_add.sync(client=server, uid=11, body=[12]).data.success is True
    with db.cursor() as cur:
        cur.execute("SELECT uid, friend_uid FROM friend ORDER BY uid")
        assert cur.fetchall() == [{"uid": 11, "friend_uid": 12}, {"uid": 12, "friend_uid": 11}]


def test_a_generated_client_uploads_and_downloads_media(app, demo, generated):
    import io

    from im_api_client.api.media import files_upload, image_download, images_upload
    from im_api_client.models import FilesUploadBody, ImagesUploadFilesBody
    from im_api_client.types import File
    from media_files import png

    data = png(20, 10)
    digest = hashlib.md5(demo["secret"].encode()).hexdigest()
    basic = base64.b64encode(f"{demo['id']}:{digest}".encode()).decode()
    with serving(app) as base:
        server = generated.AuthenticatedClient(base_url=base, token=basic, prefix="Basic")
        raw = images_upload.sync(client=server, body=File(payload=io.BytesIO(data), mime_type="image/png"))
        form = images_upload.sync(client=server, body=ImagesUploadFilesBody(
            file=File(payload=io.BytesIO(data), file_name="a.png", mime_type="image/png")))
        assert raw.data.src == form.data.src == f"/images/{hashlib.sha256(data).hexdigest()}.png"
        assert raw.data.src_url == base + raw.data.src
        name = raw.data.src.rsplit("/", 1)[1]
        assert image_download.sync_detailed(name, client=generated.Client(base_url=base)).content == data
        sent = files_upload.sync(client=server, body=FilesUploadBody(
            file=File(payload=io.BytesIO(b"notes"), file_name="notes.txt")))
        assert sent.data.src.endswith(".txt")
