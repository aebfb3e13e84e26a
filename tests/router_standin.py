"""A stand-in for a stock GoBelieve router, for the bridge's tests (not a test module).

- RouterStandin: a real HTTP server on a free port speaking im's RPC paths and parameters
  (SPEC 7), recording every request in order, and able on demand to answer with an error,
  to be slow, to hang, or to be down (its port closed).
- StreamReader: applies group_manager_stream (or relationship_stream) entries as the router
  does: in a thread of its own (im's goroutine), only entries added after it started, each
  `apply_delay` seconds after it was added (im applies asynchronously: a test sets how late);
  a gap in the action_id chain marks its cache dirty; `group_create` makes an empty group and
  each `group_member_add` adds one member; a group (a friendship) not in the cache is loaded
  from MySQL with the router's own queries, and an event for one not cached is ignored.
- ForbiddenListener: a speak_forbidden subscriber, applying what it hears `apply_delay` late.

Attached to them (RouterStandin.attach), the stand-in delivers as im does: a group message or
notification goes to the members its group cache holds when the RPC arrives (plus a
notification's listed members), into `inbox[(appid, uid)]`. im checks friendship, blacklist
and a sender's ban on what clients send; told to (`friend_checks`, `forbidden_checks`), the
stand-in checks them on the RPC posts too, against its caches, so that a test sees whether a
message came after the change it follows; a message it refuses goes to `refused`.

It also answers the reads the API makes (GET get_offline_count, load_latest_message,
load_history_message of im, and imr's online) from what a test put in `offline`, `stored`
and `online`, in the router's `{"data": ...}` shape.
"""
import copy
import json
import socket
import threading
import time
from collections import defaultdict, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pymysql
import redis
from helpers import free_port

LOAD_GROUP = "SELECT id, appid, super FROM `group` WHERE id=%s AND deleted=0"
LOAD_MEMBERS = "SELECT uid, timestamp, mute FROM group_member WHERE group_id=%s AND deleted=0"
LOAD_FRIEND = "SELECT uid, friend_uid FROM `friend` WHERE appid=%s AND uid=%s AND friend_uid=%s"
LOAD_BLACKLIST = "SELECT uid, friend_uid FROM `blacklist` WHERE appid=%s AND uid=%s AND friend_uid=%s"

# Path -> (query parameters that must be integers, whether the body must be a JSON object
# and which of its fields must be there). What a real im answers 400 "invalid param" to.
RPC = {
    "/post_peer_message": (("appid", "sender", "receiver"), None),
    "/post_group_message": (("appid", "sender", "receiver"), None),
    "/post_notification": (("appid", "uid"), None),
    "/post_room_message": (("appid", "uid", "room"), None),
    "/post_system_message": ((), ("appid", "receivers", "content")),
    "/post_group_notification": ((), ("appid", "group_id", "notification")),
    "/post_customer_message": ((), ("sender_appid", "sender", "receiver_appid", "receiver", "content")),
    "/get_offline_count": (("appid", "uid"), None),
    "/load_latest_message": (("appid", "uid", "limit"), None),
    "/load_history_message": (("appid", "uid", "last_id"), None),
    "/online": (("appid", "uid"), None),
}


@dataclass
class Request:
    path: str
    query: dict
    body: bytes
    at: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


class QuietServer(ThreadingHTTPServer):
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client that went away mid-answer (a bridge killed, a timeout) is part of the tests


