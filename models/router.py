"""Reads answered by a stock GoBelieve router's HTTP RPC (im at IM_RPC_URL, imr at IMR_RPC_URL)."""
import http.client
import json
import urllib.parse

from .errors import RouterNotConfigured, RouterUnavailable


def rpc_get(base_url: str, path: str, params: dict, timeout: float):
    """GET base_url/path?params from the router; its `data` (or its whole JSON answer).

    RouterNotConfigured when base_url is empty; RouterUnavailable when the router cannot be
    reached, times out, or answers anything but 200 with JSON."""
    if not base_url:
        raise RouterNotConfigured()
    url = urllib.parse.urlsplit(base_url)
    conn_class = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(url.hostname, url.port, timeout=timeout)
    try:
        conn.request("GET", f"{url.path.rstrip('/')}/{path}?{urllib.parse.urlencode(params)}")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RouterUnavailable(f"The IM router answered {response.status} to {path}.")
        answer = json.loads(body)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise RouterUnavailable(f"The IM router's RPC ({path}) is unavailable: {type(exc).__name__}.") from None
    finally:
        conn.close()
    return answer["data"] if isinstance(answer, dict) and "data" in answer else answer


def offline_count(base_url: str, timeout: float, appid: int, uid: int) -> int:
    """Messages waiting for the user in the router's store (get_offline_count)."""
    data = rpc_get(base_url, "get_offline_count", {"appid": appid, "uid": uid}, timeout)
    return int(data["count"])


def latest_messages(base_url: str, timeout: float, appid: int, uid: int, limit: int) -> list[dict]:
    """The user's latest stored messages, newest first (load_latest_message)."""
    return list(rpc_get(base_url, "load_latest_message", {"appid": appid, "uid": uid, "limit": limit}, timeout))


def messages_after(base_url: str, timeout: float, appid: int, uid: int, last_id: int) -> list[dict]:
    """The user's stored messages after last_id (load_history_message)."""
    return list(rpc_get(base_url, "load_history_message", {"appid": appid, "uid": uid, "last_id": last_id}, timeout))


def online(base_url: str, timeout: float, appid: int, uid: int) -> bool:
    """Whether the user has a live connection, from the route server imr (online)."""
    data = rpc_get(base_url, "online", {"appid": appid, "uid": uid}, timeout)
    return bool(data["online"] if isinstance(data, dict) else data)
