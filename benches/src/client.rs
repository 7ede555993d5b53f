//! A minimal async Pusher client and HTTP/1.1 client on monoio, using Ringcast's own codec.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::{Arc, OnceLock};

use bytes::{Buf, Bytes, BytesMut};
use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use ringcast::core::auth::api::signed_query;
use ringcast::core::auth::hmac_key;
use ringcast::core::wire::socketio::{ENGINE_PROTOCOL, frames, messages, packet};
use ringcast::core::ws::frame::{
    FrameLimits, Message, MessageDecoder, Opcode, Role, encode_client_frame,
};
use ringcast::shell::tls::TlsStream;
use rustls::ClientConnection;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde::{Deserialize, Serialize};

use crate::Target;

/// A connection to the server: plain TCP, or TLS when the target has `--tls-ca`.
pub enum Stream {
    /// `ws://`, `http://`.
    Plain(TcpStream),
    /// `wss://`, `https://`.
    Tls(Box<TlsStream<ClientConnection>>),
}

impl AsyncReadRent for Stream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.readv(buf).await,
            Stream::Tls(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for Stream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.write(buf).await,
            Stream::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.writev(buf).await,
            Stream::Tls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush().await,
            Stream::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
        }
    }
}

/// The client configuration for `--tls-ca` (built once: every connection shares it).
fn tls_config(ca: &std::path::Path) -> io::Result<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(config.clone());
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(io::Error::other)? {
        roots
            .add(cert.map_err(io::Error::other)?)
            .map_err(io::Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(CONFIG.get_or_init(|| Arc::new(config)).clone())
}

/// Opens a connection from `source` (if given) to the target: TCP, then the TLS handshake
/// when the target has `--tls-ca`.
pub async fn connect_from(target: &Target, source: Option<Ipv4Addr>) -> io::Result<Stream> {
    let tcp = connect_tcp(target, source).await?;
    let Some(ca) = &target.tls_ca else {
        return Ok(Stream::Plain(tcp));
    };
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    let conn = ClientConnection::new(tls_config(ca)?, name).map_err(io::Error::other)?;
    let tls = TlsStream::connect(tcp, conn)
        .await
        .map_err(io::Error::other)?;
    Ok(Stream::Tls(Box::new(tls)))
}

/// Opens a TCP connection from `source` (if given) to the target without blocking the
/// runtime: a non-blocking `connect`, then a wait for writability (at most 5 s).
async fn connect_tcp(target: &Target, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let host: Ipv4Addr = target
        .host
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "host must be an IPv4 address"))?;
    let remote = SocketAddr::V4(SocketAddrV4::new(host, target.port));
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    if let Some(source) = source {
        socket.bind(&SocketAddr::V4(SocketAddrV4::new(source, 0)).into())?;
    }
    match socket.connect(&remote.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    socket.set_nodelay(true)?;
    let probe = socket.try_clone()?;
    let stream = TcpStream::from_std(socket.into())?;
    match monoio::time::timeout(Duration::from_secs(5), stream.writable(false)).await {
        Ok(result) => result?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
    match probe.take_error()? {
        Some(err) => Err(err),
        None => Ok(stream),
    }
}

async fn read_more(stream: &mut Stream, buf: &mut BytesMut) -> io::Result<usize> {
    ringcast::shell::io::read_more(stream, buf, 4096).await
}

/// Reads until `buf` holds a whole HTTP response head; returns its length.
async fn read_head(stream: &mut Stream, buf: &mut BytesMut) -> io::Result<usize> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(end + 4);
        }
        if read_more(stream, buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a response head",
            ));
        }
    }
}

/// A client WebSocket connection: the upgrade, masked frames out, whole messages in. The
/// wire protocols' connections below are made of one.
pub struct WsConn {
    stream: Stream,
    buf: BytesMut,
    decoder: MessageDecoder,
}

