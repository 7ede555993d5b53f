//! Address ranges written as CIDRs, and the set of them a server trusts as proxies.

use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;

/// An address range: `10.0.0.0/8`, `::1/128`, or one address written alone (`127.0.0.1`).
/// Bits past the prefix are dropped (`10.1.2.3/8` is `10.0.0.0/8`), as nginx's
/// `set_real_ip_from` treats them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR was refused; the message names the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not an address range: write an address with an optional /prefix, e.g. \"10.0.0.0/8\" or \"::1\""
)]
pub struct MalformedCidr {
    text: String,
}

impl FromStr for Cidr {
    type Err = MalformedCidr;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || MalformedCidr {
            text: text.to_owned(),
        };
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: IpAddr = address.parse().map_err(|_| malformed())?;
        let bits = address_bits(network);
        let prefix = match prefix {
            None => bits,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= bits)
                .ok_or_else(malformed)?,
            Some(_) => return Err(malformed()),
        };
        Ok(Self {
            network: masked(network, prefix),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` is in the range. An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, what a
    /// dual-stack listener reports) counts as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_matches(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// `ip` with every bit past `prefix` cleared.
fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & keep).into())
        }
    }
}

fn address_bits(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Whether the top `prefix` of `bits` bits of `a` and `b` agree.
fn prefix_matches(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    let ignored = u32::from(bits - prefix);
    // A /0 ignores every bit; `checked_shr` covers the shift by the full width.
    (a ^ b).checked_shr(ignored).unwrap_or(0) == 0
}

/// `server.trusted_proxies`: the peers whose forwarding headers and PROXY protocol headers
/// are believed. Empty by default, so a server reached directly cannot be lied to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct TrustedProxies(Vec<Cidr>);

impl TryFrom<Vec<String>> for TrustedProxies {
    type Error = MalformedCidr;

    fn try_from(texts: Vec<String>) -> Result<Self, Self::Error> {
        texts
            .iter()
            .map(|t| t.parse())
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl TrustedProxies {
    /// The given ranges.
    pub fn new(ranges: Vec<Cidr>) -> Self {
        Self(ranges)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges, as configured.
    pub fn ranges(&self) -> &[Cidr] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_contain_their_addresses_and_nothing_else() {
        let private = cidr("10.0.0.0/8");
        assert!(private.contains(ip("10.0.0.0")));
        assert!(private.contains(ip("10.255.255.255")));
        assert!(!private.contains(ip("11.0.0.0")));
        assert!(!private.contains(ip("9.255.255.255")));
        let one = cidr("127.0.0.1");
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        let v6 = cidr("2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert!(!private.contains(ip("::a00:1")));
    }

    #[test]
    fn zero_prefixes_contain_their_whole_family() {
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn an_ipv4_mapped_peer_matches_an_ipv4_range() {
        assert!(cidr("127.0.0.0/8").contains(ip("::ffff:127.0.0.5")));
    }

    #[test]
    fn host_bits_past_the_prefix_are_ignored() {
        assert_eq!(cidr("192.168.1.77/24"), cidr("192.168.1.0/24"));
        assert!(cidr("192.168.1.77/24").contains(ip("192.168.1.3")));
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
    }

    #[test]
    fn malformed_ranges_are_refused_with_the_text() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "localhost",
            "10.0.0.0/8/8",
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(
                err.to_string().contains(&format!("{bad:?}")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_trusted_set_deserializes_from_a_list_and_names_a_bad_entry() {
        #[derive(Deserialize)]
        struct Server {
            trusted_proxies: TrustedProxies,
        }
        let server: Server =
            toml::from_str("trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]").unwrap();
        assert!(server.trusted_proxies.contains(ip("10.9.9.9")));
        assert!(!server.trusted_proxies.contains(ip("127.0.0.2")));
        let err = toml::from_str::<Server>("trusted_proxies = [\"10.0.0.0/8\", \"nginx\"]")
            .err()
            .unwrap();
        assert!(err.to_string().contains("\"nginx\""), "{err}");
        assert!(TrustedProxies::default().is_empty());
    }
}
