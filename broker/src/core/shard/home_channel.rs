//! The authoritative state of a channel, kept at its home shard.

use std::time::{Duration, Instant};

use crate::core::auth::channel::PresenceMember;
use crate::core::channel::presence::{JoinOutcome, LeaveOutcome, PresenceRoster};
use crate::core::ids::{SocketId, UserId};
use crate::core::wire::Frames;

use super::mesh::{ChannelStats, ShardId};

/// Subscriber counts per shard and, for presence channels, the roster.
#[derive(Debug)]
pub(super) struct HomeChannel {
    per_shard: Vec<u32>,
    total: usize,
    roster: Option<PresenceRoster>,
    /// Cache channels: the last event and when it was published.
    cache: Option<(Frames, Instant)>,
    /// Whether `channel_occupied` went out without a `channel_vacated` after it.
    occupied_announced: bool,
    /// Since when the channel has been empty, while its `channel_vacated` waits.
    vacated_since: Option<Instant>,
    /// Users whose last socket left, while their `member_removed` waits.
    leaving: Vec<(UserId, Instant)>,
}

/// Webhook-relevant facts of an admission.
pub(super) struct Occupancy {
    /// `channel_occupied` is due.
    pub announce_occupied: bool,
    /// `member_added` is due (the user is new, not back within the leave delay).
    pub announce_member: bool,
}

/// Delayed webhooks that came due.
#[derive(Default)]
pub(super) struct DueLeaves {
    /// `channel_vacated` is due.
    pub vacated: bool,
    /// `member_removed` is due for these users.
    pub removed: Vec<UserId>,
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
    /// Presence, when that was the last socket: the `user_info` the user had.
    pub left_info: Option<std::sync::Arc<str>>,
}

impl HomeChannel {
    pub(super) fn new(shard_count: usize) -> Self {
        Self {
            per_shard: vec![0; shard_count],
            total: 0,
            roster: None,
            cache: None,
            occupied_announced: false,
            vacated_since: None,
            leaving: Vec::new(),
        }
    }

    /// Updates the webhook state after [`HomeChannel::admit`]: a channel occupied again (or a
    /// user back) within the leave delay cancels the pending leave instead of announcing.
    pub(super) fn note_admission(
        &mut self,
        admitted: &Admitted,
        user: Option<&UserId>,
    ) -> Occupancy {
        let mut announce_occupied = false;
        if self.total == 1 {
            if self.vacated_since.take().is_none() && !self.occupied_announced {
                announce_occupied = true;
            }
            self.occupied_announced = true;
        }
        let mut announce_member = false;
        if admitted.first_socket_of_user
            && let Some(user) = user
        {
            let before = self.leaving.len();
            self.leaving.retain(|(u, _)| u != user);
            announce_member = self.leaving.len() == before;
        }
        Occupancy {
            announce_occupied,
            announce_member,
        }
    }

    /// Updates the webhook state after [`HomeChannel::release`].
    pub(super) fn note_release(
        &mut self,
        released: &Released,
        user: Option<&UserId>,
        now: Instant,
    ) {
        if self.total == 0 && self.occupied_announced && self.vacated_since.is_none() {
            self.vacated_since = Some(now);
        }
        if released.last_socket_of_user
            && let Some(user) = user
        {
            self.leaving.push((user.clone(), now));
        }
    }

    /// Cluster mode while Redis is out of reach (this node acts on its own view): the
    /// channel became occupied. Returns whether to announce it (not if a `channel_vacated`
    /// this node was holding back is cancelled instead).
    pub(super) fn cluster_occupied(&mut self) -> bool {
        self.occupied_announced = true;
        self.vacated_since.take().is_none()
    }

    /// Cluster mode while Redis is out of reach (this node acts on its own view): the
    /// channel became vacant; `channel_vacated` follows after the leave delay unless it is
    /// occupied again.
    pub(super) fn cluster_vacated(&mut self, now: Instant) {
        self.occupied_announced = true;
        self.vacated_since.get_or_insert(now);
    }

    /// Cluster mode while Redis is out of reach (this node acts on its own view): `user`
    /// joined. Returns whether to announce it (not if a pending `member_removed` is
    /// cancelled instead).
    pub(super) fn cluster_member_added(&mut self, user: &UserId) -> bool {
        let before = self.leaving.len();
        self.leaving.retain(|(u, _)| u != user);
        self.leaving.len() == before
    }

    /// Cluster mode while Redis is out of reach (this node acts on its own view): `user`
    /// left; `member_removed` follows after the delay.
    pub(super) fn cluster_member_removed(&mut self, user: UserId, now: Instant) {
        if !self.leaving.iter().any(|(u, _)| *u == user) {
            self.leaving.push((user, now));
        }
    }

    /// Leaves whose delay has passed.
    pub(super) fn due_leaves(&mut self, now: Instant, delay: Duration) -> DueLeaves {
        let mut due = DueLeaves::default();
        if let Some(since) = self.vacated_since
            && now.saturating_duration_since(since) >= delay
        {
            self.vacated_since = None;
            self.occupied_announced = false;
            due.vacated = true;
        }
        let mut still = Vec::new();
        for (user, since) in self.leaving.drain(..) {
            if now.saturating_duration_since(since) >= delay {
                due.removed.push(user);
            } else {
                still.push((user, since));
            }
        }
        self.leaving = still;
        due
    }

    /// Remembers the last event of a cache channel.
    pub(super) fn remember(&mut self, frames: Frames, now: Instant) {
        self.cache = Some((frames, now));
    }

    /// The cached event, if younger than `ttl`.
    pub(super) fn cached(&self, now: Instant, ttl: Duration) -> Option<&Frames> {
        self.cache
            .as_ref()
            .filter(|(_, at)| now.saturating_duration_since(*at) < ttl)
            .map(|(frames, _)| frames)
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
        let outcome = match (user, self.roster.as_mut()) {
            (Some(user), Some(roster)) => roster.leave(user, socket),
            _ => LeaveOutcome::NotMember,
        };
        match outcome {
            LeaveOutcome::LastSocket(info) => Released {
                last_socket_of_user: true,
                left_info: info,
            },
            _ => Released {
                last_socket_of_user: false,
                left_info: None,
            },
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
            && self.vacated_since.is_none()
            && self.leaving.is_empty()
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
