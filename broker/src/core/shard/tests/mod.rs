//! Drives whole shards with plain values: an in-memory mesh and a simulated clock.

mod harness;

mod audit;
mod auth;
mod backend;
mod cluster;
mod connections;
mod events;
mod history;
mod inbox;
mod limits;
mod queries;
mod reauthorize;
mod receipts;
mod socketio;
mod subscribe;
mod typing;
mod users;
mod webhooks;
