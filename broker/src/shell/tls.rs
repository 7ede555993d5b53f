//! TLS on monoio's owned-buffer I/O, with rustls (the `ring` provider).
//!
//! A connection is a [`TlsStream`] over a `TcpStream` while its request head is read and its
//! handshake answered, then [`Transport::split`] into a read half (the reader task) and a
//! write half (the writer task). Both halves share the one rustls connection through an
//! `Rc<RefCell<_>>`: the shard's runtime is one thread, and no borrow is held across an
//! `await`, so the reader decrypting and the writer encrypting never overlap. Each half owns
//! its own ciphertext buffer, so a read and a write can be in flight on the socket together.
//!
//! Data the reader's side makes rustls want to send (an answer to a `KeyUpdate`) goes out
//! with the next write, which TLS 1.3 allows: the key update must precede the next
//! application data, and it does.
//!
//! [`CertStore`] holds the server's certificate; `SIGHUP` reloads it from its files, and a
//! bad new file is reported while the old certificate stays in use.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Read, Write};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, RwLock};

use bytes::{Buf, BytesMut};
use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ConnectionCommon, ServerConfig, ServerConnection, SideData};

use super::io::read_more;
use crate::core::http::response;
use crate::core::options::TlsFiles;
use crate::core::sync;

/// The first TLS record of a connection (a ClientHello) has this content type.
const HANDSHAKE_RECORD: u8 = 0x16;
/// First read of a ciphertext buffer; it grows on demand.
const INITIAL_CIPHER_BYTES: usize = 512;
/// Ciphertext buffers above this are dropped once empty, so idle sockets stay small.
const KEEP_BUFFER_BYTES: usize = 16 * 1024;

/// A connection after the TCP accept: plain, or TLS once its handshake is done. The
/// connection code is written once for both.
pub trait Transport: AsyncReadRent + AsyncWriteRent + 'static {
    /// What the reader task keeps.
    type ReadHalf: AsyncReadRent + 'static;
    /// What the writer task keeps.
    type WriteHalf: AsyncWriteRent + 'static;
    /// The socket, for shutting it down from outside the writer.
    fn fd(&self) -> RawFd;
    /// The two halves, for the reader and the writer task.
    fn split(self) -> (Self::ReadHalf, Self::WriteHalf);
    /// The socket itself, given up, when nothing but the kernel holds the connection's state
    /// (plain TCP), so another shard can take the connection over; else the transport back.
    fn into_plain(self) -> Result<RawFd, Self>
    where
        Self: Sized;
}

impl Transport for TcpStream {
    type ReadHalf = OwnedReadHalf<TcpStream>;
    type WriteHalf = OwnedWriteHalf<TcpStream>;

    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }

    fn split(self) -> (Self::ReadHalf, Self::WriteHalf) {
        self.into_split()
    }

    fn into_plain(self) -> Result<RawFd, Self> {
        Ok(std::os::fd::IntoRawFd::into_raw_fd(self))
    }
}

/// Why the server's certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or holds no PEM object of the kind needed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("certificate {cert} with key {key}: {source}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// The server's certificate and key, as a rustls configuration that `SIGHUP` can replace.
pub struct CertStore {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl CertStore {
    /// Loads the certificate chain and key named by `files`.
    pub fn load(files: &TlsFiles) -> Result<Self, CertError> {
        Ok(Self {
            current: RwLock::new(server_config(files)?),
            files: files.clone(),
        })
    }

