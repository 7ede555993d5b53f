//! The link against a scripted Redis and a simulated clock.

mod harness;

use std::time::Duration;

use bytes::Bytes;

use self::harness::*;
use super::{Effect, Notice};
use crate::core::cluster::resp::Value;
use crate::core::cluster::scripts::{Script, SyncReply};
use crate::core::cluster::{ClusterOut, Command, Envelope, StoredResource};
use crate::core::shard::{
    AnswerPart, ChannelStats, MeshMsg, Query, ReplyTo, ShardId, Watcher, home_shard,
    user_home_shard,
};
use crate::core::webhook::{WebhookEvent, WebhookKind};
use crate::core::wire::Frames;

const QUERY: ReplyTo = ReplyTo { shard: 1, query: 9 };

fn home(name: &str) -> ShardId {
    home_shard(APP, &channel(name), SHARDS)
}

/// The channel reports' replies among `mesh`: home shard, channel, and Redis's reply (`None`:
/// not applied, the home shard acts alone).
fn synced(mesh: &[(ShardId, MeshMsg)]) -> Vec<(ShardId, String, Option<&SyncReply>)> {
    mesh.iter()
        .filter_map(|(shard, msg)| match msg {
            MeshMsg::ClusterSynced { sync, reply } => {
                Some((*shard, sync.channel.as_str().to_owned(), reply.as_deref()))
            }
            _ => None,
        })
        .collect()
}

fn notices(effects: &[Effect]) -> Vec<&Notice> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notice(notice) => Some(notice),
            _ => None,
        })
        .collect()
}

fn disconnects(effects: &[Effect]) -> usize {
    effects
        .iter()
        .filter(|e| matches!(e, Effect::Disconnect))
        .count()
}

fn sync(report: crate::core::cluster::ChannelSync) -> ClusterOut {
    ClusterOut::Sync(Box::new(report))
}

fn query_room() -> ClusterOut {
    ClusterOut::Query {
        reply_to: QUERY,
        query: Query::Channel {
            app: APP,
            channel: channel("room"),
        },
    }
}

fn is_unavailable_answer(mesh: &[(ShardId, MeshMsg)]) -> bool {
    matches!(
        mesh,
        [(
            1,
            MeshMsg::Answer {
                query: 9,
                part: AnswerPart::Unavailable
            }
        )]
    )
}

// ---- connecting and synchronizing -------------------------------------------------------

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
    *test.node.revoked.borrow_mut() = vec![("t-1".into(), 100), ("t-2".into(), 500)];
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
        ["t-1", "400", "t-2", "300", "t-3", "900"]
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
    let revoked: Vec<(&str, u64)> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Revoke {
                jti, until_unix, ..
            } => Some((jti.as_str(), *until_unix)),
            _ => None,
        })
        .collect();
    assert_eq!(revoked, [("t-1", 400), ("t-3", 900)]);
}

// ---- Redis refusing, breaking, or going silent ------------------------------------------

#[test]
fn a_refused_script_answers_the_waiting_shard_as_if_redis_were_out_of_reach() {
    let mut test = Test::up();
    test.link
        .handle_out(sync(join("presence-room", "alice")), test.now);
    let sent = test.sent();
    assert_eq!(names(&sent), ["Sync"]);
    assert_eq!(sent[0].argv(14), "1", "the waiting socket wants the roster");
    test.reply(error("ERR busy script"));
    let mesh = test.mesh();
    match &mesh[..] {
        [(shard, MeshMsg::ClusterSynced { sync, reply: None })] => {
            assert_eq!(*shard, home("presence-room"));
            assert!(sync.waiting.is_some());
        }
        other => panic!("{other:?}"),
    }
    let effects = test.effects();
    assert!(matches!(
        notices(&effects)[..],
        [Notice::CommandRefused { error }] if error == "ERR busy script"
    ));
    assert_eq!(disconnects(&effects), 0);
    assert!(test.link.is_up());

    test.link.handle_out(query_room(), test.now);
    assert_eq!(names(&test.sent()), ["Channel"]);
    test.reply(error("ERR no"));
    assert!(is_unavailable_answer(&test.mesh()));
}

