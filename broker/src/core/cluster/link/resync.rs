//! Resynchronization. After every connect, and when another node had declared this one dead,
//! the link asks each shard for its complete state and reports all of it again. Reports the
//! shards make meanwhile are held back and sent after the sweep that ends the
//! resynchronization, so that no dump taken earlier lands in Redis after them.

use std::collections::VecDeque;

use super::commands::Commands;
use super::{Connection, Link, Phase};
use crate::core::cluster::{ChannelSync, ResyncRound, StoredResource};
use crate::core::ids::{AppIdx, UserId};
use crate::core::shard::MeshMsg;

/// Reports held back while a resynchronization gathers the shards' state; beyond this many,
/// reports go their usual way.
const MAX_HELD: usize = 1 << 20;

/// The shards' state, as they dump it.
#[derive(Debug, Default)]
pub(super) struct Dump {
    /// Homed channels, each with a [`PresenceOp::Join`] for every user present.
    ///
    /// [`PresenceOp::Join`]: crate::core::cluster::PresenceOp::Join
    pub channels: Vec<ChannelSync>,
    /// Users homed on the shards with a socket on this node.
    pub users: Vec<(AppIdx, UserId)>,
    /// The node's policy resources.
    pub resources: Vec<StoredResource>,
}

/// A report a home shard made of its node's state, which Redis takes only when the node is in
/// sync.
#[derive(Debug)]
pub(super) enum Report {
    /// A channel's state changed.
    Channel(Box<ChannelSync>),
    /// A user's first socket on this node arrived (`online`), or its last one left.
    User {
        app: AppIdx,
        user: UserId,
        online: bool,
    },
}

/// A resynchronization in progress: the shards' dumps being gathered, and the reports made
/// meanwhile, which must reach Redis after the dumps.
#[derive(Debug)]
pub(super) struct Resync {
    /// Which one: only its dumps count.
    round: ResyncRound,
    /// Shards that have not dumped yet.
    awaiting: usize,
    dump: Dump,
    held: VecDeque<Report>,
}

impl Link {
    /// Asks every shard for its state; the last shard's dump finishes the resynchronization.
    pub(super) fn begin_resync(&mut self) {
        self.round += 1;
        let round = self.round;
        self.resync = Some(Resync {
            round,
            awaiting: self.shards,
            dump: Dump::default(),
            held: VecDeque::new(),
        });
        for shard in 0..self.shards {
            self.mesh.push_back((shard, MeshMsg::ClusterDump { round }));
        }
    }

    /// One shard's dump for resynchronization `round`; a late one from an abandoned round
    /// is dropped (the shard dumps again for the current one).
    pub(super) fn gather(&mut self, round: ResyncRound, part: Dump) {
        let Some(resync) = self.resync.as_mut().filter(|r| r.round == round) else {
            return;
        };
        resync.dump.channels.extend(part.channels);
        resync.dump.users.extend(part.users);
        resync.dump.resources.extend(part.resources);
        resync.awaiting = resync.awaiting.saturating_sub(1);
        if resync.awaiting == 0 {
            self.finish_resync();
        }
    }

    /// Reports everything dumped, then sweeps what this node no longer has. The resync stays
    /// in progress, holding reports, until the sweep's reply.
    fn finish_resync(&mut self) {
        let (Some(resync), Phase::Running, Connection::Open(pipe)) =
            (self.resync.as_mut(), &self.phase, &mut self.connection)
        else {
            return;
        };
        let dump = std::mem::take(&mut resync.dump);
        let mut commands = Commands {
            settings: &self.settings,
            apps: &self.apps,
            node: &*self.node,
            pipe,
        };
        commands.resync(dump, self.quiet);
    }

    /// Holds `report` back if a resynchronization is in progress (and has room), else gives
    /// it back.
    pub(super) fn hold(&mut self, report: Report) -> Result<(), Report> {
        match self.resync.as_mut() {
            Some(resync) if resync.held.len() < MAX_HELD => {
                resync.held.push_back(report);
                Ok(())
            }
            _ => Err(report),
        }
    }

    /// The sweep's reply: the node is in sync, and the reports held meanwhile go to Redis.
    pub(super) fn synchronized(&mut self) {
        self.up = true;
        let held = self.resync.take().map(|r| r.held).unwrap_or_default();
        for report in held {
            self.report(report);
        }
    }

    /// The connection is lost: the reports held meanwhile are acted on by their home shards
    /// alone (the next resynchronization dumps their outcome).
    pub(super) fn abandon_resync(&mut self) {
        if let Some(resync) = self.resync.take() {
            for report in resync.held {
                self.act_alone(report);
            }
        }
    }

    /// Sends `report` to Redis if the node is in sync, else has its home shard act alone.
    pub(super) fn report(&mut self, report: Report) {
        let up = self.up;
        let report = match self.commands() {
            Some(mut commands) if up => match report {
                Report::Channel(sync) => match commands.sync(sync, false) {
                    Ok(()) => return,
                    Err(sync) => Report::Channel(sync),
                },
                Report::User { app, user, online } => {
                    if commands.user(app, &user, online, false) {
                        return;
                    }
                    Report::User { app, user, online }
                }
            },
            _ => report,
        };
        self.act_alone(report);
    }

    /// A report Redis cannot take: its home shard acts on its own.
    fn act_alone(&mut self, report: Report) {
        match report {
            Report::Channel(sync) => self.unsynced(sync),
            Report::User { app, user, online } => {
                let home = self.user_home(app, &user);
                let msg = MeshMsg::ClusterUserStatus { app, user, online };
                self.mesh.push_back((home, msg));
            }
        }
    }
}
