//! The rest of the cluster (heartbeats, webhooks, revocations, resources) and stopping.

use super::*;
use crate::core::app::Revocation;

#[test]
fn a_heartbeat_brings_back_the_nodes_alive_and_the_connections_elsewhere() {
    let mut test = Test::up();
    *test.node.connections.borrow_mut() = 4;
    test.advance(HEARTBEAT);
    let sent = test.sent();
    assert_eq!(names(&sent), ["Due", "Heartbeat"]);
    assert_eq!(sent[1].argv(6), "4");
    test.answer(&sent[..1]);
    let vacated = array(["v", "app1", "room", ""].map(bulk).to_vec());
    test.reply(array(vec![
        int(0),
        int(3),
        int(1),
        array(vec![vacated]),
        array(vec![int(7)]),
    ]));
    let effects = test.effects();
    assert!(matches!(
        &effects[..],
        [
            Effect::Heartbeat { nodes_alive: 3, connections_elsewhere },
            Effect::Notice(Notice::DeadNodesRemoved { nodes: 1, changes: 1 }),
        ] if *connections_elsewhere == [7]
    ));
    let stats = test.link.stats();
    assert_eq!((stats.nodes_alive, stats.nodes_removed), (3, 1));
}

#[test]
fn due_webhooks_are_claimed_one_claim_at_a_time_and_handed_to_their_channels_home() {
    let mut test = Test::new();
    let handshake = test.connect();
    test.answer(&handshake);
    test.advance(Duration::from_millis(300));
    assert!(
        test.sent().is_empty(),
        "no claims before the node is in sync"
    );
    let resync = test.dump(Vec::new());
    test.answer(&resync);

    test.advance(Duration::from_millis(100));
    let sent = test.sent();
    assert_eq!(names(&sent), ["Due"]);
    assert_eq!(sent[0].argv(2), "500");
    test.advance(Duration::from_millis(300));
    assert!(test.sent().is_empty(), "no claim while one is unanswered");

    test.reply(array(vec![
        bulk("o\napp1\nroom\n"),
        bulk("a\napp1\npresence-r\nalice"),
    ]));
    let events: Vec<(ShardId, WebhookEvent)> = test
        .mesh()
        .into_iter()
        .filter_map(|(shard, msg)| match msg {
            MeshMsg::ClusterWebhook { event, .. } => Some((shard, event)),
            _ => None,
        })
        .collect();
    assert_eq!(
        events,
        [
            (
                home("room"),
                WebhookEvent::channel(WebhookKind::ChannelOccupied, "room")
            ),
            (
                home("presence-r"),
                WebhookEvent::member(WebhookKind::MemberAdded, "presence-r", "alice")
            ),
        ]
    );

    test.advance(Duration::from_millis(100));
    assert_eq!(names(&test.sent()), ["Due"]);
    test.reply(error("BUSY"));
    test.advance(Duration::from_millis(100));
    assert_eq!(
        names(&test.sent()),
        ["Due"],
        "a refused claim is not waited on"
    );
}

#[test]
fn another_nodes_revocation_is_applied_here_and_this_nodes_own_is_not_applied_again() {
    let mut test = Test::up();
    let revoke = |origin: &str| {
        let command = Command::Revoke {
            app: "app1".into(),
            revocation: Revocation::Token("t-1".into()),
            until_unix: 1_900_000_000,
        };
        let origin = node_id(origin);
        message(Envelope::Command { origin, command }.encode())
    };
    test.reply(revoke("n2"));
    assert!(matches!(
        &test.effects()[..],
        [Effect::Revoke { app: APP, revocation: Revocation::Token(jti), until_unix: 1_900_000_000 }]
            if jti == "t-1"
    ));
    let shards: Vec<ShardId> = test
        .mesh()
        .into_iter()
        .filter(|(_, m)| {
            matches!(m, MeshMsg::RevokeToken { revocation: Revocation::Token(jti), .. } if jti == "t-1")
        })
        .map(|(s, _)| s)
        .collect();
    assert_eq!(shards, [0, 1]);

    test.reply(revoke("n1"));
    assert!(test.effects().is_empty());
    assert!(test.mesh().is_empty());
}

#[test]
fn another_nodes_resource_is_set_on_every_shard_and_stored_unless_it_is_unreadable() {
    let mut test = Test::up();
    let resource = |json: &str| {
        let command = Command::Resource {
            app: "app1".into(),
            kind: "escrow".into(),
            id: "42".into(),
            json: Some(json.into()),
        };
        message(
            Envelope::Command {
                origin: node_id("n2"),
                command,
            }
            .encode(),
        )
    };
    test.reply(resource(r#"{"participants":["ann"]}"#));
    let set = test
        .mesh()
        .iter()
        .filter(|(_, m)| {
            matches!(
                m,
                MeshMsg::SetResource {
                    resource: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(set, SHARDS);
    assert!(matches!(
        &test.effects()[..],
        [Effect::StoreResource { value: Some(r), .. }] if r.participants == ["ann"]
    ));

    test.reply(resource(r#"{"owner":"ann"}"#));
    assert!(matches!(
        &test.effects()[..],
        [Effect::Notice(Notice::UnreadableResource(_))]
    ));
    assert!(test.mesh().is_empty());
}

// Stopping.

#[test]
fn a_stopping_node_leaves_the_cluster_and_stops_when_redis_confirms() {
    let mut test = Test::up();
    test.link.handle_stop(test.now);
    let sent = test.sent();
    assert_eq!(names(&sent), ["Leave"]);
    assert_eq!(
        (sent[0].argv(2), sent[0].argv(3)),
        ("n1".into(), "rc:events".into())
    );
    test.advance(HEARTBEAT);
    assert!(
        test.sent().is_empty(),
        "no heartbeats or claims while leaving"
    );
    assert!(!test.link.is_stopped());

    test.reply(array(Vec::new()));
    assert!(test.link.is_stopped());
    assert!(!test.link.is_up());
    assert_eq!(disconnects(&test.effects()), 1);
    assert_eq!(test.link.poll_timeout(), None);
}

#[test]
fn a_stopping_node_waits_two_seconds_at_most_for_redis() {
    let mut test = Test::up();
    test.link.handle_stop(test.now);
    test.advance(Duration::from_millis(1999));
    assert!(!test.link.is_stopped());
    test.advance(Duration::from_millis(1));
    assert!(test.link.is_stopped());
    assert_eq!(disconnects(&test.effects()), 1);
}

#[test]
fn a_node_stopping_without_redis_stops_at_once() {
    let mut test = Test::new();
    test.effects();
    test.lose();
    test.link.handle_stop(test.now);
    assert!(test.link.is_stopped());
    test.advance(Duration::from_secs(5));
    assert!(test.effects().is_empty(), "no reconnection once stopped");
}
