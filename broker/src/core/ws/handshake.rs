//! The RFC 6455 opening handshake.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use crate::core::http::request::{Method, RequestHead};
use crate::core::http::response::json_error_with;

/// A valid upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The `Sec-WebSocket-Accept` value to answer with.
    pub accept: String,
    /// Subprotocols the client offered.
    pub protocols: Vec<String>,
    /// The `Origin` header.
    pub origin: Option<String>,
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// Not a GET.
    #[error("WebSocket upgrades must use GET")]
    MethodNotAllowed,
    /// No `Upgrade: websocket`.
    #[error("missing Upgrade: websocket")]
    MissingUpgrade,
    /// No `Connection: Upgrade`.
    #[error("missing Connection: Upgrade")]
    MissingConnectionUpgrade,
    /// A version other than 13.
    #[error("unsupported Sec-WebSocket-Version (13 is supported)")]
    UnsupportedVersion,
    /// No `Sec-WebSocket-Key`.
    #[error("missing Sec-WebSocket-Key")]
    MissingKey,
    /// A key that is not 16 bytes in base64.
    #[error("Sec-WebSocket-Key must be 16 bytes in base64")]
    BadKey,
}

impl UpgradeError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            UpgradeError::MethodNotAllowed => 405,
            UpgradeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// The complete HTTP response.
    pub fn response(&self) -> Vec<u8> {
        let extra: &[(&str, &str)] = match self {
            UpgradeError::MethodNotAllowed => &[("Allow", "GET")],
            // RFC 6455 §4.4: tell the client which versions are supported.
            UpgradeError::UnsupportedVersion => &[("Sec-WebSocket-Version", "13")],
            _ => &[],
        };
        json_error_with(self.status(), &self.to_string(), extra, false)
    }
}

/// Whether the request asks for a WebSocket (`Upgrade: websocket`).
pub fn is_websocket_upgrade(head: &RequestHead) -> bool {
    head.header_has_token("upgrade", "websocket")
}

/// Checks an upgrade request and computes the accept key.
pub fn validate_upgrade(head: &RequestHead) -> Result<UpgradeRequest, UpgradeError> {
    if head.method != Method::Get {
        return Err(UpgradeError::MethodNotAllowed);
    }
    if !is_websocket_upgrade(head) {
        return Err(UpgradeError::MissingUpgrade);
    }
    if !head.header_has_token("connection", "upgrade") {
        return Err(UpgradeError::MissingConnectionUpgrade);
    }
    if head.header("sec-websocket-version") != Some("13") {
        return Err(UpgradeError::UnsupportedVersion);
    }
    let key = head
        .header("sec-websocket-key")
        .ok_or(UpgradeError::MissingKey)?;
    match STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(UpgradeError::BadKey),
    }
    let protocols = head
        .headers_named("sec-websocket-protocol")
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    Ok(UpgradeRequest {
        accept: accept_key(key),
        protocols,
        origin: head.header("origin").map(str::to_owned),
    })
}

/// `base64(SHA-1(key + GUID))`.
pub fn accept_key(client_key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(client_key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    STANDARD.encode(sha.finalize())
}

/// The `101 Switching Protocols` response.
pub fn switching_protocols(accept: &str, protocol: Option<&str>) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(protocol) = protocol {
        out.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::http::request::{HeadLimits, parse_head};

    fn head(extra: &str, method: &str) -> RequestHead {
        let text = format!("{method} /app/k?protocol=7 HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        let limits = HeadLimits {
            max_head_bytes: 4096,
            max_headers: 32,
        };
        parse_head(text.as_bytes(), &limits).unwrap().unwrap()
    }

    const GOOD: &str = "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn valid_upgrade_is_accepted() {
        let upgrade =
            validate_upgrade(&head(&format!("{GOOD}Origin: https://a.test\r\n"), "GET")).unwrap();
        assert_eq!(upgrade.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(upgrade.origin.as_deref(), Some("https://a.test"));
        let response = String::from_utf8(switching_protocols(&upgrade.accept, None)).unwrap();
        assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(response.ends_with("\r\n\r\n"));
    }

    #[test]
    fn bad_upgrades_get_the_right_status() {
        assert_eq!(
            validate_upgrade(&head(GOOD, "POST")).unwrap_err().status(),
            405
        );
        let no_conn = GOOD.replace("Connection: keep-alive, Upgrade\r\n", "");
        assert_eq!(
            validate_upgrade(&head(&no_conn, "GET")).unwrap_err(),
            UpgradeError::MissingConnectionUpgrade
        );
        let v8 = GOOD.replace("Version: 13", "Version: 8");
        let err = validate_upgrade(&head(&v8, "GET")).unwrap_err();
        assert_eq!(err.status(), 426);
        assert!(
            String::from_utf8(err.response())
                .unwrap()
                .contains("Sec-WebSocket-Version: 13\r\n")
        );
        let short_key = GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
        assert_eq!(
            validate_upgrade(&head(&short_key, "GET")).unwrap_err(),
            UpgradeError::BadKey
        );
        let no_key = GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
        assert_eq!(
            validate_upgrade(&head(&no_key, "GET")).unwrap_err(),
            UpgradeError::MissingKey
        );
    }
}
