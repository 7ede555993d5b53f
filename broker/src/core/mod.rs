//! The sans-IO core: every protocol rule as plain data in, plain data out.
//!
//! Nothing below this module does I/O, spawns tasks or reads a clock; time arrives as a
//! parameter and output leaves through return values or caller-owned buffers.

pub mod admin;
pub mod app;
pub mod auth;
pub mod broadcast;
pub mod channel;
pub mod cluster;
pub mod counters;
pub mod history;
pub mod http;
pub mod ids;
pub mod inbox;
pub mod options;
pub mod policy;
pub mod proxy;
pub mod publish;
pub mod rand;
pub mod rate_limit;
pub mod receipts;
pub mod shard;
pub mod sync;
pub mod typing;
pub mod webhook;
pub mod wire;
pub mod ws;
