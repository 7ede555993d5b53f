//! The subscription to Redis as a state machine: values in (`handle_*`), commands and
//! connection effects out (`poll_*`), time as a parameter.
//!
//! A connection authenticates (when the URL has credentials) and sends `PSUBSCRIBE`; once
//! Redis confirms the pattern, `pmessage`s are handed back as [`Message`]s. A connection
//! that is refused, breaks, or stays silent past a `PING` is dropped and another is tried
//! after a back-off that doubles from [`FIRST_RETRY`] to [`LAST_RETRY`] and starts over once a
//! subscription has been confirmed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::core::cluster::link::Credentials;
use crate::core::cluster::resp::{Value, encode_command};

/// The wait before the first reconnection attempt.
pub const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between attempts.
pub const LAST_RETRY: Duration = Duration::from_secs(5);

/// What the subscription starts from.
#[derive(Debug, Clone)]
pub struct SubscriberOptions {
    /// The `PSUBSCRIBE` pattern (see [`super::pattern`]).
    pub pattern: String,
    /// What `AUTH` sends; `None`: no `AUTH`.
    pub credentials: Option<Credentials>,
    /// Silence after which a `PING` is sent; as long again without an answer and the
    /// connection is given up.
    pub ping_interval: Duration,
}

/// What the shell must do to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Open a connection, then call [`Subscriber::handle_connected`] or
    /// [`Subscriber::handle_lost`].
    Connect,
    /// Close the connection; nothing it sends afterwards is for the subscriber.
    Disconnect,
}

/// Something worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Redis confirmed the pattern.
    Subscribed,
    /// The connection was lost or refused; the next attempt is after `retry_in`.
    Lost {
        /// The wait before the next attempt.
        retry_in: Duration,
    },
    /// Redis answered with an error (e.g. a wrong password), as it wrote it.
    Refused(String),
    /// Redis did not answer a `PING`.
    Silent,
    /// A reply that is none of the subscription's.
    Unexpected,
}

/// A `pmessage`: the Redis channel it was published to and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The Redis channel, prefix included.
    pub channel: Bytes,
    /// The payload as published.
    pub payload: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No connection; the next attempt is at `at`.
    Waiting { at: Instant },
    /// An attempt is under way.
    Connecting,
    /// Connected: `subscribed` once Redis confirmed the pattern, `ping_sent` while a `PING`
    /// is unanswered.
    Open {
        subscribed: bool,
        last_heard: Instant,
        ping_sent: Option<Instant>,
    },
}

/// The subscription.
#[derive(Debug)]
pub struct Subscriber {
    options: SubscriberOptions,
    state: State,
    retry: Duration,
    connects: u64,
    transmit: BytesMut,
    effects: VecDeque<Effect>,
    notices: VecDeque<Notice>,
}

impl Subscriber {
    /// A subscriber that connects at once.
    pub fn new(options: SubscriberOptions, now: Instant) -> Self {
        Self {
            options,
            state: State::Waiting { at: now },
            retry: FIRST_RETRY,
            connects: 0,
            transmit: BytesMut::new(),
            effects: VecDeque::new(),
            notices: VecDeque::new(),
        }
    }

    /// Connection attempts made after the first: one per loss of the connection (or failed
    /// attempt).
    pub fn reconnects(&self) -> u64 {
        self.connects.saturating_sub(1)
    }

    /// Whether Redis has confirmed the pattern on the current connection.
    pub fn is_subscribed(&self) -> bool {
        matches!(
            self.state,
            State::Open {
                subscribed: true,
                ..
            }
        )
    }

