//! What the link does with what Redis says: replies to its commands, the cluster's pub/sub
//! messages, and the local answers it gives when Redis cannot be asked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::commands::{Pending, QueryKind};
use super::{Effect, Link, Notice};
use crate::core::app::Revocation;
use crate::core::channel::ChannelName;
use crate::core::cluster::resp::Value;
use crate::core::cluster::scripts::{self, DueWebhook};
use crate::core::cluster::{ChannelSync, Command, Envelope, PresenceOp};
use crate::core::ids::{AppIdx, SocketId, UserId};
use crate::core::shard::{AnswerPart, ChannelStats, MeshMsg, ReplyTo, Watcher, home_shard};
use crate::core::webhook::WebhookEvent;
use crate::core::wire::Frames;
use crate::core::wire::Wires;

impl Link {
    /// Acts on the reply to one command.
    pub(super) fn handle_reply(&mut self, pending: Pending, value: Value, now: Instant) {
        if let Value::Error(text) = &value {
            let error = String::from_utf8_lossy(text).into_owned();
            match pending {
                Pending::Required(step) => {
                    self.notice(Notice::HandshakeRefused { step, error });
                    self.disconnect(now);
                }
                other => {
                    self.notice(Notice::CommandRefused { error });
                    self.unanswered(other);
                }
            }
            return;
        }
        match pending {
            Pending::Ignore | Pending::Required(_) => {}
            Pending::Published(reply_to) => self.answer(reply_to, AnswerPart::Applied),
            Pending::Epoch => {
                let epoch = value.as_bytes().cloned();
                let previous = std::mem::replace(&mut self.epoch, epoch.clone());
                let lost = previous.is_some() && previous != epoch;
                if lost {
                    self.notice(Notice::EpochLost);
                }
                self.quiet = lost;
                self.begin_resync();
            }
            Pending::Sync { sync, announce } => {
                if announce {
                    self.synced(sync, value);
                }
            }
            Pending::Sweep => {
                let swept = scripts::read_removals(value).len();
                self.notice(Notice::Synchronized { swept });
                self.synchronized();
            }
            Pending::Heartbeat { initial } => self.heartbeat_reply(value, initial),
            Pending::Leave => self.stop_now(),
            Pending::Due => {
                self.claiming = false;
                self.route_webhooks(scripts::read_due(value));
            }
            Pending::Resources { app, local } => self.adopt_resources(app, local, value),
            Pending::Revoked(app) => self.adopt_revocations(app, value),
            Pending::Online {
                app: _,
                watcher,
                users,
            } => {
                let counts = value.into_array().unwrap_or_default();
                let online: Vec<UserId> = users
                    .into_iter()
                    .zip(counts)
                    .filter(|(_, count)| !matches!(count, Value::Null))
                    .map(|(user, _)| user)
                    .collect();
                if !online.is_empty() {
                    let msg = MeshMsg::WatchlistNotify {
                        watcher,
                        online: true,
                        users: online,
                    };
                    self.mesh.push_back((watcher.shard, msg));
                }
            }
            Pending::Query(reply_to, kind) => {
                let part = read_answer(kind, value);
                self.answer(reply_to, part);
            }
        }
    }

    /// Answers what waited for a reply that will not come (Redis refused the command, or the
    /// connection broke) as if Redis had not been reached.
    pub(super) fn unanswered(&mut self, pending: Pending) {
        match pending {
            Pending::Sync { sync, .. } => self.unsynced(sync),
            Pending::Query(reply_to, _) | Pending::Published(reply_to) => {
                self.answer(reply_to, AnswerPart::Unavailable)
            }
            Pending::Online {
                app,
                watcher,
                users,
            } => self.online_here(app, watcher, users),
            Pending::Due => self.claiming = false,
            _ => {}
        }
    }

    /// A channel report's reply, for the channel's home shard.
    fn synced(&mut self, sync: Box<ChannelSync>, value: Value) {
        let user = match &sync.op {
            Some(PresenceOp::Join { user, .. } | PresenceOp::Leave { user }) => Some(user.clone()),
            None => None,
        };
        let max_chars = self
            .apps
            .get(sync.app.get())
            .map_or(0, |app| app.max_user_id_chars);
        let reply = scripts::read_sync(value, user.as_ref(), max_chars).map(Box::new);
        let home = home_shard(sync.app, &sync.channel, self.shards);
        self.mesh
            .push_back((home, MeshMsg::ClusterSynced { sync, reply }));
    }

    fn heartbeat_reply(&mut self, value: Value, initial: bool) {
        let Some(beat) = scripts::read_heartbeat(value) else {
            return;
        };
        self.stats.nodes_alive = beat.alive;
        self.effects.push_back(Effect::Heartbeat {
            nodes_alive: beat.alive,
            connections_elsewhere: beat.elsewhere,
        });
        if beat.dead > 0 {
            self.stats.nodes_removed += beat.dead;
            self.notice(Notice::DeadNodesRemoved {
                nodes: beat.dead,
                changes: beat.removals.len(),
            });
        }
        if beat.new && !initial && self.resync.is_none() {
            self.notice(Notice::DeclaredDead);
            self.begin_resync();
        }
    }