#[test]
fn a_refused_handshake_gives_the_connection_up() {
    let mut test = Test::new();
    test.connect();
    test.reply(error("WRONGPASS invalid username-password pair"));
    let effects = test.effects();
    assert!(matches!(
        notices(&effects)[..],
        [Notice::HandshakeRefused {
            step: "HELLO 3",
            ..
        }]
    ));
    assert_eq!(disconnects(&effects), 1);
    test.reply(Value::Simple(Bytes::from_static(b"OK")));
    assert!(test.effects().is_empty(), "nothing more is read from it");
}

#[test]
fn a_reply_nobody_asked_for_gives_the_connection_up() {
    let mut test = Test::up();
    test.reply(int(1));
    let effects = test.effects();
    assert!(matches!(notices(&effects)[0], Notice::UnexpectedReply));
    assert_eq!(disconnects(&effects), 1);
    assert!(!test.link.is_up());
}

#[test]
fn a_reply_that_never_comes_gives_the_connection_up_and_answers_its_waiters() {
    let mut test = Test::up();
    test.link.handle_out(query_room(), test.now);
    assert_eq!(names(&test.sent()), ["Channel"]);

    // Heartbeats go on while Redis has been silent for two of them and a second.
    test.advance(HEARTBEAT * 3);
    let beats = names(&test.sent())
        .into_iter()
        .filter(|n| n == "Heartbeat")
        .count();
    assert_eq!(beats, 3);
    assert!(test.effects().is_empty());
    assert!(test.mesh().is_empty());

    test.advance(HEARTBEAT);
    let effects = test.effects();
    assert!(matches!(
        notices(&effects)[..],
        [Notice::StoppedAnswering { silent }, Notice::Lost] if *silent == HEARTBEAT * 4
    ));
    assert_eq!(disconnects(&effects), 1);
    assert!(is_unavailable_answer(&test.mesh()));
    assert!(!test.link.is_up());

    test.advance(Duration::from_millis(100));
    assert!(matches!(test.effects()[..], [Effect::Connect]));
}

/// Runs the clock until the link asks for a connection; how long that took.
fn wait_for_connect(test: &mut Test) -> Duration {
    let from = test.now;
    while !test.effects().iter().any(|e| matches!(e, Effect::Connect)) {
        test.advance(Duration::from_millis(10));
    }
    test.now - from
}

#[test]
fn reconnection_attempts_back_off_from_a_tenth_of_a_second_to_two_and_start_over_after_a_connection()
 {
    let mut test = Test::new();
    assert_eq!(wait_for_connect(&mut test), Duration::ZERO);
    let mut waits = Vec::new();
    for _failed in 0..7 {
        test.lose();
        waits.push(wait_for_connect(&mut test).as_millis());
    }
    test.link.handle_connected(test.now);
    test.lose();
    waits.push(wait_for_connect(&mut test).as_millis());
    assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000, 100]);
}

// ---- degraded mode and the way round through Redis --------------------------------------

