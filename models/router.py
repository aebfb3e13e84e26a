"""The contract with a stock GoBelieve router's HTTP RPC: everything the API and the bridge know of it.

How an IM_RPC_URL / IMR_RPC_URL is parsed, which call each im_message_queue item becomes (SPEC 7),
the reads the API makes (SPEC 6), what an answer means, and the two ways of sending:

- RouterClient, the bridge's POSTs: a few dozen lines of keep-alive HTTP/1.1 on asyncio streams
  rather than a library; the bridge only ever POSTs small bodies to one host, and measured against
  the alternatives (docs/DECISIONS.md, "The bridge") this is what reaches the throughput target.
- rpc_get, the API's reads: one blocking GET with http.client, for Flask's sync views (why not
  RouterClient: docs/DECISIONS.md, "The bridge").
"""
import asyncio
import http.client
import json
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import RouterNotConfigured, RouterUnavailable
from .queue_items import CUSTOMER, GROUP, GROUP_NOTIFICATION, NOTIFICATION, PEER, ROOM, SYSTEM, dumps

TEXT, JSON = "text/plain; charset=utf-8", "application/json"
RETRYABLE = (408, 429)  # 4xx answers that mean "later", not "never"


@dataclass(frozen=True)
class Address:
    scheme: str
    host: str
    port: int
    prefix: str  # a path the RPC paths go under, '' for none


def address(url: str) -> Address:
    """An RPC base URL parsed: http(s)://host[:port][/prefix]; ValueError if it is not one."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.query:
        raise ValueError(f"not an http://host:port address: {url!r}")
    default = 443 if parts.scheme == "https" else 80
    return Address(parts.scheme, parts.hostname, port or default, parts.path.rstrip("/"))


class Malformed(ValueError):
    """A queue item the bridge cannot turn into anything the router takes."""


class Refused(Exception):
    """The router said no for good (a 4xx): retrying cannot help."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"{status} {reason}")
        self.status, self.reason = status, reason


class Unavailable(Exception):
    """The router (or Redis) could not take it now: down, slow, 5xx, 408 or 429."""

    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class Call:
    """One RPC: its path and query, and for a POST its body (a read, a GET, has none)."""
    path: str
    query: str
    body: bytes | None = None
    content_type: str = ""


def target(where: Address, call: Call) -> str:
    """The request target of a call to the router at an address."""
    return where.prefix + call.path + (f"?{call.query}" if call.query else "")


# What an im_message_queue item becomes: one POST per kind, its fields checked.

def _int(item: dict, field: str) -> int:
    value = item.get(field)
    if type(value) is not int:  # bool is an int too, and is no id
        raise Malformed(f"{field} is not an integer: {value!r}")
    return value


def _content(item: dict) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if content is None:
        raise Malformed("content is missing")
    return dumps(content)  # the API would have serialized it


def _members(item: dict) -> list[int]:
    members = item.get("members") or []
    if not isinstance(members, list) or any(type(m) is not int for m in members):
        raise Malformed(f"members is not a list of integers: {members!r}")
    return members


def _json(value: dict) -> bytes:
    return dumps(value).encode()


def _peer(item: dict) -> Call:
    query = f"appid={_int(item, 'appid')}&sender={_int(item, 'sender')}&receiver={_int(item, 'receiver')}"
    return Call("/post_peer_message", query, _content(item).encode(), TEXT)


def _group(item: dict) -> Call:
    query = f"appid={_int(item, 'appid')}&sender={_int(item, 'sender')}&receiver={_int(item, 'receiver')}"
    return Call("/post_group_message", query, _content(item).encode(), TEXT)


def _system(item: dict) -> Call:
    body = {"appid": _int(item, "appid"), "receivers": [_int(item, "receiver")], "content": _content(item)}
    return Call("/post_system_message", "", _json(body), JSON)


def _notification(item: dict) -> Call:
    query = f"appid={_int(item, 'appid')}&uid={_int(item, 'receiver')}"
    return Call("/post_notification", query, _content(item).encode(), TEXT)


def _group_notification(item: dict) -> Call:
    # No "super": the item does not know it, and the router takes it from the group it loads.
    body = {"appid": _int(item, "appid"), "group_id": _int(item, "receiver"), "notification": _content(item),
            "members": _members(item)}
    return Call("/post_group_notification", "", _json(body), JSON)


def _room(item: dict) -> Call:
    query = f"appid={_int(item, 'appid')}&uid={_int(item, 'sender')}&room={_int(item, 'receiver')}"
    return Call("/post_room_message", query, _content(item).encode(), TEXT)


def _customer(item: dict) -> Call:
    appid = _int(item, "appid")
    body = {"sender_appid": appid, "sender": _int(item, "sender"), "receiver_appid": appid,
            "receiver": _int(item, "receiver"), "content": _content(item)}
    return Call("/post_customer_message", "", _json(body), JSON)


CALLS = {PEER: _peer, GROUP: _group, SYSTEM: _system, NOTIFICATION: _notification,
         GROUP_NOTIFICATION: _group_notification, ROOM: _room, CUSTOMER: _customer}


def call_for(item: dict) -> Call:
    """The RPC an im_message_queue item becomes; Malformed if it cannot become one."""
    make = CALLS.get(item.get("kind"))
    if make is None:
        raise Malformed(f"unknown kind {item.get('kind')!r}")
    return make(item)


# What an answer means, for a POST and a GET alike.

