//! One TCP connection: read the request head, then either serve HTTP (keep-alive) or run a
//! WebSocket with a reader loop and a writer task.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::io::{self, write_batch};
use super::runtime::{ShardRt, Writer};
use super::tls::{self, Transport};
use super::verify::Forwarded;
use crate::core::app::App;
use crate::core::auth::backend::Verdict;
use crate::core::auth::jwt::looks_like_token;
use crate::core::http::request::{
    BodyLength, ChunkedDecoder, HeadError, HeadLimits, RequestHead, parse_head,
};
use crate::core::http::response;
use crate::core::ids::{AppIdx, SocketId};
use crate::core::proxy::header::{Parsed, ProxyHeader, ProxyHeaderError};
use crate::core::proxy::{self, TrustedProxies};
use crate::core::shard::{Accept, ConnKey, ConnectRequest, Credentials, Ended, OutputState, Taken};
use crate::core::wire::Wire;
use crate::core::ws::handshake::{
    UpgradeRequest, is_websocket_upgrade, switching_protocols, validate_upgrade,
};
use crate::http::{self, Clock, Reply, ServerView};
use crate::metrics::{add, inc};

/// First read buffer of a connection; grown on demand, so idle sockets stay small.
const INITIAL_READ_BYTES: usize = 512;
/// Read buffers above this are dropped once empty rather than kept for an idle socket.
const KEEP_READ_BYTES: usize = 16 * 1024;
/// Most frames handed to one `writev`.
const MAX_FRAMES_PER_WRITE: usize = 64;
/// Most bytes handed to one `writev`.
const MAX_BYTES_PER_WRITE: usize = 256 * 1024;
/// A write that makes no progress for this long means the peer is gone or not reading.
const WRITE_STALL: Duration = Duration::from_secs(10);
/// After sending a close frame, how long to wait for the peer's before closing the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

enum ReadHeadError {
    Closed,
    Head(HeadError),
}

/// Serves one accepted TCP connection until it closes: its PROXY protocol header first when
/// `server.proxy_protocol` is on, then plain or TLS (after its handshake) as configured.
pub async fn serve(rt: Rc<ShardRt>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let config = &rt.state.shared.config;
    let mut buf = BytesMut::with_capacity(INITIAL_READ_BYTES);
    let remote = if config.proxy_protocol {
        let header = read_proxy_header(&mut stream, &mut buf, &config.trusted_proxies, peer.ip());
        match monoio::time::timeout(config.handshake_timeout, header).await {
            Ok(Ok(remote)) => remote,
            Ok(Err(refusal)) => {
                tracing::debug!(%peer, %refusal, "connection refused before its PROXY header");
                let body = response::json_error(refusal.status(), &refusal.to_string(), false);
                let _ = stream.write_all(body).await;
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "PROXY header not received in time");
                return;
            }
        }
    } else {
        peer.ip()
    };
    let Some(certs) = &rt.state.tls else {
        return serve_stream(rt, stream, buf, remote).await;
    };
    let handshake = tls::accept(stream, certs.current(), buf);
    match monoio::time::timeout(config.handshake_timeout, handshake).await {
        Ok(Ok(stream)) => {
            let buf = BytesMut::with_capacity(INITIAL_READ_BYTES);
            serve_stream(rt, stream, buf, remote).await;
        }
        Ok(Err(err)) => tracing::debug!(%remote, %err, "TLS handshake failed"),
        Err(_) => tracing::debug!(%remote, "TLS handshake not completed in time"),
    }
}

