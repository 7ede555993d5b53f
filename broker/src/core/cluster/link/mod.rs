//! The node's link to Redis as a deterministic state machine: one connection (RESP3, so
//! commands and pub/sub share it) for the whole node.
//!
//! The shell feeds it what happens (`handle_*`: the connection is made or breaks, a value is
//! read, a shard asks something, time passes) and carries out what it asks (`poll_*`: bytes
//! to write, messages for the shards, effects, and when to call again). It does no I/O and
//! reads no clock: every input carries `now`.
//!
//! Shards send [`ClusterOut`] requests; the link turns them into commands, pipelines them,
//! and routes replies and pub/sub messages to the shards that own them. While Redis cannot
//! be reached the node is degraded: events are handed straight back for local delivery,
//! channel reports are answered with "not applied" (the home shard then acts alone), queries
//! are answered [`AnswerPart::Unavailable`]. After every connect the link asks each shard
//! for its complete state and reports it again, holding back the reports made meanwhile
//! until Redis has the complete state.

mod commands;
mod options;
mod output;
mod replies;
mod resync;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use self::commands::{Commands, Pipeline, Settings};
use self::options::indexed;
pub use self::options::{AppOptions, Credentials, LinkOptions, NodeView};
pub use self::output::{Effect, LinkStats, Notice};
use self::resync::{Dump, Report, Resync};
use super::resp::Value;
use super::{ClusterOut, ResyncRound};
use crate::core::ids::{AppIdx, UserId};
use crate::core::rand::SplitMix64;
use crate::core::shard::{AnswerPart, MeshMsg, ShardId, user_home_shard};

/// The wait before the first reconnection attempt, and after a connection that was made.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a stopping node waits for Redis to confirm its removal.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a node claims due webhook events from the cluster's queue.
const WEBHOOK_POLL: Duration = Duration::from_millis(100);
/// How long Redis may leave a command unanswered, beyond two heartbeats, before the
/// connection is given up.
const REPLY_GRACE: Duration = Duration::from_secs(1);

/// The connection as the link sees it.
#[derive(Debug)]
enum Connection {
    /// None; at `retry_at` the link asks for one.
    Down {
        /// When to try again.
        retry_at: Instant,
    },
    /// The shell is trying to connect ([`Effect::Connect`]).
    Connecting,
    /// Connected: the commands sent and the replies awaited.
    Open(Pipeline),
    /// None, and none wanted: the link has stopped.
    Closed,
}

/// Where the link is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Connected or trying to be.
    Running,
    /// Removing this node from the cluster; stopped at `deadline` at the latest.
    Leaving {
        /// When to stop waiting for Redis's confirmation.
        deadline: Instant,
    },
    /// Done: nothing more is sent.
    Stopped,
}

/// The link to Redis. See the [module documentation](self).
pub struct Link {
    settings: Settings,
    apps: Vec<AppOptions>,
    by_id: HashMap<String, AppIdx>,
    heartbeat_interval: Duration,
    shards: usize,
    node: Box<dyn NodeView>,
    rng: SplitMix64,
    connection: Connection,
    phase: Phase,
    /// The epoch Redis had at the last connection.
    epoch: Option<Bytes>,
    /// The epoch changed since the last connection: Redis lost its data, so reports made to
    /// restore it announce nothing.
    quiet: bool,
    resync: Option<Resync>,
    /// The last resynchronization begun.
    round: ResyncRound,
    /// Connected and synchronized (otherwise degraded).
    up: bool,
    /// A webhook claim is waiting for its reply (claims are not piled up).
    claiming: bool,
    backoff: Duration,
    next_heartbeat: Instant,
    next_claim: Instant,
    mesh: VecDeque<(ShardId, MeshMsg)>,
    effects: VecDeque<Effect>,
    stats: LinkStats,
}

impl Link {
    /// A link for `options`, reading its node through `node`, started at `now`; its first
    /// effect asks for a connection.
    pub fn new(options: LinkOptions, node: Box<dyn NodeView>, now: Instant) -> Self {
        let by_id = indexed(&options.apps)
            .map(|(idx, app)| (app.id.clone(), idx))
            .collect();
        // A zero interval would make every timeout due at once, forever.
        let heartbeat_interval = options.heartbeat_interval.max(Duration::from_millis(1));
        Self {
            settings: Settings::new(&options),
            by_id,
            heartbeat_interval,
            shards: options.shards.max(1),
            node,
            rng: SplitMix64::new(options.seed),
            apps: options.apps,
            connection: Connection::Connecting,
            phase: Phase::Running,
            epoch: None,
            quiet: false,
            resync: None,
            round: 0,
            up: false,
            claiming: false,
            backoff: FIRST_BACKOFF,
            next_heartbeat: now + heartbeat_interval,
            next_claim: now + WEBHOOK_POLL,
            mesh: VecDeque::new(),
            effects: VecDeque::from([Effect::Connect]),
            stats: LinkStats::default(),
        }
    }

