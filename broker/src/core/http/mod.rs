//! HTTP/1.1 request heads, parsed with `httparse` into owned, validated values.

pub mod request;
