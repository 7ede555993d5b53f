"""python-socketio 5 (the plain threaded `socketio.Client`, Socket.IO 5 over Engine.IO 4's
WebSocket transport) as a client independent of socket.io-client, against a real
`ringcast serve`: laravel-echo-server's events (`subscribe`, `subscription_succeeded`,
`subscription_error`, `client event`), events published with the `pusher` SDK, pysher on the
same channel, and a raw JWT in the CONNECT packet's `auth.token`.

Run by scripts/conformance with RINGCAST_BIN set; `python -m unittest test_socketio` in this
directory.
"""

import base64
import hashlib
import hmac
import http.server
import json
import queue
import re
import threading
import time
import unittest
import urllib.parse

import pysher
import socketio

from test_pysher import CONFIG, EVENT_TIMEOUT_S, KEY, Broker, server_sdk

JWT_APP_ID, JWT_KEY, JWT_SECRET_APP = "200002", "jwt-key", "jwt-secret"
JWT_SECRET = "socketio-jwt-secret-of-32-bytes-at-least"
JWT_PATH = "/chat/socket.io"
# How long a test waits before asserting that something did not arrive, once a later event
# that would have come after it has arrived.
QUIET_S = 0.2


def config(auth_url):
    # test_pysher's server and main app, with Socket.IO, and a second app taking JWTs.
    return CONFIG + f"""[apps.socketio]
auth_endpoint = "{auth_url}"

[[apps]]
id = "{JWT_APP_ID}"
key = "{JWT_KEY}"
secret = "{JWT_SECRET_APP}"
[apps.socketio]
path = "{JWT_PATH}"
[apps.jwt]
required = true
algorithm = "HS256"
secret = "{JWT_SECRET}"
leeway_secs = 0
"""


def jwt(claims, secret=JWT_SECRET):
    """An HS256 token, made with the standard library."""

    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


class AuthEndpoint:
    """A stand-in Laravel `/broadcasting/auth`: 200 `true` for `Authorization: Bearer <user>`
    unless the user is `mallory`, 403 otherwise. Every call is kept in `calls` as
    (headers, form)."""

    def __init__(self):
        self.calls = []
        calls = self.calls

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                calls.append(({k.lower(): v for k, v in self.headers.items()}, form))
                found = re.fullmatch(r"Bearer (.+)", self.headers.get("Authorization") or "")
                if found and found.group(1) != "mallory":
                    status, body = 200, b"true"
                else:
                    status, body = 403, b'{"message":"This action is unauthorized."}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/broadcasting/auth"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Recorder:
    """Everything a client received, in order, with a bounded wait for the first match."""

    def __init__(self):
        self.items = []
        self.cond = threading.Condition()

    def put(self, item):
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def matching(self, pred):
        with self.cond:
            return [item for item in self.items if pred(item)]

    def wait_for(self, pred, what, timeout=EVENT_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for item in self.items:
                    if pred(item):
                        return item
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}; got {self.items[-10:]}")
                self.cond.wait(remaining)


class SocketIoTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.endpoint = AuthEndpoint()
        try:
            cls.broker = Broker(config(cls.endpoint.url))
        except BaseException:
            cls.endpoint.stop()
            raise
        cls.url = f"http://{cls.broker.host}:{cls.broker.port}"
        cls.sdk = server_sdk(cls.broker)
        cls.serial = 0

    @classmethod
    def tearDownClass(cls):
        cls.broker.stop()
        cls.endpoint.stop()

    def uniq(self, prefix):
        type(self).serial += 1
        return f"{prefix}{type(self).serial}-{int(time.time() * 1000)}"

    def client(self, path="/socket.io", auth=None, connect=True, transports=("websocket",)):
        """A python-socketio client (over the WebSocket transport only by default), with `events`
        recording every event as (name, args) and `errors` every `connect_error`'s data;
        returned once connected (or raising what `connect` raised) unless `connect` is
        False, when `sio.open()` connects it."""
        sio = socketio.Client(reconnection=False)
        sio.events = Recorder()
        sio.errors = Recorder()
        sio.on("*", lambda event, *args: sio.events.put((event, args)))
        sio.on("connect_error", lambda data=None: sio.errors.put(data))
        self.addCleanup(sio.disconnect)
        sio.open = lambda: sio.connect(
            self.url,
            transports=list(transports),
            socketio_path=path,
            auth=auth,
            wait_timeout=EVENT_TIMEOUT_S,
        )
        if connect:
            sio.open()
        return sio

    def next_on(self, sio, event, channel):
        """The arguments after the channel of the first `event` on `channel`."""
        _, args = sio.events.wait_for(
            lambda item: item[0] == event and item[1][:1] == (channel,),
            f"'{event}' on {channel}",
        )
        return args[1:]

    def subscribe(self, sio, channel, auth=None):
        sio.emit("subscribe", {"channel": channel, "auth": auth or {}})
        self.next_on(sio, "subscription_succeeded", channel)

    def wait_subscribers(self, channel, count):
        deadline = time.monotonic() + EVENT_TIMEOUT_S
        while True:
            info = self.sdk.channel_info(channel, ["subscription_count"])
            if info.get("subscription_count", 0) >= count:
                return
            self.assertLess(time.monotonic(), deadline, f"{channel}: {info}")
            time.sleep(0.02)

    def test_a_published_event_arrives_as_channel_and_data_over_websocket(self):
        sio = self.client()
        self.assertEqual(sio.transport(), "websocket")
        self.assertRegex(sio.get_sid(), r"^\d+\.\d+$", "the Socket.IO id is the Pusher socket id")
        channel = self.uniq("news-")
        self.subscribe(sio, channel)
        self.sdk.trigger(channel, "App\\Events\\Shipped", {"order": 42, "items": ["a", "b"]})
        self.assertEqual(
            self.next_on(sio, "App\\Events\\Shipped", channel),
            ({"order": 42, "items": ["a", "b"]},),
        )

    def test_long_polling_alone_and_with_its_upgrade_deliver_the_same(self):
        # python-socketio upgrades before its CONNECT, which then comes over the WebSocket.
        for transports, final in ((("polling",), "polling"), (("polling", "websocket"), "websocket")):
            sio = self.client(transports=transports)
            channel = self.uniq("polled-")
            self.subscribe(sio, channel)
            self.sdk.trigger(channel, "Polled", {"transports": list(transports)})
            self.assertEqual(
                self.next_on(sio, "Polled", channel), ({"transports": list(transports)},)
            )
            self.assertEqual(sio.transport(), final)

    def test_two_socketio_clients_and_pysher_get_the_same_100_events_in_order(self):
        channel = self.uniq("mixed-")
        first, second = self.client(), self.client()
        self.subscribe(first, channel)
        self.subscribe(second, channel)
        pysher_client = pysher.Pusher(
            KEY, secure=False, custom_host=self.broker.host, port=self.broker.port, reconnect_interval=1
        )
        established = queue.Queue()
        pysher_client.connection.bind("pusher:connection_established", established.put)
        pysher_client.connect()
        self.addCleanup(pysher_client.disconnect, timeout=1)
        established.get(timeout=EVENT_TIMEOUT_S)
        via_pysher = Recorder()
        pysher_client.subscribe(channel).bind(
            "Tick", lambda data: via_pysher.put(json.loads(data) if isinstance(data, str) else data)
        )
        self.wait_subscribers(channel, 3)

        total = 100
        for batch in range(0, total, 10):
            self.sdk.trigger_batch(
                [{"channel": channel, "name": "Tick", "data": {"n": n}} for n in range(batch, batch + 10)]
            )
        expected = list(range(total))

        def ticks(sio):
            sio.events.wait_for(
                lambda item: item[0] == "Tick" and item[1] == (channel, {"n": total - 1}), f"Tick {total - 1}"
            )
            ticks = sio.events.matching(lambda item: item[0] == "Tick" and item[1][:1] == (channel,))
            return [args[1]["n"] for _, args in ticks]

        self.assertEqual(ticks(first), expected)
        self.assertEqual(ticks(second), expected)
        via_pysher.wait_for(lambda data: data == {"n": total - 1}, f"pysher's Tick {total - 1}")
        self.assertEqual([data["n"] for data in via_pysher.matching(lambda _: True)], expected)

    def test_auth_token_is_a_raw_jwt_and_an_invalid_one_is_refused_about_authentication(self):
        now = int(time.time())
        good = self.client(JWT_PATH, auth={"token": jwt({"sub": "u1", "exp": now + 60})})
        self.assertTrue(good.connected)
        self.assertRegex(good.get_sid(), r"^\d+\.\d+$")
        refused = {
            "not a token": {"token": "not-a-token"},
            "expired": {"token": jwt({"sub": "u2", "exp": now - 10})},
            "signed with another secret": {"token": jwt({"sub": "u3", "exp": now + 60}, "x" * 40)},
            "no token": None,
        }
        for what, auth in refused.items():
            with self.subTest(what):
                sio = self.client(JWT_PATH, auth=auth, connect=False)
                with self.assertRaises(socketio.exceptions.ConnectionError) as raised:
                    sio.open()
                # python-socketio 5 raises "One or more namespaces failed to connect: /" when
                # the server answers CONNECT with CONNECT_ERROR, and hands the server's
                # {message, data} to the `connect_error` handler: the reason is there. (The
                # broker then closes the WebSocket with 4009; python-engineio, seeing the
                # server close first, drops its socket without closing it, hence a
                # ResourceWarning about an unclosed socket in this run's output.)
                self.assertIn("failed to connect", str(raised.exception))
                self.assertFalse(sio.connected)
                errors = sio.errors.matching(lambda _: True)
                self.assertEqual(len(errors), 1, errors)
                self.assertIn("authentication", errors[0]["message"])
                if auth is not None:
                    self.assertEqual(errors[0]["data"]["code"], 4009)

    def test_a_whisper_on_a_private_channel_reaches_the_other_client_and_a_refusal_is_403(self):
        channel = self.uniq("private-typing-")
        alice, bob = self.client(), self.client()
        self.subscribe(alice, channel, {"headers": {"Authorization": "Bearer alice"}})
        self.subscribe(bob, channel, {"headers": {"Authorization": "Bearer bob"}})
        calls = [(h, f) for h, f in self.endpoint.calls if f.get("channel_name") == channel]
        self.assertEqual(
            sorted((h.get("authorization"), f.get("socket_id")) for h, f in calls),
            sorted([("Bearer alice", alice.get_sid()), ("Bearer bob", bob.get_sid())]),
        )

        alice.emit("client event", {"channel": channel, "event": "client-typing", "data": {"typing": True}})
        self.assertEqual(self.next_on(bob, "client-typing", channel), ({"typing": True},))
        # Bob's answer comes after alice's whisper would have come back to her.
        bob.emit("client event", {"channel": channel, "event": "client-seen", "data": {"seen": 1}})
        self.assertEqual(self.next_on(alice, "client-seen", channel), ({"seen": 1},))
        time.sleep(QUIET_S)
        self.assertEqual(alice.events.matching(lambda item: item[0] == "client-typing"), [])

        mallory = self.client()
        vault = self.uniq("private-vault-")
        mallory.emit("subscribe", {"channel": vault, "auth": {"headers": {"Authorization": "Bearer mallory"}}})
        status, why = self.next_on(mallory, "subscription_error", vault)
        self.assertEqual(status, 403)
        self.assertEqual(why["type"], "AuthError")
        public = self.uniq("after-")
        self.subscribe(mallory, public)
        self.sdk.trigger(vault, "Secret", {"x": 1})
        self.sdk.trigger(public, "Later", {"y": 2})
        self.assertEqual(self.next_on(mallory, "Later", public), ({"y": 2},))
        time.sleep(QUIET_S)
        self.assertEqual(mallory.events.matching(lambda item: item[0] == "Secret"), [])


if __name__ == "__main__":
    unittest.main()
