//! The bare loop: the least a Pusher server can do for a fan-out, to measure what the machine
//! allows. It accepts WebSocket upgrades, answers every subscribe, and for each published
//! event encodes one frame and queues the same `Bytes` to each subscriber, whose writer
//! coalesces queued frames into one `writev` exactly as Ringcast's does (the same
//! `FrameBatch` and `write_batch`). It checks no signature, keeps no presence, no limits, no
//! audit: Ringcast's throughput divided by this one's, in the same run of the same load
//! generator, is its overhead over the machine's limit.
//!
//! One thread (one core), io_uring where available.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::{TcpListener, TcpStream};
use ringcast::core::http::request::{BodyLength, HeadLimits, Method, RequestHead, parse_head};
use ringcast::core::ws::frame::{FrameLimits, Message, MessageDecoder, Opcode, Role, encode_frame};
use ringcast::core::ws::handshake::{is_websocket_upgrade, switching_protocols, validate_upgrade};
use ringcast::shell::Signal;
use ringcast::shell::io::{FrameBatch, read_more, write_batch};

use crate::BareArgs;

/// Most frames handed to one `writev` (as in Ringcast).
const MAX_FRAMES_PER_WRITE: usize = 64;
const READ_SPARE: usize = 256;

/// A subscriber's queue and its writer's wake-up.
#[derive(Default)]
struct Outbox {
    frames: RefCell<VecDeque<Bytes>>,
    signal: Signal,
    closed: Cell<bool>,
}

impl Outbox {
    fn push(&self, frame: Bytes) {
        self.frames.borrow_mut().push_back(frame);
        self.signal.notify();
    }
}

#[derive(Default)]
struct State {
    channels: RefCell<HashMap<String, Vec<Rc<Outbox>>>>,
    next_socket: Cell<u64>,
}

/// Serves until the process is killed.
pub fn serve(args: &BareArgs) -> anyhow::Result<()> {
    let addr: SocketAddr = format!("{}:{}", args.host, args.port).parse()?;
    crate::util::block_on(async move {
        let listener = TcpListener::bind(addr)?;
        eprintln!("bare loop listening on {}", listener.local_addr()?);
        let state = Rc::new(State::default());
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            monoio::spawn(connection(state.clone(), stream));
        }
    })?
}

async fn connection(state: Rc<State>, mut stream: TcpStream) {
    let limits = HeadLimits {
        max_head_bytes: 8192,
        max_headers: 64,
    };
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let head = loop {
            match parse_head(&buf, &limits) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(_) => return,
            }
            if !matches!(read_more(&mut stream, &mut buf, READ_SPARE).await, Ok(n) if n > 0) {
                return;
            }
        };
        buf.advance(head.head_len);
        if is_websocket_upgrade(&head) {
            websocket(state, stream, &head, buf).await;
            return;
        }
        let Some(response) = http(&state, &mut stream, &head, &mut buf).await else {
            return;
        };
        if stream.write_all(response.into_bytes()).await.0.is_err() || !head.keep_alive {
            return;
        }
    }
}

