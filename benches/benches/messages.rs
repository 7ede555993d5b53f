//! Parsing Pusher messages: the broker's `serde_json` path against `simd-json` on the same
//! inputs.
//!
//! - `serde_json`: what the broker runs today. WebSocket messages go through
//!   `Command::parse` (an envelope with `data` as a `RawValue`, then `data` parsed by
//!   event). The HTTP API body is parsed into the broker's former serde_json shape of an
//!   event and its `data` string is decoded, as `validate_event` did.
//! - `simd_json_borrowed`: `simd_json::to_borrowed_value_with_buffers`, then the same fields
//!   are read from the DOM.
//! - `simd_json_serde`: `simd_json::serde::from_slice_with_buffers` into derived structs with
//!   borrowed strings; `data` is a `BorrowedValue`, because simd-json has no `RawValue`.
//!
//! simd-json parses in place, and the decoder hands out immutable `Bytes`, so both simd-json
//! variants copy the input into a reused scratch buffer inside the timing; the parser's
//! `Buffers` are reused too (the best case: a shard would keep one set). A client event's
//! `data` is relayed as JSON text, which simd-json cannot hand back as it was sent, so the
//! simd-json variants re-encode it. Every variant is checked once to extract the same fields
//! as the broker before it is timed.

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringcast::core::wire::Command;
use ringcast::core::wire::pusher::message::parse;
use serde::Deserialize;
use serde_json::value::RawValue;
use simd_json::prelude::*;
use simd_json::{BorrowedValue, Buffers};

/// pusher-js joining a presence channel: `channel_data` is the signed JSON text, as a string.
const SUBSCRIBE_PRESENCE: &str = concat!(
    r#"{"event":"pusher:subscribe","data":{"auth":"278d425bdf160c739803:"#,
    r#"58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4","#,
    r#""channel":"presence-chat.room-42","#,
    r#""channel_data":"{\"user_id\":\"1234\",\"user_info\":{\"name\":\"Ada Lovelace\","#,
    r#"\"avatar\":\"https://cdn.example.com/u/1234.png\"}}"}}"#,
);
/// pusher-js joining a private channel: no `channel_data`, nothing escaped.
const SUBSCRIBE_PRIVATE: &str = concat!(
    r#"{"event":"pusher:subscribe","data":{"auth":"278d425bdf160c739803:"#,
    r#"58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4","#,
    r#""channel":"private-chat.room-42"}}"#,
);
/// A whisper from Laravel Echo (`.whisper('typing', ...)`).
const CLIENT_TYPING: &str = concat!(
    r#"{"event":"client-typing","channel":"private-chat.room-42","#,
    r#""data":{"user_id":"1234","name":"Ada Lovelace","typing":true}}"#,
);
/// pusher-js keep-alive.
const PING: &str = r#"{"event":"pusher:ping","data":{}}"#;
/// `POST /apps/{id}/events` as Laravel's broadcaster sends it: `data` is a JSON string.
const API_PUBLISH: &str = concat!(
    r#"{"name":"App\\Events\\MessageSent","#,
    r#""data":"{\"message\":{\"id\":981,\"body\":\"Hello there, see you at 10?\","#,
    r#"\"user_id\":1234},\"room\":42}","#,
    r#""channels":["private-chat.room-42","private-chat.room-43"],"socket_id":"1234.5678"}"#,
);

/// The fields a handler uses, owned, to check that every variant reads the same thing.
#[derive(Debug, PartialEq, Eq)]
enum Fields {
    Ping,
    Subscribe {
        channel: String,
        auth: Option<String>,
        channel_data: Option<String>,
    },
    ClientEvent {
        event: String,
        channel: String,
        data: String,
    },
    Other {
        event: String,
    },
}

fn broker_fields(message: &Command<'_>) -> Fields {
    match message {
        Command::Ping => Fields::Ping,
        Command::Subscribe(request) => Fields::Subscribe {
            channel: request.channel.to_string(),
            auth: request.auth.as_deref().map(str::to_owned),
            channel_data: request.channel_data.as_deref().map(str::to_owned),
        },
        Command::ClientEvent {
            event,
            channel,
            data,
        } => Fields::ClientEvent {
            event: event.to_string(),
            channel: channel.to_string(),
            data: data.get().to_owned(),
        },
        other => Fields::Other {
            event: format!("{other:?}"),
        },
    }
}

