//! Typing state of one presence channel, as its home shard keeps it: who is typing, since
//! when, and when their flag was last renewed. Time is a parameter.

use std::time::{Duration, Instant};

use crate::core::ids::UserId;

/// The client event that sets (or renews) the sender's typing flag.
pub const TYPING_EVENT: &str = "client-typing";
/// The client event that clears it; the broker announces the same event when a flag expires.
pub const TYPING_STOP_EVENT: &str = "client-typing-stop";

/// What a client event asks of its sender's typing flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypingSignal {
    /// `client-typing`: set or renew it.
    Start,
    /// `client-typing-stop`: clear it.
    Stop,
}

impl TypingSignal {
    /// The signal a client event's name gives; `None` for any other event.
    pub fn of_event(event: &str) -> Option<Self> {
        match event {
            TYPING_EVENT => Some(Self::Start),
            TYPING_STOP_EVENT => Some(Self::Stop),
            _ => None,
        }
    }
}

/// What applying a signal changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypingChange {
    /// The member was not typing and now is.
    Started,
    /// The member was typing; the flag now lasts from now.
    Renewed,
    /// The member was typing and no longer is.
    Stopped,
    /// Nothing changed: a stop from a member not typing, or a start refused because
    /// `max_typists` are typing already.
    Unchanged,
}

#[derive(Clone, Debug)]
struct Typist {
    user: UserId,
    since: Instant,
    renewed: Instant,
}

/// The members typing on one channel, at most as many as the channel may have members.
#[derive(Clone, Debug, Default)]
pub struct Typists {
    typing: Vec<Typist>,
}

impl Typists {
    /// Applies `signal` from `user` at `now`; a new typist beyond `max_typists` is not kept.
    pub fn apply(
        &mut self,
        user: &UserId,
        signal: TypingSignal,
        max_typists: usize,
        now: Instant,
    ) -> TypingChange {
        let found = self.typing.iter().position(|t| t.user == *user);
        match (signal, found) {
            (TypingSignal::Start, Some(i)) => {
                if let Some(typist) = self.typing.get_mut(i) {
                    typist.renewed = now;
                }
                TypingChange::Renewed
            }
            (TypingSignal::Start, None) if self.typing.len() < max_typists => {
                self.typing.push(Typist {
                    user: user.clone(),
                    since: now,
                    renewed: now,
                });
                TypingChange::Started
            }
            (TypingSignal::Stop, Some(i)) => {
                self.typing.swap_remove(i);
                TypingChange::Stopped
            }
            _ => TypingChange::Unchanged,
        }
    }

    /// Forgets `user` (who left the channel); whether they were typing.
    pub fn forget(&mut self, user: &UserId) -> bool {
        let before = self.typing.len();
        self.typing.retain(|t| t.user != *user);
        self.typing.len() != before
    }

    /// Takes out the typists not renewed for `expire`, oldest renewal first.
    pub fn expire(&mut self, now: Instant, expire: Duration) -> Vec<UserId> {
        let mut expired: Vec<Typist> = Vec::new();
        self.typing.retain(|t| {
            let keep = now.saturating_duration_since(t.renewed) < expire;
            if !keep {
                expired.push(t.clone());
            }
            keep
        });
        expired.sort_by_key(|t| t.renewed);
        expired.into_iter().map(|t| t.user).collect()
    }

    /// Who is typing and since when, in the order they started.
    pub fn list(&self) -> Vec<(UserId, Instant)> {
        let mut list: Vec<(UserId, Instant)> = self
            .typing
            .iter()
            .map(|t| (t.user.clone(), t.since))
            .collect();
        list.sort_by_key(|(_, since)| *since);
        list
    }

    /// How many are typing.
    pub fn len(&self) -> usize {
        self.typing.len()
    }

    /// Whether nobody is typing.
    pub fn is_empty(&self) -> bool {
        self.typing.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse(id, 128).unwrap()
    }

    #[test]
    fn a_start_sets_a_second_renews_and_a_stop_clears() {
        let (t0, mut typists) = (Instant::now(), Typists::default());
        let ann = user("ann");
        assert_eq!(
            typists.apply(&ann, TypingSignal::Start, 10, t0),
            TypingChange::Started
        );
        let later = t0 + Duration::from_secs(3);
        assert_eq!(
            typists.apply(&ann, TypingSignal::Start, 10, later),
            TypingChange::Renewed
        );
        assert_eq!(typists.list(), vec![(ann.clone(), t0)]);
        assert_eq!(
            typists.apply(&ann, TypingSignal::Stop, 10, later),
            TypingChange::Stopped
        );
        assert!(typists.is_empty());
        assert_eq!(
            typists.apply(&ann, TypingSignal::Stop, 10, later),
            TypingChange::Unchanged
        );
    }

    #[test]
    fn a_flag_expires_only_once_its_renewal_is_expire_old() {
        let (t0, mut typists) = (Instant::now(), Typists::default());
        let expire = Duration::from_secs(5);
        typists.apply(&user("ann"), TypingSignal::Start, 10, t0);
        typists.apply(
            &user("bob"),
            TypingSignal::Start,
            10,
            t0 + Duration::from_secs(2),
        );
        let almost = t0 + Duration::from_millis(4_999);
        assert!(typists.expire(almost, expire).is_empty());
        assert_eq!(typists.expire(t0 + expire, expire), vec![user("ann")]);
        assert_eq!(typists.len(), 1);
    }

    #[test]
    fn typists_beyond_the_limit_are_not_kept() {
        let (t0, mut typists) = (Instant::now(), Typists::default());
        assert_eq!(
            typists.apply(&user("a"), TypingSignal::Start, 2, t0),
            TypingChange::Started
        );
        assert_eq!(
            typists.apply(&user("b"), TypingSignal::Start, 2, t0),
            TypingChange::Started
        );
        assert_eq!(
            typists.apply(&user("c"), TypingSignal::Start, 2, t0),
            TypingChange::Unchanged
        );
        assert!(typists.forget(&user("a")));
        assert!(!typists.forget(&user("a")));
    }
}
