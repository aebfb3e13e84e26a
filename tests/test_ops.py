"""Request ids, JSON logs and Prometheus metrics."""
import json
import logging
import re
import time

import pymysql
import pytest
from helpers import TEST_CONFIG, Api, free_port, queue, rows, wait_for
from test_faults import own_redis  # noqa: F401, F811 (a fixture)

from app import create_app, start_relay_thread
from logformat import JsonFormatter, access_line
from outage import Outage


def test_a_request_id_is_passed_through_or_made(client):
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id; drop"}).headers["X-Request-ID"]
    assert len(made) == 32 and made != client.get("/healthz").headers["X-Request-ID"]


def test_the_access_log_is_one_json_line_on_stdout_with_the_request_id(demo, capfd):
    logged = Api(create_app(TEST_CONFIG | {"ACCESS_LOG": True}).test_client(), demo["auth"])
    logged.get("/groups/77", headers={"X-Request-ID": "req-1"})
    logged.get("/healthz")
    first, second = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert first["message"] == "request" and first["request_id"] == "req-1"
    assert (first["method"], first["path"], first["status"], first["appid"]) == ("GET", "/groups/77", 404, demo["id"])
    assert second["path"] == "/healthz" and second["appid"] is None and len(second["request_id"]) == 32


def test_an_access_line_is_one_line_of_json_whatever_the_path():
    path = '/a"b\\c\x01d\u00e9\n'
    line = access_line({"im.request_id": "r-1", "REQUEST_METHOD": 'GE"T', "PATH_INFO": path}, 404, 0.0123)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    entry = json.loads(line)
    assert (entry["path"], entry["method"], entry["status"], entry["ms"]) == (path, 'GE"T', 404, 12.3)
    assert entry["appid"] is None and entry["request_id"] == "r-1"


def test_log_lines_written_during_a_request_carry_its_request_id(app):
    with app.test_request_context(environ_base={"im.request_id": "req-2"}):
        record = logging.LogRecord("views.errors", logging.WARNING, "", 0, "boom", (), None)
        assert json.loads(JsonFormatter().format(record))["request_id"] == "req-2"


def test_metrics_count_requests_and_show_queue_lengths(api, client, r):
    series = 'im_api_request_seconds_count{endpoint="/messages/peers",method="POST",status="200"}'

    def count(text):
        match = re.search(re.escape(series) + r" ([\d.]+)", text)
        return float(match[1]) if match else 0.0

    before = count(client.get("/metrics").get_data(as_text=True))
    api.post("/messages/peers", {"sender": 1, "receiver": 2, "content": "x"})
    text = client.get("/metrics").get_data(as_text=True)
    assert count(text) == before + 1
    assert 'im_api_queue_length{queue="im_message_queue"} 1.0' in text
    assert "im_api_outbox_pending 0.0" in text
    assert "im_api_request_seconds_bucket" in text


def test_metric_labels_stay_bounded_whatever_the_method(client):
    for method in ("FOO", "BAR"):
        assert client.open("/healthz", method=method).status_code == 405
    text = client.get("/metrics").get_data(as_text=True)
    assert 'endpoint="unmatched",method="other",status="405"' in text  # a 405 matches no rule
    assert "FOO" not in text and "BAR" not in text


# --- outages: /readyz and /metrics name what they can and cannot read -------------------------------

@pytest.fixture(scope="module")
def closed_port():
    return free_port()  # nothing listens there


def app_with(closed_port: int, *down: str):
    """The app on the test database and Redis, with the named backends pointed at a closed port."""
    ports = {"MySQL": {"MYSQL_PORT": closed_port, "MYSQL_TIMEOUT": 1}, "Redis": {"REDIS_PORT": closed_port}}
    return create_app(TEST_CONFIG | {k: v for name in down for k, v in ports[name].items()})


@pytest.mark.parametrize("down", [("MySQL",), ("Redis",), ("MySQL", "Redis")], ids="+".join)
def test_readyz_names_each_backend_that_is_down_and_only_those(closed_port, down):
    response = app_with(closed_port, *down).test_client().get("/readyz")
    assert response.status_code == 503 and response.headers["Retry-After"]
    message = response.get_json()["meta"]["message"]
    assert message.startswith(f"Not ready: {down[0]} is not answering ("), message
    for name in ("MySQL", "Redis"):
        assert (name in message) == (name in down), message


def test_readyz_is_ready_with_both_backends(client):
    response = client.get("/readyz")
    assert response.status_code == 200 and response.get_json() == {"data": {"status": "ready"}}


def test_metrics_keep_the_outbox_backlog_while_redis_is_down(closed_port, db):
    with db.cursor() as cur:
        cur.execute("INSERT INTO outbox (redis_key, item) VALUES ('group_event_queue', '{}'), "
                    "('im_message_queue', '{}')")
    response = app_with(closed_port, "Redis").test_client().get("/metrics")
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and "\nim_api_outbox_pending 2.0\n" in text
    assert "im_api_queue_length{" not in text  # unknown while Redis is down: left out, not reported as 0


def test_metrics_keep_the_queue_lengths_while_mysql_is_down(closed_port, r):
    r.lpush("group_event_queue", "{}")
    text = app_with(closed_port, "MySQL").test_client().get("/metrics").get_data(as_text=True)
    assert 'im_api_queue_length{queue="group_event_queue"} 1.0' in text
    assert "im_api_outbox_pending " not in text


def test_the_metrics_content_type_has_one_charset(client):
    content_type = client.get("/metrics").headers["Content-Type"]
    assert content_type.startswith("text/plain;") and content_type.count("charset") == 1, content_type