    /// Redis's copy of an app's resources decides: what differs from this node's is applied,
    /// and what Redis no longer has was deleted while this node was away.
    fn adopt_resources(
        &mut self,
        app: AppIdx,
        mut local: std::collections::BTreeMap<String, String>,
        value: Value,
    ) {
        let Some(app_id) = self.apps.get(app.get()).map(|a| a.id.clone()) else {
            return;
        };
        let resource = |field: &str, json| {
            let (kind, id) = field.split_once('\n')?;
            Some(Command::Resource {
                app: app_id.clone(),
                kind: kind.to_owned(),
                id: id.to_owned(),
                json,
            })
        };
        let mut changes = Vec::new();
        for (field, json) in scripts::read_pairs(value) {
            let unchanged = local.remove(&field).is_some_and(|mine| mine == json);
            if !unchanged {
                changes.extend(resource(&field, Some(json)));
            }
        }
        changes.extend(local.into_keys().filter_map(|field| resource(&field, None)));
        for command in changes {
            self.apply(command);
        }
    }

    /// Redis's revocations of an app that this node lacks, or has until an earlier time, are
    /// applied.
    fn adopt_revocations(&mut self, app: AppIdx, value: Value) {
        let Some(app_id) = self.apps.get(app.get()).map(|a| a.id.clone()) else {
            return;
        };
        let known: HashMap<Revocation, u64> = self.node.revocations(app).into_iter().collect();
        for (key, until) in scripts::read_pairs(value) {
            // What another node wrote: a malformed entry is skipped, not applied.
            let (Some(revocation), Ok(until_unix)) =
                (Revocation::parse(&key), until.parse::<u64>())
            else {
                continue;
            };
            if known.get(&revocation).is_none_or(|mine| *mine < until_unix) {
                let command = Command::Revoke {
                    app: app_id.clone(),
                    revocation,
                    until_unix,
                };
                self.apply(command);
            }
        }
    }

    /// Hands claimed webhook events to their channels' home shards, which send them.
    fn route_webhooks(&mut self, due: Vec<DueWebhook>) {
        for hook in due {
            let Some(app) = self.app_idx(&hook.app) else {
                continue;
            };
            let Ok(channel) = ChannelName::parse(&hook.channel, usize::MAX) else {
                continue;
            };
            let event = match &hook.user {
                Some(user) => WebhookEvent::member(hook.kind, &hook.channel, user),
                None => WebhookEvent::channel(hook.kind, &hook.channel),
            };
            let home = home_shard(app, &channel, self.shards);
            self.mesh
                .push_back((home, MeshMsg::ClusterWebhook { app, event }));
        }
    }

    /// A pub/sub message: an event for the channel's home shard, a user's status for the
    /// user's home shard, or another node's command.
    pub(super) fn handle_push(&mut self, items: Vec<Value>, now: Instant) {
        let mut items = items.into_iter();
        let kind = items.next();
        if kind.as_ref().and_then(Value::as_bytes).map(|b| &b[..]) != Some(b"message") {
            return; // subscribe confirmations
        }
        let Some(payload) = items.nth(1).and_then(|v| v.as_bytes().cloned()) else {
            return;
        };
        self.stats.received += 1;
        match Envelope::decode(&payload) {
            Ok(Envelope::Event {
                app,
                channel,
                except,
                frame,
                notice,
                member_info,
            }) => {
                let Some(app) = self.app_idx(&app) else {
                    return;
                };
                let Ok(channel) = ChannelName::parse(&channel, usize::MAX) else {
                    return;
                };
                let wires = self.apps.get(app.get()).map_or(Wires::ALL, |a| a.wires);
                self.deliver_here(
                    app,
                    channel,
                    Frames::from_pusher_notice(frame, member_info.as_deref(), wires),
                    except,
                    !notice,
                    now,
                );
            }
            Ok(Envelope::UserStatus { app, user, online }) => {
                let Some(app) = self.app_idx(&app) else {
                    return;
                };
                let max = self
                    .apps
                    .get(app.get())
                    .map_or(1, |a| a.max_user_id_chars.max(1));
                let Ok(user) = UserId::parse(&user, max) else {
                    return;
                };
                let home = self.user_home(app, &user);
                let msg = MeshMsg::ClusterUserStatus { app, user, online };
                self.mesh.push_back((home, msg));
            }
            Ok(Envelope::Command { origin, command }) => {
                if origin != self.settings.node {
                    self.apply(command);
                }
            }
            Err(err) => self.notice(Notice::UnreadableMessage(err)),
        }
    }

