//! Connecting and synchronizing: the handshake, resyncs and their rounds, held reports, resources.

use super::*;
use crate::core::app::Revocation;

#[test]
fn a_connection_starts_with_the_handshake_the_scripts_the_epoch_a_heartbeat_and_the_subscription() {
    let mut options = options();
    options.credentials = Some(credentials());
    options.db = 2;
    let mut test = Test::with(options);
    *test.node.connections.borrow_mut() = 5;
    let sent = test.connect();
    let mut expected = vec!["HELLO".to_owned(), "SELECT".to_owned()];
    expected.extend(std::iter::repeat_n("SCRIPT".to_owned(), Script::ALL.len()));
    expected.extend(["Epoch", "Heartbeat", "SUBSCRIBE"].map(String::from));
    assert_eq!(names(&sent), expected);
    let hello: Vec<String> = (1..sent[0].len()).map(|i| sent[0].text(i)).collect();
    assert_eq!(hello, ["3", "AUTH", "default", "hunter2"]);
    assert_eq!(sent[1].text(1), "2");
    let beat = &sent[expected.len() - 2];
    let args: Vec<String> = (2..=6).map(|i| beat.argv(i)).collect();
    assert_eq!(args, ["n1", "5000", "rc:events", "app1", "5"]);
    assert_eq!(sent[expected.len() - 1].text(1), "rc:events");
    assert_eq!(test.link.stats().connects, 1);
    assert!(!test.link.is_up());
}

#[test]
fn the_node_is_up_once_the_sweep_after_every_shards_dump_is_answered() {
    let mut test = Test::new();
    let handshake = test.connect();
    test.answer(&handshake);
    let resync = test.dump(vec![report("room", 2), join("presence-r", "alice")]);
    assert_eq!(
        names(&resync),
        ["Sync", "Sync", "Resources", "Revoked", "Sweep"]
    );
    let sweep = &resync[4];
    let kept: Vec<String> = (5..=sweep.len() - 3).map(|i| sweep.argv(i)).collect();
    assert_eq!(
        kept,
        [
            "c\napp1\nroom",
            "c\napp1\npresence-r",
            "m\napp1\npresence-r\nalice"
        ]
    );
    assert!(!test.link.is_up());
    test.answer(&resync);
    assert!(test.link.is_up());
    let effects = test.effects();
    assert!(matches!(
        notices(&effects)[..],
        [Notice::Synchronized { swept: 0 }]
    ));
}

#[test]
fn reports_restoring_a_redis_that_lost_its_data_announce_nothing() {
    let mut test = Test::new();
    test.connect_and_sync(vec![report("room", 2)]);
    // The first epoch seen is no loss: the dumped channel's reply reaches its home shard.
    let mesh = test.mesh();
    assert!(matches!(&synced(&mesh)[..], [(_, name, Some(_))] if name == "room"));

    test.lose();
    test.advance(Duration::from_millis(100));
    test.epoch = "e2";
    let resync = test.connect_and_sync(vec![report("room", 2)]);
    let effects = test.effects();
    assert!(matches!(notices(&effects)[0], Notice::EpochLost));
    assert_eq!(names(&resync), ["Sync", "Resources", "Revoked", "Sweep"]);
    assert_eq!(resync[0].argv(13), "1", "the report publishes nothing");
    assert_eq!(resync[3].argv(4), "1", "the sweep publishes nothing");
    assert!(synced(&test.mesh()).is_empty());

    // Once restored, reports are news again.
    test.link.handle_out(sync(report("room", 3)), test.now);
    let sent = test.sent();
    assert_eq!(sent[0].argv(13), "0");
    test.answer(&sent);
    assert!(matches!(&synced(&test.mesh())[..], [(_, _, Some(_))]));
}

#[test]
fn a_report_made_during_a_resync_reaches_redis_after_the_sweep_once() {
    let mut test = Test::new();
    let handshake = test.connect();
    test.answer(&handshake);
    test.link.handle_out(sync(report("room", 1)), test.now);
    let resync = test.dump(Vec::new());
    test.link.handle_out(sync(report("lobby", 4)), test.now);
    assert_eq!(names(&resync), ["Resources", "Revoked", "Sweep"]);
    assert!(test.sent().is_empty(), "held until the sweep is answered");
    test.answer(&resync);
    let sent = test.sent();
    assert_eq!(names(&sent), ["Sync", "Sync"]);
    assert_eq!(
        (sent[0].argv(4), sent[1].argv(4)),
        ("room".into(), "lobby".into())
    );
    test.answer(&sent);
    assert_eq!(synced(&test.mesh()).len(), 2);
    assert!(test.sent().is_empty());
}

#[test]
fn a_report_held_when_the_connection_breaks_mid_resync_is_acted_on_here_once_and_not_resent() {
    let mut test = Test::new();
    let handshake = test.connect();
    test.answer(&handshake);
    let asked = test.mesh();
    assert_eq!(asked.len(), SHARDS, "every shard is asked for its state");
    test.link.handle_out(sync(report("room", 1)), test.now);
    assert!(test.sent().is_empty(), "held while the shards dump");

    test.lose();
    let mesh = test.mesh();
    assert_eq!(synced(&mesh), [(home("room"), "room".to_owned(), None)]);

    test.advance(Duration::from_millis(100));
    let resync = test.connect_and_sync(vec![report("room", 1)]);
    let reports: Vec<String> = resync
        .iter()
        .filter(|s| s.name() == "Sync")
        .map(|s| s.argv(4))
        .collect();
    assert_eq!(reports, ["room"], "the dump's report only");
    let mesh = test.mesh();
    assert!(matches!(&synced(&mesh)[..], [(_, _, Some(_))]));
    assert!(test.sent().is_empty());
}