/// Why a connection was refused before its PROXY protocol header was accepted.
#[derive(Debug, thiserror::Error)]
enum ProxyRefusal {
    /// The peer is not in `server.trusted_proxies`, so it may not speak for anyone.
    #[error("connections must come through a trusted proxy")]
    Untrusted,
    /// The header is missing or malformed.
    #[error(transparent)]
    Header(#[from] ProxyHeaderError),
    /// The connection ended before the header did.
    #[error("the connection ended inside its PROXY protocol header")]
    Ended,
}

impl ProxyRefusal {
    fn status(&self) -> u16 {
        match self {
            Self::Untrusted => 403,
            Self::Header(_) | Self::Ended => 400,
        }
    }
}

/// Reads the PROXY protocol header a trusted proxy sends first and returns the client it
/// names (or `peer`, for the proxy's own connections); the bytes after it stay in `buf`.
async fn read_proxy_header(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    trusted: &TrustedProxies,
    peer: IpAddr,
) -> Result<IpAddr, ProxyRefusal> {
    if !trusted.contains(peer) {
        return Err(ProxyRefusal::Untrusted);
    }
    loop {
        if let Parsed::Complete { header, len } = proxy::header::parse(buf)? {
            buf.advance(len);
            return Ok(match header {
                ProxyHeader::Client(client) => client.ip().to_canonical(),
                ProxyHeader::Local => peer,
            });
        }
        match read_more(stream, buf).await {
            Ok(0) | Err(_) => return Err(ProxyRefusal::Ended),
            Ok(_) => {}
        }
    }
}

/// Serves a connection's requests until it closes or becomes a WebSocket.
async fn serve_stream<S: Transport>(
    rt: Rc<ShardRt>,
    mut stream: S,
    mut buf: BytesMut,
    remote: IpAddr,
) {
    let config = &rt.state.shared.config;
    let limits = HeadLimits {
        max_head_bytes: config.max_request_head_bytes,
        max_headers: config.max_request_headers,
    };
    let handshake_timeout = config.handshake_timeout;
    loop {
        // The in-flight read owns the buffer when the timeout cancels it, so whether a request
        // had started is kept outside the read.
        let mut started = !buf.is_empty();
        let head = match monoio::time::timeout(
            handshake_timeout,
            read_head(&mut stream, &mut buf, &limits, &mut started),
        )
        .await
        {
            Err(_) => {
                if started {
                    let body =
                        response::json_error(408, "request head not received in time", false);
                    let _ = stream.write_all(body).await;
                }
                return;
            }
            Ok(Err(ReadHeadError::Closed)) => return,
            Ok(Err(ReadHeadError::Head(err))) => {
                let _ = stream
                    .write_all(response::json_error(err.status(), &err.to_string(), false))
                    .await;
                return;
            }
            Ok(Ok(head)) => head,
        };
        // Per request: a proxy's keep-alive connection carries many clients' requests.
        let client = proxy::client_address(&config.trusted_proxies, remote, &head);
        let socketio = rt
            .state
            .shared
            .apps
            .by_socketio_path(&head.path)
            .map(|a| a.idx);
        if is_websocket_upgrade(&head) {
            match socketio {
                Some(app) => super::socketio::websocket(rt, stream, head, buf, client, app).await,
                None => websocket(rt, stream, head, buf, client).await,
            }
            return;
        }
        let served = match socketio {
            Some(app) => serve_polling(&rt, &mut stream, &head, &mut buf, client, app).await,
            None => serve_http(&rt, &mut stream, &head, &mut buf, client).await,
        };
        if !served {
            return;
        }
    }
}

async fn read_head<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut BytesMut,
    limits: &HeadLimits,
    started: &mut bool,
) -> Result<RequestHead, ReadHeadError> {
    loop {
        if !buf.is_empty()
            && let Some(head) = parse_head(buf, limits).map_err(ReadHeadError::Head)?
        {
            buf.advance(head.head_len);
            return Ok(head);
        }
        match read_more(stream, buf).await {
            Ok(0) | Err(_) => return Err(ReadHeadError::Closed),
            Ok(_) => *started = true,
        }
    }
}

/// Appends what the socket has to `buf`, growing it when it is nearly full.
async fn read_more<R: AsyncReadRent>(reader: &mut R, buf: &mut BytesMut) -> std::io::Result<usize> {
    io::read_more(reader, buf, INITIAL_READ_BYTES / 2).await
}

