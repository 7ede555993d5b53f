//! Degraded mode, the way round through Redis, confirmed publishes, notices and queries.

use super::*;

#[test]
fn without_redis_events_are_delivered_here_and_queries_are_unavailable() {
    let mut test = Test::new();
    assert!(matches!(test.effects()[..], [Effect::Connect]));
    test.lose();
    let frame = Bytes::from_static(b"\x81\x02hi");
    let publish = ClusterOut::Publish {
        app: APP,
        channel: channel("room"),
        frames: Frames::from_pusher(frame.clone(), crate::core::wire::Wires::ALL),
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
        frames: Frames::from_pusher(frame.clone(), crate::core::wire::Wires::ALL),
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
        frames: Frames::from_pusher(
            Bytes::from_static(b"\x81\x02hi"),
            crate::core::wire::Wires::ALL,
        ),
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
        member_info: None,
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
