//! Engine.IO's HTTP long-polling transport, and its upgrade to a WebSocket.
//!
//! socket.io-client starts every connection with long-polling unless told otherwise: a `GET`
//! without `sid` opens a session, `POST`s carry the client's packets, and a `GET` waits for
//! the server's. Once the client's `CONNECT` is admitted the session is a shard connection
//! like any other; its output is fetched by the pending `GET` instead of written to a socket.
//!
//! A session lives on the shard that opened it, and its id says which (`{shard}.{random}`).
//! The client's later requests arrive on whichever shard the kernel picks: another shard's
//! request is answered by the owner over the mesh, and a WebSocket upgrade of a plain TCP
//! connection is handed to the owner whole (TLS state cannot move between threads, so such a
//! session stays on long-polling, which Engine.IO clients handle: a failed upgrade probe
//! keeps the polling transport).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::io::AsyncWriteRentExt;

use super::conn;
use super::runtime::{ShardRt, Writer};
use super::socketio::{Admitted, Step, admit, connect_step, shard_of, sharded_id};
use super::tls::Transport;
use crate::core::http::request::{Method, RequestHead};
use crate::core::http::response;
use crate::core::ids::{AppIdx, SocketId};
use crate::core::options::SocketIoConfig;
use crate::core::shard::{Accept, ConnKey, OutputState, ShardId};
use crate::core::wire::Wire;
use crate::core::wire::socketio::engine::{self, EnginePacket, HandshakeError, split_payload};
use crate::core::wire::socketio::frames::{PollingPackets, open_packet};
use crate::core::ws::frame::{self, FrameLimits, Message, MessageDecoder, Opcode, Role};
use crate::core::ws::handshake::{switching_protocols, validate_upgrade};
use crate::metrics::add;

/// The transports a polling session may upgrade to.
const UPGRADES: [&str; 1] = ["websocket"];
/// Frames and bytes handed to one long-polling answer.
const MAX_FRAMES_PER_POLL: usize = 256;
const MAX_BYTES_PER_POLL: usize = 1 << 20;
/// How often an upgrade that arrived before the session's `CONNECT` was admitted looks again.
const CONNECT_WAIT_STEP: Duration = Duration::from_millis(10);

/// A long-polling request, as the session's owner serves it.
pub enum PollKind {
    /// A `GET`: wait for the server's packets.
    Get,
    /// A `POST`: the client's packets.
    Post(Vec<u8>),
}

/// A request for a session on another shard, and where its answer goes.
pub struct PollRequest {
    /// The session id.
    pub sid: String,
    /// What the client asked.
    pub kind: PollKind,
    /// Where the owner sends the answer.
    pub reply: async_channel::Sender<PollAnswer>,
}

/// A WebSocket handed to the shard its Engine.IO session or its recovered connection
/// lives on: the connection itself.
pub struct Handover {
    /// The TCP socket (plain: a TLS connection's state cannot change threads).
    pub fd: std::os::fd::RawFd,
    /// The upgrade request.
    pub head: RequestHead,
    /// What was read and not yet decoded.
    pub buf: BytesMut,
    /// The client's address.
    pub remote: IpAddr,
    /// What the new shard does with it.
    pub purpose: Purpose,
}

/// Why a WebSocket is handed to another shard.
pub enum Purpose {
    /// It upgrades a long-polling session of that shard (`sid`); nothing was answered yet.
    Upgrade,
    /// Its `CONNECT` (with this `auth`) recovers a connection waiting on that shard; the
    /// upgrade and the Engine.IO handshake are done.
    Resume(Option<serde_json::Map<String, serde_json::Value>>),
}

/// The answer to a long-polling request.
pub struct PollAnswer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// Seconds to wait before trying again (`Retry-After`), for a refused handshake.
    retry_after: Option<String>,
}

impl PollAnswer {
    fn packets(body: Vec<u8>) -> Self {
        Self {
            status: 200,
            content_type: "text/plain; charset=UTF-8",
            body,
            retry_after: None,
        }
    }

    fn ok() -> Self {
        Self {
            status: 200,
            content_type: "text/html",
            body: b"ok".to_vec(),
            retry_after: None,
        }
    }

    fn refused(err: HandshakeError) -> Self {
        Self {
            status: err.status(),
            content_type: "application/json",
            body: err.body().into_bytes(),
            retry_after: None,
        }
    }

