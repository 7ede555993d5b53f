//! RFC 6455: the opening handshake and the frame codec.

pub mod close;
pub mod frame;
pub mod handshake;
