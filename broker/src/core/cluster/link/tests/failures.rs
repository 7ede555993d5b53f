//! Redis refusing, breaking, or going silent, and reconnecting with back-off.

use super::*;

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
