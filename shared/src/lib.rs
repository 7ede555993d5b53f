//! Types shared by the Ringcast broker and its admin UI.
//!
//! Everything here compiles for `wasm32-unknown-unknown` as well as for the broker: plain
//! data with `serde`, no I/O, no threads. The admin API's request and response types land
//! here as the dashboard's pages do.

use serde::{Deserialize, Serialize};

/// The broker's health, as `GET /up` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Serving.
    Ok,
    /// Shutting down: not accepting new work.
    Draining,
}