    /// A handshake over the app's connection attempt rate for the address, as a WebSocket
    /// upgrade over it is answered: 429 with `Retry-After`.
    fn too_many(retry: Duration) -> Self {
        let body = serde_json::json!({ "error": "too many connection attempts from this address" });
        Self {
            status: 429,
            content_type: "application/json",
            body: body.to_string().into_bytes(),
            retry_after: Some(retry.as_secs().max(1).to_string()),
        }
    }

    /// The HTTP response, with CORS headers for `origin` when the app allows it.
    fn response(&self, origin: Option<&str>, keep_alive: bool) -> Vec<u8> {
        let cors = origin.map(|o| {
            [
                ("Access-Control-Allow-Origin", o),
                ("Access-Control-Allow-Credentials", "true"),
            ]
        });
        let mut headers: Vec<(&str, &str)> = cors.iter().flatten().copied().collect();
        if let Some(seconds) = &self.retry_after {
            headers.push(("Retry-After", seconds));
        }
        response::response(
            self.status,
            self.content_type,
            &self.body,
            &headers,
            keep_alive,
        )
    }
}

/// Where a session is in its life.
enum State {
    /// Opened; the client's `CONNECT` has not come.
    Handshaken,
    /// The `CONNECT` is being decided (the app's backend may be asked).
    Connecting,
    /// A shard connection.
    Connected { key: ConnKey, socket_id: SocketId },
    /// Refused at `CONNECT`: the next poll gets these packets, then the session ends.
    Refused(Vec<u8>),
    /// Over (closed, expired, or moved to a WebSocket).
    Ended,
}

/// One long-polling session.
pub struct Session {
    sid: Box<str>,
    app: AppIdx,
    /// The request that opened the session: its headers identify the client at `CONNECT`.
    head: RequestHead,
    remote: IpAddr,
    opened: Instant,
    state: RefCell<State>,
    /// Wakes the pending poll: output for the connection, an upgrade, the end.
    writer: Rc<Writer>,
    /// Answers to packets that came before the `CONNECT` was admitted (pongs, namespace
    /// refusals), for the next poll.
    early: RefCell<Vec<Bytes>>,
    /// A `GET` is waiting.
    polling: Cell<bool>,
    /// A WebSocket has answered the upgrade probe and is taking over: polls end with `noop`.
    upgrading: Cell<bool>,
    /// When a request last ended (or the session opened): a session no request has touched
    /// for `ping_interval + ping_timeout` is gone.
    last_request: Cell<Instant>,
}

/// This shard's long-polling sessions.
#[derive(Default)]
pub struct Sessions {
    map: RefCell<HashMap<Box<str>, Rc<Session>>>,
}

impl Sessions {
    fn get(&self, sid: &str) -> Option<Rc<Session>> {
        self.map.borrow().get(sid).cloned()
    }
}

/// The app's Socket.IO settings (present: the path matched them).
fn settings(rt: &ShardRt, app: AppIdx) -> SocketIoConfig {
    rt.state
        .shared
        .apps
        .get(app)
        .config
        .socketio
        .clone()
        .unwrap_or_default()
}

/// The `Access-Control-Allow-Origin` a response carries: the request's `Origin`, when the
/// app accepts connections from it (browsers then let the page read the answer).
fn allowed_origin<'h>(rt: &ShardRt, app: AppIdx, head: &'h RequestHead) -> Option<&'h str> {
    let origin = head.header("origin")?;
    rt.state
        .shared
        .apps
        .get(app)
        .config
        .origin_allowed(Some(origin))
        .then_some(origin)
}

/// Serves a plain HTTP request on app `app`'s Socket.IO path and returns the response.
pub(super) async fn serve(
    rt: &Rc<ShardRt>,
    head: &RequestHead,
    body: Vec<u8>,
    remote: IpAddr,
    app: AppIdx,
) -> Vec<u8> {
    let origin = allowed_origin(rt, app, head);
    if head.method == Method::Options {
        let headers = [
            ("Access-Control-Allow-Origin", origin.unwrap_or("")),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Allow-Methods", "GET, POST"),
            (
                "Access-Control-Allow-Headers",
                "content-type, authorization",
            ),
        ];
        let headers = if origin.is_some() { &headers[..] } else { &[] };
        return response::response(204, "text/plain", b"", headers, head.keep_alive);
    }
    let answer = answer(rt, head, body, remote, app).await;
    answer.response(origin, head.keep_alive)
}

