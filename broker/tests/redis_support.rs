//! The test support's `redis-server`: it starts on a free port, answers, and comes back on
//! the same port after a restart (what the cluster tests rely on).

mod support;

use support::{RedisServer, redis_cmd};

#[test]
fn redis_starts_answers_and_restarts_on_the_same_port() {
    let mut redis = RedisServer::start();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port));
    assert_eq!(redis_cmd(redis.port, &["PING"]), "+PONG\r\n");
    assert_eq!(
        redis_cmd(redis.port, &["SET", "greeting", "hi there"]),
        "+OK\r\n"
    );
    assert_eq!(
        redis_cmd(redis.port, &["GET", "greeting"]),
        "$8\r\nhi there\r\n"
    );

    let port = redis.port;
    redis.stop();
    assert_eq!(
        redis_cmd(port, &["PING"]),
        "",
        "a stopped server still answered"
    );

    redis.start_again();
    assert_eq!(redis.port, port);
    assert_eq!(redis_cmd(port, &["PING"]), "+PONG\r\n");
    // Nothing is persisted: the restarted server is empty.
    assert_eq!(redis_cmd(port, &["GET", "greeting"]), "$-1\r\n");
}

#[test]
fn a_reply_larger_than_one_read_arrives_whole() {
    let redis = RedisServer::start();
    let value = "v".repeat(300_000);
    assert_eq!(redis_cmd(redis.port, &["SET", "big", &value]), "+OK\r\n");
    let reply = redis_cmd(redis.port, &["GET", "big"]);
    assert_eq!(reply, format!("$300000\r\n{value}\r\n"));
}
