//! Reading a connection's frames and routing each client message to its handler.

use std::time::Instant;

use bytes::BytesMut;

use super::Shard;
use super::mesh::ConnKey;
use super::outbox::mark_ready;
use crate::core::ids::SocketId;
use crate::core::pusher::ErrorCode;
use crate::core::pusher::message::{self, ClientMessage};
use crate::core::ws::close;
use crate::core::ws::frame::{self, Message, Opcode};
use crate::metrics::inc;
use ringcast_shared::{AuditDecision, AuditKind};

impl Shard {
    /// Feeds bytes read from connection `key`. Complete frames are consumed from `buf`; a
    /// partial frame is left for the next read.
    pub fn handle_input(
        &mut self,
        key: ConnKey,
        socket_id: SocketId,
        buf: &mut BytesMut,
        now: Instant,
    ) {
        loop {
            let Some(conn) = self.conns.get_mut(key).filter(|c| c.socket_id == socket_id) else {
                buf.clear();
                return;
            };
            if conn.closing {
                // Only the peer's answering close frame matters now (RFC 6455 §7.1.1).
                match conn.decoder.decode(buf) {
                    Ok(Some(Message::Close(_))) => {
                        conn.peer_closed = true;
                        mark_ready(conn, key, &mut self.ready);
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(_) => {
                        conn.peer_closed = true;
                        mark_ready(conn, key, &mut self.ready);
                        buf.clear();
                        break;
                    }
                }
                continue;
            }
            match conn.decoder.decode(buf) {
                Ok(None) => break,
                Ok(Some(msg)) => {
                    conn.last_seen = now;
                    conn.ping_sent = None;
                    inc(&self.metrics.messages_in);
                    self.handle_message(key, msg, now);
                }
                Err(err) => {
                    let rule = if err.close_code() == close::MESSAGE_TOO_BIG {
                        "max_message_bytes"
                    } else {
                        "rfc6455"
                    };
                    self.audit_conn(
                        key,
                        AuditKind::Security,
                        "protocol",
                        AuditDecision::Deny,
                        None,
                        Some(rule),
                        Some(err.to_string()),
                    );
                    self.close_ws(key, err.close_code(), &err.to_string());
                    buf.clear();
                    break;
                }
            }
        }
        self.drain_to_self(now);
    }

    pub(super) fn handle_message(&mut self, key: ConnKey, msg: Message, now: Instant) {
        match msg {
            Message::Text(text) => self.handle_text(key, &text, now),
            Message::Binary(_) => self.send_error_message(
                key,
                ErrorCode::InvalidMessage,
                "binary frames are not part of the Pusher protocol; send JSON text",
            ),
            Message::Ping(payload) => {
                self.send_frame(key, frame::encode_frame(Opcode::Pong, &payload))
            }
            Message::Pong(_) => {}
            Message::Close(frame) => {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.peer_closed = true;
                }
                // Echo the peer's code, as RFC 6455 §5.5.1 asks; a close without one gets 1000.
                let code = frame.map_or(close::NORMAL, |f| f.code);
                self.close_ws(key, code, "");
            }
        }
    }

    pub(super) fn handle_text(&mut self, key: ConnKey, text: &[u8], now: Instant) {
        let app = match self.conns.get(key) {
            Some(conn) => conn.app,
            None => return,
        };
        self.metrics.apps[app.get()]
            .messages_in
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let msg = match ClientMessage::parse(text) {
            Ok(msg) => msg,
            Err(err) => {
                self.send_error_message(key, err.code(), &err.to_string());
                return;
            }
        };
        match msg {
            ClientMessage::Ping => self.send_json(key, message::pong()),
            ClientMessage::Pong => {}
            ClientMessage::Subscribe(request) => self.subscribe(key, request),
            ClientMessage::Unsubscribe { channel } => self.unsubscribe(key, &channel),
            ClientMessage::ClientEvent {
                event,
                channel,
                data,
            } => {
                self.client_event(key, &event, &channel, data, now);
            }
            ClientMessage::Signin { auth, user_data } => self.signin(key, &auth, &user_data),
            ClientMessage::Unsupported { event } => {
                let text = format!("unsupported event {event:?}");
                self.send_error_message(key, ErrorCode::UnsupportedEvent, &text);
            }
        }
    }
}
