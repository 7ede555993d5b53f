//! Reading a connection's frames and routing each client message to its handler.

use std::time::Instant;

use bytes::BytesMut;

use super::AuditAction;
use super::Shard;
use super::mesh::ConnKey;
use super::outbox::mark_ready;
use crate::core::counters::inc;
use crate::core::ids::SocketId;
use crate::core::wire::{Command, ParseError, Reply};
use crate::core::wire::{Fault, Wire};
use crate::core::ws::close;
use crate::core::ws::frame::{self, Message, Opcode};
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
                    if conn.wire == Wire::Pusher {
                        conn.last_seen = now;
                        conn.ping_sent = None;
                    }
                    inc(&self.counters.messages_in);
                    self.handle_message(key, msg, now);
                }
                Err(err) => {
                    let rule = if err.close_code() == close::MESSAGE_TOO_BIG {
                        "max_ws_message_bytes"
                    } else {
                        "rfc6455"
                    };
                    self.refuse_protocol(key, rule, err.close_code(), &err.to_string());
                    buf.clear();
                    break;
                }
            }
        }
        self.drain_to_self(now);
    }

    /// Feeds one message that came without WebSocket framing: a packet of a Socket.IO
    /// long-polling body. Over `max_ws_message_bytes` it closes the connection with 1009, as
    /// the same message in a frame would.
    pub fn handle_packet(&mut self, key: ConnKey, socket_id: SocketId, text: &[u8], now: Instant) {
        let open = self
            .conns
            .get(key)
            .is_some_and(|c| c.socket_id == socket_id && !c.closing);
        if !open {
            return;
        }
        inc(&self.counters.messages_in);
        let max = self.state.config.max_ws_message_bytes;
        if text.len() > max {
            let why = format!(
                "a packet of {} bytes is over the {max}-byte limit",
                text.len()
            );
            self.refuse_protocol(key, "max_ws_message_bytes", close::MESSAGE_TOO_BIG, &why);
        } else {
            self.handle_text(key, text, now);
        }
        self.drain_to_self(now);
    }

    /// Closes connection `key` for breaking its protocol (`rule` names the rule broken),
    /// with an audit record saying how.
    fn refuse_protocol(&mut self, key: ConnKey, rule: &str, code: u16, why: &str) {
        self.audit_conn(
            key,
            AuditKind::Security,
            AuditAction::Protocol,
            AuditDecision::Deny,
            None,
            Some(rule),
            Some(why.to_owned()),
        );
        self.close_ws(key, code, why);
    }

    pub(super) fn handle_message(&mut self, key: ConnKey, msg: Message, now: Instant) {
        match msg {
            Message::Text(text) => self.handle_text(key, &text, now),
            Message::Binary(_) => {
                let err = ParseError::Binary;
                self.send_error_message(key, err.fault(), &err.to_string());
            }
            Message::Ping(payload) => {
                self.send_frame(key, frame::encode_frame(Opcode::Pong, &payload))
            }
            Message::Pong(_) => {}
            Message::Close(frame) => {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.peer_closed = true;
                }
                // A recoverable connection's transport closing is not the client leaving
                // (it reconnects with its pid): the socket is let go, the connection kept.
                if self.park(key, now) {
                    if let Some(conn) = self.conns.get_mut(key) {
                        mark_ready(conn, key, &mut self.ready);
                    }
                    return;
                }
                // Echo the peer's code, as RFC 6455 §5.5.1 asks; a close without one gets 1000.
                let code = frame.map_or(close::NORMAL, |f| f.code);
                self.close_ws(key, code, "");
            }
        }
    }

    /// Parses a text message in the connection's wire and acts on the command.
    pub(super) fn handle_text(&mut self, key: ConnKey, text: &[u8], now: Instant) {
        let (app, wire) = match self.conns.get(key) {
            Some(conn) => (conn.app, conn.wire),
            None => return,
        };
        inc(&self.counters.app(app).messages_in);
        let command = match wire.parse(text) {
            Ok(command) => command,
            Err(err) if err.closes() => {
                self.refuse_protocol(key, "socketio", close::PROTOCOL_ERROR, &err.to_string());
                return;
            }
            Err(err) => {
                self.send_error_message(key, err.fault(), &err.to_string());
                return;
            }
        };
        match command {
            Command::Ping => self.reply(key, &Reply::Pong),
            Command::Pong => {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.last_seen = now;
                    conn.ping_sent = None;
                }
            }
            Command::Subscribe(request) => self.subscribe(key, request),
            Command::Unsubscribe { channel } => self.unsubscribe(key, &channel),
            Command::ClientEvent {
                event,
                channel,
                data,
            } => {
                self.client_event(key, &event, &channel, &data, now);
            }
            Command::Read { channel, id } => self.read_receipt(key, &channel, &id, now),
            Command::TypingGet { channel, ack } => self.typing_get(key, &channel, ack, now),
            Command::Signin { auth, user_data } => self.signin(key, &auth, &user_data),
            Command::Renew { token } => self.renew(key, &token, now),
            Command::Unsupported { event } => {
                let text = format!("unsupported event {event:?}");
                self.send_error_message(key, Fault::UnsupportedEvent, &text);
            }
            Command::Quit => {
                // Leaving on purpose: nothing to recover.
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.recovery = None;
                }
                self.close_ws(key, close::NORMAL, "");
            }
            Command::OtherNamespace { namespace } => {
                let reply = Reply::NamespaceRefused {
                    namespace: &namespace,
                };
                self.reply(key, &reply);
            }
            Command::Ignored => {}
        }
    }
}
