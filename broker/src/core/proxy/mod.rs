//! Who the client is when a proxy stands in between.
//!
//! Behind nginx every connection comes from nginx; behind HAProxy or an AWS NLB in TCP mode
//! the connection starts with a PROXY protocol header. Only peers in
//! `server.trusted_proxies` are believed: [`TrustedProxies`] holds those ranges,
//! [`client_address`] reads `X-Forwarded-For` / `X-Real-IP` from them, and [`header`] parses
//! the PROXY protocol header. Every per-client decision (rate limits, audit, the admin sign-in
//! throttle, logs) then uses the address these return.

mod cidr;
mod forwarded;
pub mod header;

pub use self::cidr::{Cidr, MalformedCidr, TrustedProxies};
pub use self::forwarded::client_address;