#[test]
fn without_redis_events_are_delivered_here_and_queries_are_unavailable() {
    let mut test = Test::new();
    assert!(matches!(test.effects()[..], [Effect::Connect]));
    test.lose();
    let frame = Bytes::from_static(b"\x81\x02hi");
    let publish = ClusterOut::Publish {
        app: APP,
        channel: channel("room"),
        frames: Frames::from_pusher(frame.clone()),
        except: None,
        confirm: None,
    };
    test.link.handle_out(publish, test.now);
    match &test.mesh()[..] {
        [
            (
                shard,
                MeshMsg::Publish {
                    frames: f,
                    remember: true,
                    published,
                    ..
                },
            ),
        ] => {
            assert_eq!(*shard, home("room"));
            assert_eq!(f.pusher(), &frame);
            assert_eq!(*published, test.now);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(test.link.stats().local_only, 1);

    test.link.handle_out(query_room(), test.now);
    assert!(is_unavailable_answer(&test.mesh()));

    test.link
        .handle_out(sync(join("presence-r", "alice")), test.now);
    assert_eq!(
        synced(&test.mesh()),
        [(home("presence-r"), "presence-r".to_owned(), None)]
    );

    let watcher = Watcher {
        shard: 1,
        conn: 4,
        socket_id: crate::core::ids::SocketId::parse("1.1").unwrap(),
    };
    let users = vec![user("bob")];
    let ask = ClusterOut::WhoIsOnline {
        app: APP,
        watcher,
        users: users.clone(),
    };
    test.link.handle_out(ask, test.now);
    assert!(matches!(
        &test.mesh()[..],
        [(_, MeshMsg::WhoIsOnlineHere { users: u, .. })] if *u == users
    ));

    let status = ClusterOut::UserStatus {
        app: APP,
        user: user("bob"),
        online: true,
    };
    test.link.handle_out(status, test.now);
    let bobs_home = user_home_shard(APP, &user("bob"), SHARDS);
    assert!(matches!(
        &test.mesh()[..],
        [(shard, MeshMsg::ClusterUserStatus { online: true, .. })] if *shard == bobs_home
    ));

    let terminate = Command::Terminate {
        app: "app1".into(),
        user: "bob".into(),
    };
    test.link
        .handle_out(ClusterOut::Broadcast(terminate), test.now);
    assert!(test.mesh().is_empty(), "other nodes cannot be told");
    assert!(test.sent().is_empty());
}

#[test]
fn with_redis_an_event_goes_round_through_redis_before_it_is_delivered() {
    let mut test = Test::up();
    let frame = Bytes::from_static(b"\x81\x02hi");
    let publish = |name: &str| ClusterOut::Publish {
        app: APP,
        channel: channel(name),
        frames: Frames::from_pusher(frame.clone()),
        except: None,
        confirm: None,
    };
    test.link.handle_out(publish("room"), test.now);
    let sent = test.sent();
    assert_eq!(names(&sent), ["PUBLISH"]);
    assert_eq!(sent[0].text(1), "rc:events");
    assert!(
        test.mesh().is_empty(),
        "not delivered before Redis hands it back"
    );
    test.answer(&sent);

    test.reply(message(sent[0].bytes(2)));
    match &test.mesh()[..] {
        [
            (
                shard,
                MeshMsg::Publish {
                    frames: f,
                    remember: true,
                    ..
                },
            ),
        ] => {
            assert_eq!(*shard, home("room"));
            assert_eq!(f.pusher(), &frame);
        }
        other => panic!("{other:?}"),
    }
    let stats = test.link.stats();
    assert_eq!((stats.published, stats.received), (1, 1));

    test.link.handle_out(publish("cache-room"), test.now);
    let sent = test.sent();
    assert_eq!(names(&sent), ["PublishCached"]);
    assert_eq!(sent[0].argv(4), "30000", "kept for the app's cache_ttl");
}

/// A publish from the HTTP API, whose caller waits for `QUERY` to be answered.
fn confirmed_publish(name: &str) -> ClusterOut {
    ClusterOut::Publish {
        app: APP,
        channel: channel(name),
        frames: Frames::from_pusher(Bytes::from_static(b"\x81\x02hi")),
        except: None,
        confirm: Some(QUERY),
    }
}

fn answered(mesh: &[(ShardId, MeshMsg)]) -> Vec<(ShardId, &AnswerPart)> {
    mesh.iter()
        .filter_map(|(shard, msg)| match msg {
            MeshMsg::Answer { query, part } if *query == QUERY.query => Some((*shard, part)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_confirmed_publish_is_answered_once_redis_has_accepted_it() {
    let mut test = Test::up();
    for name in ["room", "cache-room"] {
        test.link.handle_out(confirmed_publish(name), test.now);
        let sent = test.sent();
        assert_eq!(sent.len(), 1);
        assert!(
            answered(&test.mesh()).is_empty(),
            "not before Redis answers"
        );
        test.reply(int(1));
        let mesh = test.mesh();
        assert!(
            matches!(answered(&mesh)[..], [(1, AnswerPart::Applied)]),
            "{mesh:?}"
        );
    }
}

#[test]
fn a_confirmed_publish_redis_refused_or_never_answered_is_unavailable() {
    let mut test = Test::up();
    test.link.handle_out(confirmed_publish("room"), test.now);
    test.sent();
    test.reply(error(
        "OOM command not allowed when used memory > 'maxmemory'",
    ));
    let mesh = test.mesh();
    assert!(
        matches!(answered(&mesh)[..], [(1, AnswerPart::Unavailable)]),
        "{mesh:?}"
    );

    test.link.handle_out(confirmed_publish("room"), test.now);
    test.sent();
    test.lose();
    let mesh = test.mesh();
    assert!(
        matches!(answered(&mesh)[..], [(1, AnswerPart::Unavailable)]),
        "{mesh:?}"
    );
}

#[test]
fn without_redis_a_confirmed_publish_is_delivered_here_then_answered() {
    let mut test = Test::new();
    test.lose();
    test.link.handle_out(confirmed_publish("room"), test.now);
    let mesh = test.mesh();
    match &mesh[..] {
        [
            (home_shard, MeshMsg::Publish { .. }),
            (
                1,
                MeshMsg::Answer {
                    part: AnswerPart::Applied,
                    ..
                },
            ),
        ] => assert_eq!(*home_shard, home("room")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_presence_notice_from_redis_is_delivered_but_never_kept_as_a_cache_channels_last_event() {
    let mut test = Test::up();
    let notice = Envelope::Event {
        app: "app1".into(),
        channel: "presence-r".into(),
        except: None,
        frame: Bytes::from_static(b"\x81\x00"),
        notice: true,
    };
    test.reply(message(notice.encode()));
    assert!(matches!(
        &test.mesh()[..],
        [(
            _,
            MeshMsg::Publish {
                remember: false,
                ..
            }
        )]
    ));
}

#[test]
fn a_watcher_hears_which_of_its_users_redis_knows_online() {
    let mut test = Test::up();
    let watcher = Watcher {
        shard: 0,
        conn: 2,
        socket_id: crate::core::ids::SocketId::parse("3.4").unwrap(),
    };
    let ask = ClusterOut::WhoIsOnline {
        app: APP,
        watcher,
        users: vec![user("ann"), user("bob")],
    };
    test.link.handle_out(ask, test.now);
    let sent = test.sent();
    assert_eq!(names(&sent), ["HMGET"]);
    assert_eq!(sent[0].text(1), "rc:u:app1");
    test.reply(array(vec![Value::Null, bulk("2")]));
    assert!(matches!(
        &test.mesh()[..],
        [(0, MeshMsg::WatchlistNotify { online: true, users, .. })] if *users == [user("bob")]
    ));
}

#[test]
fn a_query_is_answered_from_the_cluster_wide_counts() {
    let mut test = Test::up();
    test.link.handle_out(query_room(), test.now);
    let sent = test.sent();
    assert_eq!(
        (sent[0].argv(2), sent[0].argv(3)),
        ("app1".into(), "room".into())
    );
    test.reply(array(vec![int(5), int(2)]));
    let expected = ChannelStats {
        subscription_count: 5,
        user_count: 2,
    };
    assert!(matches!(
        &test.mesh()[..],
        [(1, MeshMsg::Answer { query: 9, part: AnswerPart::Channel(stats) })] if *stats == expected
    ));
}

// ---- the rest of the cluster ------------------------------------------------------------

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
            jti: "t-1".into(),
            until_unix: 1_900_000_000,
        };
        let origin = node_id(origin);
        message(Envelope::Command { origin, command }.encode())
    };
    test.reply(revoke("n2"));
    assert!(matches!(
        &test.effects()[..],
        [Effect::Revoke { app: APP, jti, until_unix: 1_900_000_000 }] if jti == "t-1"
    ));
    let shards: Vec<ShardId> = test
        .mesh()
        .into_iter()
        .filter(|(_, m)| matches!(m, MeshMsg::RevokeToken { jti, .. } if jti == "t-1"))
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

// ---- stopping -----------------------------------------------------------------------------

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