    // ---- input ------------------------------------------------------------------------

    /// The connection [`Effect::Connect`] asked for is made: the handshake is queued, then
    /// the first heartbeat and the subscription; the resynchronization starts when the
    /// epoch is known.
    pub fn handle_connected(&mut self, now: Instant) {
        if !matches!(self.connection, Connection::Connecting) {
            return;
        }
        if self.phase != Phase::Running {
            self.connection = Connection::Closed;
            self.effects.push_back(Effect::Disconnect);
            return;
        }
        self.stats.connects += 1;
        self.backoff = FIRST_BACKOFF;
        self.connection = Connection::Open(Pipeline::new(now));
        let fresh_epoch = format!("{:016x}", self.rng.next_u64());
        if let Some(mut commands) = self.commands() {
            commands.handshake(&fresh_epoch);
            commands.heartbeat(true);
            commands.subscribe();
        }
    }

    /// The connection broke, or the attempt [`Effect::Connect`] asked for failed. Whatever
    /// waited on the connection is answered as if Redis had not been reached.
    pub fn handle_lost(&mut self, now: Instant) {
        match self.connection {
            Connection::Connecting => self.retry_later(now),
            Connection::Open(_) => self.lose(now),
            Connection::Down { .. } | Connection::Closed => {}
        }
    }

    /// One value read from Redis: a reply to the oldest command awaiting one, or a push.
    pub fn handle_value(&mut self, value: Value, now: Instant) {
        let Connection::Open(pipe) = &mut self.connection else {
            return;
        };
        if let Value::Push(items) = value {
            self.handle_push(items, now);
            return;
        }
        pipe.last_reply = now;
        match pipe.pending.pop_front() {
            Some(pending) => self.handle_reply(pending, value, now),
            None => {
                self.notice(Notice::UnexpectedReply);
                self.disconnect(now);
            }
        }
    }

    /// A shard's request.
    pub fn handle_out(&mut self, out: ClusterOut, now: Instant) {
        match out {
            ClusterOut::Publish {
                app,
                channel,
                frames,
                except,
                confirm,
            } => {
                let sent = self.commands().is_some_and(|mut c| {
                    c.publish(app, &channel, frames.pusher(), except, confirm)
                });
                if sent {
                    self.stats.published += 1;
                } else {
                    self.stats.local_only += 1;
                    self.deliver_here(app, channel, frames, except, true, now);
                    if let Some(reply_to) = confirm {
                        self.answer(reply_to, AnswerPart::Applied);
                    }
                }
            }
            ClusterOut::Broadcast(command) => {
                if let Some(mut commands) = self.commands() {
                    commands.command(command);
                    self.stats.published += 1;
                }
            }
            ClusterOut::Sync(sync) => self.handle_report(Report::Channel(sync)),
            ClusterOut::UserStatus { app, user, online } => {
                self.handle_report(Report::User { app, user, online });
            }
            ClusterOut::WhoIsOnline {
                app,
                watcher,
                users,
            } => {
                let asked = match self.commands() {
                    Some(mut c) if !users.is_empty() => c.who_is_online(app, watcher, users),
                    _ => Err(users),
                };
                if let Err(users) = asked {
                    self.online_here(app, watcher, users);
                }
            }
            ClusterOut::Query { reply_to, query } => {
                let asked = self
                    .commands()
                    .is_some_and(|mut c| c.query(reply_to, &query));
                if !asked {
                    self.answer(reply_to, AnswerPart::Unavailable);
                }
            }
            ClusterOut::Dump {
                round,
                channels,
                users,
                resources,
            } => self.gather(
                round,
                Dump {
                    channels,
                    users,
                    resources,
                },
            ),
        }
    }