/// A client message read from a simd-json DOM, borrowing from it.
#[derive(Debug)]
enum SimdMessage<'v> {
    Ping,
    Subscribe {
        channel: &'v str,
        auth: Option<&'v str>,
        channel_data: Option<&'v str>,
    },
    ClientEvent {
        event: &'v str,
        channel: &'v str,
        /// Re-encoded: the DOM does not keep the text as sent.
        data: String,
    },
    Other {
        event: &'v str,
    },
}

impl SimdMessage<'_> {
    fn fields(&self) -> Fields {
        match self {
            SimdMessage::Ping => Fields::Ping,
            SimdMessage::Subscribe {
                channel,
                auth,
                channel_data,
            } => Fields::Subscribe {
                channel: (*channel).to_owned(),
                auth: auth.map(str::to_owned),
                channel_data: channel_data.map(str::to_owned),
            },
            SimdMessage::ClientEvent {
                event,
                channel,
                data,
            } => Fields::ClientEvent {
                event: (*event).to_owned(),
                channel: (*channel).to_owned(),
                data: data.clone(),
            },
            SimdMessage::Other { event } => Fields::Other {
                event: (*event).to_owned(),
            },
        }
    }
}

/// The broker's dispatch on `event`, over simd-json values.
fn simd_message<'v>(
    event: &'v str,
    channel: Option<&'v str>,
    data: Option<&'v BorrowedValue<'_>>,
) -> Option<SimdMessage<'v>> {
    if event.starts_with("client-") {
        return Some(SimdMessage::ClientEvent {
            event,
            channel: channel?,
            data: data?.encode(),
        });
    }
    Some(match event {
        "pusher:ping" => SimdMessage::Ping,
        "pusher:subscribe" => {
            let data = data?;
            SimdMessage::Subscribe {
                channel: data.get_str("channel")?,
                auth: data.get_str("auth"),
                channel_data: data.get_str("channel_data"),
            }
        }
        _ => SimdMessage::Other { event },
    })
}

fn simd_borrowed_message<'v>(value: &'v BorrowedValue<'_>) -> Option<SimdMessage<'v>> {
    simd_message(
        value.get_str("event")?,
        value.get_str("channel"),
        value.get("data"),
    )
}

// `BorrowedValue<'a>` deserializes only from a `'a` deserializer, hence the second bound.
#[derive(Deserialize)]
#[serde(bound(deserialize = "'a: 'de"))]
struct SimdEnvelope<'a> {
    event: &'a str,
    #[serde(default)]
    channel: Option<&'a str>,
    #[serde(borrow, default)]
    data: Option<BorrowedValue<'a>>,
}

/// The scratch copy and the parser buffers the simd-json variants reuse.
struct Scratch {
    text: Vec<u8>,
    buffers: Buffers,
}

impl Scratch {
    fn new() -> Self {
        Self {
            text: Vec::with_capacity(4096),
            buffers: Buffers::new(4096),
        }
    }

    fn load(&mut self, input: &[u8]) -> (&mut [u8], &mut Buffers) {
        self.text.clear();
        self.text.extend_from_slice(input);
        (&mut self.text, &mut self.buffers)
    }
}