async fn answer(
    rt: &Rc<ShardRt>,
    head: &RequestHead,
    body: Vec<u8>,
    remote: IpAddr,
    app: AppIdx,
) -> PollAnswer {
    let checked = engine::check_request(
        head.query_param("EIO").as_deref(),
        head.query_param("transport").as_deref(),
    );
    match checked {
        Ok(engine::Transport::Polling) => {}
        // A WebSocket transport asked for without an upgrade.
        Ok(engine::Transport::WebSocket) => return PollAnswer::refused(HandshakeError::BadRequest),
        Err(err) => return PollAnswer::refused(err),
    }
    let kind = match head.method {
        Method::Get => PollKind::Get,
        Method::Post => PollKind::Post(body),
        _ => return PollAnswer::refused(HandshakeError::BadRequest),
    };
    let Some(sid) = head.query_param("sid") else {
        return match kind {
            PollKind::Get => open(rt, head, remote, app),
            PollKind::Post(_) => PollAnswer::refused(HandshakeError::BadHandshakeMethod),
        };
    };
    let me = rt.core().id();
    match shard_of(&sid, rt.shard_count()) {
        Some(shard) if shard == me => on_owner(rt.clone(), &sid, kind).await,
        Some(shard) => ask_owner(rt, shard, sid, kind).await,
        None => PollAnswer::refused(HandshakeError::SessionIdUnknown),
    }
}

/// Opens a session: the Engine.IO handshake.
fn open(rt: &Rc<ShardRt>, head: &RequestHead, remote: IpAddr, app: AppIdx) -> PollAnswer {
    let config = &rt.state.shared.config;
    if rt.shutting_down.get() || rt.polls.map.borrow().len() >= config.max_connections {
        return PollAnswer::refused(HandshakeError::Forbidden);
    }
    let attempt = rt.with_core(|core| {
        core.connection_attempt(Wire::SocketIo, &head.path, remote, Instant::now())
    });
    if let Err(retry) = attempt {
        return PollAnswer::too_many(retry);
    }
    let settings = settings(rt, app);
    let Some(sid) = sharded_id(rt.core().id()) else {
        return PollAnswer::refused(HandshakeError::Forbidden);
    };
    let max_payload = config.max_ws_message_bytes.min(config.max_http_body_bytes);
    let packet = open_packet(
        &sid,
        &UPGRADES,
        settings.ping_interval.as_millis(),
        settings.ping_timeout.as_millis(),
        max_payload,
    );
    let now = Instant::now();
    let session = Rc::new(Session {
        sid: sid.clone().into(),
        app,
        head: head.clone(),
        remote,
        opened: now,
        state: RefCell::new(State::Handshaken),
        writer: Rc::new(Writer::detached()),
        early: RefCell::new(Vec::new()),
        polling: Cell::new(false),
        upgrading: Cell::new(false),
        last_request: Cell::new(now),
    });
    rt.polls.map.borrow_mut().insert(sid.into(), session);
    PollAnswer::packets(packet.into_bytes())
}

/// Sends a request to the shard that owns its session and waits for the answer.
async fn ask_owner(rt: &Rc<ShardRt>, shard: ShardId, sid: String, kind: PollKind) -> PollAnswer {
    let (reply, answer) = async_channel::bounded(1);
    if !rt.send_poll(shard, PollRequest { sid, kind, reply }).await {
        return PollAnswer::refused(HandshakeError::SessionIdUnknown);
    }
    // The owner bounds every poll by the session's ping timings; this only guards against
    // an owner that is gone.
    match monoio::time::timeout(Duration::from_secs(120), answer.recv()).await {
        Ok(Ok(answer)) => answer,
        _ => PollAnswer::refused(HandshakeError::BadRequest),
    }
}

/// Serves a request another shard received for a session of this one.
pub(super) async fn serve_for(rt: Rc<ShardRt>, request: PollRequest) {
    let answer = on_owner(rt, &request.sid, request.kind).await;
    let _ = request.reply.send(answer).await;
}

/// Serves a request for session `sid`, on the shard that owns it.
async fn on_owner(rt: Rc<ShardRt>, sid: &str, kind: PollKind) -> PollAnswer {
    let Some(session) = rt.polls.get(sid) else {
        return PollAnswer::refused(HandshakeError::SessionIdUnknown);
    };
    let answer = match kind {
        PollKind::Get => poll(&rt, &session).await,
        PollKind::Post(body) => post(&rt, &session, &body).await,
    };
    session.last_request.set(Instant::now());
    answer
}

