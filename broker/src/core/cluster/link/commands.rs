//! What the link says to Redis: every command it sends, each queued with what its reply is
//! for.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::Dump;
use super::options::{AppOptions, Credentials, LinkOptions, NodeView, indexed};
use crate::core::channel::ChannelName;
use crate::core::cluster::resp::encode_command;
use crate::core::cluster::scripts::{self, Script};
use crate::core::cluster::{ChannelSync, Command, Envelope, NodeId, PresenceOp, StoredResource};
use crate::core::ids::{AppIdx, SocketId, UserId};
use crate::core::shard::{Query, ReplyTo, Watcher};

/// Most webhook events claimed at once.
const WEBHOOK_CLAIM: &str = "500";

/// What a reply in the pipeline is for, in send order.
#[derive(Debug)]
pub(super) enum Pending {
    /// Nothing to do with it (script loads, unconfirmed `PUBLISH`es, user reports).
    Ignore,
    /// A publish someone waits on: [`AnswerPart::Applied`] once Redis accepted it.
    Published(ReplyTo),
    /// A handshake step whose error ends the connection.
    Required(&'static str),
    /// The epoch: compared with the one seen before.
    Epoch,
    /// A channel report, whose reply goes to the channel's home shard unless the report
    /// restores a Redis that lost its data (`announce` false): its transitions are not news.
    Sync {
        sync: Box<ChannelSync>,
        announce: bool,
    },
    /// The sweep that ends a resynchronization.
    Sweep,
    /// A heartbeat; `initial` for the handshake's, whose "this node is new" is expected
    /// (from a later one it means another node declared this one dead).
    Heartbeat { initial: bool },
    /// The removal of this node at shutdown.
    Leave,
    /// A claim of due webhook events.
    Due,
    /// An app's policy resources as Redis has them, to compare with what this node had
    /// (`local`, `TYPE\nID` → JSON).
    Resources {
        app: AppIdx,
        local: BTreeMap<String, String>,
    },
    /// An app's token revocations as Redis has them.
    Revoked(AppIdx),
    /// A query, answered to `ReplyTo`.
    Query(ReplyTo, QueryKind),
    /// Which of a watcher's users are online; the reply lists them in the order asked.
    Online {
        app: AppIdx,
        watcher: Watcher,
        users: Vec<UserId>,
    },
}

/// Which query a reply answers, so that it is read as the right shape.
#[derive(Clone, Copy, Debug)]
pub(super) enum QueryKind {
    Channel,
    Channels,
    Users,
}

/// What every command is built from.
#[derive(Debug)]
pub(super) struct Settings {
    /// The key prefix (every script's first ARGV).
    pub prefix: String,
    /// The cluster's pub/sub channel.
    pub events: String,
    /// This node's id.
    pub node: NodeId,
    /// For the handshake's `HELLO 3 AUTH`.
    pub credentials: Option<Credentials>,
    /// For the handshake's `SELECT`.
    pub db: u32,
    /// For heartbeats: how long a node may be silent before it is removed.
    pub dead_after: Duration,
    /// Each script's SHA-1, indexed by [`Script`].
    shas: [String; Script::ALL.len()],
}

impl Settings {
    pub fn new(options: &LinkOptions) -> Self {
        Self {
            prefix: options.prefix.clone(),
            events: format!("{}:events", options.prefix),
            node: options.node.clone(),
            credentials: options.credentials.clone(),
            db: options.db,
            dead_after: options.dead_after,
            shas: Script::ALL.map(Script::sha1),
        }
    }

    /// `EVALSHA` of `script` with the prefix and then `args` as its ARGV (no keys: every
    /// script derives its key names from the prefix).
    fn eval<'a>(&'a self, script: Script, args: &[&'a [u8]]) -> Vec<&'a [u8]> {
        let mut command: Vec<&[u8]> = Vec::with_capacity(args.len() + 4);
        command.extend([
            b"EVALSHA".as_slice(),
            // In range: `Script::ALL` lists every script in declaration order.
            self.shas[script as usize].as_bytes(),
            b"0",
            self.prefix.as_bytes(),
        ]);
        command.extend_from_slice(args);
        command
    }
}

/// One connection's commands not yet handed to the shell, and the replies it awaits, in the
/// order the commands were sent (Redis answers in that order).
#[derive(Debug)]
pub(super) struct Pipeline {
    /// Encoded commands for the shell to write.
    pub out: BytesMut,
    /// What each awaited reply is for, oldest first.
    pub pending: VecDeque<Pending>,
    /// When the last reply arrived (or the connection was made).
    pub last_reply: Instant,
}

impl Pipeline {
    pub fn new(now: Instant) -> Self {
        Self {
            out: BytesMut::new(),
            pending: VecDeque::new(),
            last_reply: now,
        }
    }

