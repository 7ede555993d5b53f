//! The options core runs with, as plain data.

mod origin;

pub use self::origin::{AllowedOrigin, MalformedOrigin, RequestOrigin, origin_allowed};
