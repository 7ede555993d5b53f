//! The Socket.IO wire, sans IO: Engine.IO 4 packets and the Socket.IO 5 packets they carry
//! ([`engine`], [`packet`]), what a client's packets ask of the shard ([`messages`]), and
//! what the shard sends back ([`frames`]). The shell's transports (WebSocket, HTTP
//! long-polling) carry them; nothing here reads a socket or a clock.

pub mod engine;
pub mod frames;
pub mod messages;
pub mod packet;

/// The Engine.IO protocol revision served (`EIO=4`, Socket.IO v3 and v4 clients).
pub const ENGINE_PROTOCOL: &str = "4";