/// Answers one HTTP request: `POST .../events` fans out, `/up` is fine, the rest is 404.
async fn http(
    state: &State,
    stream: &mut TcpStream,
    head: &RequestHead,
    buf: &mut BytesMut,
) -> Option<String> {
    let length = match head.body {
        BodyLength::Empty => 0,
        BodyLength::ContentLength(n) if n <= 1 << 20 => n,
        _ => return None,
    };
    while buf.len() < length {
        if !matches!(read_more(stream, buf, READ_SPARE).await, Ok(n) if n > 0) {
            return None;
        }
    }
    let body = buf.split_to(length);
    let (status, text) = if head.method == Method::Post && head.path.ends_with("/events") {
        match publish(state, &body) {
            Some(()) => ("200 OK", "{}"),
            None => ("400 Bad Request", r#"{"error":"bad event"}"#),
        }
    } else if head.path == "/up" {
        ("200 OK", r#"{"health":"ok"}"#)
    } else {
        ("404 Not Found", r#"{"error":"not found"}"#)
    };
    Some(format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    ))
}

/// Encodes the event once per channel and queues the same bytes to every subscriber.
fn publish(state: &State, body: &[u8]) -> Option<()> {
    let event: serde_json::Value = serde_json::from_slice(body).ok()?;
    let name = event["name"].as_str()?;
    let data = event["data"].as_str()?;
    let channels: Vec<&str> = match event["channels"].as_array() {
        Some(list) => list.iter().filter_map(|c| c.as_str()).collect(),
        None => vec![event["channel"].as_str()?],
    };
    let subscribers = state.channels.borrow();
    for channel in channels {
        let text = serde_json::json!({"event": name, "channel": channel, "data": data});
        let frame = encode_frame(Opcode::Text, text.to_string().as_bytes());
        for outbox in subscribers.get(channel).into_iter().flatten() {
            outbox.push(frame.clone());
        }
    }
    Some(())
}

async fn websocket(state: Rc<State>, mut stream: TcpStream, head: &RequestHead, mut buf: BytesMut) {
    let Ok(upgrade) = validate_upgrade(head) else {
        return;
    };
    let n = state.next_socket.get() + 1;
    state.next_socket.set(n);
    let established = serde_json::json!({
        "event": "pusher:connection_established",
        "data": serde_json::json!({"socket_id": format!("{n}.{n}"), "activity_timeout": 120}).to_string(),
    });
    let mut hello = switching_protocols(&upgrade.accept, None);
    hello.extend_from_slice(&encode_frame(
        Opcode::Text,
        established.to_string().as_bytes(),
    ));
    if stream.write_all(hello).await.0.is_err() {
        return;
    }
    let outbox = Rc::new(Outbox::default());
    let (mut reader, writer) = stream.into_split();
    monoio::spawn(write_loop(writer, outbox.clone()));

    let limits = FrameLimits {
        max_frame_bytes: 1 << 16,
        max_message_bytes: 1 << 16,
    };
    let mut decoder = MessageDecoder::new(Role::Server, limits);
    let mut joined: Vec<String> = Vec::new();
    'read: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Message::Text(text))) => {
                    if let Some(channel) = on_text(&outbox, &text) {
                        state
                            .channels
                            .borrow_mut()
                            .entry(channel.clone())
                            .or_default()
                            .push(outbox.clone());
                        joined.push(channel);
                    }
                }
                Ok(Some(Message::Close(_))) | Err(_) => break 'read,
                Ok(Some(_)) => {}
                Ok(None) => break,
            }
        }
        if !matches!(read_more(&mut reader, &mut buf, READ_SPARE).await, Ok(n) if n > 0) {
            break;
        }
    }
    let mut channels = state.channels.borrow_mut();
    for channel in joined {
        if let Some(list) = channels.get_mut(&channel) {
            list.retain(|o| !Rc::ptr_eq(o, &outbox));
        }
    }
    outbox.closed.set(true);
    outbox.signal.notify();
}

/// Answers a client message; returns the channel to join for a subscribe.
fn on_text(outbox: &Outbox, text: &[u8]) -> Option<String> {
    let message: serde_json::Value = serde_json::from_slice(text).ok()?;
    match message["event"].as_str()? {
        "pusher:ping" => {
            outbox.push(encode_frame(
                Opcode::Text,
                br#"{"event":"pusher:pong","data":"{}"}"#,
            ));
            None
        }
        "pusher:subscribe" => {
            let channel = message["data"]["channel"].as_str()?.to_owned();
            let reply = serde_json::json!({
                "event": "pusher_internal:subscription_succeeded",
                "channel": channel,
                "data": "{}",
            });
            outbox.push(encode_frame(Opcode::Text, reply.to_string().as_bytes()));
            Some(channel)
        }
        _ => None,
    }
}

/// Writes queued frames, several at once with one `writev`, until the reader closes.
async fn write_loop<W: AsyncWriteRent>(mut sink: W, outbox: Rc<Outbox>) {
    let mut frames = Vec::with_capacity(MAX_FRAMES_PER_WRITE);
    let mut batch = FrameBatch::default();
    while !outbox.closed.get() {
        {
            let mut queue = outbox.frames.borrow_mut();
            let n = queue.len().min(MAX_FRAMES_PER_WRITE);
            frames.extend(queue.drain(..n));
        }
        match frames.len() {
            0 => {
                outbox.signal.wait().await;
                continue;
            }
            1 => {
                let frame = frames.pop().unwrap_or_default();
                if sink.write_all(frame).await.0.is_err() {
                    break;
                }
            }
            _ => {
                batch.fill(&mut frames);
                let (result, returned) = write_batch(&mut sink, batch).await;
                batch = returned;
                batch.clear();
                if result.is_err() {
                    break;
                }
            }
        }
    }
    let _ = sink.shutdown().await;
}