impl WsConn {
    /// Upgrades `stream` with `GET {path_and_query}`; a status other than 101 is an error.
    async fn upgrade(
        mut stream: Stream,
        target: &Target,
        path_and_query: &str,
    ) -> io::Result<Self> {
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {}:{}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
            target.host, target.port
        );
        let (result, _) = stream.write_all(request.into_bytes()).await;
        result?;
        let mut buf = BytesMut::with_capacity(4096);
        let head_end = read_head(&mut stream, &mut buf).await?;
        if !buf.starts_with(b"HTTP/1.1 101") {
            return Err(io::Error::other("upgrade refused"));
        }
        buf.advance(head_end);
        let limits = FrameLimits {
            max_frame_bytes: 1 << 24,
            max_message_bytes: 1 << 24,
        };
        Ok(Self {
            stream,
            buf,
            decoder: MessageDecoder::new(Role::Client, limits),
        })
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        let frame = encode_client_frame(Opcode::Text, text.as_bytes(), fastish_mask(), true);
        let (result, _) = self.stream.write_all(frame).await;
        result.map(|_| ())
    }

    /// Completes a closing handshake: sends close 1000 and waits (up to a second) for the
    /// server's close frame.
    pub async fn close(mut self) -> io::Result<()> {
        let frame =
            encode_client_frame(Opcode::Close, &1000u16.to_be_bytes(), fastish_mask(), true);
        let (result, _) = self.stream.write_all(frame).await;
        result?;
        let echo = async {
            loop {
                match self.decoder.decode(&mut self.buf) {
                    Ok(Some(Message::Close(_))) | Err(_) => return,
                    Ok(Some(_)) => continue,
                    Ok(None) => {}
                }
                if !matches!(read_more(&mut self.stream, &mut self.buf).await, Ok(n) if n > 0) {
                    return;
                }
            }
        };
        let _ = monoio::time::timeout(Duration::from_secs(1), echo).await;
        Ok(())
    }

    /// The next text message; `None` when the server closed.
    pub async fn next_text(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(Message::Text(text))) => return Ok(Some(text)),
                Ok(Some(Message::Close(_))) => return Ok(None),
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(err) => return Err(io::Error::other(err.to_string())),
            }
            if read_more(&mut self.stream, &mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

/// A Pusher WebSocket connection.
pub struct PusherConn {
    ws: WsConn,
}

impl PusherConn {
    /// Upgrades `stream` to a Pusher connection and returns it with its socket id.
    pub async fn open(stream: Stream, target: &Target) -> io::Result<(Self, String)> {
        let path = format!(
            "/app/{}?protocol=7&client=ringcast-bench&version=0.1",
            target.key
        );
        let mut conn = Self {
            ws: WsConn::upgrade(stream, target, &path).await?,
        };
        let hello = conn
            .next_text()
            .await?
            .ok_or_else(|| io::Error::other("closed before connection_established"))?;
        let value: serde_json::Value = serde_json::from_slice(&hello).map_err(io::Error::other)?;
        let data: serde_json::Value = serde_json::from_str(value["data"].as_str().unwrap_or("{}"))
            .map_err(io::Error::other)?;
        let socket_id = data["socket_id"].as_str().unwrap_or_default().to_owned();
        Ok((conn, socket_id))
    }

    /// Subscribes to `channel` and waits for `pusher_internal:subscription_succeeded`.
    /// `auth` is the `(auth, channel_data)` of a private or presence channel (`channel_data`
    /// may be empty). A `subscription_error` or `pusher:error` is an error.
    pub async fn subscribe(&mut self, channel: &str, auth: Option<(&str, &str)>) -> io::Result<()> {
        let mut data = serde_json::json!({ "channel": channel });
        if let Some((auth, channel_data)) = auth {
            data["auth"] = auth.into();
            if !channel_data.is_empty() {
                data["channel_data"] = channel_data.into();
            }
        }
        let subscribe = serde_json::json!({ "event": "pusher:subscribe", "data": data });
        self.send_text(&subscribe.to_string()).await?;
        loop {
            let text = self
                .next_text()
                .await?
                .ok_or_else(|| io::Error::other("closed while subscribing"))?;
            let has = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
            if has(b"pusher_internal:subscription_succeeded") {
                return Ok(());
            }
            if has(b"subscription_error") || has(b"pusher:error") {
                return Err(io::Error::other(format!(
                    "subscription refused: {}",
                    String::from_utf8_lossy(&text)
                )));
            }
        }
    }

    /// Sends a JSON text message.
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.ws.send_text(text).await
    }

    /// Completes a closing handshake (see [`WsConn::close`]).
    pub async fn close(self) -> io::Result<()> {
        self.ws.close().await
    }

    /// The next text message; `None` when the server closed.
    pub async fn next_text(&mut self) -> io::Result<Option<Bytes>> {
        self.ws.next_text().await
    }
}