    /// Reads the files again; on success new connections use the new certificate (live ones
    /// keep theirs). On failure the old certificate stays.
    pub fn reload(&self) -> Result<(), CertError> {
        let fresh = server_config(&self.files)?;
        *sync::write(&self.current) = fresh;
        Ok(())
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        sync::read(&self.current).clone()
    }
}

fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, CertError> {
    let bad = |path: &Path, reason: String| CertError::File {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(&files.cert_file)
        .map_err(|e| bad(&files.cert_file, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&files.cert_file, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(&files.cert_file, "no CERTIFICATE in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| bad(&files.key_file, format!("no usable private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|source| CertError::Pair {
            cert: files.cert_file.clone(),
            key: files.key_file.clone(),
            source,
        })?;
    // WebSocket upgrades are HTTP/1.1 requests.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Why a TLS handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The client spoke plain HTTP to the TLS port (it was told so in plain HTTP).
    #[error("plain HTTP on the TLS port")]
    PlainHttp,
    /// The peer closed or the socket failed.
    #[error("connection lost during the handshake: {0}")]
    Io(#[from] io::Error),
    /// The peer's handshake was refused (the alert has been sent).
    #[error("handshake refused: {0}")]
    Tls(#[from] rustls::Error),
}

/// Answers the client's handshake on `io`, whose first bytes (read already, e.g. after a
/// PROXY protocol header) are in `received`.
pub async fn accept(
    io: TcpStream,
    config: Arc<ServerConfig>,
    received: BytesMut,
) -> Result<TlsStream<ServerConnection>, HandshakeError> {
    let conn = ServerConnection::new(config)?;
    let mut stream = TlsStream {
        io,
        session: Session::new(conn),
        cipher: received,
        out: Vec::new(),
    };
    if stream.cipher.is_empty() && read_more(&mut stream.io, &mut stream.cipher, 256).await? == 0 {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    if stream
        .cipher
        .first()
        .is_some_and(|&b| b != HANDSHAKE_RECORD)
    {
        let body = response::json_error(
            400,
            "this port speaks TLS: connect with https:// or wss://",
            false,
        );
        let _ = stream.io.write_all(body).await;
        return Err(HandshakeError::PlainHttp);
    }
    stream.handshake().await?;
    Ok(stream)
}

/// One rustls connection shared by the two halves of a socket (see the module comment).
struct Session<C>(Rc<RefCell<C>>);

impl<C> Session<C> {
    fn new(conn: C) -> Self {
        Self(Rc::new(RefCell::new(conn)))
    }
}

impl<C> Clone for Session<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C> Deref for Session<C> {
    type Target = RefCell<C>;
    fn deref(&self) -> &RefCell<C> {
        &self.0
    }
}

/// TLS over `IO`: the whole socket before the split, or one of its halves after it. Each
/// keeps its own ciphertext buffers (the read half never fills `out`, the write half never
/// `cipher`; empty buffers hold no memory). Generic over the side so that the load generator
/// can use it as a client.
pub struct Tls<IO, C> {
    io: IO,
    session: Session<C>,
    cipher: BytesMut,
    out: Vec<u8>,
}

/// A TLS connection before it is split.
pub type TlsStream<C> = Tls<TcpStream, C>;
/// The reader task's half of a [`TlsStream`].
pub type TlsReadHalf<C> = Tls<OwnedReadHalf<TcpStream>, C>;
/// The writer task's half of a [`TlsStream`].
pub type TlsWriteHalf<C> = Tls<OwnedWriteHalf<TcpStream>, C>;

impl<C, SD> TlsStream<C>
where
    C: DerefMut<Target = ConnectionCommon<SD>> + 'static,
    SD: SideData + 'static,
{
    /// Runs the client side's handshake on `io` (the load generator's).
    pub async fn connect(io: TcpStream, conn: C) -> Result<Self, HandshakeError> {
        let mut stream = Self {
            io,
            session: Session::new(conn),
            cipher: BytesMut::new(),
            out: Vec::new(),
        };
        stream.handshake().await?;
        Ok(stream)
    }

    /// Exchanges handshake messages until the handshake is done. Whatever a step produced
    /// goes out before a refusal is reported, so the peer gets the alert that explains it.
    async fn handshake(&mut self) -> Result<(), HandshakeError> {
        loop {
            let fed = feed(&self.session, &mut self.cipher);
            flush(&mut self.io, &self.session, &mut self.out).await?;
            fed?;
            if !self.session.borrow().is_handshaking() {
                // The handshake's flights were the largest writes an idle socket makes: its
                // buffers go, so that an idle connection keeps only what rustls holds.
                self.out = Vec::new();
                if self.cipher.is_empty() {
                    self.cipher = BytesMut::new();
                }
                return Ok(());
            }
            if self.cipher.is_empty()
                && read_more(&mut self.io, &mut self.cipher, INITIAL_CIPHER_BYTES).await? == 0
            {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
        }
    }
}

impl Transport for TlsStream<ServerConnection> {
    type ReadHalf = TlsReadHalf<ServerConnection>;
    type WriteHalf = TlsWriteHalf<ServerConnection>;

    fn fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }

    fn split(self) -> (Self::ReadHalf, Self::WriteHalf) {
        split(self)
    }

    fn into_plain(self) -> Result<RawFd, Self> {
        Err(self)
    }
}

/// The halves of `stream`, for a reader and a writer task.
pub fn split<C>(stream: TlsStream<C>) -> (TlsReadHalf<C>, TlsWriteHalf<C>) {
    let (read, write) = stream.io.into_split();
    (
        Tls {
            io: read,
            session: stream.session.clone(),
            cipher: stream.cipher,
            out: Vec::new(),
        },
        Tls {
            io: write,
            session: stream.session,
            cipher: BytesMut::new(),
            out: stream.out,
        },
    )
}

/// Hands buffered ciphertext to rustls and processes it, until rustls has plaintext for the
/// reader or everything is consumed. On a TLS error the alert is queued for sending.
fn feed<C, SD>(session: &RefCell<C>, cipher: &mut BytesMut) -> Result<(), rustls::Error>
where
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    let mut conn = session.borrow_mut();
    while !cipher.is_empty() {
        let mut rest = &cipher[..];
        match conn.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(n) => cipher.advance(n),
            // Its plaintext buffer is full: the reader drains it first.
            Err(_) => break,
        }
        let state = conn.process_new_packets()?;
        if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() {
            break;
        }
    }
    Ok(())
}

/// Reads plaintext into `dst`: what rustls holds, else ciphertext from `io` until some
/// plaintext is decrypted. `Ok(0)` at the peer's close (`close_notify` or end of stream).
async fn read_plain<R, C, SD>(
    io: &mut R,
    session: &RefCell<C>,
    cipher: &mut BytesMut,
    dst: &mut [u8],
) -> io::Result<usize>
where
    R: AsyncReadRent,
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    if dst.is_empty() {
        return Ok(0);
    }
    loop {
        match session.borrow_mut().reader().read(dst) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // End of stream without `close_notify`: a truncation, reported as the end.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        if cipher.is_empty() {
            if cipher.capacity() > KEEP_BUFFER_BYTES {
                *cipher = BytesMut::new();
            }
            if read_more(io, cipher, INITIAL_CIPHER_BYTES).await? == 0 {
                return Ok(0);
            }
        }
        let before = cipher.len();
        feed(session, cipher).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if cipher.len() == before && session.borrow().wants_read() {
            // rustls took nothing although it has no plaintext: a record it cannot hold.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS record larger than the receive buffer",
            ));
        }
    }
}

/// Sends what rustls has encrypted, in one write per call of rustls's output.
async fn flush<W, C, SD>(io: &mut W, session: &RefCell<C>, out: &mut Vec<u8>) -> io::Result<()>
where
    W: AsyncWriteRent,
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    loop {
        let mut buf = std::mem::take(out);
        buf.clear();
        {
            let mut conn = session.borrow_mut();
            while conn.wants_write() {
                conn.write_tls(&mut buf)?;
            }
        }
        if buf.is_empty() {
            *out = buf;
            return Ok(());
        }
        let (result, buf) = io.write_all(buf).await;
        if buf.capacity() <= KEEP_BUFFER_BYTES {
            *out = buf;
        }
        result?;
    }
}

