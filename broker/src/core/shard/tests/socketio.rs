//! Socket.IO connections on the shard: laravel-echo-server's events, the auth endpoint's
//! round trip, Engine.IO's heartbeat, and one channel space with Pusher connections.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::harness::*;
use crate::core::auth::endpoint::EndpointAnswer;
use crate::core::shard::*;
use crate::core::wire::Wire;
use crate::core::wire::socketio::frames::PollingPackets;
use crate::core::ws::frame::{Opcode, encode_client_frame};

const AUTH_ENDPOINT: &str = "http://127.0.0.1:9/broadcasting/auth";

/// An anonymous Socket.IO connection request, recoverable as `pid` when given.
fn request(pid: Option<&str>) -> ConnectRequest<'_> {
    ConnectRequest {
        wire: Wire::SocketIo,
        path: "/socket.io/",
        protocol: None,
        origin: None,
        remote: IpAddr::V4(Ipv4Addr::LOCALHOST),
        credentials: Credentials::Token(None),
        now_unix: NOW_UNIX,
        recovery_pid: pid,
    }
}

fn cluster() -> Cluster {
    cluster_recovering(Duration::ZERO)
}

/// Two shards whose app serves Socket.IO with an auth endpoint, keeping lost connections
/// for `recovery`.
fn cluster_recovering(recovery: Duration) -> Cluster {
    Cluster::with(2, |config| {
        let socketio = config.apps[0].socketio.as_mut().unwrap();
        socketio.auth_endpoint = Some(AUTH_ENDPOINT.into());
        socketio.ping_interval = Duration::from_secs(25);
        socketio.ping_timeout = Duration::from_secs(20);
        socketio.recovery = recovery;
    })
}

