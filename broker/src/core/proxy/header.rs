//! The PROXY protocol header (versions 1 and 2) that HAProxy (`send-proxy`, `send-proxy-v2`)
//! and AWS NLB put before a connection's first byte, naming the client it accepted.
//!
//! [`parse`] reads it from the start of a buffer; the shell reads until it is
//! [`Parsed::Complete`] and hands the bytes after it to TLS or HTTP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 2's first twelve bytes.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2's fixed part: the signature, version and command, family, length.
const V2_FIXED: usize = V2_SIGNATURE.len() + 4;
/// Largest version 2 address block (addresses and TLVs) accepted. The format allows 64 KiB;
/// HAProxy and AWS NLB send a few hundred bytes at most, so this bounds what a connection
/// buffers before it has said anything.
pub const MAX_V2_BLOCK: usize = 2048;
/// Version 1 starts so.
const V1_PREFIX: &[u8] = b"PROXY ";
/// Version 1's longest line, CRLF included (the specification's figure).
const V1_MAX_LINE: usize = 107;

/// What the proxy says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The proxy relays a client connected from this address.
    Client(SocketAddr),
    /// The proxy speaks for itself (version 2 `LOCAL`, e.g. its health checks; version 1
    /// `UNKNOWN`; an address family other than IPv4/IPv6): the peer's own address stands.
    Local,
}

/// How far [`parse`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The buffer holds the start of a header; read more.
    Incomplete,
    /// The header, and how many bytes of the buffer it took.
    Complete {
        /// What it says.
        header: ProxyHeader,
        /// Its length: the connection's own bytes start after it.
        len: usize,
    },
}

/// Why a connection's start is not an acceptable PROXY header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The connection does not start with either version's signature.
    #[error("the connection must start with a PROXY protocol header")]
    Missing,
    /// A header that breaks the format.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    /// A version 2 address block over [`MAX_V2_BLOCK`].
    #[error("PROXY protocol header is longer than the server accepts")]
    TooLong,
}

/// Reads a PROXY header (either version) from the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if starts_like(buf, V2_SIGNATURE) {
        return if buf.len() < V2_SIGNATURE.len() {
            Ok(Parsed::Incomplete)
        } else {
            parse_v2(buf)
        };
    }
    if starts_like(buf, V1_PREFIX) {
        return if buf.len() < V1_PREFIX.len() {
            Ok(Parsed::Incomplete)
        } else {
            parse_v1(buf)
        };
    }
    Err(ProxyHeaderError::Missing)
}