class RouterStandin:
    """im's HTTP RPC. `requests` holds what it took (answered 2xx), `attempts` everything it was sent."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.requests: list[Request] = []
        self.attempts: list[Request] = []
        self.rules: list = []  # callables Request -> (status, delay seconds) or None; the first answer wins
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.released = threading.Event()  # set at close: hanging handlers give up
        self.server = None
        self.connections: set[socket.socket] = set()
        # What the reads answer: (appid, uid) -> pending count / stored messages (oldest first) / online
        self.offline: dict = defaultdict(int)
        self.stored: dict = defaultdict(list)
        self.online: set = set()
        # What it delivers, once attached to the router's caches (attach()).
        self.groups = self.relationships = self.forbidden = None
        self.friend_checks = self.forbidden_checks = False
        self.inbox: dict = defaultdict(list)  # (appid, uid) -> contents, in delivery order
        self.refused: list[Request] = []  # posts a check turned away (answered 200, as im's RPC does)
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        """Open the port (again) and answer."""
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Go's net/http

            def setup(self):
                super().setup()
                with standin.lock:
                    standin.connections.add(self.connection)

            def finish(self):
                with standin.lock:
                    standin.connections.discard(self.connection)
                super().finish()

            def do_GET(self):
                self.do_POST()

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                parts = urlsplit(self.path)
                request = Request(parts.path, dict(parse_qsl(parts.query)), self.rfile.read(length))
                status, body = standin.handle(request)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = QuietServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Close the port: connections are refused until up()."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self.lock:
            open_connections = list(self.connections)
        for conn in open_connections:  # keep-alive connections too: a router that is down answers nothing
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.released.set()
        self.down()

    def handle(self, request: Request) -> tuple[int, bytes]:
        with self.lock:
            self.attempts.append(request)
            rules = list(self.rules)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._answer(request, rules)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _answer(self, request: Request, rules: list) -> tuple[int, bytes]:
        status, delay = 200, 0.0
        for rule in rules:
            answer = rule(request)
            if answer is not None:
                status, delay = answer
                break
        if delay:
            self.released.wait(delay)
        if status == 200:
            status, reason = self.check(request)
        else:
            reason = "stand-in told to fail"
        if status == 200:
            with self.lock:
                self.requests.append(request)
            self.fan_out(request)
            return 200, self.read(request)
        return status, json.dumps({"meta": {"message": reason}}).encode()

    def attach(self, groups=None, relationships=None, forbidden=None, friend_checks=False,
               forbidden_checks=False) -> None:
        """Deliver through the router's caches: a group StreamReader, a relationship StreamReader,
        a ForbiddenListener; with friendship (and ban) checks on the peer (and all) posts."""
        self.groups, self.relationships, self.forbidden = groups, relationships, forbidden
        self.friend_checks, self.forbidden_checks = friend_checks, forbidden_checks

    def fan_out(self, request: Request) -> None:
        """Put a taken post in its receivers' inboxes, as im delivers it at the moment it arrives."""
        if request.path == "/post_group_message" and self.groups is not None:
            appid, sender, gid = (int(request.query[k]) for k in ("appid", "sender", "receiver"))
            group = self.groups.group(gid)
            if not self.allowed(request, appid, sender):
                return
            self.deliver(request, appid, list(group["members"]) if group else [])
        elif request.path == "/post_group_notification" and self.groups is not None:
            body = request.json()
            group = self.groups.group(body["group_id"])
            members = set(group["members"]) if group else set()
            self.deliver(request, body["appid"], sorted(members | set(body.get("members") or [])))
        elif request.path == "/post_peer_message":
            appid, sender, receiver = (int(request.query[k]) for k in ("appid", "sender", "receiver"))
            if self.friend_checks and not self.relationships.friends(appid, sender, receiver):
                with self.lock:
                    self.refused.append(request)
                return
            if self.allowed(request, appid, sender):
                self.deliver(request, appid, [receiver, sender])

    def allowed(self, request: Request, appid: int, sender: int) -> bool:
        if self.forbidden_checks and self.forbidden.banned(appid, sender):
            with self.lock:
                self.refused.append(request)
            return False
        return True

    def deliver(self, request: Request, appid: int, uids: list[int]) -> None:
        content = request.json()["notification"] if request.path == "/post_group_notification" else request.text
        with self.lock:
            for uid in uids:
                self.inbox[(appid, uid)].append(content)

    def received(self, appid: int, uid: int) -> list[str]:
        """What the user got, in order."""
        with self.lock:
            return list(self.inbox[(appid, uid)])

    def check(self, request: Request) -> tuple[int, str]:
        """What im itself answers: 404 for an unknown path, 400 for a missing or bad parameter."""
        if request.path not in RPC:
            return 404, "404 page not found"
        ints, fields = RPC[request.path]
        try:
            for name in ints:
                int(request.query[name])
            if fields is not None:
                body = request.json()
                missing = [f for f in fields if f not in body]
                if missing:
                    return 400, f"invalid json format: {missing}"
        except (KeyError, ValueError):
            return 400, "invalid param"
        return 200, ""

    def read(self, request: Request) -> bytes:
        """The answer of a read RPC (b"" for the posts, which answer an empty 200)."""
        who = (int(request.query.get("appid", 0)), int(request.query.get("uid", 0)))
        if request.path == "/get_offline_count":
            data = {"count": self.offline[who]}
        elif request.path == "/load_latest_message":
            data = list(reversed(self.stored[who]))[:int(request.query["limit"])]
        elif request.path == "/load_history_message":
            data = [m for m in self.stored[who] if m["id"] > int(request.query["last_id"])]
        elif request.path == "/online":
            data = {"online": who in self.online}
        else:
            return b""
        return json.dumps({"data": data}).encode()

    # Behaviours, each undone by clear().
    def answer(self, status: int, when=None, times: int | None = None) -> None:
        """Answer `status` (to the requests `when` picks, `times` times at most)."""
        self.rules.append(self._rule((status, 0.0), when, times))

    def delay(self, seconds: float, when=None, times: int | None = None) -> None:
        """Answer 200, but only after `seconds` (a hang: a long delay)."""
        self.rules.append(self._rule((200, seconds), when, times))

    def clear(self) -> None:
        self.rules.clear()

    def _rule(self, answer, when, times):
        left = [times]

        def rule(request):
            if when is not None and not when(request):
                return None
            with self.lock:
                if left[0] is not None:
                    if left[0] <= 0:
                        return None
                    left[0] -= 1
            return answer
        return rule

    def taken(self, path: str | None = None) -> list[Request]:
        """The requests it answered 200, in order (of one path when given)."""
        with self.lock:
            return [r for r in self.requests if path is None or r.path == path]


