//! The client named by a trusted proxy's `X-Forwarded-For` or `X-Real-IP`.

use std::net::{IpAddr, SocketAddr};

use super::TrustedProxies;
use crate::core::http::request::RequestHead;

/// The address a request comes from. From a peer outside `trusted`, the peer itself: its
/// forwarding headers are whatever the client wrote. From a trusted peer, the rightmost
/// `X-Forwarded-For` address that is not itself a trusted proxy (every proxy appends the
/// address it was reached from, so that one was written by the last proxy we trust), else
/// `X-Real-IP`, else the peer.
///
/// A malformed `X-Forwarded-For` entry ends the walk: what lies left of it was not written by
/// a proxy, so the last trusted address read stands (nginx's `real_ip_recursive` does the
/// same). Several `X-Forwarded-For` headers read as one list, in order.
pub fn client_address(trusted: &TrustedProxies, peer: IpAddr, head: &RequestHead) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let mut forwarded = head
        .headers_named("x-forwarded-for")
        .flat_map(|value| value.split(','))
        .rev()
        .peekable();
    if forwarded.peek().is_none() {
        return head
            .header("x-real-ip")
            .and_then(parse_forwarded)
            .unwrap_or(peer);
    }
    let mut client = peer;
    for entry in forwarded {
        let Some(ip) = parse_forwarded(entry) else {
            break;
        };
        client = ip;
        if !trusted.contains(ip) {
            break;
        }
    }
    client
}

/// One forwarded address as proxies write it: `203.0.113.7`, `2001:db8::1`, with a port
/// (`203.0.113.7:51234`, `[2001:db8::1]:443`), or bracketed alone.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::http::request::{HeadLimits, parse_head};

    fn head(headers: &[(&str, &str)]) -> RequestHead {
        let mut text = String::from("GET /app/key HTTP/1.1\r\nHost: x\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        let limits = HeadLimits {
            max_head_bytes: 8192,
            max_headers: 64,
        };
        parse_head(text.as_bytes(), &limits).unwrap().unwrap()
    }

    fn trusted(ranges: &[&str]) -> TrustedProxies {
        TrustedProxies::new(ranges.iter().map(|r| r.parse().unwrap()).collect())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    const NGINX: &str = "127.0.0.1";

    fn client(ranges: &[&str], peer: &str, headers: &[(&str, &str)]) -> IpAddr {
        client_address(&trusted(ranges), ip(peer), &head(headers))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let spoofed = [
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Real-IP", "203.0.113.9"),
        ];
        assert_eq!(client(&[], "198.51.100.4", &spoofed), ip("198.51.100.4"));
        assert_eq!(
            client(&["10.0.0.0/8"], "198.51.100.4", &spoofed),
            ip("198.51.100.4")
        );
    }

    #[test]
    fn a_trusted_peer_names_the_client_in_x_forwarded_for() {
        let forwarded = [("X-Forwarded-For", "203.0.113.9")];
        assert_eq!(client(&[NGINX], NGINX, &forwarded), ip("203.0.113.9"));
    }

    #[test]
    fn the_rightmost_untrusted_address_wins_over_what_the_client_prepended() {
        // The client sent "X-Forwarded-For: 1.1.1.1"; nginx appended the address it saw, a
        // load balancer in 10/8 appended nginx's.
        let chain = [("X-Forwarded-For", "1.1.1.1, 203.0.113.9, 10.0.0.5")];
        assert_eq!(
            client(&[NGINX, "10.0.0.0/8"], NGINX, &chain),
            ip("203.0.113.9")
        );
        let split = [
            ("X-Forwarded-For", "1.1.1.1, 203.0.113.9"),
            ("X-Forwarded-For", "10.0.0.5"),
        ];
        assert_eq!(
            client(&[NGINX, "10.0.0.0/8"], NGINX, &split),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_chain_of_only_trusted_proxies_names_the_leftmost() {
        let chain = [("X-Forwarded-For", "10.0.0.7, 10.0.0.5")];
        assert_eq!(
            client(&["10.0.0.0/8", NGINX], NGINX, &chain),
            ip("10.0.0.7")
        );
    }

    #[test]
    fn a_malformed_entry_stops_the_walk_at_the_last_trusted_address() {
        let chain = [("X-Forwarded-For", "203.0.113.9, unknown, 10.0.0.5")];
        assert_eq!(
            client(&["10.0.0.0/8", NGINX], NGINX, &chain),
            ip("10.0.0.5")
        );
        let garbage = [("X-Forwarded-For", "not an address")];
        assert_eq!(client(&[NGINX], NGINX, &garbage), ip(NGINX));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_read() {
        for (entry, expected) in [
            ("203.0.113.9:51234", "203.0.113.9"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            (" 2001:db8::2 ", "2001:db8::2"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
        ] {
            let forwarded = [("X-Forwarded-For", entry)];
            assert_eq!(client(&[NGINX], NGINX, &forwarded), ip(expected), "{entry}");
        }
    }

    #[test]
    fn x_real_ip_is_read_only_when_x_forwarded_for_is_absent() {
        let real = [("X-Real-IP", "203.0.113.9")];
        assert_eq!(client(&[NGINX], NGINX, &real), ip("203.0.113.9"));
        let both = [
            ("X-Real-IP", "198.51.100.1"),
            ("X-Forwarded-For", "203.0.113.9"),
        ];
        assert_eq!(client(&[NGINX], NGINX, &both), ip("203.0.113.9"));
        let bad = [("X-Real-IP", "somewhere")];
        assert_eq!(client(&[NGINX], NGINX, &bad), ip(NGINX));
    }

    #[test]
    fn a_trusted_peer_without_headers_is_the_client() {
        assert_eq!(client(&[NGINX], NGINX, &[]), ip(NGINX));
        assert_eq!(client(&[NGINX], "::ffff:127.0.0.1", &[]), ip(NGINX));
    }
}