/// A `GET`: the packets waiting for the client, or the next ones to come.
async fn poll(rt: &Rc<ShardRt>, session: &Rc<Session>) -> PollAnswer {
    if session.polling.replace(true) {
        // Two polls at once: the reference server ends the session for it.
        end(rt, session);
        return PollAnswer::refused(HandshakeError::BadRequest);
    }
    let settings = settings(rt, session.app);
    let patience = settings.ping_interval + settings.ping_timeout;
    let answer = loop {
        let early: Vec<Bytes> = std::mem::take(&mut *session.early.borrow_mut());
        if !early.is_empty() {
            break PollAnswer::packets(
                PollingPackets {
                    packets: early,
                    closed: false,
                }
                .body(),
            );
        }
        if session.upgrading.get() {
            break PollAnswer::packets(b"6".to_vec());
        }
        let connected = match &*session.state.borrow() {
            State::Handshaken | State::Connecting => None,
            State::Connected { key, socket_id } => Some((*key, *socket_id)),
            State::Refused(body) => break PollAnswer::packets(body.clone()),
            State::Ended => break PollAnswer::refused(HandshakeError::SessionIdUnknown),
        };
        if let Some((key, socket_id)) = connected {
            let mut frames = Vec::new();
            let taken = rt.core().take_output(
                key,
                socket_id,
                &mut frames,
                MAX_FRAMES_PER_POLL,
                MAX_BYTES_PER_POLL,
            );
            let mut packets = PollingPackets::default();
            for frame in &frames {
                packets.push(frame);
            }
            if taken.state == OutputState::Close {
                packets.closed = true;
            }
            if !packets.packets.is_empty() || packets.closed {
                conn::record_written(rt, &taken, packets.packets.iter().map(Bytes::len).sum());
                if taken.receipts {
                    rt.with_core(|core| core.handle_written(key, socket_id, Instant::now()));
                }
                if packets.closed {
                    // Engine.IO's close, after what the shard said last.
                    packets.packets.push(Bytes::from_static(b"1"));
                    end(rt, session);
                }
                break PollAnswer::packets(packets.body());
            }
        }
        if monoio::time::timeout(patience, session.writer.signal.wait())
            .await
            .is_err()
        {
            break PollAnswer::packets(b"6".to_vec());
        }
    };
    if matches!(&*session.state.borrow(), State::Refused(_)) {
        end(rt, session);
    }
    session.polling.set(false);
    answer
}

/// A `POST`: the client's packets, in order.
async fn post(rt: &Rc<ShardRt>, session: &Rc<Session>, body: &[u8]) -> PollAnswer {
    let Ok(text) = std::str::from_utf8(body) else {
        end(rt, session);
        return PollAnswer::refused(HandshakeError::BadRequest);
    };
    for packet in split_payload(text) {
        let connected = match &*session.state.borrow() {
            // During the upgrade the client may still post, until its probe has succeeded.
            State::Connected { key, socket_id } => Some((*key, *socket_id)),
            State::Handshaken => None,
            // Packets while a CONNECT is decided or after the end are not for a connection.
            _ => return PollAnswer::refused(HandshakeError::BadRequest),
        };
        match connected {
            Some((key, socket_id)) => {
                if packet == "1" {
                    end(rt, session);
                    break;
                }
                rt.with_core(|core| {
                    core.handle_packet(key, socket_id, packet.as_bytes(), Instant::now())
                });
            }
            None => match connect_step(packet.as_bytes()) {
                Ok(Step::Connected(auth)) => connect(rt, session, auth).await,
                Ok(Step::Answer(answer)) => {
                    session.early.borrow_mut().push(Bytes::from(answer));
                    session.writer.signal.notify();
                }
                Ok(Step::Wait) => {}
                Err(_) => {
                    end(rt, session);
                    return PollAnswer::refused(HandshakeError::BadRequest);
                }
            },
        }
    }
    PollAnswer::ok()
}

