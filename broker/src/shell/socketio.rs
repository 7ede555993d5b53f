//! Socket.IO's transports, the I/O half: a WebSocket at an app's `[apps.socketio] path`
//! opens with the Engine.IO handshake, and the client's `CONNECT` (with its `auth` object)
//! decides who it is before the shard admits it. From then on the connection is a shard
//! connection like a Pusher one, speaking [`Wire::SocketIo`].

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;
use monoio::io::AsyncWriteRentExt;
use serde_json::{Map, Value};

use super::conn::{self, Verification, unix_now};
use super::polling::{self, Handover, Purpose};
use super::runtime::ShardRt;
use super::tls::Transport;
use crate::core::http::request::RequestHead;
use crate::core::http::response;
use crate::core::ids::AppIdx;
use crate::core::shard::{Accept, ConnectRequest, ShardId};
use crate::core::wire::Wire;
use crate::core::wire::socketio::engine::{self, EnginePacket, HandshakeError};
use crate::core::wire::socketio::frames::open_packet;
use crate::core::wire::socketio::packet::{Body, DEFAULT_NAMESPACE, Packet, encode_connect_error};
use crate::core::ws::frame::{self, FrameLimits, Message, MessageDecoder, Opcode, Role};
use crate::core::ws::handshake::switching_protocols;

/// Bytes of randomness in an Engine.IO session id (20 characters of base64url).
const SID_BYTES: usize = 15;

/// The Engine.IO handshake ended before the client's `CONNECT`: the client went away,
/// closed, or sent something other than a `CONNECT`.
pub(super) struct Gone;

/// Serves a WebSocket upgrade on app `app`'s Socket.IO path.
pub(super) async fn websocket<S: Transport>(
    rt: Rc<ShardRt>,
    mut stream: S,
    head: RequestHead,
    buf: BytesMut,
    remote: IpAddr,
    app: AppIdx,
) {
    let checked = engine::check_request(
        head.query_param("EIO").as_deref(),
        head.query_param("transport").as_deref(),
    );
    match checked {
        Ok(engine::Transport::WebSocket) => {}
        Ok(engine::Transport::Polling) => {
            return polling::refuse(&mut stream, HandshakeError::BadRequest).await;
        }
        Err(err) => return polling::refuse(&mut stream, err).await,
    }
    if let Some(sid) = head.query_param("sid") {
        return polling::upgrade(rt, stream, head, buf, remote, sid).await;
    }
    let path = &head.path;
    let Some(upgrade) = conn::upgrade(&rt, &mut stream, &head, Wire::SocketIo, path, remote).await
    else {
        return;
    };
    let config = &rt.state.shared.config;
    let max_message = config.max_ws_message_bytes;
    let Some(socketio) = rt.state.shared.apps.get(app).config.socketio.clone() else {
        return;
    };
    let Some(sid) = random_id() else {
        let _ = stream
            .write_all(response::json_error(
                503,
                "no session id could be made",
                false,
            ))
            .await;
        return;
    };
    let mut first = switching_protocols(&upgrade.accept, None);
    let open = open_packet(
        &sid,
        &[],
        socketio.ping_interval.as_millis(),
        socketio.ping_timeout.as_millis(),
        max_message,
    );
    first.extend_from_slice(&frame::encode_frame(Opcode::Text, open.as_bytes()));
    if stream.write_all(first).await.0.is_err() {
        return;
    }
    connect_over(rt, stream, head, buf, remote).await;
}

/// Waits on a WebSocket whose Engine.IO handshake is done for the client's `CONNECT`, and
/// serves the connection the shard admits (`head`: the request that opened the session).
pub(super) async fn connect_over<S: Transport>(
    rt: Rc<ShardRt>,
    mut stream: S,
    head: RequestHead,
    mut buf: BytesMut,
    remote: IpAddr,
) {
    let config = &rt.state.shared.config;
    let max_message = config.max_ws_message_bytes;
    let limits = FrameLimits {
        max_frame_bytes: max_message,
        max_message_bytes: max_message,
    };
    let connect = read_connect(&mut stream, &mut buf, limits);
    let auth = match monoio::time::timeout(config.handshake_timeout, connect).await {
        Ok(Ok(auth)) => auth,
        Ok(Err(Gone)) | Err(_) => {
            tracing::debug!(%remote, "Socket.IO connection ended before its CONNECT");
            return;
        }
    };
    let accepted = match admit(&rt, &head, remote, auth.as_ref(), true).await {
        Admitted::Here(accepted) => accepted,
        Admitted::Elsewhere(shard) => match stream.into_plain() {
            Ok(fd) => {
                let handover = Handover {
                    fd,
                    head,
                    buf,
                    remote,
                    purpose: Purpose::Resume(auth),
                };
                return rt.send_handover(shard, handover).await;
            }
            Err(plain) => {
                stream = plain;
                match admit(&rt, &head, remote, auth.as_ref(), false).await {
                    Admitted::Here(accepted) => accepted,
                    Admitted::Elsewhere(_) => return,
                }
            }
        },
    };
    serve_admitted(rt, stream, accepted, buf, remote).await;
}

