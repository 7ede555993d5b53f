//! Three real broker processes on 127.0.0.2–4 sharing one real `redis-server`: cross-node
//! delivery in one order, cluster-wide counts and presence, `toOthers`, terminate, webhooks
//! once, `kill -9` of a node without ghosts, and a Redis restart.

mod support;

use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use ringcast::core::auth::{hmac_key, sign_channel, sign_signin};
use serde_json::{Value, json};
use support::hooks::Receiver;
use support::redis::{RedisServer, redis_cmd};
use support::{APP_ID, KEY, SECRET, WsClient, api, http};

/// One broker process.
struct Node {
    child: Child,
    addr: SocketAddr,
    config: std::path::PathBuf,
}

impl Node {
    fn start(host: &str, redis: &RedisServer, hooks: &Receiver) -> Self {
        Self::start_with(host, redis, hooks, "")
    }

    /// A node whose app has `app_extra` (TOML lines) in its section.
    fn start_with(host: &str, redis: &RedisServer, hooks: &Receiver, app_extra: &str) -> Self {
        let dir = support::temp_dir("cluster-node");
        let config = dir.join("ringcast.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nhost = \"{host}\"\nport = 0\nshards = 2\ndata_dir = {:?}\n\n\
                 [cluster]\nredis_url = \"{}\"\nnode_timeout_secs = 3\n\n\
                 [[apps]]\nid = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n\
                 webhooks = [{{ url = \"{}\" }}]\n{app_extra}\n",
                dir.join("data"),
                redis.url(),
                hooks.url(),
            ),
        )
        .unwrap();
        Self::spawn(config)
    }

    fn spawn(config: std::path::PathBuf) -> Self {
        let (child, addr) = support::spawn_broker(&config, "warn");
        let node = Self {
            child,
            addr,
            config,
        };
        node.wait_until_synchronized();
        node
    }

    /// Stops the node with SIGTERM, as a deployment would; [`Node::spawn`] with the
    /// returned configuration starts it again with the same data.
    fn stop(mut self) -> std::path::PathBuf {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap();
        self.config.clone()
    }

    fn health(&self) -> Value {
        http(self.addr, "GET", "/up", "").1
    }

    fn wait_until_synchronized(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.health()["health"] != "ok" {
            assert!(
                Instant::now() < deadline,
                "node never synchronized with Redis"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn client(&self) -> WsClient {
        WsClient::connect(self.addr)
    }

    fn publish(&self, channel: &str, event: &str, data: &str, socket_id: Option<&str>) {
        let mut body = json!({"name": event, "channels": [channel], "data": data});
        if let Some(socket_id) = socket_id {
            body["socket_id"] = json!(socket_id);
        }
        let (status, reply) = api(
            self.addr,
            "POST",
            &format!("/apps/{APP_ID}/events"),
            &body.to_string(),
            &[],
        );
        assert_eq!(status, 200, "{reply}");
    }

    fn get(&self, path: &str, extra: &[(&str, &str)]) -> Value {
        let (status, body) = api(
            self.addr,
            "GET",
            &format!("/apps/{APP_ID}{path}"),
            "",
            extra,
        );
        assert_eq!(status, 200, "{body}");
        body
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster(redis: &RedisServer, hooks: &Receiver) -> Vec<Node> {
    ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|host| Node::start(host, redis, hooks))
        .collect()
}

const WAIT: Duration = Duration::from_secs(5);

fn is_event(name: &'static str) -> impl Fn(&Value) -> bool {
    move |v: &Value| v["event"] == name
}

/// Joins a presence channel as `user`, returning the roster's user ids.
fn join_presence(client: &mut WsClient, channel: &str, user: &str) -> Vec<String> {
    let channel_data = json!({"user_id": user, "user_info": {"name": user}}).to_string();
    let auth = sign_channel(
        KEY,
        &hmac_key(SECRET),
        &client.socket_id,
        channel,
        Some(&channel_data),
    );
    client.send(&json!({"event": "pusher:subscribe", "data": {
        "channel": channel, "auth": auth, "channel_data": channel_data}}));
    let reply = client.recv_until(WAIT, |v| {
        v["event"] == "pusher_internal:subscription_succeeded" || v["event"] == "pusher:error"
    });
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
    let data: Value = serde_json::from_str(reply["data"].as_str().unwrap()).unwrap();
    let mut ids: Vec<String> = data["presence"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sign_in(client: &mut WsClient, user: &str) {
    sign_in_watching(client, user, &[]);
}

fn subscribe_private(client: &mut WsClient, channel: &str) {
    let auth = sign_channel(KEY, &hmac_key(SECRET), &client.socket_id, channel, None);
    client.send(&json!({"event": "pusher:subscribe", "data": {
        "channel": channel, "auth": auth}}));
    client.recv_until(WAIT, is_event("pusher_internal:subscription_succeeded"));
}

/// Collects the messages named `event` that arrive within `window`.
fn drain(client: &mut WsClient, event: &str, window: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        match client.recv() {
            Some(v) if v["event"] == event => out.push(v),
            // A quiet moment (or a busy machine) is not the end: keep reading until the
            // deadline.
            _ => {}
        }
    }
    out
}

#[test]
fn events_reach_every_node_once_and_in_one_order() {
    let redis = RedisServer::start();
    let hooks = Receiver::start(&[]);
    let nodes = cluster(&redis, &hooks);
    let mut subscribers: Vec<WsClient> = nodes.iter().map(Node::client).collect();
    for client in &mut subscribers {
        client.subscribe("room");
        client.set_read_timeout(Duration::from_millis(300));
    }
    // Cluster-wide counts, asked of any node. A public subscription is confirmed before its
    // node's report reaches Redis, so the count may lag the confirmations by a moment.
    let deadline = Instant::now() + WAIT;
    let info = loop {
        let info = nodes[1].get("/channels/room", &[("info", "subscription_count")]);
        if info["subscription_count"] == 3 || Instant::now() > deadline {
            break info;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(info["subscription_count"], 3, "{info}");
    assert_eq!(info["occupied"], true);
    let list = nodes[2].get("/channels", &[]);
    assert!(list["channels"].get("room").is_some(), "{list}");

    // Publishes from all three nodes, interleaved: everyone gets each exactly once, all in
    // the same order, and each node's own publishes in the order it made them.
    for i in 0..30 {
        nodes[i % 3].publish("room", "tick", &i.to_string(), None);
    }
    let mut orders = Vec::new();
    for client in &mut subscribers {
        let got: Vec<String> = drain(client, "tick", Duration::from_secs(2))
            .iter()
            .map(|v| v["data"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got.len(), 30, "{got:?}");
        for origin in 0..3 {
            let mine: Vec<usize> = got
                .iter()
                .map(|d| d.parse().unwrap())
                .filter(|i: &usize| i % 3 == origin)
                .collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
        }
        orders.push(got);
    }
    assert!(orders.windows(2).all(|w| w[0] == w[1]), "{orders:?}");

    // `socket_id` (Laravel's toOthers) excludes a socket on another node.
    let excluded = subscribers[0].socket_id.clone();
    nodes[2].publish("room", "others", "x", Some(&excluded));
    assert!(drain(&mut subscribers[0], "others", Duration::from_millis(800)).is_empty());
    assert_eq!(
        drain(&mut subscribers[1], "others", Duration::from_millis(800)).len(),
        1
    );

    // Client events cross nodes too, and never come back to their sender.
    let mut sender = nodes[0].client();
    let mut receiver = nodes[1].client();
    subscribe_private(&mut sender, "private-chat");
    subscribe_private(&mut receiver, "private-chat");
    sender
        .send(&json!({"event": "client-typing", "channel": "private-chat", "data": {"who": "a"}}));
    let got = receiver.recv_until(WAIT, is_event("client-typing"));
    assert_eq!(got["data"]["who"], "a");
    sender.set_read_timeout(Duration::from_millis(300));
    assert!(drain(&mut sender, "client-typing", Duration::from_millis(600)).is_empty());

    // channel_occupied went out once for the whole cluster.
    assert!(hooks.wait_for("channel_occupied", "room", WAIT).is_some());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hooks.count("channel_occupied", "room"), 1);
}

#[test]
fn a_publisher_alternating_between_two_nodes_is_delivered_in_its_order_everywhere() {
    const EVENTS: usize = 1000;
    let redis = RedisServer::start();
    let hooks = Receiver::start(&[]);
    let nodes = cluster(&redis, &hooks);
    let mut subscribers: Vec<WsClient> = nodes.iter().map(Node::client).collect();
    for client in &mut subscribers {
        client.subscribe("orders");
        client.set_read_timeout(Duration::from_millis(300));
    }
    // One backend publishing one event at a time, through whichever node its load
    // balancer picks: each POST is answered only once Redis has the event, so the next one
    // (through the other node) cannot overtake it.
    for i in 0..EVENTS {
        nodes[i % 2].publish("orders", "placed", &i.to_string(), None);
    }
    let expected: Vec<usize> = (0..EVENTS).collect();
    for client in &mut subscribers {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        while got.len() < EVENTS && Instant::now() < deadline {
            if let Some(v) = client.recv()
                && v["event"] == "placed"
            {
                got.push(v["data"].as_str().unwrap().parse::<usize>().unwrap());
            }
        }
        let out_of_order = got.windows(2).filter(|w| w[0] > w[1]).count();
        assert_eq!(got.len(), EVENTS, "{out_of_order} out of order");
        assert_eq!(got, expected, "{out_of_order} out of order");
    }
}

#[test]
fn presence_is_cluster_wide_and_a_killed_node_leaves_no_ghosts() {
    let redis = RedisServer::start();
    let hooks = Receiver::start(&[]);
    let mut nodes = cluster(&redis, &hooks);
    let channel = "presence-lobby";
    let mut observer = nodes[0].client();
    assert_eq!(
        join_presence(&mut observer, channel, "watcher"),
        ["watcher"]
    );

    // The same user on two nodes is one member: one member_added, and it stays while either
    // socket does.
    let mut alice_1 = nodes[1].client();
    let mut alice_2 = nodes[2].client();
    assert_eq!(
        join_presence(&mut alice_1, channel, "alice"),
        ["alice", "watcher"]
    );
    assert_eq!(
        join_presence(&mut alice_2, channel, "alice"),
        ["alice", "watcher"]
    );
    observer.set_read_timeout(Duration::from_millis(300));
    let added = drain(
        &mut observer,
        "pusher_internal:member_added",
        Duration::from_secs(1),
    );
    assert_eq!(added.len(), 1, "{added:?}");
    let users = nodes[2].get(&format!("/channels/{channel}/users"), &[]);
    let mut ids: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["alice", "watcher"]);
    let info = nodes[1].get(
        &format!("/channels/{channel}"),
        &[("info", "user_count,subscription_count")],
    );
    assert_eq!(info["user_count"], 2, "{info}");
    assert_eq!(info["subscription_count"], 3, "{info}");
    assert!(hooks.wait_for("member_added", channel, WAIT).is_some());

    // Alice leaves node 1: still present through node 2.
    drop(alice_1);
    assert!(
        drain(
            &mut observer,
            "pusher_internal:member_removed",
            Duration::from_secs(1)
        )
        .is_empty()
    );

    // Node 3 (alice's other socket, and bob) dies without a word: within the node timeout
    // (3 s here) another node removes its members, once.
    let mut bob = nodes[2].client();
    join_presence(&mut bob, channel, "bob");
    // Node 3 also holds the only subscriber of another channel.
    let mut lonely = nodes[2].client();
    lonely.subscribe("lonely");
    // (A webhook is sent by the node that saw the change: wait for bob's before the kill.)
    hooks.wait_for_count("member_added", channel, 3, WAIT);
    assert!(hooks.wait_for("channel_occupied", "lonely", WAIT).is_some());
    let killed = nodes.remove(2);
    let started = Instant::now();
    killed.kill();
    drop(alice_2);
    drop(bob);
    observer.set_read_timeout(Duration::from_millis(500));
    let mut removed = Vec::new();
    while removed.len() < 2 && started.elapsed() < Duration::from_secs(8) {
        if let Some(v) = observer.recv()
            && v["event"] == "pusher_internal:member_removed"
        {
            let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
            removed.push(data["user_id"].as_str().unwrap().to_owned());
        }
    }
    removed.sort();
    assert_eq!(removed, ["alice", "bob"], "after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(
        drain(
            &mut observer,
            "pusher_internal:member_removed",
            Duration::from_secs(1)
        )
        .is_empty()
    );
    let users = nodes[0].get(&format!("/channels/{channel}/users"), &[]);
    assert_eq!(users["users"], json!([{"id": "watcher"}]));
    let info = nodes[1].get(
        &format!("/channels/{channel}"),
        &[("info", "subscription_count")],
    );
    assert_eq!(info["subscription_count"], 1, "{info}");
    // member_removed webhooks once each, after the leave delay.
    hooks.wait_for_count("member_removed", channel, 2, Duration::from_secs(8));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hooks.count("member_removed", channel), 2);
    assert_eq!(hooks.count("member_added", channel), 3); // watcher, alice, bob
    // The channel only the dead node had is vacated, once, and gone from the list.
    assert!(hooks.wait_for("channel_vacated", "lonely", WAIT).is_some());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hooks.count("channel_vacated", "lonely"), 1);
    assert_eq!(hooks.count("channel_vacated", channel), 0);
    let list = nodes[0].get("/channels", &[]);
    assert!(list["channels"].get("lonely").is_none(), "{list}");
    drop(lonely);
}

#[test]
fn terminate_reaches_sockets_on_other_nodes() {
    let redis = RedisServer::start();
    let hooks = Receiver::start(&[]);
    let nodes = cluster(&redis, &hooks);
    let mut on_two = nodes[1].client();
    let mut on_three = nodes[2].client();
    sign_in(&mut on_two, "mallory");
    sign_in(&mut on_three, "mallory");
    let (status, _) = api(
        nodes[0].addr,
        "POST",
        &format!("/apps/{APP_ID}/users/mallory/terminate_connections"),
        "{}",
        &[],
    );
    assert_eq!(status, 200);
    for client in [&mut on_two, &mut on_three] {
        let closed = client.recv_until(WAIT, |v| v.get("close").is_some());
        assert_eq!(closed["close"], 4009, "{closed}");
    }
}

#[test]
fn a_node_without_redis_is_degraded_then_resynchronizes() {
    let mut redis = RedisServer::start();
    let hooks = Receiver::start(&[]);
    let nodes = cluster(&redis, &hooks);
    let mut local = nodes[0].client();
    local.subscribe("news");
    let mut remote = nodes[1].client();
    remote.subscribe("news");
    let mut member = nodes[1].client();
    join_presence(&mut member, "presence-team", "carol");

    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes[0].health()["health"] != "degraded" {
        assert!(
            Instant::now() < deadline,
            "the node never said it was degraded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = http(nodes[0].addr, "GET", "/metrics", "").1;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(metrics.contains("ringcast_cluster_degraded 1"), "{metrics}");
    // Local delivery keeps working.
    nodes[0].publish("news", "local", "1", None);
    local.recv_until(WAIT, is_event("local"));

    redis.start_again();
    for node in &nodes {
        node.wait_until_synchronized();
    }
    // The restarted (empty) Redis was given back every node's state.
    let info = nodes[2].get("/channels/news", &[("info", "subscription_count")]);
    assert_eq!(info["subscription_count"], 2, "{info}");
    let users = nodes[2].get("/channels/presence-team/users", &[]);
    assert_eq!(users["users"], json!([{"id": "carol"}]));
    nodes[2].publish("news", "back", "2", None);
    local.recv_until(WAIT, is_event("back"));
    remote.recv_until(WAIT, is_event("back"));
}

#[test]
fn a_node_started_later_replays_cache_channels_from_redis() {
    let redis = RedisServer::start();
    let hooks = Receiver::start(&[]);
    let early: Vec<Node> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|host| Node::start(host, &redis, &hooks))
        .collect();
    early[0].publish("cache-prices", "price", "100", None);
    early[1].publish("cache-prices", "price", "101", None);
    // Member events of a presence cache channel are delivered but never kept as its last
    // event, on any node.
    let mut alice = early[0].client();
    join_presence(&mut alice, "presence-cache-room", "alice");
    early[1].publish("presence-cache-room", "news", "kept", None);
    alice.recv_until(WAIT, is_event("news"));
    let mut bob = early[1].client();
    join_presence(&mut bob, "presence-cache-room", "bob");
    alice.recv_until(WAIT, is_event("pusher_internal:member_added"));

    let late = Node::start("127.0.0.4", &redis, &hooks);
    let mut client = late.client();
    client.subscribe("cache-prices");
    let last = client.recv_until(WAIT, |v| v["channel"] == "cache-prices");
    assert_eq!(
        (&last["event"], &last["data"]),
        (&json!("price"), &json!("101"))
    );
    let mut carol = late.client();
    join_presence(&mut carol, "presence-cache-room", "carol");
    let last = carol.recv_until(WAIT, |v| {
        v["channel"] == "presence-cache-room" && v["event"] != "pusher_internal:member_added"
    });
    assert_eq!(
        (&last["event"], &last["data"]),
        (&json!("news"), &json!("kept"))
    );
    // Now the late node has its own copy; a second subscriber gets it without asking Redis.
    let mut second = late.client();
    second.subscribe("cache-prices");
    let again = second.recv_until(WAIT, |v| v["channel"] == "cache-prices");
    assert_eq!(again["data"], "101");
    // A cache channel nobody published on is a miss on every node, with its webhook.
    let mut empty = late.client();
    empty.subscribe("cache-empty");
    let miss = empty.recv_until(WAIT, |v| v["channel"] == "cache-empty");
    assert_eq!(miss["event"], "pusher:cache_miss");
    assert!(hooks.wait_for("cache_miss", "cache-empty", WAIT).is_some());
}

#[test]
fn an_apps_connection_quota_counts_every_node() {
    let redis = RedisServer::start();
    let hooks = Receiver::start(&[]);
    let nodes: Vec<Node> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|host| Node::start_with(host, &redis, &hooks, "max_connections = 3"))
        .collect();
    // Nodes learn each other's counts from heartbeats (every 0.5 s with a 3 s timeout).
    let counted_everywhere = |n: usize| {
        let line = format!("ringcast_cluster_app_connections{{app=\"{APP_ID}\"}} {n}\n");
        let deadline = Instant::now() + WAIT;
        for node in &nodes {
            loop {
                let metrics = http(node.addr, "GET", "/metrics", "").1;
                if metrics.as_str().unwrap_or_default().contains(&line) {
                    break;
                }
                assert!(Instant::now() < deadline, "{} never counted {n}", node.addr);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let held: Vec<WsClient> = (0..2).map(|_| nodes[0].client()).collect();
    let _third = nodes[1].client();
    counted_everywhere(3);
    // A fourth connection is refused on either node, with Pusher's over-quota error.
    for node in &nodes {
        let mut refused = WsClient::open(node.addr, &format!("/app/{KEY}?protocol=7"));
        let error = refused.recv().expect("pusher:error");
        assert_eq!(error["event"], "pusher:error", "{error}");
        assert_eq!(error["data"]["code"], 4004, "{error}");
        assert_eq!(refused.recv(), Some(json!({"close": 4004})));
    }
    // Slots freed on one node admit connections on the other.
    drop(held);
    counted_everywhere(1);
    let mut again = nodes[1].client();
    again.subscribe("room");
}

/// Signs in as `user` following `watchlist`.
fn sign_in_watching(client: &mut WsClient, user: &str, watchlist: &[&str]) {
    let user_data = json!({"id": user, "watchlist": watchlist}).to_string();
    let auth = sign_signin(KEY, &hmac_key(SECRET), &client.socket_id, &user_data);
    client.send(&json!({"event": "pusher:signin", "data": {
        "auth": auth, "user_data": user_data}}));
    client.recv_until(WAIT, is_event("pusher:signin_success"));
}

/// The next watchlist event: its name and user ids.
fn watch_event(client: &mut WsClient, within: Duration) -> (String, Vec<String>) {
    let message = client.recv_until(within, is_event("pusher_internal:watchlist_events"));
    let data: Value = serde_json::from_str(message["data"].as_str().unwrap()).unwrap();
    let event = &data["events"][0];
    let mut ids: Vec<String> = event["user_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    (event["name"].as_str().unwrap().to_owned(), ids)
}

#[test]
fn watchlists_follow_users_on_every_node() {
    let redis = RedisServer::start();
    let hooks = Receiver::start(&[]);
    let mut nodes = cluster(&redis, &hooks);
    // How many nodes Redis counts the user on ("$-1", nil, is none).
    let nodes_with = |user: &str| {
        let reply = redis_cmd(redis.port, &["HGET", &format!("ringcast:u:{APP_ID}"), user]);
        match reply.lines().last().unwrap_or_default() {
            "$-1" => "0".to_owned(),
            count => count.to_owned(),
        }
    };
    let wait_for_nodes = |user: &str, count: &str| {
        let deadline = Instant::now() + WAIT;
        while nodes_with(user) != count {
            assert!(
                Instant::now() < deadline,
                "{user} never counted on {count} nodes"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let online = |ids: &[&str]| {
        (
            "online".to_owned(),
            ids.iter().map(|s| s.to_string()).collect(),
        )
    };
    let offline = |ids: &[&str]| {
        (
            "offline".to_owned(),
            ids.iter().map(|s| s.to_string()).collect(),
        )
    };

    // alice is online on node 1 before bob, on node 2, starts watching her.
    let mut alice_1 = nodes[0].client();
    sign_in(&mut alice_1, "alice");
    wait_for_nodes("alice", "1");
    let mut bob = nodes[1].client();
    sign_in_watching(&mut bob, "bob", &["alice", "carol"]);
    assert_eq!(watch_event(&mut bob, WAIT), online(&["alice"]));

    // carol comes online on node 3.
    let mut carol = nodes[2].client();
    sign_in(&mut carol, "carol");
    assert_eq!(watch_event(&mut bob, WAIT), online(&["carol"]));

    // alice on a second node is not news, nor is her leaving one of the two.
    let mut alice_3 = nodes[2].client();
    sign_in(&mut alice_3, "alice");
    wait_for_nodes("alice", "2");
    drop(alice_1);
    wait_for_nodes("alice", "1");
    drop(carol);
    assert_eq!(watch_event(&mut bob, WAIT), offline(&["carol"]));

    // kill -9 of node 3 takes alice's last socket: offline once the node is declared dead
    // (timeout 3 s).
    nodes.pop().unwrap().kill();
    assert_eq!(
        watch_event(&mut bob, Duration::from_secs(6)),
        offline(&["alice"])
    );
    assert_eq!(nodes_with("alice"), "0");
    drop(alice_3); // open until its node died
}

#[test]
fn leave_webhooks_are_cancelled_by_a_return_to_any_node_and_outlive_their_node() {
    let redis = RedisServer::start();
    let hooks = Receiver::start(&[]);
    let mut nodes = cluster(&redis, &hooks);
    let channel = "presence-desk";
    let mut observer = nodes[0].client();
    join_presence(&mut observer, channel, "watcher");

    // alice leaves node 1 and is back on node 2 within the leave delay: for the app she
    // never left.
    let mut alice = nodes[1].client();
    join_presence(&mut alice, channel, "alice");
    assert!(hooks.wait_for("member_added", channel, WAIT).is_some());
    drop(alice);
    std::thread::sleep(Duration::from_millis(500));
    let mut alice = nodes[2].client();
    join_presence(&mut alice, channel, "alice");
    std::thread::sleep(LEAVE_DELAY_AND_CLAIM);
    assert_eq!(hooks.count("member_removed", channel), 0);
    assert_eq!(hooks.count("member_added", channel), 2); // watcher, alice

    // carol leaves node 3 cleanly, and node 3 dies before her member_removed is due: another
    // node sends it, once. The same for a channel only node 3 had.
    let mut carol = nodes[2].client();
    join_presence(&mut carol, channel, "carol");
    let mut lonely = nodes[2].client();
    lonely.subscribe("lonely-desk");
    hooks.wait_for_count("member_added", channel, 3, WAIT);
    assert!(
        hooks
            .wait_for("channel_occupied", "lonely-desk", WAIT)
            .is_some()
    );
    drop(carol);
    drop(lonely);
    std::thread::sleep(Duration::from_millis(500));
    nodes.pop().unwrap().kill();
    assert!(hooks.wait_for("member_removed", channel, WAIT).is_some());
    assert!(
        hooks
            .wait_for("channel_vacated", "lonely-desk", WAIT)
            .is_some()
    );
    std::thread::sleep(LEAVE_DELAY_AND_CLAIM);
    // carol once; alice, whose only socket was on node 3, once too (removed with the node).
    assert_eq!(hooks.count("member_removed", channel), 2);
    assert_eq!(hooks.count("channel_vacated", "lonely-desk"), 1);
    drop(alice);
}

/// The leave delay (3 s) and a little more, for the claim and the webhook batch.
const LEAVE_DELAY_AND_CLAIM: Duration = Duration::from_millis(3800);

#[test]
fn a_token_revoked_through_one_node_is_refused_and_closed_on_the_others() {
    let redis = RedisServer::start();
    let hooks = Receiver::start(&[]);
    let jwt = jwt_config();
    let nodes: Vec<Node> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|host| Node::start_with(host, &redis, &hooks, &jwt))
        .collect();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let claims = json!({"sub": "dave", "jti": "t-1", "exp": exp});
    let token = ringcast::core::auth::jwt::sign_hs256(&claims, JWT_SECRET.as_bytes());
    let mut client = WsClient::connect_with_token(nodes[1].addr, &token);

    let body = json!({"jti": "t-1", "expires_at": exp}).to_string();
    let path = format!("/apps/{APP_ID}/tokens/revoke");
    let (status, reply) = api(nodes[0].addr, "POST", &path, &body, &[]);
    assert_eq!(status, 200, "{reply}");
    let error = client.recv_until(WAIT, is_event("pusher:error"));
    assert_eq!(error["data"]["message"], "token revoked");
    assert_eq!(client.recv(), Some(json!({"close": 4009})));
    // The other node refuses the token from now on.
    let mut again = WsClient::open(
        nodes[1].addr,
        &format!("/app/{KEY}?protocol=7&token={token}"),
    );
    let error = again.recv().expect("pusher:error");
    assert_eq!(error["data"]["code"], 4009, "{error}");

    // Every token of a user: their sockets on both nodes close, another user's stay.
    let token_of = |sub: &str, jti: &str| {
        let claims = json!({"sub": sub, "jti": jti, "exp": exp});
        ringcast::core::auth::jwt::sign_hs256(&claims, JWT_SECRET.as_bytes())
    };
    let mut erin_a = WsClient::connect_with_token(nodes[0].addr, &token_of("erin", "e-1"));
    let mut erin_b = WsClient::connect_with_token(nodes[1].addr, &token_of("erin", "e-2"));
    let mut frank = WsClient::connect_with_token(nodes[1].addr, &token_of("frank", "f-1"));
    let body = json!({"sub": "erin", "until": exp}).to_string();
    let (status, reply) = api(nodes[0].addr, "POST", &path, &body, &[]);
    assert_eq!(status, 200, "{reply}");
    for erin in [&mut erin_a, &mut erin_b] {
        let error = erin.recv_until(WAIT, is_event("pusher:error"));
        assert_eq!(error["data"]["message"], "token revoked");
        assert_eq!(erin.recv(), Some(json!({"close": 4009})));
    }
    frank.send(&json!({"event": "pusher:ping", "data": {}}));
    assert_eq!(
        frank.recv_until(WAIT, is_event("pusher:pong"))["event"],
        "pusher:pong"
    );
}

#[test]
fn a_policy_resource_set_through_one_node_decides_on_the_others_and_withdraws_there() {
    let redis = RedisServer::start();
    let hooks = Receiver::start(&[]);
    let nodes: Vec<Node> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|host| Node::start_with(host, &redis, &hooks, ESCROW_POLICY))
        .collect();
    let attempt = || join_escrow_chat(&nodes[1]).0;
    let until = |expected: &str| {
        let deadline = Instant::now() + WAIT;
        while attempt() != expected {
            assert!(Instant::now() < deadline, "never {expected}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(attempt(), "pusher:subscription_error");
    let path = format!("/apps/{APP_ID}/resources/escrow/42");
    let body = json!({"participants": ["buyer-1"], "attributes": {}}).to_string();
    let (status, reply) = api(nodes[0].addr, "PUT", &path, &body, &[]);
    assert_eq!(status, 200, "{reply}");
    until("pusher_internal:subscription_succeeded");
    let (event, mut live) = join_escrow_chat(&nodes[1]);
    assert_eq!(event, "pusher_internal:subscription_succeeded");
    let (status, reply) = api(nodes[0].addr, "DELETE", &path, "", &[]);
    assert_eq!(status, 200, "{reply}");
    // The subscription held on the other node is taken back, with the rule that refused it.
    let revoked = live.recv_until(WAIT, |v| v["event"] == "ringcast:subscription_revoked");
    assert_eq!(revoked["channel"], "private-escrow.42.chat", "{revoked}");
    let data: Value = serde_json::from_str(revoked["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["rule"], "escrow-chat", "{revoked}");
    until("pusher:subscription_error");
}

#[test]
fn nodes_started_or_restarted_later_load_resources_and_revocations_from_redis() {
    let redis = RedisServer::start();
    let hooks = Receiver::start(&[]);
    let app_extra = jwt_config() + ESCROW_POLICY;
    let start = |host: &str| Node::start_with(host, &redis, &hooks, &app_extra);
    let first = start("127.0.0.2");
    let second = start("127.0.0.3");
    let path = format!("/apps/{APP_ID}/resources/escrow/42");
    let body = json!({"participants": ["buyer-1"], "attributes": {}}).to_string();
    assert_eq!(api(first.addr, "PUT", &path, &body, &[]).0, 200);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let token = ringcast::core::auth::jwt::sign_hs256(
        &json!({"sub": "eve", "jti": "t-9", "exp": exp}),
        JWT_SECRET.as_bytes(),
    );
    let revoke = json!({"jti": "t-9", "expires_at": exp}).to_string();
    let revoke_path = format!("/apps/{APP_ID}/tokens/revoke");
    assert_eq!(api(second.addr, "POST", &revoke_path, &revoke, &[]).0, 200);

    // A node started now has both as soon as it says it is in sync.
    let third = start("127.0.0.4");
    assert_eq!(
        join_escrow_chat(&third).0,
        "pusher_internal:subscription_succeeded"
    );
    let mut refused = WsClient::open(third.addr, &format!("/app/{KEY}?protocol=7&token={token}"));
    let error = refused.recv().expect("pusher:error");
    assert_eq!(error["data"]["code"], 4009, "{error}");

    // A resource deleted while a node was down is gone from it when it comes back, although
    // its own store still had it.
    third.kill();
    let config = second.stop();
    assert_eq!(api(first.addr, "DELETE", &path, "", &[]).0, 200);
    assert_eq!(join_escrow_chat(&first).0, "pusher:subscription_error");
    let second = Node::spawn(config);
    assert_eq!(join_escrow_chat(&second).0, "pusher:subscription_error");
}

const JWT_SECRET: &str = "a-jwt-secret-of-at-least-32-bytes!";

/// The app's `[apps.jwt]` table: optional HS256 tokens.
fn jwt_config() -> String {
    format!("\n[apps.jwt]\nalgorithm = \"HS256\"\nsecret = \"{JWT_SECRET}\"\nleeway_secs = 0\n")
}

/// A policy: only an escrow's participants join its chat.
const ESCROW_POLICY: &str = "\n[[apps.policies]]\nname = \"escrow-chat\"\n\
    channel = \"escrow.{id}.chat\"\nresource = \"escrow:{id}\"\nallow = [{ participant = true }]\n";

/// Subscribes a fresh `buyer-1` to escrow 42's chat on `node`: the reply's event name, and
/// the client.
fn join_escrow_chat(node: &Node) -> (String, WsClient) {
    let mut buyer = node.client();
    sign_in(&mut buyer, "buyer-1");
    let channel = "private-escrow.42.chat";
    let auth = sign_channel(KEY, &hmac_key(SECRET), &buyer.socket_id, channel, None);
    buyer.send(&json!({"event": "pusher:subscribe", "data": {
        "channel": channel, "auth": auth}}));
    let reply = buyer.recv_until(WAIT, |v| {
        v["event"] == "pusher_internal:subscription_succeeded"
            || v["event"] == "pusher:subscription_error"
    });
    (reply["event"].as_str().unwrap().to_owned(), buyer)
}