/// The session's `CONNECT`: admitted, it becomes a shard connection; refused, the next poll
/// carries the `CONNECT_ERROR`.
async fn connect(
    rt: &Rc<ShardRt>,
    session: &Rc<Session>,
    auth: Option<serde_json::Map<String, serde_json::Value>>,
) {
    session.state.replace(State::Connecting);
    // A long-polling session stays on its shard: a recovery it asks for happens only when
    // the connection waits here.
    let Admitted::Here(accepted) =
        admit(rt, &session.head, session.remote, auth.as_ref(), false).await
    else {
        return;
    };
    let next = match accepted {
        Accept::Open(key) => {
            let socket_id = rt.core().socket_id(key);
            match socket_id {
                Some(socket_id) => {
                    rt.register_writer(key, session.writer.clone());
                    State::Connected { key, socket_id }
                }
                None => State::Ended,
            }
        }
        Accept::Refused(frames, _) => {
            let mut packets = PollingPackets::default();
            packets.push(&frames);
            State::Refused(packets.body())
        }
    };
    // The session may have ended while the backend was asked.
    if matches!(&*session.state.borrow(), State::Connecting) {
        session.state.replace(next);
    } else if let State::Connected { key, socket_id } = next {
        disconnect(rt, session, key, socket_id);
    }
    session.writer.signal.notify();
}

/// Ends a session: its connection (if it has one) is gone, its id no longer known.
fn end(rt: &Rc<ShardRt>, session: &Rc<Session>) {
    if let State::Connected { key, socket_id } = session.state.replace(State::Ended) {
        disconnect(rt, session, key, socket_id);
    }
    rt.polls.map.borrow_mut().remove(&session.sid);
    session.writer.signal.notify();
}

fn disconnect(rt: &Rc<ShardRt>, session: &Session, key: ConnKey, socket_id: SocketId) {
    let ended = rt.with_core(|core| core.handle_disconnect(key, socket_id, Instant::now()));
    conn::log_ended(rt, ended);
    rt.unregister_writer(key, &session.writer);
}

/// Ends the sessions no request has touched for their ping interval and timeout, and those
/// whose `CONNECT` did not come within `handshake_timeout`.
pub(super) fn expire(rt: &Rc<ShardRt>, now: Instant) {
    let handshake = rt.state.shared.config.handshake_timeout;
    let stale: Vec<Rc<Session>> = rt
        .polls
        .map
        .borrow()
        .values()
        .filter(|session| {
            let settings = settings(rt, session.app);
            let idle = now.saturating_duration_since(session.last_request.get());
            let unconnected = matches!(&*session.state.borrow(), State::Handshaken);
            (!session.polling.get() && idle > settings.ping_interval + settings.ping_timeout)
                || (unconnected && now.saturating_duration_since(session.opened) > handshake)
        })
        .cloned()
        .collect();
    for session in stale {
        end(rt, &session);
    }
}

/// Serves a WebSocket upgrade (`sid` set) on app `app`'s Socket.IO path: on the session's
/// owner here, else handed to it when the connection is plain TCP.
pub(super) async fn upgrade<S: Transport>(
    rt: Rc<ShardRt>,
    mut stream: S,
    head: RequestHead,
    buf: BytesMut,
    remote: IpAddr,
    sid: String,
) {
    let me = rt.core().id();
    let owner = shard_of(&sid, rt.shard_count());
    match owner {
        Some(shard) if shard == me => {}
        Some(shard) => match stream.into_plain() {
            Ok(fd) => {
                let handover = Handover {
                    fd,
                    head,
                    buf,
                    remote,
                    purpose: Purpose::Upgrade,
                };
                rt.send_handover(shard, handover).await;
                return;
            }
            Err(plain) => stream = plain,
        },
        _ => {}
    }
    let session = rt.polls.get(&sid);
    let Some(session) = session.filter(|_| owner == Some(me)) else {
        return refuse(&mut stream, HandshakeError::SessionIdUnknown).await;
    };
    take_over(rt, stream, head, buf, remote, session).await;
}

/// Takes over a connection another shard handed here.
pub(super) async fn adopt(rt: Rc<ShardRt>, handover: Handover) {
    let std_stream = super::runtime::adopted_stream(handover.fd);
    let Ok(stream) = monoio::net::TcpStream::from_std(std_stream) else {
        return;
    };
    let Handover {
        head,
        buf,
        remote,
        purpose,
        ..
    } = handover;
    if let Purpose::Resume(auth) = purpose {
        return super::socketio::resume_here(rt, stream, head, buf, remote, auth).await;
    }
    let sid = head.query_param("sid").unwrap_or_default();
    let Some(session) = rt.polls.get(&sid) else {
        let mut stream = stream;
        return refuse(&mut stream, HandshakeError::SessionIdUnknown).await;
    };
    take_over(rt, stream, head, buf, remote, session).await;
}