/// Runs a connection the shard accepted, or writes its refusal.
async fn serve_admitted<S: Transport>(
    rt: Rc<ShardRt>,
    mut stream: S,
    accepted: Accept,
    buf: BytesMut,
    remote: IpAddr,
) {
    match accepted {
        Accept::Open(key) => conn::run(rt, stream, key, Vec::new(), buf, remote).await,
        Accept::Refused(frames, fault) => {
            tracing::debug!(%remote, ?fault, "Socket.IO connection refused");
            let _ = stream.write_all(frames.to_vec()).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// Takes over a WebSocket another shard handed here because its client asked to recover a
/// connection of this shard.
pub(super) async fn resume_here(
    rt: Rc<ShardRt>,
    stream: monoio::net::TcpStream,
    head: RequestHead,
    buf: BytesMut,
    remote: IpAddr,
    auth: Option<Map<String, Value>>,
) {
    let accepted = match admit(&rt, &head, remote, auth.as_ref(), false).await {
        Admitted::Here(accepted) => accepted,
        Admitted::Elsewhere(_) => return,
    };
    serve_admitted(rt, stream, accepted, buf, remote).await;
}

/// Where a client's `CONNECT` is decided.
pub(super) enum Admitted {
    /// Here: the connection is open, or refused.
    Here(Accept),
    /// It asks to recover a connection that waits on this other shard, where the
    /// transport should go.
    Elsewhere(ShardId),
}

/// Decides on a client's `CONNECT` with its `auth` object, on either transport: who it is
/// (`auth.token`, the query's `token`, `Authorization`, or the app's backend verification of
/// the handshake request's headers), then the shard admits it or says why not. `head` is the
/// request that opened the Engine.IO session.
///
/// With connection state recovery, a `CONNECT` carrying the `pid` of a connection whose
/// transport was lost takes that connection over: here when it waits on this shard, else
/// ([`Admitted::Elsewhere`]) where it waits, when `can_move` says the transport can go
/// there. Otherwise the client gets a new connection (and `recovered` is false).
pub(super) async fn admit(
    rt: &Rc<ShardRt>,
    head: &RequestHead,
    remote: IpAddr,
    auth: Option<&Map<String, Value>>,
    can_move: bool,
) -> Admitted {
    // `io(url, {auth: {token}})` sends the raw JWT; a `Bearer ` prefix is taken too.
    let auth_token = auth
        .and_then(|auth| auth.get("token"))
        .and_then(Value::as_str)
        .map(|token| {
            token
                .strip_prefix("Bearer ")
                .unwrap_or(token)
                .trim()
                .to_owned()
        });
    let query_token = head.query_param("token");
    let bearer = head
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let token = auth_token.as_deref().or(query_token.as_deref()).or(bearer);
    let found = rt.state.shared.apps.by_socketio_path(&head.path);
    let verification = Verification::run(rt, found, head, token).await;
    let me = rt.core().id();
    let recovers = found.is_some_and(|app| {
        app.config
            .socketio
            .as_ref()
            .is_some_and(|s| !s.recovery.is_zero())
    });
    let asked = auth
        .and_then(|auth| auth.get("pid"))
        .and_then(Value::as_str)
        .filter(|_| recovers);
    let owner = asked.and_then(|pid| shard_of(pid, rt.shard_count()));
    if let Some(shard) = owner.filter(|&s| s != me && can_move) {
        return Admitted::Elsewhere(shard);
    }
    let fresh = recovers.then(|| sharded_id(me)).flatten();
    let mut request = ConnectRequest {
        wire: Wire::SocketIo,
        path: &head.path,
        protocol: None,
        origin: head.header("origin"),
        remote,
        credentials: verification.credentials(token),
        now_unix: unix_now(),
        recovery_pid: None,
    };
    let resumed = match asked.filter(|_| owner == Some(me)) {
        Some(pid) => rt.with_core(|core| core.resume(pid, &request, Instant::now())),
        None => None,
    };
    // A client not recovered here sends back the last history offset it had: its next
    // subscription to that channel replays what came after.
    let offset = auth
        .and_then(|auth| auth.get("offset"))
        .and_then(Value::as_str)
        .filter(|_| recovers);
    let accepted = match resumed {
        Some(key) => Accept::Open(key),
        None => {
            request.recovery_pid = fresh.as_deref();
            rt.with_core(|core| {
                let accepted = core.accept_websocket(&request, Instant::now());
                if let (Accept::Open(key), Some(offset)) = (&accepted, offset) {
                    core.handle_history_offset(*key, offset);
                }
                accepted
            })
        }
    };
    if let (Accept::Open(key), Some(cookie)) = (&accepted, head.header("cookie")) {
        rt.remember_cookie(*key, cookie);
    }
    Admitted::Here(accepted)
}

/// Reads frames until the client's `CONNECT` to the default namespace and returns its
/// `auth` object. Pings are answered; a `CONNECT` to another namespace is refused as the
/// reference server refuses it ("Invalid namespace"), and the client may go on.
async fn read_connect<S: Transport>(
    stream: &mut S,
    buf: &mut BytesMut,
    limits: FrameLimits,
) -> Result<Option<Map<String, Value>>, Gone> {
    let mut decoder = MessageDecoder::new(Role::Server, limits);
    loop {
        while let Some(message) = decoder.decode(buf).map_err(|_| Gone)? {
            let answer = match message {
                Message::Text(text) => match connect_step(&text)? {
                    Step::Connected(auth) => return Ok(auth),
                    Step::Answer(text) => frame::encode_frame(Opcode::Text, text.as_bytes()),
                    Step::Wait => continue,
                },
                Message::Ping(payload) => frame::encode_frame(Opcode::Pong, &payload),
                Message::Pong(_) => continue,
                Message::Binary(_) | Message::Close(_) => return Err(Gone),
            };
            if stream.write_all(answer.to_vec()).await.0.is_err() {
                return Err(Gone);
            }
        }
        match super::io::read_more(stream, buf, 256).await {
            Ok(0) | Err(_) => return Err(Gone),
            Ok(_) => {}
        }
    }
}

/// What one text frame before the `CONNECT` asks for.
pub(super) enum Step {
    /// The `CONNECT` to `/`, with its `auth`.
    Connected(Option<Map<String, Value>>),
    /// Send this packet and keep waiting.
    Answer(String),
    /// Nothing to send.
    Wait,
}

/// Reads one packet a client sent before its `CONNECT` was admitted.
pub(super) fn connect_step(text: &[u8]) -> Result<Step, Gone> {
    let text = std::str::from_utf8(text).map_err(|_| Gone)?;
    match EnginePacket::decode(text).map_err(|_| Gone)? {
        EnginePacket::Ping(data) => Ok(Step::Answer(EnginePacket::Pong(data).encode())),
        EnginePacket::Pong(_) | EnginePacket::Noop => Ok(Step::Wait),
        EnginePacket::Message(message) => {
            let packet = Packet::decode(message).map_err(|_| Gone)?;
            match packet.body {
                Body::Connect(auth) if packet.namespace == DEFAULT_NAMESPACE => {
                    Ok(Step::Connected(auth))
                }
                Body::Connect(_) => {
                    let refused =
                        encode_connect_error(&packet.namespace, "Invalid namespace", None);
                    Ok(Step::Answer(EnginePacket::Message(&refused).encode()))
                }
                _ => Err(Gone),
            }
        }
        _ => Err(Gone),
    }
}

/// A new random id (20 characters of base64url), so that no one can guess another client's;
/// `None` if the system's generator failed, when no id is handed out rather than a guessable
/// one.
pub(super) fn random_id() -> Option<String> {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; SID_BYTES];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A random id that names its shard, `{shard}.{random}`: long-polling session ids and
/// recovery `pid`s, by which a request reaching another shard finds its way.
pub(super) fn sharded_id(shard: ShardId) -> Option<String> {
    random_id().map(|random| format!("{shard}.{random}"))
}

/// The shard a [`sharded_id`] names, when it is one of this server's `shard_count`.
pub(super) fn shard_of(id: &str, shard_count: usize) -> Option<ShardId> {
    let shard: ShardId = id.split_once('.')?.0.parse().ok()?;
    (shard < shard_count).then_some(shard)
}