/// A Socket.IO connection over Engine.IO 4's WebSocket transport, in the default namespace,
/// speaking laravel-echo-server's events.
pub struct SocketIoConn {
    ws: WsConn,
}

impl SocketIoConn {
    /// Upgrades `stream` at `path` (an app's `[apps.socketio] path`, e.g. `/socket.io`),
    /// reads the Engine.IO open packet, joins the default namespace (`40`) and returns the
    /// connection with the socket id the server's `CONNECT` names. A `CONNECT_ERROR` is an
    /// error.
    pub async fn open(stream: Stream, target: &Target, path: &str) -> io::Result<(Self, String)> {
        let path = format!(
            "{}/?EIO={ENGINE_PROTOCOL}&transport=websocket",
            path.trim_end_matches('/')
        );
        let mut conn = Self {
            ws: WsConn::upgrade(stream, target, &path).await?,
        };
        let open = conn
            .ws
            .next_text()
            .await?
            .ok_or_else(|| io::Error::other("closed before the Engine.IO open packet"))?;
        if !open.starts_with(b"0{") {
            return Err(io::Error::other(format!(
                "expected an Engine.IO open packet, got {}",
                String::from_utf8_lossy(&open)
            )));
        }
        conn.ws.send_text("40").await?;
        let connected = conn
            .next_message()
            .await?
            .ok_or_else(|| io::Error::other("closed before the Socket.IO CONNECT answer"))?;
        let Some(body) = connected.strip_prefix(b"40") else {
            return Err(io::Error::other(format!(
                "Socket.IO CONNECT refused: {}",
                String::from_utf8_lossy(&connected)
            )));
        };
        let value: serde_json::Value = serde_json::from_slice(body).map_err(io::Error::other)?;
        let socket_id = value["sid"].as_str().unwrap_or_default().to_owned();
        Ok((conn, socket_id))
    }

    /// Emits `subscribe` for a public `channel` and waits for `subscription_succeeded`; a
    /// `subscription_error` or `error` event is an error.
    pub async fn subscribe(&mut self, channel: &str) -> io::Result<()> {
        let request = serde_json::json!({ "channel": channel }).to_string();
        self.emit(messages::SUBSCRIBE, &[&request]).await?;
        loop {
            let text = self
                .next_event()
                .await?
                .ok_or_else(|| io::Error::other("closed while subscribing"))?;
            let name = event_name(&text).unwrap_or_default();
            if name == frames::SUBSCRIPTION_SUCCEEDED {
                return Ok(());
            }
            if name == frames::SUBSCRIPTION_ERROR || name == frames::ERROR {
                return Err(io::Error::other(format!(
                    "subscription refused: {}",
                    String::from_utf8_lossy(&text)
                )));
            }
        }
    }

    /// Sends the event `[name, ...args]`, each argument given as its JSON text.
    pub async fn emit(&mut self, name: &str, args_json: &[&str]) -> io::Result<()> {
        let packet = packet::encode_event(packet::DEFAULT_NAMESPACE, name, args_json);
        self.ws.send_text(&format!("4{packet}")).await
    }

    /// The next Socket.IO `EVENT` (the whole text, `42[...]`); `None` when the server closed
    /// or left the namespace.
    pub async fn next_event(&mut self) -> io::Result<Option<Bytes>> {
        while let Some(text) = self.next_message().await? {
            match text.get(..2) {
                Some(b"42") => return Ok(Some(text)),
                Some(b"41") => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }

    /// The next Engine.IO `message` packet (`4...`), answering the server's pings (`2`) on the
    /// way; `None` when the server closed (a WebSocket close or Engine.IO `1`).
    async fn next_message(&mut self) -> io::Result<Option<Bytes>> {
        while let Some(text) = self.ws.next_text().await? {
            match text.first() {
                Some(b'4') => return Ok(Some(text)),
                Some(b'2') => self.ws.send_text("3").await?,
                Some(b'1') => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }
}

/// The protocol the load generator's subscribers speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum Wire {
    /// Pusher protocol 7 at `/app/{key}`.
    #[default]
    #[serde(rename = "pusher")]
    Pusher,
    /// Socket.IO over Engine.IO 4's WebSocket transport at [`SOCKETIO_PATH`].
    #[value(name = "socketio")]
    #[serde(rename = "socketio")]
    SocketIo,
}

impl Wire {
    /// The protocol's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Wire::Pusher => "Pusher",
            Wire::SocketIo => "Socket.IO",
        }
    }
}

/// Where Socket.IO subscribers connect: the default `[apps.socketio] path`.
pub const SOCKETIO_PATH: &str = "/socket.io";

/// A subscriber speaking either [`Wire`].
pub enum Subscriber {
    /// Speaks Pusher.
    Pusher(PusherConn),
    /// Speaks Socket.IO.
    SocketIo(SocketIoConn),
}

impl Subscriber {
    /// Opens a connection speaking `wire` over `stream`.
    pub async fn open(stream: Stream, target: &Target, wire: Wire) -> io::Result<Self> {
        Ok(match wire {
            Wire::Pusher => Self::Pusher(PusherConn::open(stream, target).await?.0),
            Wire::SocketIo => {
                Self::SocketIo(SocketIoConn::open(stream, target, SOCKETIO_PATH).await?.0)
            }
        })
    }