/// Encrypts `src` (as much as rustls buffers) and sends it; returns the plaintext bytes taken.
async fn write_plain<W, C, SD>(
    io: &mut W,
    session: &RefCell<C>,
    out: &mut Vec<u8>,
    src: impl IntoIterator<Item = &[u8]>,
) -> io::Result<usize>
where
    W: AsyncWriteRent,
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    let mut taken = 0;
    {
        let mut conn = session.borrow_mut();
        for part in src {
            let n = conn.writer().write(part)?;
            taken += n;
            if n < part.len() {
                break;
            }
        }
    }
    flush(io, session, out).await?;
    Ok(taken)
}

/// Runs `read_plain` into an owned monoio buffer.
async fn read_into<T, R, C, SD>(
    io: &mut R,
    session: &RefCell<C>,
    cipher: &mut BytesMut,
    mut buf: T,
) -> BufResult<usize, T>
where
    T: IoBufMut,
    R: AsyncReadRent,
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    let len = buf.bytes_total();
    let ptr = buf.write_ptr();
    // SAFETY: `ptr` is valid for `len` bytes for as long as `buf` lives, which is the whole of
    // this function; zeroing first makes them initialised, so the slice is sound.
    let dst = unsafe {
        ptr.write_bytes(0, len);
        std::slice::from_raw_parts_mut(ptr, len)
    };
    let result = read_plain(io, session, cipher, dst).await;
    if let Ok(n) = result {
        // SAFETY: `n` bytes from the start were written by rustls.
        unsafe { buf.set_init(n) };
    }
    (result, buf)
}