/// Answers an Engine.IO request that cannot be served as the reference server does.
pub(super) async fn refuse<S: Transport>(stream: &mut S, err: HandshakeError) {
    let body = err.body();
    let answer = response::response(
        err.status(),
        "application/json",
        body.as_bytes(),
        &[],
        false,
    );
    let _ = stream.write_all(answer).await;
}

/// The upgrade itself: the probe (`2probe` answered `3probe`), the pending poll ended, the
/// client's `upgrade`; then the WebSocket is the connection's transport. A client may
/// upgrade before its `CONNECT` (python-socketio does): the `CONNECT` then comes over the
/// WebSocket.
async fn take_over<S: Transport>(
    rt: Rc<ShardRt>,
    mut stream: S,
    head: RequestHead,
    mut buf: BytesMut,
    remote: IpAddr,
    session: Rc<Session>,
) {
    let upgrade = match validate_upgrade(&head) {
        Ok(upgrade) => upgrade,
        Err(err) => {
            let _ = stream.write_all(err.response()).await;
            return;
        }
    };
    let config = &rt.state.shared.config;
    if stream
        .write_all(switching_protocols(&upgrade.accept, None))
        .await
        .0
        .is_err()
    {
        return;
    }
    let limits = FrameLimits {
        max_frame_bytes: config.max_ws_message_bytes,
        max_message_bytes: config.max_ws_message_bytes,
    };
    let probe = probe(&rt, &mut stream, &mut buf, limits, &session);
    let upgraded = matches!(
        monoio::time::timeout(config.handshake_timeout, probe).await,
        Ok(true)
    );
    // A CONNECT posted just before the switch may still be decided.
    let deadline = Instant::now() + config.handshake_timeout;
    let next = loop {
        let next = match &*session.state.borrow() {
            State::Connected { key, .. } => Some(Switch::Attach(*key)),
            State::Handshaken => Some(Switch::Connect),
            State::Connecting if Instant::now() < deadline => None,
            _ => Some(Switch::Gone),
        };
        match next {
            Some(next) => break next,
            None => monoio::time::sleep(CONNECT_WAIT_STEP).await,
        }
    };
    if !upgraded || matches!(next, Switch::Gone) {
        // The session goes on polling, as the client does after a failed probe.
        session.upgrading.set(false);
        session.writer.signal.notify();
        let _ = stream
            .write_all(frame::encode_close(1000, "").to_vec())
            .await;
        return;
    }
    session.state.replace(State::Ended);
    rt.polls.map.borrow_mut().remove(&session.sid);
    session.writer.signal.notify();
    match next {
        Switch::Attach(key) => {
            rt.unregister_writer(key, &session.writer);
            if let Some(cookie) = session.head.header("cookie") {
                rt.remember_cookie(key, cookie);
            }
            conn::run(rt, stream, key, Vec::new(), buf, remote).await;
        }
        Switch::Connect => {
            let head = session.head.clone();
            super::socketio::connect_over(rt, stream, head, buf, remote).await;
        }
        Switch::Gone => {}
    }
}

/// What a WebSocket that upgraded a session becomes.
enum Switch {
    /// The transport of the session's connection.
    Attach(ConnKey),
    /// The client's `CONNECT` has not come: it comes over the WebSocket.
    Connect,
    /// The session ended meanwhile (refused, closed, expired).
    Gone,
}

/// Reads the upgrade's probe and `upgrade` packets; `true` once the client has switched.
async fn probe<S: Transport>(
    rt: &Rc<ShardRt>,
    stream: &mut S,
    buf: &mut BytesMut,
    limits: FrameLimits,
    session: &Rc<Session>,
) -> bool {
    let mut decoder = MessageDecoder::new(Role::Server, limits);
    loop {
        loop {
            let message = match decoder.decode(buf) {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(_) => return false,
            };
            let Message::Text(text) = message else {
                return false;
            };
            let Ok(text) = std::str::from_utf8(&text) else {
                return false;
            };
            match EnginePacket::decode(text) {
                Ok(EnginePacket::Ping("probe")) => {
                    let pong = frame::encode_frame(Opcode::Text, b"3probe");
                    if stream.write_all(pong.to_vec()).await.0.is_err() {
                        return false;
                    }
                    session.upgrading.set(true);
                    session.writer.signal.notify();
                }
                Ok(EnginePacket::Upgrade) => return true,
                _ => return false,
            }
        }
        match super::io::read_more(stream, buf, 256).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => add(&rt.all_metrics[rt.core().id()].bytes_in, n as u64),
        }
    }
}
