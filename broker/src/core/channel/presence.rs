//! Presence rosters, kept at a channel's home shard.
//!
//! A user may be present through several sockets (tabs, devices). Members are keyed by user id,
//! so joining and leaving are O(1) lookups, never scans; `member_added` is due only for a user's
//! first socket and `member_removed` only after the last one leaves.

use std::sync::Arc;

use indexmap::IndexMap;

use crate::core::auth::channel::PresenceMember;
use crate::core::ids::{SocketId, UserId};

/// The members of one presence channel.
#[derive(Default, Debug)]
pub struct PresenceRoster {
    members: IndexMap<UserId, Member>,
}

#[derive(Debug)]
struct Member {
    /// `user_info` from the user's first socket; later sockets do not change it.
    info: Option<Arc<str>>,
    sockets: Vec<SocketId>,
}

/// What a join did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum JoinOutcome {
    /// The user was not present before: announce `member_added`.
    FirstSocket,
    /// The user was already present through another socket: announce nothing.
    AnotherSocket,
    /// The roster already has the maximum number of distinct users.
    Full,
}

/// What a leave did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum LeaveOutcome {
    /// That was the user's last socket: announce `member_removed`, with the `user_info`
    /// the user had (Socket.IO's `presence:leaving` carries it).
    LastSocket(Option<Arc<str>>),
    /// The user is still present through another socket.
    StillPresent,
    /// The socket was not a member (already gone).
    NotMember,
}

impl PresenceRoster {
    /// Adds `socket` as `member`, unless that would exceed `max_members` distinct users.
    pub fn join(
        &mut self,
        member: &PresenceMember,
        socket: SocketId,
        max_members: usize,
    ) -> JoinOutcome {
        if let Some(existing) = self.members.get_mut(&member.user_id) {
            if !existing.sockets.contains(&socket) {
                existing.sockets.push(socket);
            }
            return JoinOutcome::AnotherSocket;
        }
        if self.members.len() >= max_members {
            return JoinOutcome::Full;
        }
        self.members.insert(
            member.user_id.clone(),
            Member {
                info: member.user_info.clone(),
                sockets: vec![socket],
            },
        );
        JoinOutcome::FirstSocket
    }

    /// Removes `socket` from `user`'s sockets.
    pub fn leave(&mut self, user: &UserId, socket: SocketId) -> LeaveOutcome {
        let Some(member) = self.members.get_mut(user) else {
            return LeaveOutcome::NotMember;
        };
        let Some(position) = member.sockets.iter().position(|&s| s == socket) else {
            return LeaveOutcome::NotMember;
        };
        member.sockets.swap_remove(position);
        if member.sockets.is_empty() {
            let info = self.members.swap_remove(user).and_then(|m| m.info);
            LeaveOutcome::LastSocket(info)
        } else {
            LeaveOutcome::StillPresent
        }
    }

    /// Distinct users present.
    pub fn user_count(&self) -> usize {
        self.members.len()
    }

    /// Whether nobody is present.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Each distinct user with their `user_info` JSON text.
    pub fn members(&self) -> impl Iterator<Item = (&UserId, Option<&str>)> {
        self.members.iter().map(|(id, m)| (id, m.info.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str) -> PresenceMember {
        PresenceMember {
            user_id: UserId::parse(id, 128).unwrap(),
            user_info: Some(Arc::from(format!(r#"{{"name":"{id}"}}"#))),
        }
    }

    fn socket(n: u64) -> SocketId {
        SocketId::new(1, n)
    }

    #[test]
    fn member_added_only_on_first_socket_of_user() {
        let mut roster = PresenceRoster::default();
        assert_eq!(
            roster.join(&member("a"), socket(1), 100),
            JoinOutcome::FirstSocket
        );
        assert_eq!(
            roster.join(&member("a"), socket(2), 100),
            JoinOutcome::AnotherSocket
        );
        assert_eq!(roster.user_count(), 1);
    }

    #[test]
    fn member_removed_only_after_last_socket_of_user() {
        let mut roster = PresenceRoster::default();
        roster.join(&member("a"), socket(1), 100);
        roster.join(&member("a"), socket(2), 100);
        assert_eq!(
            roster.leave(&member("a").user_id, socket(1)),
            LeaveOutcome::StillPresent
        );
        assert_eq!(
            roster.leave(&member("a").user_id, socket(1)),
            LeaveOutcome::NotMember
        );
        assert_eq!(
            roster.leave(&member("a").user_id, socket(2)),
            LeaveOutcome::LastSocket(member("a").user_info)
        );
        assert!(roster.is_empty());
    }

    #[test]
    fn rejoining_with_the_same_socket_does_not_double_count() {
        let mut roster = PresenceRoster::default();
        roster.join(&member("a"), socket(1), 100);
        roster.join(&member("a"), socket(1), 100);
        assert_eq!(
            roster.leave(&member("a").user_id, socket(1)),
            LeaveOutcome::LastSocket(member("a").user_info)
        );
    }

    #[test]
    fn member_limit_counts_distinct_users_and_is_inclusive() {
        let mut roster = PresenceRoster::default();
        for i in 0..3 {
            assert_eq!(
                roster.join(&member(&i.to_string()), socket(i), 3),
                JoinOutcome::FirstSocket
            );
        }
        assert_eq!(roster.join(&member("3"), socket(9), 3), JoinOutcome::Full);
        // An already-present user may still add sockets when the roster is full.
        assert_eq!(
            roster.join(&member("0"), socket(10), 3),
            JoinOutcome::AnotherSocket
        );
    }

    #[test]
    fn first_sockets_user_info_is_kept() {
        let mut roster = PresenceRoster::default();
        roster.join(&member("a"), socket(1), 10);
        let mut other = member("a");
        other.user_info = Some(Arc::from("{}"));
        roster.join(&other, socket(2), 10);
        let (_, info) = roster.members().next().unwrap();
        assert_eq!(info, Some(r#"{"name":"a"}"#));
    }
}
