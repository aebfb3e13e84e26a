"""Request ids, JSON logs and Prometheus metrics."""
import json
import logging
import re

from conftest import TEST_CONFIG, Api

from app import create_app
from views.ops import JsonFormatter, access_line


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
