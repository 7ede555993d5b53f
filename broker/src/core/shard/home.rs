//! The authoritative state of a channel, kept at its home shard.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::core::auth::channel::PresenceMember;
use crate::core::channel::presence::{JoinOutcome, LeaveOutcome, PresenceRoster};
use crate::core::ids::{SocketId, UserId};

use super::mesh::{ChannelStats, ShardId};

/// Subscriber counts per shard and, for presence channels, the roster.
#[derive(Debug)]
pub(super) struct HomeChannel {
    per_shard: Vec<u32>,
    total: usize,
    roster: Option<PresenceRoster>,
    /// Cache channels: the last event's frame and when it was published.
    cache: Option<(Bytes, Instant)>,
}

/// The result of admitting a socket.
pub(super) struct Admitted {
    /// Presence: the user had no other socket in the channel.
    pub first_socket_of_user: bool,
}

/// The result of releasing a socket.
pub(super) struct Released {
    /// Presence: that was the user's last socket in the channel.
    pub last_socket_of_user: bool,
}

impl HomeChannel {
    pub(super) fn new(shard_count: usize) -> Self {
        Self {
            per_shard: vec![0; shard_count],
            total: 0,
            roster: None,
            cache: None,
        }
    }

    /// Remembers the last event of a cache channel.
    pub(super) fn remember(&mut self, frame: Bytes, now: Instant) {
        self.cache = Some((frame, now));
    }

    /// The cached event, if younger than `ttl`.
    pub(super) fn cached(&self, now: Instant, ttl: Duration) -> Option<Bytes> {
        self.cache
            .as_ref()
            .filter(|(_, at)| now.saturating_duration_since(*at) < ttl)
            .map(|(frame, _)| frame.clone())
    }

    /// Drops a cached event older than `ttl`.
    pub(super) fn forget_expired(&mut self, now: Instant, ttl: Duration) {
        if self.cached(now, ttl).is_none() {
            self.cache = None;
        }
    }

    /// Counts a new subscriber on `shard`; `None` if a presence roster is full.
    pub(super) fn admit(
        &mut self,
        shard: ShardId,
        socket: SocketId,
        member: Option<&PresenceMember>,
        max_members: usize,
    ) -> Option<Admitted> {
        let first_socket_of_user = match member {
            Some(member) => {
                let roster = self.roster.get_or_insert_with(PresenceRoster::default);
                match roster.join(member, socket, max_members) {
                    JoinOutcome::Full => return None,
                    outcome => outcome == JoinOutcome::FirstSocket,
                }
            }
            None => false,
        };
        if let Some(count) = self.per_shard.get_mut(shard) {
            *count += 1;
            self.total += 1;
        }
        Some(Admitted {
            first_socket_of_user,
        })
    }

    /// Forgets a subscriber on `shard`.
    pub(super) fn release(
        &mut self,
        shard: ShardId,
        socket: SocketId,
        user: Option<&UserId>,
    ) -> Released {
        if let Some(count) = self.per_shard.get_mut(shard)
            && *count > 0
        {
            *count -= 1;
            self.total -= 1;
        }
        let last_socket_of_user = match (user, self.roster.as_mut()) {
            (Some(user), Some(roster)) => roster.leave(user, socket) == LeaveOutcome::LastSocket,
            _ => false,
        };
        Released {
            last_socket_of_user,
        }
    }

    /// The roster, for presence channels.
    pub(super) fn roster(&self) -> Option<&PresenceRoster> {
        self.roster.as_ref()
    }

    /// Whether any socket is subscribed.
    pub(super) fn is_occupied(&self) -> bool {
        self.total > 0
    }

    /// Whether nothing is left to remember.
    pub(super) fn is_empty(&self) -> bool {
        self.total == 0
            && self.roster.as_ref().is_none_or(PresenceRoster::is_empty)
            && self.cache.is_none()
    }

    /// Shards with at least one subscriber.
    pub(super) fn shards_with_subscribers(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.per_shard
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(shard, _)| shard)
    }

    pub(super) fn stats(&self) -> ChannelStats {
        ChannelStats {
            subscription_count: self.total,
            user_count: self.roster.as_ref().map_or(0, PresenceRoster::user_count),
        }
    }

    pub(super) fn users(&self) -> Vec<UserId> {
        self.roster
            .as_ref()
            .map(|r| r.members().map(|(id, _)| id.clone()).collect())
            .unwrap_or_default()
    }
}