    /// Subscribes to the public `channel` and waits for the server's confirmation.
    pub async fn subscribe(&mut self, channel: &str) -> io::Result<()> {
        match self {
            Self::Pusher(conn) => conn.subscribe(channel, None).await,
            Self::SocketIo(conn) => conn.subscribe(channel).await,
        }
    }

    /// The next message that may be an event (Socket.IO: an `EVENT`; Pusher: any text);
    /// `None` when the server closed.
    pub async fn next_event(&mut self) -> io::Result<Option<Bytes>> {
        match self {
            Self::Pusher(conn) => conn.next_text().await,
            Self::SocketIo(conn) => conn.next_event().await,
        }
    }
}

/// The name of a Socket.IO event text (`42["name",...]`).
fn event_name(text: &[u8]) -> Option<String> {
    let items: Vec<serde_json::Value> = serde_json::from_slice(text.strip_prefix(b"42")?).ok()?;
    Some(items.first()?.as_str()?.to_owned())
}

fn fastish_mask() -> [u8; 4] {
    // Masking keys need not be secret for a load generator; vary them anyway.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos.to_le_bytes()
}

/// An HTTP/1.1 connection for signed API calls, kept alive while the server allows; a
/// request on a connection the server has closed is retried once on a new one.
pub struct ApiConn {
    stream: Stream,
    buf: BytesMut,
    /// The server said `Connection: close`, or the connection failed.
    closed: bool,
}

impl ApiConn {
    /// Connects to the target.
    pub async fn connect(target: &Target) -> io::Result<Self> {
        Ok(Self {
            stream: connect_from(target, None).await?,
            buf: BytesMut::with_capacity(4096),
            closed: false,
        })
    }

    /// Sends a signed request and returns the status and body.
    pub async fn signed(
        &mut self,
        target: &Target,
        method: &str,
        path: &str,
        body: &str,
    ) -> io::Result<(u16, Bytes)> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let query = signed_query(
            method,
            path,
            &target.key,
            &hmac_key(&target.secret),
            now,
            body.as_bytes(),
            &[],
        );
        self.request(target, method, &format!("{path}?{query}"), body)
            .await
    }

    /// Sends a request and returns the status and body.
    pub async fn request(
        &mut self,
        target: &Target,
        method: &str,
        path: &str,
        body: &str,
    ) -> io::Result<(u16, Bytes)> {
        let reused = !self.closed;
        if self.closed {
            *self = Self::connect(target).await?;
        }
        match self.exchange(target, method, path, body).await {
            Err(_) if reused => {
                // The server may have closed an idle keep-alive connection: once more, afresh.
                *self = Self::connect(target).await?;
                self.exchange(target, method, path, body).await
            }
            other => other,
        }
    }

    async fn exchange(
        &mut self,
        target: &Target,
        method: &str,
        path: &str,
        body: &str,
    ) -> io::Result<(u16, Bytes)> {
        self.closed = true;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            target.host,
            target.port,
            body.len()
        );
        let (result, _) = self.stream.write_all(request.into_bytes()).await;
        result?;
        let head_end = read_head(&mut self.stream, &mut self.buf).await?;
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while self.buf.len() < head_end + length {
            if read_more(&mut self.stream, &mut self.buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed mid-body",
                ));
            }
        }
        self.closed = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(name, value)| {
                name.eq_ignore_ascii_case("connection")
                    && value.trim().eq_ignore_ascii_case("close")
            })
        });
        self.buf.advance(head_end);
        Ok((status, self.buf.split_to(length).freeze()))
    }
}
