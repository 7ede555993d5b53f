//! Ringcast: a Pusher-protocol-7 WebSocket broker on a thread-per-core io_uring runtime.
//!
//! (crate docs are filled in as the shell lands)

pub mod config;
pub mod core;
