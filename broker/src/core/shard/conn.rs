//! One connection's protocol state, as its shard keeps it.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::core::auth::jwt::Identity;
use crate::core::channel::ChannelName;
use crate::core::ids::{AppIdx, SocketId, UserId};
use crate::core::rate_limit::TokenBucket;
use crate::core::wire::Wire;
use crate::core::ws::frame::MessageDecoder;

/// Where a subscription is in its round trip to the channel's home shard.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum SubState {
    /// Waiting for the app's auth endpoint ([`super::AuthCall`]).
    Authorizing,
    /// Sent to the home shard, not yet confirmed.
    Pending,
    /// Confirmed; the socket is in the local subscriber list.
    Active,
}

/// One channel a connection has joined or is joining.
#[derive(Debug)]
pub(super) struct Subscription {
    pub(super) channel: ChannelName,
    /// Presence channels: the member the socket joined as.
    pub(super) user: Option<UserId>,
    pub(super) state: SubState,
    /// What admitted it, and so whether a change can take it back.
    pub(super) grant: Grant,
    /// History channels, once admitted: the channel's last history id then (it has every
    /// event up to it, live or replayed); later ones are the shard's `history_delivered`.
    pub(super) history_id: Option<u64>,
}

/// What admitted a subscription.
#[derive(Debug)]
pub(super) enum Grant {
    /// No policy rule covers the channel: the signature alone admitted it, and nothing a
    /// resource or a token says can change that.
    Signature,
    /// Policy rules admitted it: checked again when a resource changes or the token is renewed.
    Rules {
        /// The presence member's signed `user_info`, from which the subject's tenant, actor
        /// and roles are read when the socket has neither token nor sign-in.
        member_info: Option<std::sync::Arc<str>>,
    },
}

/// One WebSocket connection's protocol state.
pub(super) struct Conn {
    pub(super) socket_id: SocketId,
    /// The wire protocol it speaks: every reply is encoded for it, every delivery is its
    /// wire's shared frame.
    pub(super) wire: Wire,
    pub(super) app: AppIdx,
    pub(super) decoder: MessageDecoder,
    pub(super) subscriptions: Vec<Subscription>,
    pub(super) connected_at: Instant,
    pub(super) last_seen: Instant,
    pub(super) ping_sent: Option<Instant>,
    /// The user this socket signed in as.
    pub(super) user: Option<UserId>,
    /// Users whose online status this socket follows.
    pub(super) watchlist: Vec<UserId>,
    /// The watched users this socket was last told are online.
    pub(super) watched_online: Vec<UserId>,
    /// `user_info` of the signed sign-in `user_data` (JSON text), for policies without JWT.
    pub(super) signin_info: Option<Box<str>>,
    /// The verified JWT identity, if the app uses tokens.
    pub(super) identity: Option<Box<Identity>>,
    /// The tenant the connection counts toward (from its token, else its sign-in).
    pub(super) tenant: Option<Box<str>>,
    /// The peer's address (for audit records).
    pub(super) remote: IpAddr,
    /// When the token expires (4010 then).
    pub(super) token_expires: Option<Instant>,
    pub(super) client_events: TokenBucket,
    /// Frames waiting for the writer, with when their event was accepted (`None` for
    /// replies and control frames).
    pub(super) outbox: VecDeque<(Bytes, Option<Instant>)>,
    pub(super) outbox_bytes: usize,
    pub(super) in_ready: bool,
    /// A close frame is queued; input is ignored and nothing else is sent.
    pub(super) closing: bool,
    /// The peer's close frame has arrived: the closing handshake is complete once ours is out.
    pub(super) peer_closed: bool,
    /// Who started the closing handshake, and its code.
    pub(super) close: Option<Close>,
    /// Socket.IO connection state recovery, when the app offers it.
    pub(super) recovery: Option<Box<Recovery>>,
    /// `[apps.receipts]` frames in the outbox and handed to the writer; made at the first
    /// such frame, so other connections carry one empty pointer.
    pub(super) receipts: Option<Box<super::receipts::ConnReceipts>>,
}

/// A recoverable connection's private session id and, while its transport is lost, since
/// when.
#[derive(Debug)]
pub(super) struct Recovery {
    pub(super) pid: Box<str>,
    pub(super) parked_since: Option<Instant>,
    /// The history offset the client sent back when it was not recovered, until it
    /// subscribes to that channel.
    pub(super) history_offset: Option<Box<crate::core::history::HistoryOffset>>,
}

/// Who started a connection's closing handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closer {
    /// The server (a fault, a shutdown, a slow consumer, ...).
    Server,
    /// The client sent the first close frame.
    Client,
}

impl Closer {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Closer::Server => "server",
            Closer::Client => "client",
        }
    }
}

/// A closing handshake: who started it, with which code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Close {
    /// Who sent the first close frame.
    pub by: Closer,
    /// Its code (the other side echoes it).
    pub code: u16,
}

/// A connection that has ended, as the shell logs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    /// Its socket id.
    pub socket_id: SocketId,
    /// Its app.
    pub app: AppIdx,
    /// The client's address.
    pub remote: IpAddr,
    /// How long it was open.
    pub lasted: std::time::Duration,
    /// The closing handshake; `None`: the TCP connection ended without one.
    pub close: Option<Close>,
}

impl Conn {
    /// The confirmed subscription to the channel a client named (`raw`, as sent).
    pub(super) fn active_channel(&self, raw: &str) -> Option<ChannelName> {
        self.subscriptions
            .iter()
            .find(|s| s.channel.as_str() == raw && s.state == SubState::Active)
            .map(|s| s.channel.clone())
    }
}