# --- a background failure is logged once per change of state, with backoff --------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_an_outage_is_logged_when_it_starts_every_minute_while_it_lasts_and_when_it_ends(caplog):
    clock, log = Clock(), logging.getLogger("test.outage")
    outage = Outage(log, "outbox relay", interval=1, longest=10, remind=60, clock=clock)
    waits = []
    with caplog.at_level(logging.INFO, logger="test.outage"):
        for _ in range(130):  # 130 failures, one a second of the clock
            waits.append(outage.failed(pymysql.err.OperationalError(2003, "Can't connect")))
            clock.now += 1
        back = outage.succeeded()
    assert waits[:5] == [2, 4, 8, 10, 10] and set(waits[3:]) == {10} and back == 1
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 4, messages
    assert messages[0].startswith("outbox relay failing (MySQL: OperationalError:")
    assert messages[1].startswith("outbox relay still failing after 60 s (MySQL")
    assert messages[2].startswith("outbox relay still failing after 120 s (MySQL")
    assert messages[3] == "outbox relay works again after 130 s"


def test_the_relay_thread_backs_off_logs_once_and_says_when_redis_is_back(own_redis, demo, db, caplog):  # noqa: F811
    flaky = create_app(TEST_CONFIG | {"REDIS_PORT": own_redis.port, "REDIS_DB": 0, "REDIS_TIMEOUT": 1})
    own_redis.stop()
    assert Api(flaky.test_client(), demo["auth"]).post("/groups", {"master": 1, "name": "g"})[0] == 200
    flaky.config["OUTBOX_RELAY_INTERVAL"] = 0.02  # 50 tries a second without backoff
    with caplog.at_level(logging.INFO, logger="app"):
        start_relay_thread(flaky)
        time.sleep(2)
        failing = [r.getMessage() for r in caplog.records if r.name == "app"]
        own_redis.start()
        wait_for(lambda: rows(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"] == 0, what="the relay", seconds=30)
        wait_for(lambda: any("works again" in r.getMessage() for r in caplog.records), what="the log line")
    flaky.config["OUTBOX_RELAY_INTERVAL"] = 0  # stops the thread
    assert len(failing) == 1 and failing[0].startswith("outbox relay failing (Redis: "), failing
    assert [e["name"] for e in queue(flaky.extensions["redis"], "group_event_queue")] == ["group_create"]


# --- one log shape; nothing in a line that ends or disguises it -------------------------------------

CONTROL_TEXT = "a\x85b\x9bc\x7fd\u2028e\u2029f\u202eg\x00h\ni"  # C1, DEL, separators, a bidi override, C0


def assert_one_safe_line(line: str, text: str, field: str) -> None:
    assert len(line.rstrip("\n").splitlines()) == 1, repr(line)  # splitlines() also ends lines at U+0085 etc.
    assert not any(ch in line for ch in "\x85\x9b\x7f\u2028\u2029\u202e\x00"), repr(line)
    assert json.loads(line)[field] == text  # escaped, not dropped


def test_an_access_line_escapes_c1_and_other_controls_in_the_path():
    environ = {"im.request_id": "r", "REQUEST_METHOD": "GET", "PATH_INFO": "/groups/" + CONTROL_TEXT}
    assert_one_safe_line(access_line(environ, 404, 0.001).decode(), "/groups/" + CONTROL_TEXT, "path")


def test_a_log_line_escapes_c1_and_other_controls_in_the_message_and_fields():
    record = logging.LogRecord("views.errors", logging.WARNING, "", 0, "bad %s", (CONTROL_TEXT,), None)
    record.fields = {"item": CONTROL_TEXT}
    line = JsonFormatter().format(record)
    assert_one_safe_line(line, "bad " + CONTROL_TEXT, "message")
    assert json.loads(line)["item"] == CONTROL_TEXT


def test_the_bridge_and_the_access_log_write_the_apis_shape(capsys):
    from bridge import logs

    logs.setup("INFO")
    logs.warning("delivery failed, will retry", queue="im_message_queue", error="boom")
    bridge = json.loads(capsys.readouterr().err)
    record = logging.LogRecord("app", logging.WARNING, "", 0, "outbox relay failing", (), None)
    api = json.loads(JsonFormatter().format(record))
    access = json.loads(access_line({"im.request_id": "r", "REQUEST_METHOD": "GET", "PATH_INFO": "/"}, 200, 0.001))
    assert list(bridge)[:5] == list(api) == list(access)[:5] == ["ts", "level", "logger", "message", "request_id"]
    assert bridge["request_id"] is None
    assert (bridge["level"], bridge["logger"]) == ("WARNING", "bridge")
    assert bridge["message"] == "delivery failed, will retry"
    assert (bridge["queue"], bridge["error"]) == ("im_message_queue", "boom")


def test_an_unset_metrics_token_opens_nothing(client):
    assert client.application.config["METRICS_TOKEN"] is None
    for sent in ("Bearer None", "Bearer ", "Bearer"):
        response = client.get("/metrics", headers={"Authorization": sent}, environ_base={"REMOTE_ADDR": "203.0.113.9"})
        assert response.status_code == 403, sent


def test_metrics_is_refused_to_other_addresses_by_default(client):
    assert client.get("/metrics").status_code == 200  # the test client's peer is 127.0.0.1
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 403 and response.get_json()["meta"]["code"] == 2007
    # through a trusted proxy, the forwarded client address is the one that counts
    forwarded = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 403


def test_metrics_opens_to_the_configured_networks_and_token():
    from helpers import TEST_CONFIG

    from app import create_app
    app = create_app(TEST_CONFIG | {"METRICS_ALLOWED": "10.0.0.0/8", "METRICS_TOKEN": "scrape-me"})
    client = app.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics").status_code == 403  # localhost is no longer listed
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    for token, status in (("scrape-me", 200), ("wrong", 403)):
        response = client.get("/metrics", environ_base=outside, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == status
