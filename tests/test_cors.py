"""CORS for browsers: client-auth endpoints only, only for CORS_ORIGINS, never with server auth."""
import pytest
from helpers import TEST_CONFIG, bearer, token_for

import config
from app import create_app

ORIGIN = "https://chat.example.com"


@pytest.fixture(scope="module")
def cors_app(app):
    return create_app(TEST_CONFIG | {"CORS_ORIGINS": f"{ORIGIN}, https://other.example.com"})


@pytest.fixture
def browser(cors_app):
    return cors_app.test_client()


def preflight(client, path, method="POST", origin=ORIGIN):
    return client.options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"})


@pytest.mark.parametrize("path", ["/groups", "/client/groups", "/groups/5/members", "/groups/join", "/device/bind",
                                  "/notification/groups/5", "/auth/customer", "/customer/register"])
def test_preflight_of_a_client_endpoint_is_answered(browser, path):
    response = preflight(browser, path)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key"} <= allowed
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Origin" in response.headers.get("Vary", "")


def test_a_client_request_gets_the_headers_and_exposes_the_request_id(browser, api):
    token = token_for(api, 1)
    response = browser.get("/groups", headers={"Origin": ORIGIN, **bearer(token)})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"X-Request-ID", "Retry-After"} <= exposed


def test_an_error_answer_to_a_client_gets_the_headers_too(browser):
    response = browser.get("/groups", headers={"Origin": ORIGIN, **bearer("nope")})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


@pytest.mark.parametrize("path", ["/users", "/messages/peers", "/groups/5/upgrade", "/stores", "/auth/grant"])
def test_server_only_routes_get_no_cors_headers(browser, path):
    response = preflight(browser, path)
    assert not [h for h in response.headers.keys() if h.lower().startswith("access-control-")]


def test_server_auth_on_a_shared_route_gets_no_cors_headers(browser, demo):
    response = browser.get("/groups", headers={"Origin": ORIGIN, **demo["auth"]})
    assert response.status_code == 200
    assert not [h for h in response.headers.keys() if h.lower().startswith("access-control-")]


def test_another_origin_is_not_allowed(browser):
    response = preflight(browser, "/groups", origin="https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in response.headers


def test_star_allows_any_origin(app):
    client = create_app(TEST_CONFIG | {"CORS_ORIGINS": "*"}).test_client()
    response = preflight(client, "/groups", origin="https://anywhere.example.com")
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_by_default_there_is_no_cors_at_all(client, app):
    assert app.config["CORS_ORIGINS"] == ()
    assert "cors_after_request" not in {f.__name__ for f in app.after_request_funcs.get(None, [])}
    response = preflight(client, "/groups")
    assert not [h for h in response.headers.keys() if h.lower().startswith("access-control-")]


@pytest.mark.parametrize("value", ["chat.example.com", "https://a.example.com/path", "ftp://x"])
def test_a_bad_origin_stops_the_start(value):
    with pytest.raises(config.SettingError, match="CORS_ORIGINS"):
        config.load({"CORS_ORIGINS": value})


def test_the_widgets_register_call_with_the_app_key_gets_the_headers(browser, demo):
    import base64
    key = base64.b64encode(f"{demo['id']}:{demo['key']}".encode()).decode()
    response = browser.post("/customer/register", json={"appid": demo["id"], "customer_id": "w"},
                            headers={"Origin": ORIGIN, "Authorization": f"Basic {key}"})
    assert response.status_code == 400  # the demo app has no store: the answer still reaches the browser
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