    /// Time passed: `now` is at or after [`Link::poll_timeout`] (earlier calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Stopped => return,
            Phase::Leaving { deadline } => {
                if now >= deadline {
                    self.stop_now();
                }
                return;
            }
            Phase::Running => {}
        }
        if let Connection::Down { retry_at } = self.connection
            && now >= retry_at
        {
            self.connection = Connection::Connecting;
            self.effects.push_back(Effect::Connect);
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.heartbeat_interval;
            self.beat(now);
        }
        if now >= self.next_claim {
            self.next_claim = now + WEBHOOK_POLL;
            self.claim_webhooks();
        }
    }

    /// The node shuts down: it removes its part of the cluster's state (members leave at
    /// once, not after the node timeout) and waits briefly for Redis to confirm; then the
    /// link is stopped. Heartbeats, claims and reconnections end here.
    pub fn handle_stop(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        match self.commands() {
            Some(mut commands) => {
                commands.leave();
                self.phase = Phase::Leaving {
                    deadline: now + LEAVE_TIMEOUT,
                };
            }
            None => self.stop_now(),
        }
    }

    // ---- output -----------------------------------------------------------------------

    /// Moves the commands queued for Redis into `buf`; `false` if there were none.
    pub fn poll_transmit(&mut self, buf: &mut BytesMut) -> bool {
        let Connection::Open(pipe) = &mut self.connection else {
            return false;
        };
        if pipe.out.is_empty() {
            return false;
        }
        if buf.is_empty() {
            std::mem::swap(buf, &mut pipe.out);
        } else {
            buf.extend_from_slice(&pipe.out);
            pipe.out.clear();
        }
        true
    }

    /// The next message for one of the node's shards, in the order the link made them.
    pub fn poll_mesh(&mut self) -> Option<(ShardId, MeshMsg)> {
        self.mesh.pop_front()
    }

    /// The next effect for the shell to carry out (see [`Effect`] for the order).
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// When [`Link::handle_timeout`] is due: the next heartbeat, webhook claim or
    /// reconnection attempt, or the end of waiting to leave; `None` once stopped.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Stopped => None,
            Phase::Leaving { deadline } => Some(deadline),
            Phase::Running => {
                let mut at = self.next_heartbeat.min(self.next_claim);
                if let Connection::Down { retry_at } = self.connection {
                    at = at.min(retry_at);
                }
                Some(at)
            }
        }
    }

    /// Whether the link is connected and synchronized (otherwise the node is degraded).
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Whether the link has stopped ([`Link::handle_stop`]): it will ask for nothing more.
    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// What the link has counted so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    // ---- the connection ---------------------------------------------------------------

    /// The commands of the live connection, unless there is none or the node is leaving.
    fn commands(&mut self) -> Option<Commands<'_>> {
        match (&self.phase, &mut self.connection) {
            (Phase::Running, Connection::Open(pipe)) => Some(Commands {
                settings: &self.settings,
                apps: &self.apps,
                node: &*self.node,
                pipe,
            }),
            _ => None,
        }
    }

    fn retry_later(&mut self, now: Instant) {
        self.connection = Connection::Down {
            retry_at: now + self.backoff,
        };
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Gives the connection up: the shell closes it.
    fn disconnect(&mut self, now: Instant) {
        self.effects.push_back(Effect::Disconnect);
        self.lose(now);
    }

    /// The connection is gone: the node is degraded, and whatever waited on the connection
    /// is answered as if Redis had not been reached.
    fn lose(&mut self, now: Instant) {
        let Connection::Open(pipe) = std::mem::replace(&mut self.connection, Connection::Closed)
        else {
            return;
        };
        self.retry_later(now);
        if std::mem::replace(&mut self.up, false) {
            self.notice(Notice::Lost);
        }
        self.claiming = false;
        for pending in pipe.pending {
            self.unanswered(pending);
        }
        self.abandon_resync();
        if matches!(self.phase, Phase::Leaving { .. }) {
            self.stop_now();
        }
    }

    fn stop_now(&mut self) {
        self.phase = Phase::Stopped;
        self.up = false;
        if let Connection::Open(_) = std::mem::replace(&mut self.connection, Connection::Closed) {
            self.effects.push_back(Effect::Disconnect);
        }
    }

    /// A heartbeat, unless Redis has left a command unanswered for too long: then the
    /// connection is given up instead.
    fn beat(&mut self, now: Instant) {
        let limit = self.heartbeat_interval * 2 + REPLY_GRACE;
        let Connection::Open(pipe) = &self.connection else {
            return;
        };
        if let Some(silent) = pipe.silent_for(now, limit) {
            self.notice(Notice::StoppedAnswering { silent });
            self.disconnect(now);
        } else if let Some(mut commands) = self.commands() {
            commands.heartbeat(false);
        }
    }

    /// Claims due webhook events, one claim at a time, while the node is in sync.
    fn claim_webhooks(&mut self) {
        if self.claiming || !self.up {
            return;
        }
        if let Some(mut commands) = self.commands() {
            commands.claim_webhooks();
            self.claiming = true;
        }
    }

    /// A shard's report: held during a resynchronization, else sent or acted on alone.
    fn handle_report(&mut self, report: Report) {
        if let Err(report) = self.hold(report) {
            self.report(report);
        }
    }

    fn notice(&mut self, notice: Notice) {
        self.effects.push_back(Effect::Notice(notice));
    }

    fn app_idx(&self, id: &str) -> Option<AppIdx> {
        self.by_id.get(id).copied()
    }

    fn user_home(&self, app: AppIdx, user: &UserId) -> ShardId {
        user_home_shard(app, user, self.shards)
    }
}
