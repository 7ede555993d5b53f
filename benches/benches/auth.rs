//! Signature checks through the broker's public functions: channel subscriptions (private and
//! presence) and signed HTTP API requests (with `body_md5`).
//!
//! Each input is signed the way an app backend signs it, and checked once to be accepted
//! before it is timed, so the figures are for the success path (the whole check runs).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use std::borrow::Cow;

use ringcast::core::auth::api::{ApiRequest, body_md5, string_to_sign, verify};
use ringcast::core::auth::channel::{AuthContext, authorize_subscription};
use ringcast::core::auth::{hmac_hex, hmac_key, verify_hex};
use ringcast::core::channel::ChannelName;
use ringcast::core::ids::SocketId;

const APP_KEY: &str = "278d425bdf160c739803";
const APP_SECRET: &str = "7ad3773142a6692b25b8";
const SOCKET_ID: &str = "1234.5678";
const PRESENCE_DATA: &str = concat!(
    r#"{"user_id":"1234","user_info":{"name":"Ada Lovelace","#,
    r#""avatar":"https://cdn.example.com/u/1234.png"}}"#,
);
/// The body of `POST /apps/{id}/events` from Laravel's broadcaster.
const EVENT_BODY: &str = concat!(
    r#"{"name":"App\\Events\\MessageSent","#,
    r#""data":"{\"message\":{\"id\":981,\"body\":\"Hello there, see you at 10?\","#,
    r#"\"user_id\":1234},\"room\":42}","#,
    r#""channels":["private-chat.room-42","private-chat.room-43"],"socket_id":"1234.5678"}"#,
);
/// The server's clock; the request is signed 3 s earlier, well inside the window.
const NOW_UNIX: u64 = 1_800_000_000;

fn channel_auth(c: &mut Criterion) {
    let secret = hmac_key(APP_SECRET);
    let ctx = AuthContext {
        app_key: APP_KEY,
        secret: &secret,
        socket_id: SocketId::parse(SOCKET_ID).expect("socket id"),
        max_user_id_chars: 128,
        max_user_info_bytes: 1000,
        signed_in_user: None,
    };
    let private = ChannelName::parse("private-chat.room-42", 200).expect("channel");
    let private_auth = format!(
        "{APP_KEY}:{}",
        hmac_hex(&secret, format!("{SOCKET_ID}:{private}").as_bytes())
    );
    let presence = ChannelName::parse("presence-chat.room-42", 200).expect("channel");
    let presence_auth = format!(
        "{APP_KEY}:{}",
        hmac_hex(
            &secret,
            format!("{SOCKET_ID}:{presence}:{PRESENCE_DATA}").as_bytes()
        )
    );
    assert!(authorize_subscription(&ctx, private.clone(), Some(&private_auth), None).is_ok());
    let proof = authorize_subscription(
        &ctx,
        presence.clone(),
        Some(&presence_auth),
        Some(PRESENCE_DATA),
    )
    .expect("presence auth accepted");
    assert_eq!(proof.member().expect("member").user_id.as_str(), "1234");

    let mut group = c.benchmark_group("auth_channel");
    group.bench_function("private_channel_verify", |b| {
        b.iter(|| {
            authorize_subscription(
                black_box(&ctx),
                private.clone(),
                Some(black_box(&private_auth)),
                None,
            )
            .is_ok()
        })
    });
    group.bench_function("presence_channel_verify", |b| {
        b.iter(|| {
            authorize_subscription(
                black_box(&ctx),
                presence.clone(),
                Some(black_box(&presence_auth)),
                Some(black_box(PRESENCE_DATA)),
            )
            .is_ok()
        })
    });
    // The HMAC alone, over the private channel's 30-byte message: the floor of both checks.
    let message = format!("{SOCKET_ID}:{private}");
    let signature = hmac_hex(&secret, message.as_bytes());
    group.bench_function("hmac_sha256_verify_hex_baseline", |b| {
        b.iter(|| {
            verify_hex(
                &secret,
                black_box(message.as_bytes()),
                black_box(&signature),
            )
        })
    });
    group.finish();
}

fn api_auth(c: &mut Criterion) {
    let secret = hmac_key(APP_SECRET);
    let body = EVENT_BODY.as_bytes();
    let (method, path) = ("POST", "/apps/123456/events");
    // The query as the shell hands it over: decoded pairs, in the order sent.
    let mut query: Vec<(Cow<str>, Cow<str>)> = vec![
        ("auth_key".into(), APP_KEY.into()),
        ("auth_timestamp".into(), (NOW_UNIX - 3).to_string().into()),
        ("auth_version".into(), "1.0".into()),
        ("body_md5".into(), body_md5(body).into()),
    ];
    let signature = hmac_hex(&secret, string_to_sign(method, path, &query).as_bytes());
    query.push(("auth_signature".into(), signature.into()));
    let request = ApiRequest {
        method,
        path,
        query: &query,
        body,
    };
    let window = Duration::from_secs(600);
    verify(&request, APP_KEY, &secret, NOW_UNIX, window).expect("API request accepted");

    let mut group = c.benchmark_group("auth_api");
    group.bench_function("api_request_verify_with_body_md5", |b| {
        b.iter(|| verify(black_box(&request), APP_KEY, &secret, NOW_UNIX, window).is_ok())
    });
    group.finish();
}

criterion_group!(benches, channel_auth, api_auth);
criterion_main!(benches);