#[test]
fn a_late_dump_from_a_resync_the_connection_broke_does_not_count_toward_the_next() {
    let empty_dump = |round| ClusterOut::Dump {
        round,
        channels: Vec::new(),
        users: Vec::new(),
        resources: Vec::new(),
    };
    let mut test = Test::new();
    let handshake = test.connect();
    test.answer(&handshake);
    let first = dump_requests(&test.mesh());
    assert_eq!(first.len(), SHARDS);
    let old_round = first[0].1;
    // Shard 0 answers the first round; the connection breaks before shard 1 does.
    test.link.handle_out(empty_dump(old_round), test.now);
    test.lose();
    test.mesh();
    test.advance(Duration::from_millis(100));
    let handshake = test.connect();
    test.answer(&handshake);
    let second = dump_requests(&test.mesh());
    assert_eq!(second.len(), SHARDS);
    let new_round = second[0].1;
    assert_ne!(new_round, old_round);

    // Shard 1's dump of the old round arrives late, then shard 0 dumps the new one: the
    // resync still waits for shard 1's new dump.
    test.link.handle_out(empty_dump(old_round), test.now);
    test.link.handle_out(empty_dump(new_round), test.now);
    assert!(
        test.sent().is_empty(),
        "no sweep before every shard dumped this round"
    );
    test.link.handle_out(empty_dump(new_round), test.now);
    let sent = test.sent();
    assert_eq!(names(&sent), ["Resources", "Revoked", "Sweep"]);
    test.answer(&sent);
    assert!(test.link.is_up());
}

#[test]
fn a_node_another_declared_dead_reports_its_state_again() {
    let mut test = Test::up();
    test.advance(HEARTBEAT);
    let sent = test.sent();
    assert_eq!(names(&sent), ["Due", "Heartbeat"]);
    test.answer(&sent[..1]);
    test.reply(heartbeat_reply(true, 2, &[0]));
    let effects = test.effects();
    assert!(matches!(notices(&effects)[..], [Notice::DeclaredDead]));
    let asked: Vec<ShardId> = dump_requests(&test.mesh())
        .into_iter()
        .map(|(shard, _)| shard)
        .collect();
    assert_eq!(asked, [0, 1]);
}

#[test]
fn redis_copy_of_resources_decides_and_its_later_revocations_are_applied() {
    let mut test = Test::new();
    *test.node.revoked.borrow_mut() = vec![
        (Revocation::Token("t-1".into()), 100),
        (Revocation::Token("t-2".into()), 500),
    ];
    let handshake = test.connect();
    test.answer(&handshake);
    let round = dump_requests(&test.mesh())[0].1;
    let resource = |id: &str, who: &str| StoredResource {
        app: APP,
        kind: "escrow".into(),
        id: id.into(),
        json: format!(r#"{{"participants":["{who}"]}}"#),
    };
    for resources in [vec![resource("1", "a"), resource("2", "b")], Vec::new()] {
        let dump = ClusterOut::Dump {
            round,
            channels: Vec::new(),
            users: Vec::new(),
            resources,
        };
        test.link.handle_out(dump, test.now);
    }
    let sent = test.sent();
    assert_eq!(names(&sent), ["Resources", "Revoked", "Sweep"]);
    assert_eq!(sent[0].argv(3), "escrow\n1");
    assert_eq!(sent[1].argv(3), UNIX_NOW.to_string());

    let unchanged = sent[0].text(6);
    test.reply(array(vec![
        bulk("escrow\n1"),
        bulk(&unchanged),
        bulk("escrow\n3"),
        bulk(r#"{"participants":["c"]}"#),
    ]));
    test.reply(array(
        [
            "jti:t-1", "400", "jti:t-2", "300", "bad:t-4", "999", "jti:t-3", "900",
        ]
        .map(bulk)
        .to_vec(),
    ));
    test.answer(&sent[2..]);
    let effects = test.effects();
    let stored: Vec<(&str, Option<&[String]>)> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::StoreResource { id, value, .. } => {
                Some((id.as_str(), value.as_ref().map(|r| &r.participants[..])))
            }
            _ => None,
        })
        .collect();
    assert_eq!(stored, [("3", Some(&["c".to_owned()][..])), ("2", None)]);
    let revoked: Vec<(String, u64)> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Revoke {
                revocation,
                until_unix,
                ..
            } => Some((revocation.key(), *until_unix)),
            _ => None,
        })
        .collect();
    // Later than this node's (t-1), new (t-3); not earlier (t-2), nor malformed (t-4).
    assert_eq!(
        revoked,
        [("jti:t-1".to_owned(), 400), ("jti:t-3".to_owned(), 900)]
    );
}
