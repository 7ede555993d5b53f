use super::*;

const PING_INTERVAL: Duration = Duration::from_secs(10);

fn options(credentials: Option<Credentials>) -> SubscriberOptions {
    SubscriberOptions {
        pattern: "laravel_database_*".into(),
        credentials,
        ping_interval: PING_INTERVAL,
    }
}

fn bulk(text: &str) -> Value {
    Value::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

fn array(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|item| bulk(item)).collect())
}

fn confirmation() -> Value {
    Value::Array(vec![
        bulk("psubscribe"),
        bulk("laravel_database_*"),
        Value::Integer(1),
    ])
}

fn sent(subscriber: &mut Subscriber) -> Vec<u8> {
    let mut out = BytesMut::new();
    subscriber.poll_transmit(&mut out);
    out.to_vec()
}

/// A subscriber connected at `t0` whose pattern Redis confirmed.
fn subscribed(t0: Instant) -> Subscriber {
    let mut subscriber = Subscriber::new(options(None), t0);
    subscriber.handle_timeout(t0);
    assert_eq!(subscriber.poll_effect(), Some(Effect::Connect));
    subscriber.handle_connected(t0);
    sent(&mut subscriber);
    assert_eq!(subscriber.handle_value(confirmation(), t0), None);
    assert_eq!(subscriber.poll_notice(), Some(Notice::Subscribed));
    subscriber
}

#[test]
fn it_connects_at_once_and_subscribes_to_its_pattern() {
    let t0 = Instant::now();
    let mut subscriber = Subscriber::new(options(None), t0);
    assert_eq!(subscriber.poll_timeout(), Some(t0));
    subscriber.handle_timeout(t0);
    assert_eq!(subscriber.poll_effect(), Some(Effect::Connect));
    assert_eq!(subscriber.poll_timeout(), None);
    subscriber.handle_connected(t0);
    assert_eq!(
        sent(&mut subscriber),
        b"*2\r\n$10\r\nPSUBSCRIBE\r\n$18\r\nlaravel_database_*\r\n"
    );
    assert!(!subscriber.is_subscribed());
    subscriber.handle_value(confirmation(), t0);
    assert!(subscriber.is_subscribed());
    assert_eq!(subscriber.reconnects(), 0);
}

#[test]
fn credentials_are_sent_before_the_subscription() {
    let t0 = Instant::now();
    let credentials = Credentials {
        username: Some("app".into()),
        password: "pw".into(),
    };
    let mut subscriber = Subscriber::new(options(Some(credentials)), t0);
    subscriber.handle_timeout(t0);
    subscriber.handle_connected(t0);
    let bytes = sent(&mut subscriber);
    assert!(
        bytes.starts_with(b"*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$2\r\npw\r\n*2\r\n$10\r\nPSUBSCRIBE")
    );
    assert_eq!(
        subscriber.handle_value(Value::Simple(Bytes::from_static(b"OK")), t0),
        None
    );
    assert_eq!(subscriber.poll_notice(), None);
}

#[test]
fn a_pmessage_is_handed_back_with_its_channel_and_payload() {
    let t0 = Instant::now();
    let mut subscriber = subscribed(t0);
    let message = array(&[
        "pmessage",
        "laravel_database_*",
        "laravel_database_news",
        "{}",
    ]);
    assert_eq!(
        subscriber.handle_value(message, t0),
        Some(Message {
            channel: Bytes::from_static(b"laravel_database_news"),
            payload: Bytes::from_static(b"{}"),
        })
    );
    let push = Value::Push(vec![bulk("pmessage"), bulk("p"), bulk("c"), bulk("x")]);
    assert!(subscriber.handle_value(push, t0).is_some());
}

#[test]
fn a_refusal_drops_the_connection_and_retries_with_a_doubling_back_off() {
    let t0 = Instant::now();
    let mut subscriber = Subscriber::new(options(None), t0);
    let mut now = t0;
    for expected in [100, 200, 400, 800, 1600, 3200, 5000, 5000] {
        subscriber.handle_timeout(now);
        assert_eq!(subscriber.poll_effect(), Some(Effect::Connect));
        subscriber.handle_connected(now);
        let refusal = Value::Error(Bytes::from_static(b"WRONGPASS invalid password"));
        subscriber.handle_value(refusal, now);
        assert_eq!(subscriber.poll_effect(), Some(Effect::Disconnect));
        assert_eq!(
            subscriber.poll_notice(),
            Some(Notice::Refused("WRONGPASS invalid password".into()))
        );
        let retry_in = Duration::from_millis(expected);
        assert_eq!(subscriber.poll_notice(), Some(Notice::Lost { retry_in }));
        assert_eq!(subscriber.poll_timeout(), Some(now + retry_in));
        subscriber.handle_timeout(now + retry_in - Duration::from_millis(1));
        assert_eq!(subscriber.poll_effect(), None);
        now += retry_in;
    }
    assert_eq!(subscriber.reconnects(), 7);
}