class StreamReader:
    """The router's group manager (or relationship pool): reads a stream as the router does."""

    def __init__(self, redis_kwargs: dict, mysql_kwargs: dict | None = None,
                 stream: str = "group_manager_stream", actions: str = "groups_actions", apply_delay: float = 0.0):
        self.r = redis.Redis(**redis_kwargs, decode_responses=True)
        self.mysql_kwargs, self.stream, self.actions = mysql_kwargs, stream, actions
        self.apply_delay = apply_delay  # seconds from an entry's XADD to its effect
        self.lock = threading.Lock()  # the cache is read by the RPC handlers' threads
        self.db, self.db_lock = None, threading.Lock()
        self.lags: list[float] = []  # seconds from each entry's XADD to its effect
        self.applied: list[dict] = []  # entries applied, in order
        self.gaps: list[tuple[int, int]] = []  # (last applied, previous_action_id) where the chain broke
        self.cache: dict[int, dict] = {}
        self.queries: list[str] = []
        self.dirty = False
        self.stopping = threading.Event()
        current = self.r.get(actions)
        self.action_id = int(current.split(":")[1]) if current else 0  # a malformed value stops the router
        last = self.r.xrevrange(stream, "+", "-", count=1)
        self.last_entry = last[0][0] if last else "0-0"
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            for _, entries in self.r.xread({self.stream: self.last_entry}, count=1000, block=100) or []:
                for entry_id, fields in entries:
                    added = int(entry_id.split("-")[0]) / 1000  # Redis's clock, the same host's
                    self.stopping.wait(max(0.0, added + self.apply_delay - time.time()))
                    self.apply(fields)
                    self.lags.append(time.time() - added)
                    self.last_entry = entry_id

    def apply(self, fields: dict) -> None:
        with self.lock:
            if int(fields["previous_action_id"]) != self.action_id:
                self.gaps.append((self.action_id, int(fields["previous_action_id"])))
                self.dirty = True
            if self.stream == "group_manager_stream":
                self._apply_group(fields)
            else:
                self._apply_relationship(fields)
            if self.dirty:  # the router clears at most once a minute; the stand-in at once
                self.cache.clear()
                self.dirty = False
            self.action_id = int(fields["action_id"])
            self.applied.append(fields)

    def _apply_group(self, f: dict) -> None:
        gid, name = int(f["group_id"]), f["name"]
        if name == "group_create":
            self.cache[gid] = {"appid": int(f["app_id"]), "super": f["super"] == "1", "members": {}}
        elif name == "group_disband":
            self.cache.pop(gid, None)
        elif gid in self.cache:
            group, uid = self.cache[gid], int(f["member_id"])
            if name == "group_upgrade":
                group["super"] = True
            elif name == "group_member_add":
                group["members"][uid] = 0
            elif name == "group_member_remove":
                group["members"].pop(uid, None)
            elif name == "group_member_mute":
                group["members"][uid] = int(f["mute"] == "1")

    @contextmanager
    def mysql(self):
        """A cursor on the reader's one MySQL connection (autocommit), one user at a time."""
        with self.db_lock:
            if self.db is None:
                self.db = pymysql.connect(**self.mysql_kwargs)
            with self.db.cursor() as cur:
                yield cur

    def _apply_relationship(self, f: dict) -> None:
        """A friend or blacklist event changes a pair the router holds; one it does not hold is ignored."""
        uid, other = int(f["uid"]), int(f["friend_uid"])
        pair = self.cache.get((int(f["app_id"]), uid, other))
        if pair is not None:
            pair[f["name"]] = f[f["name"]] == "1"

    def relationship(self, appid: int, uid: int, other: int) -> dict:
        """{"friend": bool, "blacklist": bool} of uid towards other: cached, else loaded from MySQL."""
        key = (appid, uid, other)
        with self.lock:
            if key in self.cache:
                return dict(self.cache[key])
        with self.mysql() as cur:
            found = {name: bool(cur.execute(sql, key)) for name, sql in
                     (("friend", LOAD_FRIEND), ("blacklist", LOAD_BLACKLIST))}
        with self.lock:
            self.cache[key] = found
        return dict(found)

    def friends(self, appid: int, uid: int, other: int) -> bool:
        """What im asks before it lets uid message other: each has the other as a friend, neither blocks."""
        there, back = self.relationship(appid, uid, other), self.relationship(appid, other, uid)
        return there["friend"] and back["friend"] and not back["blacklist"]

    def group(self, gid: int) -> dict | None:
        """The group as the router sees it: from its cache, else loaded from MySQL (a copy)."""
        with self.lock:
            if gid in self.cache:
                return copy.deepcopy(self.cache[gid])
        with self.mysql() as cur:
            self.queries.append(LOAD_GROUP)
            cur.execute(LOAD_GROUP, (gid,))
            row = cur.fetchone()
            if row is None:
                return None
            self.queries.append(LOAD_MEMBERS)
            cur.execute(LOAD_MEMBERS, (gid,))
            members = {m["uid"]: m["mute"] for m in cur.fetchall()}
        group = {"appid": row["appid"], "super": bool(row["super"]), "members": members}
        with self.lock:
            self.cache[gid] = group  # as im does: a create applied meanwhile is overwritten
            return copy.deepcopy(group)

    def wait_for(self, action_id: int, seconds: float = 10) -> bool:
        deadline = time.monotonic() + seconds
        while self.action_id < action_id and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.action_id >= action_id

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(2)
        self.r.close()
        if self.db is not None:
            self.db.close()


class ForbiddenListener:
    """Records what is published on speak_forbidden; applies it `apply_delay` seconds later."""

    def __init__(self, redis_kwargs: dict, apply_delay: float = 0.0):
        self.r = redis.Redis(**redis_kwargs, decode_responses=True)
        self.pubsub = self.r.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe("speak_forbidden")
        self.messages: list[str] = []
        self.apply_delay = apply_delay
        self.banned_users: set[tuple[int, int]] = set()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        heard = deque()  # (when it takes effect, payload), in the order published
        while not self.stopping.is_set():
            message = self.pubsub.get_message(timeout=0.005)
            if message:
                heard.append((time.monotonic() + self.apply_delay, message["data"]))
            while heard and heard[0][0] <= time.monotonic():
                data = heard.popleft()[1]
                self.messages.append(data)
                appid, uid, forbidden = (int(x) for x in data.split(","))
                (self.banned_users.add if forbidden else self.banned_users.discard)((appid, uid))

    def banned(self, appid: int, uid: int) -> bool:
        return (appid, uid) in self.banned_users

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(2)
        self.pubsub.close()
        self.r.close()
