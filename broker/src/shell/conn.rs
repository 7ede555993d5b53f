//! One TCP connection: read the request head, then either serve HTTP (keep-alive) or run a
//! WebSocket with a reader loop and a writer task.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;

use super::iovec::FrameBatch;
use super::runtime::{ShardRt, Signal};
use crate::core::auth::jwt::looks_like_token;
use crate::core::http::request::{
    BodyLength, ChunkedDecoder, HeadError, HeadLimits, RequestHead, parse_head,
};
use crate::core::http::response;
use crate::core::ids::SocketId;
use crate::core::shard::{Accept, ConnKey, ConnectRequest, OutputState};
use crate::core::ws::handshake::{is_websocket_upgrade, switching_protocols, validate_upgrade};
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

/// Serves one accepted TCP connection until it closes.
pub async fn serve(rt: Rc<ShardRt>, stream: TcpStream, remote: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let config = &rt.state.config;
    let limits = HeadLimits {
        max_head_bytes: config.max_request_head_bytes,
        max_headers: config.max_request_headers,
    };
    let handshake_timeout = config.handshake_timeout;
    let mut stream = stream;
    let mut buf = BytesMut::with_capacity(INITIAL_READ_BYTES);
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
        if is_websocket_upgrade(&head) {
            websocket(rt, stream, head, buf, remote).await;
            return;
        }
        if !serve_http(&rt, &mut stream, &head, &mut buf, remote.ip()).await {
            return;
        }
    }
}