    /// When [`Subscriber::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { at } => Some(at),
            State::Connecting => None,
            State::Open {
                last_heard,
                ping_sent,
                ..
            } => Some(ping_sent.unwrap_or(last_heard) + self.options.ping_interval),
        }
    }

    /// Time has passed: connect when the wait is over, ping a silent Redis, give up on one
    /// that did not answer.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Waiting { at } if now >= at => {
                self.state = State::Connecting;
                self.connects += 1;
                self.effects.push_back(Effect::Connect);
            }
            State::Open {
                subscribed,
                last_heard,
                ping_sent: None,
            } if now >= last_heard + self.options.ping_interval => {
                encode_command(&[b"PING"], &mut self.transmit);
                self.state = State::Open {
                    subscribed,
                    last_heard,
                    ping_sent: Some(now),
                };
            }
            State::Open {
                ping_sent: Some(sent),
                ..
            } if now >= sent + self.options.ping_interval => {
                self.notices.push_back(Notice::Silent);
                self.drop_connection(now);
            }
            _ => {}
        }
    }

    /// The connection is open: authenticate and subscribe.
    pub fn handle_connected(&mut self, now: Instant) {
        if self.state != State::Connecting {
            return;
        }
        self.transmit.clear();
        if let Some(credentials) = &self.options.credentials {
            let password = credentials.password.as_bytes();
            match &credentials.username {
                Some(user) => {
                    encode_command(&[b"AUTH", user.as_bytes(), password], &mut self.transmit)
                }
                None => encode_command(&[b"AUTH", password], &mut self.transmit),
            }
        }
        encode_command(
            &[b"PSUBSCRIBE", self.options.pattern.as_bytes()],
            &mut self.transmit,
        );
        self.state = State::Open {
            subscribed: false,
            last_heard: now,
            ping_sent: None,
        };
    }

    /// The attempt failed or the connection ended.
    pub fn handle_lost(&mut self, now: Instant) {
        if matches!(self.state, State::Waiting { .. }) {
            return;
        }
        self.schedule(now);
    }

    /// A value Redis sent; a `pmessage` is returned.
    pub fn handle_value(&mut self, value: Value, now: Instant) -> Option<Message> {
        let State::Open { subscribed, .. } = self.state else {
            return None;
        };
        self.state = State::Open {
            subscribed,
            last_heard: now,
            ping_sent: None,
        };
        if let Some(text) = value.error_text() {
            self.notices.push_back(Notice::Refused(text.into_owned()));
            self.drop_connection(now);
            return None;
        }
        // `AUTH`'s answer, and `PING`'s before the subscription is confirmed.
        if value
            .as_bytes()
            .is_some_and(|reply| matches!(&reply[..], b"OK" | b"PONG"))
        {
            return None;
        }
        let Some(items) = value.into_array() else {
            self.notices.push_back(Notice::Unexpected);
            return None;
        };
        let mut items = items.into_iter();
        let kind = items.next();
        match kind.as_ref().and_then(Value::as_bytes).map(|k| &k[..]) {
            Some(b"pmessage") => {
                let _pattern = items.next();
                let channel = items.next()?.as_bytes()?.clone();
                let payload = items.next()?.as_bytes()?.clone();
                Some(Message { channel, payload })
            }
            Some(b"psubscribe") => {
                self.retry = FIRST_RETRY;
                self.state = State::Open {
                    subscribed: true,
                    last_heard: now,
                    ping_sent: None,
                };
                self.notices.push_back(Notice::Subscribed);
                None
            }
            Some(b"pong") => None,
            _ => {
                self.notices.push_back(Notice::Unexpected);
                None
            }
        }
    }

    /// Moves the bytes to send into `out`; `true` if there were any.
    pub fn poll_transmit(&mut self, out: &mut BytesMut) -> bool {
        if self.transmit.is_empty() {
            return false;
        }
        out.extend_from_slice(&self.transmit);
        self.transmit.clear();
        true
    }

    /// The next thing to do to the connection.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The next thing to log.
    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }

    fn drop_connection(&mut self, now: Instant) {
        self.effects.push_back(Effect::Disconnect);
        self.schedule(now);
    }

    fn schedule(&mut self, now: Instant) {
        let retry_in = self.retry;
        self.retry = (self.retry * 2).min(LAST_RETRY);
        self.transmit.clear();
        self.state = State::Waiting { at: now + retry_in };
        self.notices.push_back(Notice::Lost { retry_in });
    }
}

#[cfg(test)]
mod tests;
