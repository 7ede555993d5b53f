//! The Pusher protocol 7 layer: message types and the one table of error codes.

pub mod error;
pub mod message;

pub use error::ErrorCode;