async fn read_head(
    stream: &mut TcpStream,
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

/// Appends what the socket has to `buf`, growing it when it is full.
async fn read_more<R: AsyncReadRent>(reader: &mut R, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < INITIAL_READ_BYTES / 2 {
        buf.reserve(buf.capacity().max(INITIAL_READ_BYTES));
    }
    let owned = std::mem::take(buf);
    let len = owned.len();
    let (result, slice) = reader.read(owned.slice_mut(len..)).await;
    *buf = slice.into_inner();
    result
}

/// Serves one HTTP request; returns whether the connection stays open for another.
async fn serve_http(
    rt: &Rc<ShardRt>,
    stream: &mut TcpStream,
    head: &RequestHead,
    buf: &mut BytesMut,
    remote: std::net::IpAddr,
) -> bool {
    let shard_metrics = &rt.all_metrics[rt.core().id()];
    inc(&shard_metrics.http_requests);
    let max_body = rt.state.config.max_http_body_bytes;
    let body = match read_body(stream, buf, head, max_body).await {
        Ok(body) => body,
        Err((status, message)) => {
            let _ = stream
                .write_all(response::json_error(status, message, false))
                .await;
            return false;
        }
    };
    let clock = Clock {
        now: Instant::now(),
        unix_secs: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let view = ServerView {
        metrics: &rt.all_metrics,
        driver: rt.driver.name(),
        shutting_down: rt.shutting_down.get(),
        remote,
    };
    let reply = rt.with_core(|core| http::handle(core, &view, head, &body, &clock));
    let bytes = match reply {
        Reply::Now(bytes) => bytes,
        Reply::Later(mut later) => {
            let answers = rt.await_answers(&later.queries).await;
            let persisted = later
                .persist
                .take()
                .is_none_or(|write| rt.audit.persist_resource(write));
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

async fn read_body(
    stream: &mut TcpStream,
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
            Ok(buf.split_to(n).to_vec())
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

async fn websocket(
    rt: Rc<ShardRt>,
    mut stream: TcpStream,
    head: RequestHead,
    mut buf: BytesMut,
    remote: SocketAddr,
) {
    let upgrade = match validate_upgrade(&head) {
        Ok(upgrade) => upgrade,
        Err(err) => {
            let _ = stream.write_all(err.response()).await;
            return;
        }
    };
    // pusher-js can only prefix the path (`wsPath`), so a token may also come as
    // `/token/{jwt}/app/{key}`.
    let (path, path_token) = split_token_path(&head.path);
    let attempt = rt.with_core(|core| core.connection_attempt(&path, remote.ip(), Instant::now()));
    if let Err(retry) = attempt {
        let seconds = retry.as_secs().max(1).to_string();
        let response = response::json_error_with(
            429,
            "too many connection attempts from this address",
            &[("Retry-After", &seconds)],
            false,
        );
        let _ = stream.write_all(response).await;
        return;
    }
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
    let request = ConnectRequest {
        path: &path,
        protocol: protocol.as_deref(),
        origin: head.header("origin"),
        remote: remote.ip(),
        token,
        now_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let accepted = rt.with_core(|core| core.accept_websocket(&request, Instant::now()));
    let mut handshake = switching_protocols(&upgrade.accept, protocol_token.map(String::as_str));
    let key = match accepted {
        Accept::Open(key) => key,
        Accept::Refused(frames, code) => {
            tracing::debug!(%remote, code = code.code(), "websocket refused");
            handshake.extend_from_slice(&frames);
            let _ = stream.write_all(handshake).await;
            let _ = stream.shutdown().await;
            return;
        }
    };
    let Some(socket_id) = rt.core().socket_id(key) else {
        return;
    };
    let signal = Rc::new(Signal::default());
    rt.register_writer(key, signal.clone());
    let fd = stream.as_raw_fd();
    let (mut reader, writer) = stream.into_split();
    monoio::spawn(write_loop(
        rt.clone(),
        writer,
        key,
        socket_id,
        signal.clone(),
        handshake,
        fd,
    ));

    let metrics = rt.all_metrics[rt.core().id()].clone();
    loop {
        if !buf.is_empty() {
            rt.with_core(|core| core.handle_input(key, socket_id, &mut buf, Instant::now()));
        }
        if buf.is_empty() && buf.capacity() > KEEP_READ_BYTES {
            buf = BytesMut::with_capacity(INITIAL_READ_BYTES);
        }
        match read_more(&mut reader, &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => add(&metrics.bytes_in, n as u64),
        }
    }
    rt.with_core(|core| core.handle_disconnect(key, socket_id, Instant::now()));
    rt.unregister_writer(key, &signal);
    signal.notify();
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
async fn await_peer_close(rt: &ShardRt, key: ConnKey, socket_id: SocketId, signal: &Signal) {
    let deadline = Instant::now() + CLOSE_GRACE;
    while !rt.core().peer_closed(key, socket_id) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || monoio::time::timeout(left, signal.wait()).await.is_err() {
            break;
        }
    }
}

/// Writes a whole batch with `writev`, resuming after partial writes without allocating
/// (monoio's `write_vectored_all` copies the iovec array on every call).
async fn write_batch<W: AsyncWriteRent>(
    writer: &mut W,
    mut batch: FrameBatch,
) -> std::io::Result<FrameBatch> {
    while batch.byte_len() > 0 {
        let (result, returned) = writer.writev(batch).await;
        batch = returned;
        match result {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => batch.advance(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(batch)
}

async fn write_loop<W: AsyncWriteRent>(
    rt: Rc<ShardRt>,
    mut writer: W,
    key: ConnKey,
    socket_id: SocketId,
    signal: Rc<Signal>,
    handshake: Vec<u8>,
    fd: i32,
) {
    let metrics = rt.all_metrics[rt.core().id()].clone();
    let (result, _) = writer.write_all(handshake).await;
    if result.is_ok() {
        let mut frames = Vec::with_capacity(MAX_FRAMES_PER_WRITE);
        let mut batch = FrameBatch::default();
        loop {
            let state = rt.core().take_output(
                key,
                socket_id,
                &mut frames,
                MAX_FRAMES_PER_WRITE,
                MAX_BYTES_PER_WRITE,
            );
            if frames.is_empty() {
                if state == OutputState::Close {
                    await_peer_close(&rt, key, socket_id, &signal).await;
                    break;
                }
                signal.wait().await;
                continue;
            }
            let written = if frames.len() == 1 {
                let frame = frames.pop().unwrap_or_default();
                let len = frame.len();
                match monoio::time::timeout(WRITE_STALL, writer.write_all(frame)).await {
                    Ok((Ok(_), _)) => Some(len),
                    _ => None,
                }
            } else {
                batch.fill(&mut frames);
                let len = batch.byte_len();
                match monoio::time::timeout(WRITE_STALL, write_batch(&mut writer, batch)).await {
                    Ok(Ok(returned)) => {
                        batch = returned;
                        batch.clear();
                        Some(len)
                    }
                    _ => {
                        batch = FrameBatch::default();
                        None
                    }
                }
            };
            let Some(len) = written else { break };
            inc(&metrics.write_calls);
            add(&metrics.bytes_out, len as u64);
            if state == OutputState::Close {
                await_peer_close(&rt, key, socket_id, &signal).await;
                break;
            }
        }
    }
    // Both directions, so that the reader (waiting in read) sees end-of-stream and cleans up.
    // SAFETY: the read half still owns the fd, so it is open; shutdown(2) has no memory effects.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
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