impl Cluster {
    pub(super) fn connect_socketio(&mut self, shard: ShardId) -> Client {
        let request = request(None);
        let Accept::Open(key) = self.shards[shard].accept_websocket(&request, self.now) else {
            panic!("refused");
        };
        let socket_id = self.shards[shard].socket_id(key).unwrap();
        let client = Client {
            shard,
            key,
            socket_id,
        };
        assert_eq!(
            self.packets(client),
            [format!(r#"40{{"sid":"{socket_id}"}}"#)]
        );
        client
    }

    pub(super) fn send_packet(&mut self, client: Client, text: &str) {
        self.send_raw(
            client,
            &encode_client_frame(Opcode::Text, text.as_bytes(), [9, 8, 7, 6], true),
        );
    }

    /// The Engine.IO packets queued for a Socket.IO client; a close frame as `close`.
    pub(super) fn packets(&mut self, client: Client) -> Vec<String> {
        let mut packets = PollingPackets::default();
        for frame in &self.frames(client) {
            packets.push(frame);
        }
        let mut texts: Vec<String> = packets
            .packets
            .iter()
            .map(|p| String::from_utf8(p.to_vec()).unwrap())
            .collect();
        if packets.closed {
            texts.push("close".into());
        }
        texts
    }

    fn auth_calls(&mut self, shard: ShardId) -> Vec<AuthCall> {
        let mut calls = Vec::new();
        self.shards[shard].take_auth_calls(&mut calls);
        calls
    }

    fn answer(&mut self, call: &AuthCall, status: u16, body: &str) {
        let answer = EndpointAnswer::Answered {
            status,
            body: body.as_bytes().to_vec(),
        };
        let now = self.now;
        // The tests connect their Socket.IO clients to shard 0.
        self.shards[0].handle_channel_auth(call.conn, call.socket_id, &call.channel, &answer, now);
        self.route();
    }
}

#[test]
fn a_public_subscription_is_confirmed_and_events_come_as_channel_then_data() {
    let mut c = cluster();
    let socket = c.connect_socketio(0);
    c.send_packet(socket, r#"42["subscribe",{"channel":"news","auth":{}}]"#);
    assert_eq!(
        c.packets(socket),
        [r#"42["subscription_succeeded","news"]"#]
    );
    let pusher = c.connect(1);
    c.subscribe(pusher, "news");
    c.publish(1, "news", r#"{"id":7}"#, None);
    assert_eq!(c.packets(socket), [r#"42["greeting","news",{"id":7}]"#]);
    let got = c.recv(pusher);
    assert_eq!(got[0]["data"], r#"{"id":7}"#);
}

#[test]
fn a_private_subscription_waits_for_the_auth_endpoint_whose_answer_decides() {
    let mut c = cluster();
    let socket = c.connect_socketio(0);
    let subscribe = |channel: &str| {
        format!(
            r#"42["subscribe",{{"channel":"{channel}","auth":{{"headers":{{"Authorization":"Bearer t"}}}}}}]"#
        )
    };
    c.send_packet(socket, &subscribe("private-orders.1"));
    assert!(
        c.packets(socket).is_empty(),
        "nothing until the endpoint answers"
    );
    let calls = c.auth_calls(0);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].channel.as_str(), "private-orders.1");
    assert_eq!(calls[0].socket_id, socket.socket_id);
    assert_eq!(
        calls[0].headers.0,
        [("Authorization".to_owned(), "Bearer t".to_owned())]
    );
    c.answer(&calls[0], 200, "true");
    assert_eq!(
        c.packets(socket),
        [r#"42["subscription_succeeded","private-orders.1"]"#]
    );

    c.send_packet(socket, &subscribe("private-vault"));
    let calls = c.auth_calls(0);
    c.answer(
        &calls[0],
        403,
        r#"{"message":"This action is unauthorized."}"#,
    );
    let refused = c.packets(socket);
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].starts_with(r#"42["subscription_error","private-vault",403,"#),
        "{refused:?}"
    );
    let denial = c
        .audit()
        .into_iter()
        .find(|r| r.channel.as_deref() == Some("private-vault"))
        .unwrap();
    assert_eq!(denial.rule.as_deref(), Some("auth_endpoint"));
    assert_eq!(
        denial.reason.as_deref(),
        Some("Client can not be authenticated, got HTTP status 403")
    );
}

#[test]
fn an_answer_for_a_subscription_left_meanwhile_is_dropped() {
    let mut c = cluster();
    let socket = c.connect_socketio(0);
    c.send_packet(
        socket,
        r#"42["subscribe",{"channel":"private-a","auth":{"headers":{}}}]"#,
    );
    let calls = c.auth_calls(0);
    c.send_packet(socket, r#"42["unsubscribe",{"channel":"private-a"}]"#);
    c.answer(&calls[0], 200, "true");
    assert!(c.packets(socket).is_empty());
    assert_eq!(c.stats(0, "private-a").subscription_count, 0);
}

#[test]
fn a_presence_member_named_by_the_endpoint_is_seen_by_pusher_members() {
    let mut c = cluster();
    let pusher = c.connect(1);
    let joined = c.join_presence(pusher, "presence-room", "carol");
    assert_eq!(joined[0]["event"], "pusher_internal:subscription_succeeded");
    let socket = c.connect_socketio(0);
    c.send_packet(
        socket,
        r#"42["subscribe",{"channel":"presence-room","auth":{"headers":{}}}]"#,
    );
    let calls = c.auth_calls(0);
    c.answer(
        &calls[0],
        200,
        r#"{"channel_data":{"user_id":5,"user_info":{"name":"Ann"}}}"#,
    );
    let here = c.packets(socket);
    assert!(
        here[0].starts_with(r#"42["presence:subscribed","presence-room",["#),
        "{here:?}"
    );
    assert!(here[0].contains(r#"{"user_id":"5","user_info":{"name":"Ann"}}"#));
    assert!(here[0].contains(r#""user_id":"carol""#));
    let added = c.recv(pusher);
    assert_eq!(added[0]["event"], "pusher_internal:member_added");
    assert_eq!(inner(&added[0])["user_id"], "5");
    c.send_packet(socket, r#"42["unsubscribe",{"channel":"presence-room"}]"#);
    let removed = c.recv(pusher);
    assert_eq!(removed[0]["event"], "pusher_internal:member_removed");
}

#[test]
fn a_chatty_client_is_still_pinged_every_interval_and_closed_without_a_pong() {
    let mut c = cluster();
    let socket = c.connect_socketio(0);
    for _ in 0..3 {
        c.tick(Duration::from_secs(9));
        c.send_packet(socket, r#"42["hello",1]"#);
    }
    assert_eq!(c.packets(socket), ["2"], "pinged although it kept talking");
    c.send_packet(socket, "3");
    c.tick(Duration::from_secs(24));
    assert!(
        c.packets(socket).is_empty(),
        "the pong restarted the interval"
    );
    c.tick(Duration::from_secs(1));
    assert_eq!(c.packets(socket), ["2"]);
    c.tick(Duration::from_secs(20));
    let closed = c.packets(socket);
    assert!(
        closed[0].starts_with(r#"42["error",{"code":4201"#),
        "{closed:?}"
    );
    assert_eq!(closed.last().map(String::as_str), Some("close"));
}

#[test]
fn another_namespace_is_refused_and_a_malformed_packet_closes_only_its_connection() {
    let mut c = cluster();
    let socket = c.connect_socketio(0);
    let bystander = c.connect_socketio(0);
    c.send_packet(socket, "40/admin,");
    assert_eq!(
        c.packets(socket),
        [r#"44/admin,{"message":"Invalid namespace"}"#]
    );
    c.send_packet(socket, r#"42["subscribe""#);
    assert_eq!(c.packets(socket), ["close"]);
    c.send_packet(bystander, r#"42["subscribe",{"channel":"calm"}]"#);
    assert_eq!(
        c.packets(bystander),
        [r#"42["subscription_succeeded","calm"]"#]
    );
}

fn recovering_cluster() -> Cluster {
    cluster_recovering(Duration::from_secs(30))
}

fn connect_recoverable(c: &mut Cluster, pid: &str) -> Client {
    let request = request(Some(pid));
    let Accept::Open(key) = c.shards[0].accept_websocket(&request, c.now) else {
        panic!("refused");
    };
    let socket_id = c.shards[0].socket_id(key).unwrap();
    let client = Client {
        shard: 0,
        key,
        socket_id,
    };
    assert_eq!(
        c.packets(client),
        [format!(r#"40{{"pid":"{pid}","sid":"{socket_id}"}}"#)]
    );
    client
}

fn resume(c: &mut Cluster, pid: &str) -> Option<ConnKey> {
    let request = request(None);
    let now = c.now;
    c.shards[0].resume(pid, &request, now)
}

#[test]
fn a_lost_transport_is_recovered_with_what_was_published_meanwhile_in_order_once() {
    let mut c = recovering_cluster();
    let socket = connect_recoverable(&mut c, "0.secret");
    c.send_packet(socket, r#"42["subscribe",{"channel":"news"}]"#);
    assert_eq!(
        c.packets(socket),
        [r#"42["subscription_succeeded","news"]"#]
    );
    let now = c.now;
    assert_eq!(
        c.shards[0].handle_disconnect(socket.key, socket.socket_id, now),
        None,
        "parked, not ended"
    );
    for n in 0..3 {
        c.publish(1, "news", &format!(r#"{{"n":{n}}}"#), None);
    }
    c.tick(Duration::from_secs(29));
    assert_eq!(c.stats(0, "news").subscription_count, 1, "still subscribed");
    assert_eq!(resume(&mut c, "0.wrong"), None);
    assert_eq!(resume(&mut c, "0.secret"), Some(socket.key));
    assert_eq!(
        c.packets(socket),
        [
            format!(r#"40{{"pid":"0.secret","sid":"{}"}}"#, socket.socket_id),
            r#"42["greeting","news",{"n":0}]"#.to_owned(),
            r#"42["greeting","news",{"n":1}]"#.to_owned(),
            r#"42["greeting","news",{"n":2}]"#.to_owned(),
        ]
    );
    assert_eq!(resume(&mut c, "0.secret"), None, "recovered once");
    c.publish(1, "news", r#"{"n":3}"#, None);
    assert_eq!(c.packets(socket), [r#"42["greeting","news",{"n":3}]"#]);
}

#[test]
fn a_connection_not_recovered_in_time_leaves_its_channels_and_presence() {
    let mut c = recovering_cluster();
    let pusher = c.connect(1);
    c.join_presence(pusher, "presence-room", "carol");
    let socket = connect_recoverable(&mut c, "0.gone");
    c.send_packet(
        socket,
        r#"42["subscribe",{"channel":"presence-room","auth":{"headers":{}}}]"#,
    );
    let calls = c.auth_calls(0);
    c.answer(&calls[0], 200, r#"{"channel_data":{"user_id":"ann"}}"#);
    c.recv(pusher);
    let now = c.now;
    c.shards[0].handle_disconnect(socket.key, socket.socket_id, now);
    c.tick(Duration::from_secs(10));
    assert!(
        c.recv(pusher).is_empty(),
        "ann stays while she may come back"
    );
    c.tick(Duration::from_secs(21));
    let removed = c.recv(pusher);
    assert_eq!(removed[0]["event"], "pusher_internal:member_removed");
    assert_eq!(inner(&removed[0])["user_id"], "ann");
    assert_eq!(resume(&mut c, "0.gone"), None);
    assert_eq!(c.stats(0, "presence-room").subscription_count, 1);
}

#[test]
fn a_client_that_disconnects_itself_is_not_kept() {
    let mut c = recovering_cluster();
    let socket = connect_recoverable(&mut c, "0.bye");
    c.send_packet(socket, r#"42["subscribe",{"channel":"news"}]"#);
    c.packets(socket);
    c.send_packet(socket, "41");
    let now = c.now;
    assert!(
        c.shards[0]
            .handle_disconnect(socket.key, socket.socket_id, now)
            .is_some()
    );
    assert_eq!(resume(&mut c, "0.bye"), None);
    assert_eq!(c.stats(0, "news").subscription_count, 0);
}

#[test]
fn a_transport_closed_by_the_client_side_is_kept_for_recovery_too() {
    let mut c = recovering_cluster();
    let socket = connect_recoverable(&mut c, "0.closed");
    c.send_packet(socket, r#"42["subscribe",{"channel":"news"}]"#);
    c.packets(socket);
    c.send_raw(
        socket,
        &encode_client_frame(Opcode::Close, &1000u16.to_be_bytes(), [1, 2, 3, 4], true),
    );
    assert!(
        c.frames(socket).is_empty(),
        "the old transport gets nothing more"
    );
    c.publish(1, "news", r#"{"n":1}"#, None);
    assert_eq!(c.stats(0, "news").subscription_count, 1);
    assert_eq!(resume(&mut c, "0.closed"), Some(socket.key));
    let packets = c.packets(socket);
    assert_eq!(packets[1], r#"42["greeting","news",{"n":1}]"#);
}

#[test]
fn a_returning_presence_member_on_socket_io_is_replayed_the_history_it_missed() {
    let mut c = Cluster::with(2, |config| {
        let socketio = config.apps[0].socketio.as_mut().unwrap();
        socketio.auth_endpoint = Some(AUTH_ENDPOINT.into());
        config.apps[0].history = Some(crate::core::options::HistoryConfig {
            channels: vec!["presence-room.*".into()],
            ..Default::default()
        });
    });
    let join = |c: &mut Cluster| {
        let socket = c.connect_socketio(0);
        c.send_packet(
            socket,
            r#"42["subscribe",{"channel":"presence-room.1","auth":{"headers":{}}}]"#,
        );
        let calls = c.auth_calls(0);
        c.answer(&calls[0], 200, r#"{"channel_data":{"user_id":"ann"}}"#);
        (socket, c.packets(socket))
    };
    let (socket, here) = join(&mut c);
    assert!(
        here[0].starts_with(r#"42["presence:subscribed""#),
        "{here:?}"
    );
    let now = c.now;
    c.shards[0].handle_disconnect(socket.key, socket.socket_id, now);
    c.route();
    c.publish(1, "presence-room.1", r#"{"n":1}"#, None);
    c.publish(1, "presence-room.1", r#"{"n":2}"#, None);
    let (_, back) = join(&mut c);
    assert!(
        back[0].starts_with(r#"42["presence:subscribed""#),
        "{back:?}"
    );
    assert_eq!(
        back[1..],
        [
            r#"42["ringcast:replay_start","presence-room.1",{"count":2,"since":0}]"#,
            r#"42["greeting","presence-room.1",{"n":1}]"#,
            r#"42["greeting","presence-room.1",{"n":2}]"#,
            r#"42["ringcast:replay_end","presence-room.1",{"count":2}]"#,
        ]
    );
}

#[test]
fn history_events_carry_their_offset_and_a_client_sending_it_back_is_replayed_the_rest() {
    let mut c = Cluster::with(2, |config| {
        config.apps[0].socketio.as_mut().unwrap().recovery = Duration::from_secs(30);
        config.apps[0].history = Some(crate::core::options::HistoryConfig {
            channels: vec!["feed.*".into()],
            ..Default::default()
        });
    });
    let socket = connect_recoverable(&mut c, "0.first");
    c.send_packet(socket, r#"42["subscribe",{"channel":"feed.1"}]"#);
    assert_eq!(
        c.packets(socket),
        [r#"42["subscription_succeeded","feed.1"]"#]
    );
    c.publish(1, "feed.1", r#"{"n":1}"#, None);
    assert_eq!(
        c.packets(socket),
        [r#"42["greeting","feed.1",{"n":1},"feed.1:1"]"#]
    );
    let now = c.now;
    c.shards[0].handle_disconnect(socket.key, socket.socket_id, now);
    c.publish(1, "feed.1", r#"{"n":2}"#, None);
    c.publish(1, "feed.1", r#"{"n":3}"#, None);
    // Past the connection's own window it is gone; its client comes back with its offset.
    c.tick(Duration::from_secs(31));
    assert_eq!(resume(&mut c, "0.first"), None);
    let back = connect_recoverable(&mut c, "0.second");
    c.shards[0].handle_history_offset(back.key, "feed.1:1");
    c.send_packet(back, r#"42["subscribe",{"channel":"feed.1"}]"#);
    assert_eq!(
        c.packets(back),
        [
            r#"42["subscription_succeeded","feed.1"]"#,
            r#"42["ringcast:replay_start","feed.1",{"count":2,"since":1}]"#,
            r#"42["greeting","feed.1",{"n":2},"feed.1:2"]"#,
            r#"42["greeting","feed.1",{"n":3},"feed.1:3"]"#,
            r#"42["ringcast:replay_end","feed.1",{"count":2}]"#,
        ]
    );
    let again = connect_recoverable(&mut c, "0.third");
    c.shards[0].handle_history_offset(again.key, "not-ours");
    c.send_packet(again, r#"42["subscribe",{"channel":"feed.1"}]"#);
    assert_eq!(
        c.packets(again),
        [r#"42["subscription_succeeded","feed.1"]"#]
    );
}