#[test]
fn a_confirmed_subscription_starts_the_back_off_over() {
    let t0 = Instant::now();
    let mut subscriber = subscribed(t0);
    subscriber.handle_lost(t0);
    assert_eq!(
        subscriber.poll_notice(),
        Some(Notice::Lost {
            retry_in: FIRST_RETRY
        })
    );
    let t1 = t0 + FIRST_RETRY;
    subscriber.handle_timeout(t1);
    assert_eq!(subscriber.poll_effect(), Some(Effect::Connect));
    subscriber.handle_lost(t1);
    assert_eq!(
        subscriber.poll_notice(),
        Some(Notice::Lost {
            retry_in: FIRST_RETRY * 2
        })
    );
    let t2 = t1 + FIRST_RETRY * 2;
    subscriber.handle_timeout(t2);
    subscriber.handle_connected(t2);
    subscriber.handle_value(confirmation(), t2);
    subscriber.handle_lost(t2);
    assert_eq!(subscriber.poll_notice(), Some(Notice::Subscribed));
    assert_eq!(
        subscriber.poll_notice(),
        Some(Notice::Lost {
            retry_in: FIRST_RETRY
        })
    );
    assert_eq!(subscriber.reconnects(), 2);
}

#[test]
fn a_silent_redis_is_pinged_then_given_up() {
    let t0 = Instant::now();
    let mut subscriber = subscribed(t0);
    assert_eq!(subscriber.poll_timeout(), Some(t0 + PING_INTERVAL));
    subscriber.handle_timeout(t0 + PING_INTERVAL - Duration::from_millis(1));
    assert!(sent(&mut subscriber).is_empty());
    let t1 = t0 + PING_INTERVAL;
    subscriber.handle_timeout(t1);
    assert_eq!(sent(&mut subscriber), b"*1\r\n$4\r\nPING\r\n");
    // A pong resets the clock.
    subscriber.handle_value(array(&["pong", ""]), t1);
    assert_eq!(subscriber.poll_notice(), None);
    assert_eq!(subscriber.poll_timeout(), Some(t1 + PING_INTERVAL));
    let t2 = t1 + PING_INTERVAL;
    subscriber.handle_timeout(t2);
    assert_eq!(sent(&mut subscriber), b"*1\r\n$4\r\nPING\r\n");
    subscriber.handle_timeout(t2 + PING_INTERVAL - Duration::from_millis(1));
    assert_eq!(subscriber.poll_effect(), None);
    subscriber.handle_timeout(t2 + PING_INTERVAL);
    assert_eq!(subscriber.poll_notice(), Some(Notice::Silent));
    assert_eq!(subscriber.poll_effect(), Some(Effect::Disconnect));
    assert!(!subscriber.is_subscribed());
}

#[test]
fn replies_of_no_subscription_are_noticed_and_ignored() {
    let t0 = Instant::now();
    let mut subscriber = subscribed(t0);
    assert_eq!(subscriber.handle_value(Value::Integer(3), t0), None);
    assert_eq!(subscriber.poll_notice(), Some(Notice::Unexpected));
    assert_eq!(
        subscriber.handle_value(array(&["message", "c", "x"]), t0),
        None
    );
    assert_eq!(subscriber.poll_notice(), Some(Notice::Unexpected));
    assert!(subscriber.is_subscribed());
    assert_eq!(subscriber.poll_effect(), None);
}

#[test]
fn values_while_not_connected_are_ignored() {
    let t0 = Instant::now();
    let mut subscriber = Subscriber::new(options(None), t0);
    let message = array(&["pmessage", "p", "c", "x"]);
    assert_eq!(subscriber.handle_value(message, t0), None);
    subscriber.handle_connected(t0);
    assert!(sent(&mut subscriber).is_empty());
}