    /// Applies another node's command (or Redis's copy of one) to this node.
    fn apply(&mut self, command: Command) {
        match command {
            Command::Terminate { app, user } => {
                let Some(app) = self.app_idx(&app) else {
                    return;
                };
                let Ok(user) = UserId::parse(&user, usize::MAX) else {
                    return;
                };
                self.every_shard(|| MeshMsg::TerminateUser {
                    app,
                    user: user.clone(),
                });
            }
            Command::Revoke {
                app,
                revocation,
                until_unix,
            } => {
                let Some(app) = self.app_idx(&app) else {
                    return;
                };
                self.effects.push_back(Effect::Revoke {
                    app,
                    revocation: revocation.clone(),
                    until_unix,
                });
                self.every_shard(|| MeshMsg::RevokeToken {
                    app,
                    revocation: revocation.clone(),
                });
            }
            Command::Resource {
                app,
                kind,
                id,
                json,
            } => {
                let Some(idx) = self.app_idx(&app) else {
                    return;
                };
                let value: Option<crate::core::policy::Resource> = match &json {
                    Some(json) => match serde_json::from_str(json) {
                        Ok(resource) => Some(resource),
                        Err(err) => {
                            self.notice(Notice::UnreadableResource(err));
                            return;
                        }
                    },
                    None => None,
                };
                let shared = value.clone().map(Arc::new);
                self.every_shard(|| MeshMsg::SetResource {
                    reply_to: None,
                    app: idx,
                    kind: kind.clone(),
                    id: id.clone(),
                    resource: shared.clone(),
                });
                self.effects.push_back(Effect::StoreResource {
                    app,
                    kind,
                    id,
                    value,
                });
            }
        }
    }

    // ---- answers given on this node alone ---------------------------------------------

    /// Hands an event to the channel's home shard on this node, for its subscribers here.
    pub(super) fn deliver_here(
        &mut self,
        app: AppIdx,
        channel: ChannelName,
        frames: Frames,
        except: Option<SocketId>,
        remember: bool,
        now: Instant,
    ) {
        let home = home_shard(app, &channel, self.shards);
        let msg = MeshMsg::Publish {
            app,
            channel,
            frames,
            except,
            published: now,
            remember,
        };
        self.mesh.push_back((home, msg));
    }

    /// Answers a channel report with "not applied": the home shard acts on its own.
    pub(super) fn unsynced(&mut self, sync: Box<ChannelSync>) {
        let home = home_shard(sync.app, &sync.channel, self.shards);
        let msg = MeshMsg::ClusterSynced { sync, reply: None };
        self.mesh.push_back((home, msg));
    }

    /// Without Redis: the watcher hears who of `users` is online on this node.
    pub(super) fn online_here(&mut self, app: AppIdx, watcher: Watcher, users: Vec<UserId>) {
        let Some(first) = users.first() else {
            return;
        };
        let home = self.user_home(app, first);
        let msg = MeshMsg::WhoIsOnlineHere {
            app,
            watcher,
            users,
        };
        self.mesh.push_back((home, msg));
    }

    pub(super) fn answer(&mut self, reply_to: ReplyTo, part: AnswerPart) {
        let msg = MeshMsg::Answer {
            query: reply_to.query,
            part,
        };
        self.mesh.push_back((reply_to.shard, msg));
    }

    fn every_shard(&mut self, mut msg: impl FnMut() -> MeshMsg) {
        for shard in 0..self.shards {
            self.mesh.push_back((shard, msg()));
        }
    }
}

/// Reads a query's reply as the answer part its kind calls for.
fn read_answer(kind: QueryKind, value: Value) -> AnswerPart {
    let count = |n: i64| usize::try_from(n).unwrap_or(0);
    match kind {
        QueryKind::Channel => {
            let counts: Vec<i64> = value
                .into_array()
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_int)
                .collect();
            AnswerPart::Channel(ChannelStats {
                subscription_count: counts.first().copied().map_or(0, count),
                user_count: counts.get(1).copied().map_or(0, count),
            })
        }
        QueryKind::Channels => AnswerPart::Channels(
            scripts::read_channels(value)
                .into_iter()
                .filter_map(|(name, subs, users)| {
                    // Every name in Redis was a valid channel name when a node stored it.
                    let name = ChannelName::parse(&name, usize::MAX).ok()?;
                    let stats = ChannelStats {
                        subscription_count: subs as usize,
                        user_count: users as usize,
                    };
                    Some((name, stats))
                })
                .collect(),
        ),
        QueryKind::Users => AnswerPart::Users(
            value
                .into_array()
                .unwrap_or_default()
                .iter()
                .filter_map(|v| {
                    let text = std::str::from_utf8(v.as_bytes()?).ok()?;
                    UserId::parse(text, usize::MAX).ok()
                })
                .collect(),
        ),
    }
}
