//! Per-socket output: queued frames under a byte cap, handed to the writer, and closing.

use std::time::Instant;

use bytes::Bytes;

use super::conn::{Close, Closer, Conn};
use super::mesh::ConnKey;
use super::{OutputState, Shard, Taken};
use crate::core::counters::{ShardCounters, inc};
use crate::core::ids::SocketId;
use crate::core::wire::{Fault, Reply};
use crate::core::ws::frame;

#[derive(PartialEq, Eq)]
pub(super) enum Enqueued {
    Queued,
    Overflow,
}

pub(super) fn enqueue(
    conn: &mut Conn,
    key: ConnKey,
    queued: (Bytes, Option<Instant>),
    cap: usize,
    ready: &mut Vec<ConnKey>,
    counters: &ShardCounters,
) -> Enqueued {
    if conn.outbox_bytes + queued.0.len() > cap {
        return Enqueued::Overflow;
    }
    conn.outbox_bytes += queued.0.len();
    conn.outbox.push_back(queued);
    inc(&counters.messages_out);
    mark_ready(conn, key, ready);
    Enqueued::Queued
}

pub(super) fn mark_ready(conn: &mut Conn, key: ConnKey, ready: &mut Vec<ConnKey>) {
    if !conn.in_ready {
        conn.in_ready = true;
        ready.push(key);
    }
}

impl Shard {
    /// Moves the keys of connections with new output (or a pending close) into `out`.
    pub fn take_ready(&mut self, out: &mut Vec<ConnKey>) {
        for &key in &self.ready {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.in_ready = false;
            }
        }
        out.append(&mut self.ready);
    }

    /// Hands out queued frames of `key`, up to `max_frames` or about `max_bytes`.
    pub fn take_output(
        &mut self,
        key: ConnKey,
        socket_id: SocketId,
        out: &mut Vec<Bytes>,
        max_frames: usize,
        max_bytes: usize,
    ) -> Taken {
        // A parked connection's queue waits for its client's next transport; the old one
        // is closed.
        let parked = self.is_parked(key);
        let Some(conn) = self
            .conns
            .get_mut(key)
            .filter(|c| c.socket_id == socket_id && !parked)
        else {
            return Taken {
                state: OutputState::Close,
                oldest_event: None,
                events: 0,
                receipts: false,
            };
        };
        let mut bytes = 0;
        let mut oldest_event: Option<Instant> = None;
        let mut events = 0;
        let before = out.len();
        while out.len() < max_frames && bytes < max_bytes {
            let Some((frame, published)) = conn.outbox.pop_front() else {
                break;
            };
            if let Some(published) = published {
                events += 1;
                oldest_event = Some(oldest_event.map_or(published, |o| o.min(published)));
            }
            bytes += frame.len();
            out.push(frame);
        }
        conn.outbox_bytes -= bytes;
        let receipts = conn
            .receipts
            .as_mut()
            .is_some_and(|r| r.taken(out.len() - before));
        let state = if conn.closing && conn.outbox.is_empty() {
            OutputState::Close
        } else {
            OutputState::Open
        };
        Taken {
            state,
            oldest_event,
            events,
            receipts,
        }
    }

    /// Whether the closing handshake of `key` is complete (the peer's close frame arrived),
    /// or the connection is gone. The shell closes the socket then, or after a grace period.
    pub fn peer_closed(&self, key: ConnKey, socket_id: SocketId) -> bool {
        self.conns
            .get(key)
            .filter(|c| c.socket_id == socket_id)
            .is_none_or(|c| c.peer_closed)
    }

    /// Queues `reply`, encoded for the socket's wire.
    pub(super) fn reply(&mut self, key: ConnKey, reply: &Reply<'_>) {
        if let Some(conn) = self.conns.get(key) {
            let frame = conn.wire.encode(reply);
            self.send_frame(key, frame);
        }
    }

    /// Tells the socket about `fault` in the wire's own words, and closes the connection
    /// when the fault is one that closes.
    pub(super) fn send_error(&mut self, key: ConnKey, fault: Fault) {
        self.send_fault(key, fault, None);
    }

    /// [`Shard::send_error`] with details for the client.
    pub(super) fn send_error_message(&mut self, key: ConnKey, fault: Fault, text: &str) {
        self.send_fault(key, fault, Some(text));
    }

    fn send_fault(&mut self, key: ConnKey, fault: Fault, text: Option<&str>) {
        let Some(wire) = self.conns.get(key).map(|c| c.wire) else {
            return;
        };
        self.counters.error(fault);
        self.reply(key, &Reply::Error { fault, text });
        if fault.closes_connection() {
            let (code, reason) = wire.close_for(fault);
            self.close_ws(key, code, reason);
        }
    }

    pub(super) fn send_frame(&mut self, key: ConnKey, frame: Bytes) {
        let cap = self.state.config.send_buffer_bytes;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.closing {
            return;
        }
        if enqueue(
            conn,
            key,
            (frame, None),
            cap,
            &mut self.ready,
            &self.counters,
        ) == Enqueued::Overflow
        {
            self.close_slow_consumer(key);
        }
    }

    /// Queues a close frame and stops the connection taking part in anything.
    pub(super) fn close_ws(&mut self, key: ConnKey, code: u16, reason: &str) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.closing {
            return;
        }
        let frame = frame::encode_close(code, reason);
        conn.outbox_bytes += frame.len();
        conn.outbox.push_back((frame, None));
        conn.closing = true;
        let by = if conn.peer_closed {
            Closer::Client
        } else {
            Closer::Server
        };
        conn.close = Some(Close { by, code });
        mark_ready(conn, key, &mut self.ready);
        self.leave_all(key);
    }

    /// A consumer whose send buffer is full: drop what it has not taken and close it as over
    /// capacity (Pusher 4100: reconnect with back-off).
    pub(super) fn close_slow_consumer(&mut self, key: ConnKey) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.outbox.clear();
        conn.outbox_bytes = 0;
        inc(&self.counters.slow_consumers_closed);
        let fault = Fault::OverCapacity;
        self.counters.error(fault);
        let frame = conn.wire.encode(&Reply::Error {
            fault,
            text: Some("send buffer full: the client is not reading fast enough"),
        });
        conn.outbox_bytes += frame.len();
        conn.outbox.push_back((frame, None));
        let (code, reason) = conn.wire.close_for(fault);
        self.close_ws(key, code, reason);
    }
}