fn client_message_group(c: &mut Criterion, name: &str, input: &str) {
    let input = input.as_bytes();
    let expected = broker_fields(&parse(input).expect("the broker parses it"));
    let mut scratch = Scratch::new();
    {
        let (text, buffers) = scratch.load(input);
        let value = simd_json::to_borrowed_value_with_buffers(text, buffers).expect("valid JSON");
        let parsed = simd_borrowed_message(&value).expect("simd-json reads the fields");
        assert_eq!(parsed.fields(), expected, "simd_json_borrowed on {name}");
    }
    {
        let (text, buffers) = scratch.load(input);
        let envelope: SimdEnvelope<'_> =
            simd_json::serde::from_slice_with_buffers(text, buffers).expect("valid JSON");
        let parsed = simd_message(envelope.event, envelope.channel, envelope.data.as_ref())
            .expect("simd-json reads the fields");
        assert_eq!(parsed.fields(), expected, "simd_json_serde on {name}");
    }

    let mut group = c.benchmark_group(format!("parse_{name}"));
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.bench_function("serde_json", |b| b.iter(|| parse(black_box(input)).is_ok()));
    group.bench_function("simd_json_borrowed", |b| {
        b.iter(|| {
            let (text, buffers) = scratch.load(black_box(input));
            let value = simd_json::to_borrowed_value_with_buffers(text, buffers).ok()?;
            simd_borrowed_message(&value).map(|m| black_box(m).fields_len())
        })
    });
    group.bench_function("simd_json_serde", |b| {
        b.iter(|| {
            let (text, buffers) = scratch.load(black_box(input));
            let envelope: SimdEnvelope<'_> =
                simd_json::serde::from_slice_with_buffers(text, buffers).ok()?;
            simd_message(envelope.event, envelope.channel, envelope.data.as_ref())
                .map(|m| black_box(m).fields_len())
        })
    });
    group.finish();
}

impl SimdMessage<'_> {
    /// Something cheap derived from the message, so the work cannot be optimised away.
    fn fields_len(&self) -> usize {
        match self {
            SimdMessage::Ping => 0,
            SimdMessage::Subscribe { channel, .. } => channel.len(),
            SimdMessage::ClientEvent { data, .. } => data.len(),
            SimdMessage::Other { event } => event.len(),
        }
    }
}

/// The broker's former serde_json shape of an API event body (it now uses simd-json, as
/// these benchmarks decided).
#[derive(Deserialize)]
#[allow(dead_code)] // Fields are read only through `black_box`.
struct EventBody<'a> {
    name: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    channel: Option<String>,
    channels: Option<Vec<String>>,
    socket_id: Option<String>,
    info: Option<String>,
}

/// The same fields borrowed from the body where JSON escapes allow (`Cow`), as a cheaper
/// serde_json path.
#[derive(Deserialize)]
#[allow(dead_code)] // Fields are read only through `black_box`.
struct BorrowedEventBody<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    channels: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    socket_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    info: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'a: 'de"))]
struct SimdEventBody<'a> {
    #[serde(default)]
    name: Option<&'a str>,
    #[serde(borrow, default)]
    data: Option<BorrowedValue<'a>>,
    #[serde(default)]
    channel: Option<&'a str>,
    #[serde(borrow, default)]
    channels: Option<Vec<&'a str>>,
    #[serde(default)]
    socket_id: Option<&'a str>,
    #[serde(default)]
    info: Option<&'a str>,
}

/// What `validate_event` takes from a body, owned, for the check.
#[derive(Debug, PartialEq, Eq)]
struct EventFields {
    name: String,
    data: String,
    channels: Vec<String>,
    socket_id: Option<String>,
}

/// The broker's steps: the body, then `data` decoded from its JSON string.
fn serde_json_event(body: &[u8]) -> Option<(EventBody<'_>, String)> {
    let event: EventBody<'_> = serde_json::from_slice(body).ok()?;
    let raw = event.data?;
    let data = serde_json::from_str::<String>(raw.get()).unwrap_or_else(|_| raw.get().to_owned());
    Some((event, data))
}

/// A string's content, else the JSON text (as the broker passes non-string `data` on).
fn simd_data_text<'v>(data: &'v BorrowedValue<'_>) -> Cow<'v, str> {
    data.as_str()
        .map_or_else(|| Cow::Owned(data.encode()), Cow::Borrowed)
}

/// What `validate_event` takes from a body, read from a simd-json DOM.
struct SimdEvent<'v> {
    name: &'v str,
    data: Cow<'v, str>,
    channels: Vec<&'v str>,
    socket_id: Option<&'v str>,
}