/// Whether `buf` and `signature` agree on their common length (so an empty buffer does).
fn starts_like(buf: &[u8], signature: &[u8]) -> bool {
    let n = buf.len().min(signature.len());
    buf[..n] == signature[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let window = &buf[..buf.len().min(V1_MAX_LINE)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX_LINE {
            Err(ProxyHeaderError::Malformed(
                "version 1 line has no CRLF within 107 bytes",
            ))
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let len = end + 2;
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..end])
        .map_err(|_| ProxyHeaderError::Malformed("version 1 line is not ASCII"))?;
    let mut fields = line.split(' ');
    let header = match fields.next() {
        // UNKNOWN may be followed by anything, which the receiver ignores.
        Some("UNKNOWN") => ProxyHeader::Local,
        Some(family @ ("TCP4" | "TCP6")) => {
            let v4 = family == "TCP4";
            let fields: Vec<&str> = fields.collect();
            let [source, destination, source_port, destination_port] = fields[..] else {
                return Err(ProxyHeaderError::Malformed(
                    "version 1 line needs two addresses and two ports",
                ));
            };
            let source = v1_address(source, v4)?;
            v1_address(destination, v4)?;
            let port = v1_port(source_port)?;
            v1_port(destination_port)?;
            ProxyHeader::Client(SocketAddr::new(source, port))
        }
        _ => {
            return Err(ProxyHeaderError::Malformed(
                "version 1 protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    Ok(Parsed::Complete { header, len })
}

fn v1_address(text: &str, v4: bool) -> Result<IpAddr, ProxyHeaderError> {
    let parsed = if v4 {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    } else {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    };
    parsed.map_err(|_| ProxyHeaderError::Malformed("version 1 address does not match its family"))
}

fn v1_port(text: &str) -> Result<u16, ProxyHeaderError> {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    let canonical = text == "0" || !text.starts_with('0');
    digits
        .then_some(())
        .filter(|()| canonical)
        .and_then(|()| text.parse().ok())
        .ok_or(ProxyHeaderError::Malformed(
            "version 1 port is not a number from 0 to 65535",
        ))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if buf.len() < V2_FIXED {
        return Ok(Parsed::Incomplete);
    }
    let version_command = buf[12];
    let family_transport = buf[13];
    let block = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed(
            "version 2 signature with another version",
        ));
    }
    if block > MAX_V2_BLOCK {
        return Err(ProxyHeaderError::TooLong);
    }
    let len = V2_FIXED + block;
    if buf.len() < len {
        return Ok(Parsed::Incomplete);
    }
    let addresses = &buf[V2_FIXED..len];
    let header = match version_command & 0x0f {
        // LOCAL: the proxy's own connection; its address block, if any, is ignored.
        0x0 => ProxyHeader::Local,
        0x1 => v2_addresses(family_transport, addresses)?,
        _ => {
            return Err(ProxyHeaderError::Malformed(
                "version 2 command is not LOCAL or PROXY",
            ));
        }
    };
    Ok(Parsed::Complete { header, len })
}

/// The source address of a version 2 `PROXY` header; TLVs after the addresses are skipped.
fn v2_addresses(family_transport: u8, block: &[u8]) -> Result<ProxyHeader, ProxyHeaderError> {
    const STREAM: u8 = 0x1;
    let (family, transport) = (family_transport >> 4, family_transport & 0x0f);
    let source = match family {
        // AF_INET: source, destination (4 bytes each), then both ports.
        0x1 => block.get(..12).map(|a| {
            let ip = Ipv4Addr::from([a[0], a[1], a[2], a[3]]);
            SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]]))
        }),
        // AF_INET6: 16 bytes each, then both ports.
        0x2 => block.get(..36).map(|a| {
            let mut octets = [0; 16];
            octets.copy_from_slice(&a[..16]);
            SocketAddr::new(
                Ipv6Addr::from(octets).into(),
                u16::from_be_bytes([a[32], a[33]]),
            )
        }),
        // AF_UNSPEC, AF_UNIX: nothing the server can use; the peer's address stands.
        0x0 | 0x3 => return Ok(ProxyHeader::Local),
        _ => {
            return Err(ProxyHeaderError::Malformed(
                "version 2 address family is unknown",
            ));
        }
    };
    if transport != STREAM {
        return Err(ProxyHeaderError::Malformed(
            "version 2 header is not for a stream (TCP) connection",
        ));
    }
    source
        .map(ProxyHeader::Client)
        .ok_or(ProxyHeaderError::Malformed(
            "version 2 address block is shorter than its family needs",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes.push(0x20 | command);
        bytes.push(family);
        bytes.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(block);
        bytes
    }

    fn v2_tcp4(source: [u8; 4], port: u16, tlvs: &[u8]) -> Vec<u8> {
        let mut block = source.to_vec();
        block.extend_from_slice(&[127, 0, 0, 1]);
        block.extend_from_slice(&port.to_be_bytes());
        block.extend_from_slice(&443u16.to_be_bytes());
        block.extend_from_slice(tlvs);
        v2(0x1, 0x11, &block)
    }

    fn client(text: &str) -> ProxyHeader {
        ProxyHeader::Client(text.parse().unwrap())
    }

    #[test]
    fn version_1_names_the_client_and_its_length() {
        let line = b"PROXY TCP4 203.0.113.9 127.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(line),
            Ok(Parsed::Complete {
                header: client("203.0.113.9:56324"),
                len: 44,
            })
        );
        let v6 = b"PROXY TCP6 2001:db8::1 ::1 65535 443\r\n";
        assert_eq!(
            parse(v6),
            Ok(Parsed::Complete {
                header: client("[2001:db8::1]:65535"),
                len: v6.len(),
            })
        );
        let unknown = b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n";
        assert_eq!(
            parse(unknown),
            Ok(Parsed::Complete {
                header: ProxyHeader::Local,
                len: unknown.len(),
            })
        );
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let v1 = b"PROXY TCP4 203.0.113.9 127.0.0.1 56324 443\r\n";
        let v2 = v2_tcp4([203, 0, 113, 9], 56324, &[0x04, 0, 1, 0]);
        for header in [&v1[..], &v2[..]] {
            for n in 0..header.len() {
                assert_eq!(parse(&header[..n]), Ok(Parsed::Incomplete), "{n}");
            }
            assert!(
                matches!(parse(header), Ok(Parsed::Complete { len, .. }) if len == header.len())
            );
        }
    }

    #[test]
    fn a_connection_without_a_header_is_missing_one() {
        for start in [
            &b"GET /up HTTP/1.1\r\n"[..],
            b"\x16\x03\x01",
            b"PROXZ",
            b"\r\n\r\nX",
        ] {
            assert_eq!(parse(start), Err(ProxyHeaderError::Missing), "{start:?}");
        }
    }

    #[test]
    fn malformed_version_1_lines_are_refused() {
        for line in [
            &b"PROXY TCP4 203.0.113.9 127.0.0.1 56324\r\n"[..],
            b"PROXY TCP4 2001:db8::1 ::1 1 2\r\n",
            b"PROXY TCP6 203.0.113.9 127.0.0.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.9 127.0.0.1 65536 443\r\n",
            b"PROXY TCP4 203.0.113.9 127.0.0.1 0443 443\r\n",
            b"PROXY TCP4 203.0.113.9  127.0.0.1 1 443\r\n",
            b"PROXY UDP4 203.0.113.9 127.0.0.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.9 127.0.0.1 1 2 3\r\n",
            b"PROXY \xff\r\n",
        ] {
            assert!(
                matches!(parse(line), Err(ProxyHeaderError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert!(matches!(
            parse(&endless),
            Err(ProxyHeaderError::Malformed(_))
        ));
    }

    #[test]
    fn version_2_names_the_client_and_skips_tlvs() {
        let header = v2_tcp4([203, 0, 113, 9], 56324, &[0x04, 0, 1, 0xAA]);
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"GET /");
        assert_eq!(
            parse(&bytes),
            Ok(Parsed::Complete {
                header: client("203.0.113.9:56324"),
                len: header.len(),
            })
        );
        let mut block = [0u8; 36];
        block[..16].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        block[32..34].copy_from_slice(&8080u16.to_be_bytes());
        assert_eq!(
            parse(&v2(0x1, 0x21, &block)),
            Ok(Parsed::Complete {
                header: client("[2001:db8::7]:8080"),
                len: V2_FIXED + 36,
            })
        );
    }

    #[test]
    fn version_2_local_and_unspecified_leave_the_peer_standing() {
        for bytes in [
            v2(0x0, 0x00, &[]),
            v2(0x0, 0x11, &[0; 12]),
            v2(0x1, 0x00, &[]),
        ] {
            assert_eq!(
                parse(&bytes),
                Ok(Parsed::Complete {
                    header: ProxyHeader::Local,
                    len: bytes.len(),
                })
            );
        }
    }

    #[test]
    fn malformed_version_2_headers_are_refused() {
        let mut wrong_version = v2_tcp4([1, 2, 3, 4], 1, &[]);
        wrong_version[12] = 0x11;
        let short_block = v2(0x1, 0x11, &[1, 2, 3, 4]);
        let datagram = v2(0x1, 0x12, &[0; 12]);
        let bad_command = v2(0x2, 0x11, &[0; 12]);
        let bad_family = v2(0x1, 0x41, &[0; 12]);
        for bytes in [
            wrong_version,
            short_block,
            datagram,
            bad_command,
            bad_family,
        ] {
            assert!(
                matches!(parse(&bytes), Err(ProxyHeaderError::Malformed(_))),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn an_oversized_version_2_block_is_refused_before_it_is_read() {
        let mut fixed = V2_SIGNATURE.to_vec();
        fixed.extend_from_slice(&[0x21, 0x11]);
        fixed.extend_from_slice(&u16::try_from(MAX_V2_BLOCK + 1).unwrap().to_be_bytes());
        assert_eq!(parse(&fixed), Err(ProxyHeaderError::TooLong));
    }
}
