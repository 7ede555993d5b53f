//! HTTP/1.1 request heads, parsed with `httparse` into owned, validated values, and responses.

pub mod request;
pub mod response;
