"""Failed authentications are limited per client address and per appid: past a limit, 429 with
Retry-After for the failing address; a right secret from another address still passes, and an
unknown appid past its limit costs no MySQL read."""
import pytest
from helpers import TEST_CONFIG, assert_error, basic, bearer

import config
from app import create_app
from models import ratelimit
from views import authentication

GRANT = "/auth/grant"
RATE_LIMITED, UNKNOWN_APP, BAD_SECRET, BAD_TOKEN = 6001, 2002, 2003, 2004
ADDRESS_LIMIT, APP_LIMIT = 3, 5


@pytest.fixture(scope="module")
def limited_app(app):
    return create_app(TEST_CONFIG | {"AUTH_FAIL_RATE_LIMIT": f"{ADDRESS_LIMIT}/minute",
                                     "AUTH_FAIL_APP_RATE_LIMIT": f"{APP_LIMIT}/minute"})


@pytest.fixture
def limited(limited_app, r):
    limited_app.extensions["auth_holds"].clear()
    limited_app.extensions["app_cache"].clear()
    return limited_app.test_client()


def grant(client, auth: dict, address: str):
    """POST /auth/grant from this client address (an untrusted peer: its own address counts)."""
    response = client.post(GRANT, json={"uid": 1}, headers=auth, environ_base={"REMOTE_ADDR": address})
    return response.status_code, response.get_json(), response.headers


def assert_held_back(status, body, headers):
    assert_error(status, body, 429, code=RATE_LIMITED)
    assert 1 <= int(headers["Retry-After"]) <= 60, headers


def test_wrong_secrets_past_the_limit_are_429_and_a_right_secret_from_another_address_passes(limited, demo, r):
    wrong = basic(demo["id"], "guess")
    for _ in range(ADDRESS_LIMIT):
        status, body, _ = grant(limited, wrong, "198.51.100.7")
        assert_error(status, body, 401, code=BAD_SECRET)
    assert_held_back(*grant(limited, wrong, "198.51.100.7"))
    assert_held_back(*grant(limited, demo["auth"], "198.51.100.7"))  # the guessing address is held back
    status, body, _ = grant(limited, demo["auth"], "203.0.113.9")
    assert status == 200, body
    assert r.get("rate_limit_auth_address_198.51.100.7") == str(ADDRESS_LIMIT + 1)  # the held-back try not counted
    assert 0 < r.ttl("rate_limit_auth_address_198.51.100.7") <= 60


def test_the_appid_limit_holds_back_failing_addresses_only(limited, demo):
    wrong = basic(demo["id"], "guess")
    for n in range(APP_LIMIT):  # from as many addresses, each under its own limit
        status, body, _ = grant(limited, wrong, f"198.51.100.{n + 1}")
        assert_error(status, body, 401, code=BAD_SECRET)
    assert_held_back(*grant(limited, wrong, "198.51.100.100"))  # a new address's first wrong secret
    assert_held_back(*grant(limited, demo["auth"], "198.51.100.100"))  # and it is held back now
    status, body, _ = grant(limited, demo["auth"], "203.0.113.9")
    assert status == 200, body


def test_an_unknown_appid_past_its_limit_costs_no_mysql_read(limited, demo, monkeypatch):
    reads = []
    find = authentication.tenants.find_app
    monkeypatch.setattr(authentication.tenants, "find_app", lambda cur, appid: reads.append(appid) or find(cur, appid))
    unknown = basic(demo["id"] + 1000, demo["secret"])
    for n in range(APP_LIMIT):
        status, body, _ = grant(limited, unknown, f"198.51.100.{n + 1}")
        assert_error(status, body, 401, code=UNKNOWN_APP)
    assert len(reads) == APP_LIMIT  # misses are not cached below the limit: a hand-inserted app works at once
    assert_held_back(*grant(limited, unknown, "198.51.100.100"))
    for n in range(10):  # from addresses never seen: still no read
        assert_held_back(*grant(limited, unknown, f"203.0.113.{n + 1}"))
    assert len(reads) == APP_LIMIT + 1
    status, body, _ = grant(limited, demo["auth"], "203.0.113.50")  # another app is not held back
    assert status == 200, body


def test_bad_tokens_past_the_limit_are_429(limited, demo):
    for _ in range(ADDRESS_LIMIT):
        response = limited.post("/device/bind", json={"apns_device_token": "t"}, headers=bearer("forged"),
                                environ_base={"REMOTE_ADDR": "198.51.100.7"})
        assert_error(response.status_code, response.get_json(), 401, code=BAD_TOKEN)
    response = limited.post("/device/bind", json={"apns_device_token": "t"}, headers=bearer("forged"),
                            environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert_held_back(response.status_code, response.get_json(), response.headers)


def test_a_right_secret_does_not_count(limited, demo, r):
    for _ in range(ADDRESS_LIMIT * 3):
        status, body, _ = grant(limited, demo["auth"], "198.51.100.7")
        assert status == 200, body
    assert r.keys("rate_limit_*") == []


def test_behind_a_trusted_proxy_the_forwarded_address_counts(limited, demo):
    wrong = basic(demo["id"], "guess")
    forwarded = {**wrong, "X-Forwarded-For": "198.51.100.7"}
    for _ in range(ADDRESS_LIMIT):
        assert grant(limited, forwarded, "127.0.0.1")[0] == 401  # nginx on the same host
    assert_held_back(*grant(limited, forwarded, "127.0.0.1"))
    other = {**demo["auth"], "X-Forwarded-For": "203.0.113.9"}
    assert grant(limited, other, "127.0.0.1")[0] == 200  # the proxy itself is not held back


def test_the_limits_are_checked_at_start():
    for name in ("AUTH_FAIL_RATE_LIMIT", "AUTH_FAIL_APP_RATE_LIMIT"):
        with pytest.raises(config.SettingError, match=name):
            config.load({name: "often"})
    assert config.load({})["AUTH_FAIL_RATE_LIMIT"] == (20, 60)
    assert config.load({})["AUTH_FAIL_APP_RATE_LIMIT"] == (100, 60)


def test_a_process_holds_a_bounded_number_of_addresses_and_lets_ended_holds_go():
    holds = ratelimit.Holds(size=100)
    for n in range(1000):  # addresses enough to fill it ten times
        holds.hold(("address", str(n)), 60)
    assert 0 < len(holds) <= 100 and holds.wait(("address", "999")) == 60
    ended = ratelimit.Holds()
    for n in range(50):
        ended.hold(("address", str(n)), 0)  # over at once
    ended.hold(("address", "late"), 60)
    assert len(ended) == 51  # ended holds stay until the next sweep
    ended._sweep_at = 0  # a minute later
    ended.hold(("address", "later"), 60)
    assert len(ended) == 2 and ended.wait(("address", "0")) is None