fn simd_borrowed_event<'v>(value: &'v BorrowedValue<'_>) -> Option<SimdEvent<'v>> {
    let channels = match (value.get_str("channel"), value.get_array("channels")) {
        (Some(one), None) => vec![one],
        (None, Some(many)) => many.iter().map(|c| c.as_str()).collect::<Option<_>>()?,
        _ => return None,
    };
    Some(SimdEvent {
        name: value.get_str("name")?,
        data: simd_data_text(value.get("data")?),
        channels,
        socket_id: value.get_str("socket_id"),
    })
}

fn api_publish_group(c: &mut Criterion) {
    let input = API_PUBLISH.as_bytes();
    let expected = {
        let (event, data) = serde_json_event(input).expect("the broker's shape parses it");
        EventFields {
            name: event.name.expect("name"),
            data,
            channels: event.channels.expect("channels"),
            socket_id: event.socket_id,
        }
    };
    let mut scratch = Scratch::new();
    {
        let (text, buffers) = scratch.load(input);
        let value = simd_json::to_borrowed_value_with_buffers(text, buffers).expect("valid JSON");
        let event = simd_borrowed_event(&value).expect("fields");
        let fields = EventFields {
            name: event.name.to_owned(),
            data: event.data.into_owned(),
            channels: event.channels.into_iter().map(str::to_owned).collect(),
            socket_id: event.socket_id.map(str::to_owned),
        };
        assert_eq!(fields, expected, "simd_json_borrowed on the API body");
    }
    {
        let (text, buffers) = scratch.load(input);
        let body: SimdEventBody<'_> =
            simd_json::serde::from_slice_with_buffers(text, buffers).expect("valid JSON");
        let fields = EventFields {
            name: body.name.expect("name").to_owned(),
            data: simd_data_text(body.data.as_ref().expect("data")).into_owned(),
            channels: body
                .channels
                .expect("channels")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            socket_id: body.socket_id.map(str::to_owned),
        };
        assert_eq!(fields, expected, "simd_json_serde on the API body");
        assert!(body.channel.is_none() && body.info.is_none());
    }

    let mut group = c.benchmark_group("parse_api_publish");
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.bench_function("serde_json", |b| {
        b.iter(|| serde_json_event(black_box(input)).map(|(_, data)| data.len()))
    });
    group.bench_function("serde_json_cow", |b| {
        b.iter(|| {
            let event: BorrowedEventBody<'_> = serde_json::from_slice(black_box(input)).ok()?;
            let raw = event.data?;
            let data =
                serde_json::from_str::<Cow<'_, str>>(raw.get()).unwrap_or(Cow::Borrowed(raw.get()));
            black_box((
                &event.name,
                &event.channel,
                &event.channels,
                &event.socket_id,
            ));
            Some(data.len())
        })
    });
    group.bench_function("simd_json_borrowed", |b| {
        b.iter(|| {
            let (text, buffers) = scratch.load(black_box(input));
            let value = simd_json::to_borrowed_value_with_buffers(text, buffers).ok()?;
            simd_borrowed_event(&value).map(|event| {
                black_box((event.name, &event.channels, event.socket_id));
                event.data.len()
            })
        })
    });
    group.bench_function("simd_json_serde", |b| {
        b.iter(|| {
            let (text, buffers) = scratch.load(black_box(input));
            let body: SimdEventBody<'_> =
                simd_json::serde::from_slice_with_buffers(text, buffers).ok()?;
            let data = simd_data_text(body.data.as_ref()?);
            black_box((&body.name, &body.channel, &body.channels, &body.socket_id));
            Some(data.len())
        })
    });
    group.finish();
}

fn messages(c: &mut Criterion) {
    client_message_group(c, "subscribe_presence", SUBSCRIBE_PRESENCE);
    client_message_group(c, "subscribe_private", SUBSCRIBE_PRIVATE);
    client_message_group(c, "client_typing", CLIENT_TYPING);
    client_message_group(c, "ping", PING);
    api_publish_group(c);
}

criterion_group!(benches, messages);
criterion_main!(benches);