    fn send(&mut self, args: &[&[u8]], then: Pending) {
        encode_command(args, &mut self.out);
        self.pending.push_back(then);
    }

    /// How long Redis has been silent, if longer than `limit` while a reply is awaited.
    pub fn silent_for(&self, now: Instant, limit: Duration) -> Option<Duration> {
        let silent = now.saturating_duration_since(self.last_reply);
        (!self.pending.is_empty() && silent > limit).then_some(silent)
    }
}

/// The commands of one connection: its pipeline with the settings and apps they are built
/// from.
///
/// Builders that take an app give the request back (or return `false`) when the app is
/// unknown, for the caller to handle as if Redis were out of reach.
pub(super) struct Commands<'a> {
    pub settings: &'a Settings,
    pub apps: &'a [AppOptions],
    /// What heartbeats and resynchronizations read of the node.
    pub node: &'a dyn NodeView,
    pub pipe: &'a mut Pipeline,
}

fn flag(on: bool) -> &'static [u8] {
    if on { b"1" } else { b"0" }
}

impl<'a> Commands<'a> {
    fn app_id(&self, app: AppIdx) -> Option<&'a str> {
        self.apps.get(app.get()).map(|a| a.id.as_str())
    }

    /// The handshake of a new connection: protocol 3 (and credentials), database, scripts,
    /// then the epoch, whose reply starts the resynchronization.
    pub fn handshake(&mut self, fresh_epoch: &str) {
        let s = self.settings;
        match &s.credentials {
            Some(c) => {
                let user = c.username.as_deref().unwrap_or("default");
                let args: [&[u8]; 5] = [
                    b"HELLO",
                    b"3",
                    b"AUTH",
                    user.as_bytes(),
                    c.password.as_bytes(),
                ];
                self.pipe.send(&args, Pending::Required("HELLO 3 AUTH"));
            }
            None => self
                .pipe
                .send(&[b"HELLO", b"3"], Pending::Required("HELLO 3")),
        }
        let db = s.db.to_string();
        self.pipe
            .send(&[b"SELECT", db.as_bytes()], Pending::Required("SELECT"));
        for script in Script::ALL {
            let args: [&[u8]; 3] = [b"SCRIPT", b"LOAD", script.source().as_bytes()];
            self.pipe.send(&args, Pending::Ignore);
        }
        let command = s.eval(Script::Epoch, &[fresh_epoch.as_bytes()]);
        self.pipe.send(&command, Pending::Epoch);
    }

    /// `SUBSCRIBE` to the events channel. In RESP3 the confirmation is a push, not a reply:
    /// nothing waits for it.
    pub fn subscribe(&mut self) {
        encode_command(
            &[b"SUBSCRIBE", self.settings.events.as_bytes()],
            &mut self.pipe.out,
        );
    }

    /// Publishes an event for every node; a cache channel's is also kept as its last event.
    pub fn publish(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        frame: &Bytes,
        except: Option<SocketId>,
        confirm: Option<ReplyTo>,
    ) -> bool {
        let Some(options) = self.apps.get(app.get()) else {
            return false;
        };
        let envelope = Envelope::Event {
            app: options.id.clone(),
            channel: channel.as_str().to_owned(),
            except,
            frame: frame.clone(),
            notice: false,
            member_info: None,
        }
        .encode();
        let s = self.settings;
        let pending = confirm.map_or(Pending::Ignore, Pending::Published);
        if channel.kind().is_cache() {
            let ttl = options.cache_ttl.as_millis().to_string();
            let args = [
                options.id.as_bytes(),
                channel.as_str().as_bytes(),
                ttl.as_bytes(),
                s.events.as_bytes(),
                &envelope,
            ];
            let command = s.eval(Script::PublishCached, &args);
            self.pipe.send(&command, pending);
        } else {
            let args = [b"PUBLISH".as_slice(), s.events.as_bytes(), &envelope];
            self.pipe.send(&args, pending);
        }
        true
    }

    /// Publishes a command for the other nodes; resources and revocations are also kept in
    /// Redis, in the same step, for nodes started later.
    pub fn command(&mut self, command: Command) {
        let record = match &command {
            Command::Terminate { .. } => None,
            Command::Resource {
                app,
                kind,
                id,
                json,
            } => Some((
                "res",
                app.clone(),
                scripts::resource_field(kind, id),
                json.clone().unwrap_or_default(),
            )),
            Command::Revoke {
                app,
                revocation,
                until_unix,
            } => Some(("rev", app.clone(), revocation.key(), until_unix.to_string())),
        };
        let s = self.settings;
        let envelope = Envelope::Command {
            origin: s.node.clone(),
            command,
        }
        .encode();
        let events = s.events.as_bytes();
        match &record {
            Some((kind, app, field, value)) => {
                let args = [
                    kind.as_bytes(),
                    app.as_bytes(),
                    field.as_bytes(),
                    value.as_bytes(),
                    events,
                    &envelope,
                ];
                self.pipe
                    .send(&s.eval(Script::Record, &args), Pending::Ignore);
            }
            None => self
                .pipe
                .send(&[b"PUBLISH", events, &envelope], Pending::Ignore),
        }
    }

    /// Reports a channel's state on this node; `quiet` for a report restoring a Redis that
    /// lost its data (its reply is then not announced either).
    pub fn sync(&mut self, sync: Box<ChannelSync>, quiet: bool) -> Result<(), Box<ChannelSync>> {
        let Some(app_id) = self.app_id(sync.app) else {
            return Err(sync);
        };
        let count = sync.node_subscribers.to_string();
        let (op, user, info, added, removed, max) = match &sync.op {
            Some(PresenceOp::Join {
                user,
                info,
                added,
                removed,
                max_members,
            }) => (
                "join",
                user.as_str(),
                info.as_deref().unwrap_or(""),
                added.clone(),
                removed.clone(),
                max_members.to_string(),
            ),
            Some(PresenceOp::Leave { user }) => (
                "leave",
                user.as_str(),
                "",
                Bytes::new(),
                Bytes::new(),
                "0".into(),
            ),
            None => ("", "", "", Bytes::new(), Bytes::new(), "0".into()),
        };
        let s = self.settings;
        let node = s.node.as_str();
        let args = [
            node.as_bytes(),
            app_id.as_bytes(),
            sync.channel.as_str().as_bytes(),
            count.as_bytes(),
            op.as_bytes(),
            user.as_bytes(),
            info.as_bytes(),
            &added,
            &removed,
            max.as_bytes(),
            s.events.as_bytes(),
            flag(quiet),
            flag(sync.waiting.is_some()),
            flag(sync.fetch_cache),
        ];
        let command = s.eval(Script::Sync, &args);
        encode_command(&command, &mut self.pipe.out);
        let pending = Pending::Sync {
            sync,
            announce: !quiet,
        };
        self.pipe.pending.push_back(pending);
        Ok(())
    }

    /// Reports a user's first socket on this node (`online`) or its last one leaving.
    pub fn user(&mut self, app: AppIdx, user: &UserId, online: bool, quiet: bool) -> bool {
        let Some(app_id) = self.app_id(app) else {
            return false;
        };
        let status = |online| {
            Envelope::UserStatus {
                app: app_id.to_owned(),
                user: user.as_str().to_owned(),
                online,
            }
            .encode()
        };
        let (came, went) = (status(true), status(false));
        let s = self.settings;
        let args = [
            s.node.as_str().as_bytes(),
            app_id.as_bytes(),
            user.as_str().as_bytes(),
            flag(online),
            s.events.as_bytes(),
            &came,
            &went,
            flag(quiet),
        ];
        let command = s.eval(Script::User, &args);
        self.pipe.send(&command, Pending::Ignore);
        true
    }

    /// Asks which of `users` are online anywhere; gives them back if the app is unknown.
    pub fn who_is_online(
        &mut self,
        app: AppIdx,
        watcher: Watcher,
        users: Vec<UserId>,
    ) -> Result<(), Vec<UserId>> {
        let Some(app_id) = self.app_id(app) else {
            return Err(users);
        };
        let key = format!("{}:u:{app_id}", self.settings.prefix);
        let mut args: Vec<&[u8]> = vec![b"HMGET", key.as_bytes()];
        args.extend(users.iter().map(|u| u.as_str().as_bytes()));
        encode_command(&args, &mut self.pipe.out);
        let pending = Pending::Online {
            app,
            watcher,
            users,
        };
        self.pipe.pending.push_back(pending);
        Ok(())
    }

    /// Asks a query of the cluster-wide state; `false` if the app is unknown.
    pub fn query(&mut self, reply_to: ReplyTo, query: &Query) -> bool {
        let s = self.settings;
        match query {
            Query::Channel { app, channel } => {
                let Some(app) = self.app_id(*app) else {
                    return false;
                };
                let args = [app.as_bytes(), channel.as_str().as_bytes()];
                let command = s.eval(Script::Channel, &args);
                let then = Pending::Query(reply_to, QueryKind::Channel);
                self.pipe.send(&command, then);
            }
            Query::Channels { app, prefix } => {
                let Some(app) = self.app_id(*app) else {
                    return false;
                };
                let args = [app.as_bytes(), prefix.as_bytes()];
                let command = s.eval(Script::Channels, &args);
                let then = Pending::Query(reply_to, QueryKind::Channels);
                self.pipe.send(&command, then);
            }
            Query::Users { app, channel } => {
                let Some(app) = self.app_id(*app) else {
                    return false;
                };
                let key = format!("{}:m:{app}:{}", s.prefix, channel.as_str());
                let then = Pending::Query(reply_to, QueryKind::Users);
                self.pipe.send(&[b"HKEYS", key.as_bytes()], then);
            }
            // History is per node: its home shard answers, never Redis.
            Query::History { .. } => return false,
            // Typing state is per node: its home shard answers, the cluster is never asked.
            Query::Typing { .. } | Query::MessageStatus { .. } => return false,
        }
        true
    }

    /// Records this node's heartbeat and connection counts (and removes dead nodes).
    pub fn heartbeat(&mut self, initial: bool) {
        let (s, node) = (self.settings, self.node);
        let timeout = s.dead_after.as_millis().to_string();
        let counts: Vec<(&str, String)> = indexed(self.apps)
            .map(|(app, options)| (options.id.as_str(), node.connections(app).to_string()))
            .collect();
        let mut args = vec![
            s.node.as_str().as_bytes(),
            timeout.as_bytes(),
            s.events.as_bytes(),
        ];
        for (app, count) in &counts {
            args.extend([app.as_bytes(), count.as_bytes()]);
        }
        let command = s.eval(Script::Heartbeat, &args);
        self.pipe.send(&command, Pending::Heartbeat { initial });
    }

    /// Reports everything a resynchronization gathered from the shards again, then the sweep
    /// of what this node no longer has, whose reply says the node is in sync. `quiet` when
    /// the reports restore a Redis that lost its data.
    pub fn resync(&mut self, dump: Dump, quiet: bool) {
        let mut keep: Vec<String> = Vec::with_capacity(dump.channels.len());
        for sync in dump.channels {
            let Some(app) = self.app_id(sync.app) else {
                continue;
            };
            keep.push(scripts::count_field(app, sync.channel.as_str()));
            if let Some(PresenceOp::Join { user, .. }) = &sync.op {
                let channel = sync.channel.as_str();
                keep.push(scripts::member_field(app, channel, user.as_str()));
            }
            let _ = self.sync(Box::new(sync), quiet);
        }
        for (app, user) in dump.users {
            let Some(app_id) = self.app_id(app) else {
                continue;
            };
            keep.push(scripts::user_field(app_id, user.as_str()));
            self.user(app, &user, true, quiet);
        }
        // Before the sweep, whose reply says the node is in sync: by then it has Redis's
        // resources and revocations.
        self.shared_state(&dump.resources);
        self.sweep(&keep, quiet);
    }

    /// Gives Redis this node's resources if it has none yet and asks for Redis's copy, and
    /// merges token revocations, app by app.
    fn shared_state(&mut self, resources: &[StoredResource]) {
        let (s, node) = (self.settings, self.node);
        let now_unix = node.unix_time().to_string();
        for (app, options) in indexed(self.apps) {
            let local: BTreeMap<String, String> = resources
                .iter()
                .filter(|r| r.app == app)
                .map(|r| (scripts::resource_field(&r.kind, &r.id), r.json.clone()))
                .collect();
            let mut args: Vec<&[u8]> = vec![options.id.as_bytes()];
            for (field, json) in &local {
                args.extend([field.as_bytes(), json.as_bytes()]);
            }
            let command = s.eval(Script::Resources, &args);
            let then = Pending::Resources {
                app,
                local: local.clone(),
            };
            self.pipe.send(&command, then);
            let revoked: Vec<(String, String)> = node
                .revocations(app)
                .into_iter()
                .map(|(revocation, until)| (revocation.key(), until.to_string()))
                .collect();
            let mut args: Vec<&[u8]> = vec![options.id.as_bytes(), now_unix.as_bytes()];
            for (key, until) in &revoked {
                args.extend([key.as_bytes(), until.as_bytes()]);
            }
            let command = s.eval(Script::Revoked, &args);
            self.pipe.send(&command, Pending::Revoked(app));
        }
    }

    /// Removes what this node had reported but no longer has; `keep` are the index fields of
    /// everything it reported again.
    fn sweep(&mut self, keep: &[String], quiet: bool) {
        let s = self.settings;
        let mut args: Vec<&[u8]> =
            vec![s.node.as_str().as_bytes(), s.events.as_bytes(), flag(quiet)];
        args.extend(keep.iter().map(|k| k.as_bytes()));
        self.pipe
            .send(&s.eval(Script::Sweep, &args), Pending::Sweep);
    }

    /// Claims due webhook events.
    pub fn claim_webhooks(&mut self) {
        let command = self.settings.eval(Script::Due, &[WEBHOOK_CLAIM.as_bytes()]);
        self.pipe.send(&command, Pending::Due);
    }

    /// Removes this node's whole part of the shared state.
    pub fn leave(&mut self) {
        let s = self.settings;
        let args = [s.node.as_str().as_bytes(), s.events.as_bytes()];
        self.pipe
            .send(&s.eval(Script::Leave, &args), Pending::Leave);
    }
}