def check(status: int, body: bytes) -> None:
    """Return on 2xx; Refused for a 4xx that retrying cannot help, Unavailable for anything else."""
    if 200 <= status < 300:
        return
    reason = body[:200].decode("utf-8", "replace").strip()
    if 400 <= status < 500 and status not in RETRYABLE:
        raise Refused(status, reason)
    raise Unavailable(f"HTTP {status} {reason}".strip(), status)


def data(body: bytes):
    """A read's answer: its JSON `data` (or the whole JSON where it has none); ValueError if not JSON."""
    answer = json.loads(body)
    return answer["data"] if isinstance(answer, dict) and "data" in answer else answer


class RouterClient:
    """POSTs to the router over a pool of keep-alive HTTP/1.1 connections."""

    def __init__(self, address: Address, timeout: float):
        self.address, self.timeout = address, timeout
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._ssl = ssl.create_default_context() if address.scheme == "https" else None
        default = 443 if address.scheme == "https" else 80
        self._host = address.host if address.port == default else f"{address.host}:{address.port}"

    def request(self, call: Call) -> bytes:
        """The bytes of one HTTP request for a call."""
        head = (f"POST {target(self.address, call)} HTTP/1.1\r\nHost: {self._host}\r\n"
                f"Content-Type: {call.content_type}\r\nContent-Length: {len(call.body)}\r\n\r\n")
        return head.encode() + call.body

    async def post(self, call: Call) -> None:
        """Deliver one call: return on 2xx, raise Refused or Unavailable otherwise (see check)."""
        try:
            async with asyncio.timeout(self.timeout):  # not wait_for: on 3.11 it can swallow a cancellation
                status, body = await self._send(self.request(call))
        except TimeoutError:
            raise Unavailable(f"no answer within {self.timeout} s") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise Unavailable(f"{type(exc).__name__}: {exc}") from None
        check(status, body)

    async def _send(self, request: bytes) -> tuple[int, bytes]:
        while self._idle:
            conn = self._idle.pop()
            try:
                return await self._exchange(conn, request)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                # The router closed an idle connection; only a connection that answered
                # nothing at all is retried on a fresh one at once.
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise
        conn = await asyncio.open_connection(self.address.host, self.address.port, ssl=self._ssl)
        return await self._exchange(conn, request)

    async def _exchange(self, conn, request: bytes) -> tuple[int, bytes]:
        reader, writer = conn
        try:
            writer.write(request)
            await writer.drain()
            status, body, keep = await read_response(reader)
        except BaseException:
            writer.close()  # half-used: its next answer would belong to this request
            raise
        if keep:
            self._idle.append(conn)
        else:
            writer.close()
        return status, body

    async def close(self) -> None:
        """Close the idle connections."""
        while self._idle:
            self._idle.pop()[1].close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.x response: (status, body, whether the connection may be used again)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.split("\r\n")
    version, status = status_line.split(" ", 2)[:2]
    headers = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip().lower()
    status, keep = int(status), version == "HTTP/1.1" and headers.get("connection") != "close"
    if "chunked" in headers.get("transfer-encoding", ""):
        body = await read_chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif status in (204, 304) or status < 200:
        body = b""
    else:
        body, keep = await reader.read(), False  # the body ends where the connection does
    return status, body, keep


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body, trailers skipped."""
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass
    return b"".join(parts)


# The API's reads (SPEC 6).

def rpc_get(base_url: str, call: Call, timeout: float):
    """GET a read from the router at base_url: its answer's data (see data).

    RouterNotConfigured when base_url is empty; RouterUnavailable when the router cannot be
    reached, times out, or answers anything but 2xx with JSON."""
    if not base_url:
        raise RouterNotConfigured()
    name = call.path.lstrip("/")
    try:
        where = address(base_url)
    except ValueError:
        raise RouterUnavailable(f"The IM router's RPC ({name}) is unavailable: its address is not one.") from None
    conn_class = http.client.HTTPSConnection if where.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(where.host, where.port, timeout=timeout)
    try:
        conn.request("GET", target(where, call))
        response = conn.getresponse()
        body = response.read()
        check(response.status, body)
        return data(body)
    except (Refused, Unavailable) as exc:
        raise RouterUnavailable(f"The IM router answered {exc.status} to {name}.") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise RouterUnavailable(f"The IM router's RPC ({name}) is unavailable: {type(exc).__name__}.") from None
    finally:
        conn.close()


def offline_count(base_url: str, timeout: float, appid: int, uid: int) -> int:
    """Messages waiting for the user in the router's store (get_offline_count)."""
    found = rpc_get(base_url, Call("/get_offline_count", f"appid={appid}&uid={uid}"), timeout)
    return int(found["count"])


def latest_messages(base_url: str, timeout: float, appid: int, uid: int, limit: int) -> list[dict]:
    """The user's latest stored messages, newest first (load_latest_message)."""
    return list(rpc_get(base_url, Call("/load_latest_message", f"appid={appid}&uid={uid}&limit={limit}"), timeout))


def messages_after(base_url: str, timeout: float, appid: int, uid: int, last_id: int) -> list[dict]:
    """The user's stored messages after last_id (load_history_message)."""
    return list(rpc_get(base_url, Call("/load_history_message", f"appid={appid}&uid={uid}&last_id={last_id}"),
                        timeout))


def online(base_url: str, timeout: float, appid: int, uid: int) -> bool:
    """Whether the user has a live connection, from the route server imr (online)."""
    found = rpc_get(base_url, Call("/online", f"appid={appid}&uid={uid}"), timeout)
    return bool(found["online"] if isinstance(found, dict) else found)
