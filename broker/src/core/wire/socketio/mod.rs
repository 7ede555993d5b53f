//! The Socket.IO wire, sans IO: Engine.IO 4 packets and the Socket.IO 5 packets they carry.
//! The shell's transports (WebSocket, HTTP long-polling) and the shard's channel semantics
//! build on these; nothing here reads a socket or a clock.

pub mod engine;
pub mod packet;