/// Serves one HTTP request; returns whether the connection stays open for another.
async fn serve_http<S: AsyncReadRent + AsyncWriteRent>(
    rt: &Rc<ShardRt>,
    stream: &mut S,
    head: &RequestHead,
    buf: &mut BytesMut,
    remote: IpAddr,
) -> bool {
    let Some(body) = request_body(rt, stream, head, buf).await else {
        return false;
    };
    let clock = Clock {
        now: Instant::now(),
        unix_secs: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let view = ServerView {
        server: &rt.state,
        metrics: &rt.all_metrics,
        driver: rt.driver.name(),
        shutting_down: rt.shutting_down.get(),
        remote,
        tls: rt.state.tls.is_some(),
    };
    let reply = rt.with_core(|core| http::handle(core, &view, head, &body, &clock));
    let bytes = match reply {
        Reply::Now(bytes) => bytes,
        Reply::Live => {
            live(rt, stream).await;
            return false;
        }
        Reply::Later(mut later) => {
            let answers = rt.await_answers(&later.queries).await;
            let persisted = later
                .persist
                .take()
                .is_none_or(|write| rt.audit.persist(write));
            if persisted {
                http::finish(later, answers)
            } else {
                response::json_error(
                    503,
                    "the store is busy; retry the request",
                    later.keep_alive,
                )
            }
        }
        Reply::Inbox(call) => super::inbox::serve(rt, head, call, remote).await,
        Reply::Audit { query, keep_alive } => match rt.audit.query(query).recv().await {
            Ok(Ok(page)) => {
                let body = serde_json::to_vec(&page).unwrap_or_default();
                response::response(200, "application/json", &body, &[], keep_alive)
            }
            Ok(Err(message)) => response::json_error(400, &message, keep_alive),
            Err(_) => response::json_error(503, "the audit log is not available", keep_alive),
        },
    };
    let (result, _) = stream.write_all(bytes).await;
    result.is_ok() && head.keep_alive && !rt.shutting_down.get()
}

/// Counts an HTTP request and reads its body; `None`: the body was refused (too large,
/// cut short), the answer is written and the connection is to be closed.
async fn request_body<S: AsyncReadRent + AsyncWriteRent>(
    rt: &Rc<ShardRt>,
    stream: &mut S,
    head: &RequestHead,
    buf: &mut BytesMut,
) -> Option<Vec<u8>> {
    inc(&rt.all_metrics[rt.core().id()].http_requests);
    let max_body = rt.state.shared.config.max_http_body_bytes;
    match read_body(stream, buf, head, max_body).await {
        Ok(body) => Some(body),
        Err((status, message)) => {
            let _ = stream
                .write_all(response::json_error(status, message, false))
                .await;
            None
        }
    }
}

/// Serves one Engine.IO long-polling request; returns whether the connection stays open.
async fn serve_polling<S: AsyncReadRent + AsyncWriteRent>(
    rt: &Rc<ShardRt>,
    stream: &mut S,
    head: &RequestHead,
    buf: &mut BytesMut,
    remote: IpAddr,
    app: AppIdx,
) -> bool {
    let Some(body) = request_body(rt, stream, head, buf).await else {
        return false;
    };
    let answer = super::polling::serve(rt, head, body, remote, app).await;
    let (result, _) = stream.write_all(answer).await;
    result.is_ok() && head.keep_alive && !rt.shutting_down.get()
}

/// Counts what a write (or a long-poll answer) handed to the client: bytes, and the
/// delivery latency of its events.
pub(super) fn record_written(rt: &ShardRt, taken: &Taken, len: usize) {
    let metrics = &rt.all_metrics[rt.core().id()];
    inc(&metrics.write_calls);
    add(&metrics.bytes_out, len as u64);
    if let Some(oldest) = taken.oldest_event {
        // Every event in the write is counted with the oldest one's latency: an upper
        // bound, exact for the common single-event write.
        metrics
            .delivery_latency
            .record(oldest.elapsed(), taken.events as u64);
    }
}

/// Streams the dashboard's overview once a second as server-sent events, until the client
/// goes away (the next write fails) or the server shuts down.
async fn live<S: AsyncWriteRent>(rt: &Rc<ShardRt>, stream: &mut S) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                Connection: close\r\nX-Accel-Buffering: no\r\n\r\n";
    if stream.write_all(head.as_bytes().to_vec()).await.0.is_err() {
        return;
    }
    let mut previous_latency = [0; crate::metrics::LATENCY_BUCKETS];
    while !rt.shutting_down.get() {
        let overview = http::admin_overview(
            &rt.core(),
            &rt.all_metrics,
            &rt.state.inbox_metrics,
            &mut previous_latency,
        );
        let event = format!(
            "data: {}\n\n",
            serde_json::to_string(&overview).unwrap_or_default()
        );
        if stream.write_all(event.into_bytes()).await.0.is_err() {
            return;
        }
        monoio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn read_body<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut BytesMut,
    head: &RequestHead,
    max_body: usize,
) -> Result<Vec<u8>, (u16, &'static str)> {
    match head.body {
        BodyLength::Empty => Ok(Vec::new()),
        BodyLength::ContentLength(n) => {
            if n > max_body {
                return Err((413, "request body is larger than the server accepts"));
            }
            while buf.len() < n {
                match read_more(stream, buf).await {
                    Ok(0) | Err(_) => return Err((400, "request body ended early")),
                    Ok(_) => {}
                }
            }
            // Copied out and advanced past: splitting would turn the buffer into a shared one.
            let body = buf[..n].to_vec();
            buf.advance(n);
            Ok(body)
        }
        BodyLength::Chunked => {
            let mut decoder = ChunkedDecoder::new(max_body);
            let mut body = Vec::new();
            loop {
                let (used, done) = decoder
                    .decode(buf, &mut body)
                    .map_err(|e| (e.status(), "malformed or oversized chunked body"))?;
                buf.advance(used);
                if done {
                    return Ok(body);
                }
                match read_more(stream, buf).await {
                    Ok(0) | Err(_) => return Err((400, "request body ended early")),
                    Ok(_) => {}
                }
            }
        }
    }
}

async fn websocket<S: Transport>(
    rt: Rc<ShardRt>,
    mut stream: S,
    head: RequestHead,
    buf: BytesMut,
    remote: IpAddr,
) {
    // pusher-js can only prefix the path (`wsPath`), so a token may also come as
    // `/token/{jwt}/app/{key}`.
    let (path, path_token) = split_token_path(&head.path);
    let Some(upgrade) = upgrade(&rt, &mut stream, &head, Wire::Pusher, &path, remote).await else {
        return;
    };
    let protocol = head.query_param("protocol");
    // Browsers cannot set headers on a WebSocket, so a token may ride in the query or as a
    // subprotocol (which must then be echoed); other clients may use Authorization.
    let query_token = head.query_param("token");
    let protocol_token = upgrade.protocols.iter().find(|p| looks_like_token(p));
    let bearer = head
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let token = query_token
        .as_deref()
        .or(path_token)
        .or(protocol_token.map(String::as_str))
        .or(bearer);
    let app = Wire::Pusher.app_of_path(&rt.state.shared.apps, &path);
    let verification = Verification::run(&rt, app, &head, token).await;
    let request = ConnectRequest {
        wire: Wire::Pusher,
        path: &path,
        protocol: protocol.as_deref(),
        origin: head.header("origin"),
        remote,
        credentials: verification.credentials(token),
        now_unix: unix_now(),
        recovery_pid: None,
    };
    let accepted = rt.with_core(|core| core.accept_websocket(&request, Instant::now()));
    let mut handshake = switching_protocols(&upgrade.accept, protocol_token.map(String::as_str));
    match accepted {
        Accept::Open(key) => run(rt, stream, key, handshake, buf, remote).await,
        Accept::Refused(frames, fault) => {
            tracing::debug!(%remote, ?fault, "websocket refused");
            handshake.extend_from_slice(&frames);
            let _ = stream.write_all(handshake).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// The checks every WebSocket upgrade passes before its wire looks at it: the server is not
/// draining, the request is a valid RFC 6455 upgrade, and the address is within the app's
/// connection attempt rate. `None`: refused, and the answer is written.
pub(super) async fn upgrade<S: Transport>(
    rt: &Rc<ShardRt>,
    stream: &mut S,
    head: &RequestHead,
    wire: Wire,
    path: &str,
    remote: IpAddr,
) -> Option<UpgradeRequest> {
    if rt.shutting_down.get() {
        let _ = stream
            .write_all(http::refuse_upgrade_while_draining())
            .await;
        return None;
    }
    let upgrade = match validate_upgrade(head) {
        Ok(upgrade) => upgrade,
        Err(err) => {
            let _ = stream.write_all(err.response()).await;
            return None;
        }
    };
    let attempt = rt.with_core(|core| core.connection_attempt(wire, path, remote, Instant::now()));
    if let Err(retry) = attempt {
        let seconds = retry.as_secs().max(1).to_string();
        let response = response::json_error_with(
            429,
            "too many connection attempts from this address",
            &[("Retry-After", &seconds)],
            false,
        );
        let _ = stream.write_all(response).await;
        return None;
    }
    Some(upgrade)
}

/// Wall-clock seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What an app's backend said about the credentials of an upgrade request
/// (`[apps.token_verification]`), asked off the shard before the shard decides.
pub(super) struct Verification {
    asked: Option<(Verdict, Forwarded)>,
}

impl Verification {
    /// Asks the backend of `app`, if it verifies connections and the request carries the
    /// credentials it forwards; a JWT, where the app also takes those, goes first.
    pub(super) async fn run(
        rt: &ShardRt,
        app: Option<&App>,
        head: &RequestHead,
        token: Option<&str>,
    ) -> Self {
        let verifier = app
            .filter(|app| app.config.jwt.is_none() || token.is_none())
            .and_then(|app| rt.state.verifiers.get(app.idx));
        let asked = match verifier.and_then(|v| v.credentials(head).map(|f| (v, f))) {
            Some((verifier, forwarded)) => Some((verifier.verify(&forwarded).await, forwarded)),
            None => None,
        };
        Self { asked }
    }

    /// The credentials the shard decides on: the backend's verdict, else `token`.
    pub(super) fn credentials<'a>(&'a self, token: Option<&'a str>) -> Credentials<'a> {
        match &self.asked {
            Some((verdict, forwarded)) => Credentials::Backend {
                verdict,
                requested_actor: forwarded.requested_actor.as_deref(),
            },
            None => Credentials::Token(token),
        }
    }
}

/// Runs an accepted connection: writes `first` (the 101, for a Pusher socket), then hands
/// the socket to a reader and a writer task; `buf` holds what was read past the handshake.
pub(super) async fn run<S: Transport>(
    rt: Rc<ShardRt>,
    mut stream: S,
    key: ConnKey,
    first: Vec<u8>,
    buf: BytesMut,
    remote: IpAddr,
) {
    let opened = {
        let core = rt.core();
        core.socket_id(key).zip(core.conn_app(key))
    };
    let Some((socket_id, accepted_app)) = opened else {
        return;
    };
    tracing::info!(
        socket_id = %socket_id,
        app = %app_key(&rt, accepted_app),
        client = %remote,
        "connection opened"
    );
    // The 101 goes out before any frame: the writer starts only once it is written. A new
    // socket's send buffer is empty, so this write cannot stall.
    if !first.is_empty() {
        let (written, _) = stream.write_all(first).await;
        if written.is_err() {
            let ended = rt.with_core(|core| core.handle_disconnect(key, socket_id, Instant::now()));
            log_ended(&rt, ended);
            return;
        }
    }
    let writer = Rc::new(Writer::new(stream.fd()));
    rt.register_writer(key, writer.clone());
    let (reader, write_half) = stream.split();
    // Two small tasks for the connection's lifetime; this one, which carried the handshake's
    // state, ends here, so an idle connection costs only what they hold.
    monoio::spawn(write_loop(
        rt.clone(),
        write_half,
        key,
        socket_id,
        writer.clone(),
    ));
    monoio::spawn(read_loop(rt, reader, buf, key, socket_id, writer));
}

/// Reads frames until the peer or the writer closes the connection.
async fn read_loop<R: AsyncReadRent>(
    rt: Rc<ShardRt>,
    mut reader: R,
    mut buf: BytesMut,
    key: ConnKey,
    socket_id: SocketId,
    writer: Rc<Writer>,
) {
    let shard = rt.core().id();
    loop {
        if !buf.is_empty() {
            rt.with_core(|core| core.handle_input(key, socket_id, &mut buf, Instant::now()));
        }
        if buf.is_empty() && buf.capacity() > KEEP_READ_BYTES {
            buf = BytesMut::with_capacity(INITIAL_READ_BYTES);
        }
        match read_more(&mut reader, &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => add(&rt.all_metrics[shard].bytes_in, n as u64),
        }
    }
    let ended = rt.with_core(|core| core.handle_disconnect(key, socket_id, Instant::now()));
    log_ended(&rt, ended);
    rt.unregister_writer(key, &writer);
    writer.retire();
}

/// The key of app `app`, for logs.
fn app_key(rt: &ShardRt, app: AppIdx) -> String {
    rt.core().state().apps.get(app).config.key.clone()
}

/// The one line an operator reads per closed connection (never a body or a secret).
pub(super) fn log_ended(rt: &ShardRt, ended: Option<Ended>) {
    let Some(ended) = ended else { return };
    let app = app_key(rt, ended.app);
    let (closed_by, close_code) = match ended.close {
        Some(close) => (close.by.as_str(), Some(close.code)),
        None => ("connection lost", None),
    };
    tracing::info!(
        socket_id = %ended.socket_id,
        app = %app,
        client = %ended.remote,
        duration_ms = ended.lasted.as_millis() as u64,
        closed_by,
        close_code,
        "connection closed"
    );
}

/// Splits `/token/{jwt}/app/{key}` into `/app/{key}` and the token; other paths pass through.
fn split_token_path(path: &str) -> (std::borrow::Cow<'_, str>, Option<&str>) {
    match path
        .strip_prefix("/token/")
        .and_then(|rest| rest.split_once("/app/"))
    {
        Some((token, key)) if looks_like_token(token) => {
            (format!("/app/{key}").into(), Some(token))
        }
        _ => (path.into(), None),
    }
}

/// Our close frame is out: RFC 6455 §7.1.1 has the server close the TCP connection once the
/// peer has answered with its own close frame. Waits for that, or for [`CLOSE_GRACE`].
async fn await_peer_close(rt: &ShardRt, key: ConnKey, socket_id: SocketId, writer: &Writer) {
    writer.arm(CLOSE_GRACE);
    while !rt.core().peer_closed(key, socket_id) && !writer.expired() {
        writer.signal.wait().await;
    }
    writer.disarm();
}

/// Writes what the shard queues for the connection, coalescing queued frames into one
/// `writev`, until the connection closes. A write that stalls for [`WRITE_STALL`] ends it.
async fn write_loop<W: AsyncWriteRent>(
    rt: Rc<ShardRt>,
    mut sink: W,
    key: ConnKey,
    socket_id: SocketId,
    writer: Rc<Writer>,
) {
    let write_delay = rt.core().conn_app(key).map_or(Duration::ZERO, |app| {
        rt.state.shared.apps.get(app).config.write_delay
    });
    let closed_cleanly = loop {
        if writer.retired() {
            break false;
        }
        let mut frames = rt.lend_frames();
        let taken = rt.core().take_output(
            key,
            socket_id,
            &mut frames,
            MAX_FRAMES_PER_WRITE,
            MAX_BYTES_PER_WRITE,
        );
        let state = taken.state;
        if frames.is_empty() {
            rt.return_frames(frames);
            if state == OutputState::Close {
                await_peer_close(&rt, key, socket_id, &writer).await;
                break true;
            }
            writer.signal.wait().await;
            if !write_delay.is_zero() {
                // Woken by a first frame: let the frames right behind it join its write.
                // Boxed: a timer held in place would grow every connection's writer task
                // by its size (about 800 bytes per idle connection, measured), delay or not.
                Box::pin(monoio::time::sleep(write_delay)).await;
            }
            continue;
        }
        writer.arm(WRITE_STALL);
        let (result, len) = if frames.len() == 1 {
            let frame = frames.pop().unwrap_or_default();
            rt.return_frames(frames);
            let len = frame.len();
            (sink.write_all(frame).await.0.map(|_| ()), len)
        } else {
            let mut batch = rt.lend_batch();
            batch.fill(&mut frames);
            rt.return_frames(frames);
            let len = batch.byte_len();
            let (result, batch) = write_batch(&mut sink, batch).await;
            rt.return_batch(batch);
            (result, len)
        };
        writer.disarm();
        if result.is_err() {
            break false;
        }
        record_written(&rt, &taken, len);
        if taken.receipts {
            rt.with_core(|core| core.handle_written(key, socket_id, Instant::now()));
        }
        if state == OutputState::Close {
            await_peer_close(&rt, key, socket_id, &writer).await;
            break true;
        }
    };
    if closed_cleanly && !writer.expired() {
        // The transport's own goodbye (TLS: `close_notify`), bounded like any write.
        writer.arm(WRITE_STALL);
        let _ = sink.shutdown().await;
        writer.disarm();
    }
    // Both directions, so that the reader (waiting in read) sees end-of-stream and cleans up.
    writer.shutdown();
}

#[cfg(test)]
mod tests {
    use super::split_token_path;

    #[test]
    fn a_token_path_prefix_is_split_off_and_other_paths_pass_through() {
        let (path, token) = split_token_path("/token/aaa.bbb.ccc/app/key");
        assert_eq!((path.as_ref(), token), ("/app/key", Some("aaa.bbb.ccc")));
        for other in [
            "/app/key",
            "/token/not-a-jwt/app/key",
            "/token/a.b.c",
            "/elsewhere",
        ] {
            let (path, token) = split_token_path(other);
            assert_eq!((path.as_ref(), token), (other, None), "{other}");
        }
    }
}