/// Runs `read_into` for the first buffer of an iovec array (readv is not used on TLS).
async fn readv_into<T, R, C, SD>(
    io: &mut R,
    session: &RefCell<C>,
    cipher: &mut BytesMut,
    mut buf: T,
) -> BufResult<usize, T>
where
    T: IoVecBufMut,
    R: AsyncReadRent,
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    // SAFETY: the raw buffer points into `buf`, which outlives its use here.
    let Some(raw) = (unsafe { RawBuf::new_from_iovec_mut(&mut buf) }) else {
        return (Ok(0), buf);
    };
    let (result, _) = read_into(io, session, cipher, raw).await;
    if let Ok(n) = result {
        // SAFETY: `n` bytes of the first iovec were written.
        unsafe { buf.set_init(n) };
    }
    (result, buf)
}

/// The slices of an iovec array.
fn iovec_slices<T: IoVecBuf>(buf: &T) -> impl Iterator<Item = &[u8]> {
    // SAFETY: an `IoVecBuf` guarantees `read_iovec_len` valid iovecs at `read_iovec_ptr`,
    // each pointing at that many readable bytes, for as long as it lives.
    let iovecs = unsafe { std::slice::from_raw_parts(buf.read_iovec_ptr(), buf.read_iovec_len()) };
    iovecs
        .iter()
        // SAFETY: as above, for each iovec.
        .map(|v| unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) })
}

/// The bytes of an owned write buffer.
fn buf_slice<T: IoBuf>(buf: &T) -> &[u8] {
    // SAFETY: an `IoBuf` guarantees `bytes_init` readable bytes at `read_ptr`.
    unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) }
}

/// Queues `close_notify` and sends it.
async fn close_notify<W, C, SD>(
    io: &mut W,
    session: &RefCell<C>,
    out: &mut Vec<u8>,
) -> io::Result<()>
where
    W: AsyncWriteRent,
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    session.borrow_mut().send_close_notify();
    flush(io, session, out).await?;
    io.shutdown().await
}

impl<IO, C, SD> AsyncReadRent for Tls<IO, C>
where
    IO: AsyncReadRent,
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    fn read<T: IoBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        read_into(&mut self.io, &self.session, &mut self.cipher, buf)
    }

    fn readv<T: IoVecBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        readv_into(&mut self.io, &self.session, &mut self.cipher, buf)
    }
}

impl<IO, C, SD> AsyncWriteRent for Tls<IO, C>
where
    IO: AsyncWriteRent,
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let result = write_plain(
            &mut self.io,
            &self.session,
            &mut self.out,
            [buf_slice(&buf)],
        )
        .await;
        (result, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let result = write_plain(
            &mut self.io,
            &self.session,
            &mut self.out,
            iovec_slices(&buf),
        )
        .await;
        (result, buf)
    }

    fn flush(&mut self) -> impl Future<Output = io::Result<()>> {
        flush(&mut self.io, &self.session, &mut self.out)
    }

    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> {
        close_notify(&mut self.io, &self.session, &mut self.out)
    }
}
