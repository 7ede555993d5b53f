"""Unmodified Python clients from PyPI against a real `ringcast serve`: pysher 1.0.8 (which
speaks Pusher protocol 6) subscribing to public, private and presence channels, and the
`pusher` server SDK publishing to them.

Run by scripts/conformance with RINGCAST_BIN set; `python -m unittest` in this directory.
"""

import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import pusher
import pysher

APP_ID, KEY, SECRET = "100001", "app-key", "app-secret"
# How long one expected event may take to arrive.
EVENT_TIMEOUT_S = 10
CONFIG = f"""
[server]
host = "127.0.0.1"
port = 0
shards = 2
data_dir = "data"

[[apps]]
id = "{APP_ID}"
key = "{KEY}"
secret = "{SECRET}"
client_events = "enabled"
"""


class Broker:
    """A `ringcast serve` in a temporary directory, on a port it chose."""

    def __init__(self, config=CONFIG):
        self.dir = tempfile.mkdtemp(prefix="ringcast-python-")
        with open(os.path.join(self.dir, "ringcast.toml"), "w") as f:
            f.write(config)
        self.log = open(os.environ.get("RINGCAST_LOG", os.devnull), "w")
        self.process = subprocess.Popen(
            [os.environ["RINGCAST_BIN"], "serve", "--config", "ringcast.toml"],
            cwd=self.dir,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        for line in self.process.stdout:
            found = re.search(r"ringcast: listening on (\S+):(\d+)", line)
            if found:
                self.host, self.port = found.group(1), int(found.group(2))
                break
        else:
            raise RuntimeError("ringcast exited before listening")
        # Keeps reading, so the broker never blocks on a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.process.stdout.close()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def server_sdk(broker):
    """The pusher server SDK pointed at `broker`'s main app."""
    return pusher.Pusher(
        app_id=APP_ID,
        key=KEY,
        secret=SECRET,
        host=broker.host,
        port=broker.port,
        ssl=False,
    )


class PysherTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = Broker()
        cls.sdk = server_sdk(cls.broker)

    @classmethod
    def tearDownClass(cls):
        cls.broker.stop()

    def connect(self, user_data=None):
        """A connected pysher client that signs its own subscriptions with the app secret."""
        client = pysher.Pusher(
            KEY,
            secret=SECRET,
            secure=False,
            custom_host=self.broker.host,
            port=self.broker.port,
            user_data=user_data,
            reconnect_interval=1,
        )
        established = queue.Queue()
        client.connection.bind("pusher:connection_established", established.put)
        client.connect()
        # pysher's disconnect joins its thread, and websocket-client's reader may sit out its
        # 10 s select timeout once the closing handshake has been read by the closing thread
        # (the broker has answered and closed by then: its log says "closed_by=client"). The
        # daemon thread ends on its own; the test does not wait for it.
        self.addCleanup(client.disconnect, timeout=1)
        data = established.get(timeout=EVENT_TIMEOUT_S)
        if isinstance(data, str):
            data = json.loads(data)
        self.assertRegex(data["socket_id"], r"^\d+\.\d+$")
        return client

    def subscribe(self, client, name, *events, subscribers=1):
        """Subscribes `client` to `name` and waits until the broker counts `subscribers` on
        it; returns a queue that receives (event, data) for each of `events` on that channel.

        The broker is asked, not pysher: pysher sends `pusher:subscribe` before it creates the
        channel object, so a `subscription_succeeded` that arrives first has no binding."""
        received = queue.Queue()
        channel = client.subscribe(name)
        for event in events:
            channel.bind(event, lambda data, event=event: received.put((event, data)))
        deadline = time.monotonic() + EVENT_TIMEOUT_S
        while True:
            info = self.sdk.channel_info(name, ["subscription_count"])
            if info.get("subscription_count", 0) >= subscribers:
                return received
            self.assertLess(time.monotonic(), deadline, f"{name}: {info}")
            time.sleep(0.02)

    def next_event(self, received):
        event, data = received.get(timeout=EVENT_TIMEOUT_S)
        return event, json.loads(data) if isinstance(data, str) else data

    def test_pysher_announces_protocol_6_and_is_served(self):
        client = self.connect()
        self.assertIn("protocol=6", client.url)
        self.assertEqual(client.connection.state, "connected")

    def test_a_public_channel_receives_what_the_python_sdk_triggers(self):
        client = self.connect()
        received = self.subscribe(client, "orders", "OrderShipped")
        self.sdk.trigger("orders", "OrderShipped", {"id": 7})
        self.assertEqual(self.next_event(received), ("OrderShipped", {"id": 7}))

    def test_a_private_channel_signed_by_pysher_receives_events(self):
        client = self.connect()
        received = self.subscribe(client, "private-account.7", "BalanceChanged")
        self.sdk.trigger("private-account.7", "BalanceChanged", {"balance": 12})
        self.assertEqual(self.next_event(received), ("BalanceChanged", {"balance": 12}))

    def test_presence_members_are_announced_and_counted(self):
        alice = self.connect({"user_id": "alice", "user_info": {"name": "Alice"}})
        alice_sees = self.subscribe(alice, "presence-room", "pusher_internal:member_added")
        bob = self.connect({"user_id": 42, "user_info": {"name": "Bob"}})
        self.subscribe(bob, "presence-room", subscribers=2)
        event, member = self.next_event(alice_sees)
        self.assertEqual(event, "pusher_internal:member_added")
        self.assertEqual(member, {"user_id": "42", "user_info": {"name": "Bob"}})
        users = self.sdk.users_info("presence-room")["users"]
        self.assertEqual(sorted(u["id"] for u in users), ["42", "alice"])


if __name__ == "__main__":
    unittest.main()
