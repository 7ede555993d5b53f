//! Certificates made for a test (a CA and a server certificate it signed, for `localhost` and
//! 127.0.0.1) and a blocking rustls client that trusts them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::Duplex;

/// A CA and the server certificate it signed.
pub struct TestPki {
    /// The CA certificate, which clients trust.
    pub ca: CertificateDer<'static>,
    /// The CA certificate as PEM (for Node's `NODE_EXTRA_CA_CERTS`, say).
    pub ca_pem: String,
    /// The server certificate (the first of the chain the server sends).
    pub leaf: CertificateDer<'static>,
    /// The server certificate followed by the CA's, as PEM.
    pub chain_pem: String,
    /// The server key, as PEM.
    pub key_pem: String,
}

impl TestPki {
    /// A new CA named `name` and a server certificate for `localhost` and 127.0.0.1.
    pub fn new(name: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("ringcast test CA {name}"),
        );
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
        Self {
            ca: ca.der().clone(),
            ca_pem: ca.pem(),
            leaf: leaf.der().clone(),
            chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the chain and key to `dir/server.crt` and `dir/server.key`; returns their paths.
    pub fn write_to(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let cert = dir.join("server.crt");
        let key = dir.join("server.key");
        std::fs::write(&cert, &self.chain_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

/// A client configuration trusting the CAs of `pkis`.
pub fn client_config(pkis: &[&TestPki]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for pki in pkis {
        roots.add(pki.ca.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A TLS connection to the server at `addr`, handshake done (the server name is
/// `localhost`).
pub fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> TlsClient {
    connect_over(TcpStream::connect(addr).unwrap(), config)
}

/// A TLS connection over `tcp` (already connected), handshake done.
pub fn connect_over(tcp: TcpStream, config: &Arc<ClientConfig>) -> TlsClient {
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("TLS handshake");
    }
    TlsClient(stream)
}

/// A blocking TLS client connection.
pub struct TlsClient(pub StreamOwned<ClientConnection, TcpStream>);

impl TlsClient {
    /// The certificate the server presented first.
    pub fn server_certificate(&self) -> CertificateDer<'static> {
        self.0.conn.peer_certificates().unwrap()[0]
            .clone()
            .into_owned()
    }

    /// Sends `request` and reads the response until the server closes (send
    /// `Connection: close`).
    pub fn request(mut self, request: &str) -> String {
        self.0.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        // The server ends with close_notify; an unclean end still returns what came.
        let _ = self.0.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    }
}

impl Read for TlsClient {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for TlsClient {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Duplex for TlsClient {
    fn tcp(&self) -> &TcpStream {
        &self.0.sock
    }
}
