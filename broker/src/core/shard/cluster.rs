//! The shard's side of cluster mode (see [`crate::core::cluster`]): what home shards report
//! to the node's cluster link, and how they act on what comes back.

use std::time::Instant;

use bytes::Bytes;

use super::Shard;
use super::home::subscribed;
use super::home_channel::HomeChannel;
use super::mesh::{Join, MeshMsg, ReplyTo};
use crate::core::channel::ChannelName;
use crate::core::cluster::scripts::SyncReply;
use crate::core::cluster::{
    ChannelSync, ClusterOut, Command, Envelope, PresenceOp, ResyncRound, StoredResource,
    Transitions,
};
use crate::core::ids::{AppIdx, SocketId, UserId};
use crate::core::webhook::{WebhookEvent, WebhookKind};
use crate::core::wire::{Event, Frames, Reply};

impl Shard {
    /// Whether this node is part of a cluster.
    pub(super) fn clustered(&self) -> bool {
        self.state.cluster.is_some()
    }

    /// Whether cluster-wide state can be read now.
    pub(super) fn cluster_up(&self) -> bool {
        self.state.cluster.as_ref().is_some_and(|c| c.is_up())
    }

    /// Requests for the node's cluster link produced since the last call.
    pub fn take_cluster(&mut self, out: &mut Vec<ClusterOut>) {
        out.append(&mut self.cluster_out);
    }

    /// Sends an event to the channel's subscribers: through the cluster when there is one
    /// (every node, this one included, delivers it when Redis hands it back; `confirm` hears
    /// when Redis has it), else to the channel's home shard.
    pub(super) fn publish_frames(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        frames: Frames,
        except: Option<SocketId>,
        confirm: Option<ReplyTo>,
        now: Instant,
    ) {
        if self.clustered() {
            self.cluster_out.push(ClusterOut::Publish {
                app,
                channel: channel.clone(),
                frames,
                except,
                confirm,
            });
        } else {
            let msg = MeshMsg::Publish {
                app,
                channel: channel.clone(),
                frames,
                except,
                published: now,
                remember: true,
            };
            self.send_home(app, channel, msg);
        }
    }

    /// Tells the other nodes about a command this node has applied.
    pub(super) fn broadcast(&mut self, command: Command) {
        if self.clustered() {
            self.cluster_out.push(ClusterOut::Broadcast(command));
        }
    }

    /// The app's id, as nodes name apps to each other.
    pub(super) fn app_id(&self, app: AppIdx) -> String {
        self.state.apps.get(app).config.id.clone()
    }

    /// The pub/sub messages that announce `member`'s arrival (sparing `except`) and departure.
    fn member_envelopes(
        &self,
        app: AppIdx,
        channel: &ChannelName,
        user: &UserId,
        info: Option<&str>,
        except: Option<SocketId>,
    ) -> (Bytes, Bytes) {
        let app_id = self.app_id(app);
        let added = Frames::encode(
            &Event::MemberAdded {
                channel,
                user,
                info,
            },
            crate::core::wire::Wires::PUSHER,
        );
        let removed = Frames::encode(
            &Event::MemberRemoved {
                channel,
                user,
                info,
            },
            crate::core::wire::Wires::PUSHER,
        );
        let envelope = |frames: Frames, except, member_info: Option<&str>| {
            Envelope::Event {
                app: app_id.clone(),
                channel: channel.as_str().to_owned(),
                except,
                frame: frames.pusher().clone(),
                notice: true,
                member_info: member_info.map(str::to_owned),
            }
            .encode()
        };
        // member_added's Pusher frame has the user_info; member_removed's does not.
        (envelope(added, except, None), envelope(removed, None, info))
    }

    fn join_op(
        &self,
        app: AppIdx,
        channel: &ChannelName,
        user: &UserId,
        info: Option<std::sync::Arc<str>>,
        except: Option<SocketId>,
    ) -> PresenceOp {
        let (added, removed) = self.member_envelopes(app, channel, user, info.as_deref(), except);
        PresenceOp::Join {
            user: user.clone(),
            info,
            added,
            removed,
            max_members: self.state.apps.get(app).config.max_presence_members,
        }
    }

    /// At the home shard, cluster mode: a socket was admitted locally. Public and private
    /// channels confirm at once; a presence subscription waits for the cluster's roster, and
    /// a cache channel this node has no last event for waits for Redis's copy.
    pub(super) fn cluster_subscribe(
        &mut self,
        join: Join,
        first_socket_of_user: bool,
        node_subscribers: usize,
        now: Instant,
    ) {
        let (app, channel) = (join.app, join.channel.clone());
        let local = Transitions {
            occupied: (node_subscribers == 1).then_some(true),
            added: match (&join.member, first_socket_of_user) {
                (Some(member), true) => vec![member.user_id.clone()],
                _ => Vec::new(),
            },
            removed: Vec::new(),
            total: node_subscribers as u64,
        };
        let op = match (&join.member, first_socket_of_user) {
            (Some(member), true) => Some(self.join_op(
                app,
                &channel,
                &member.user_id,
                member.user_info.clone(),
                Some(join.socket_id),
            )),
            _ => None,
        };
        // A cache channel's last event may have been published before this node started:
        // Redis keeps a copy, fetched in the same round trip.
        let fetch_cache = channel.kind().is_cache()
            && self.cluster_up()
            && self.cached(app, &channel, now).is_none();
        let waiting = if join.member.is_some() || fetch_cache {
            Some(join)
        } else {
            let confirmation = subscribed(join.wire, &channel, None);
            self.confirm(join, confirmation, now);
            None
        };
        self.cluster_out
            .push(ClusterOut::Sync(Box::new(ChannelSync {
                app,
                channel,
                node_subscribers: node_subscribers as u32,
                op,
                waiting,
                fetch_cache,
                local,
            })));
    }

    /// At the home shard, cluster mode: a socket left.
    pub(super) fn cluster_unsubscribe(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        left: Option<&UserId>,
        node_subscribers: usize,
    ) {
        let local = Transitions {
            occupied: (node_subscribers == 0).then_some(false),
            removed: left.into_iter().cloned().collect(),
            total: node_subscribers as u64,
            ..Transitions::default()
        };
        self.cluster_out
            .push(ClusterOut::Sync(Box::new(ChannelSync {
                app,
                channel: channel.clone(),
                node_subscribers: node_subscribers as u32,
                op: left.map(|user| PresenceOp::Leave { user: user.clone() }),
                waiting: None,
                fetch_cache: false,
                local,
            })));
    }

    /// At the home shard: the link's answer to a [`ChannelSync`].
    pub(super) fn cluster_synced(
        &mut self,
        sync: Box<ChannelSync>,
        reply: Option<Box<SyncReply>>,
        now: Instant,
    ) {
        let ChannelSync {
            app,
            channel,
            op,
            waiting,
            local,
            ..
        } = *sync;
        let via_redis = reply.is_some();
        let (transitions, roster, refused, cached) = match reply {
            Some(reply) => (
                reply.transitions,
                Some(reply.roster),
                reply.refused,
                reply.cached,
            ),
            None => (local, None, false, None),
        };
        let wires = self.wires(app);
        if let Some(cached) = cached
            && self.cached(app, &channel, now).is_none()
            && let Some(home) = self.per_app[app].homes.get_mut(&channel)
        {
            // Kept here for as long as Redis would still have kept it.
            let ttl = self.state.apps.get(app).config.cache_ttl;
            let age = ttl.saturating_sub(cached.remaining);
            let frames = Frames::from_pusher(cached.frame, wires);
            home.remember(frames, now.checked_sub(age).unwrap_or(now));
        }
        let joining = waiting.as_ref().map(|j| j.socket_id);
        if let Some(join) = waiting {
            if refused {
                self.refuse_cluster_join(join);
                return;
            }
            let confirmation = match &roster {
                _ if !channel.kind().is_presence() => subscribed(join.wire, &channel, None),
                Some(roster) => {
                    let members: Vec<_> = roster
                        .iter()
                        .map(|(user, info)| (user, info.as_deref()))
                        .collect();
                    join.wire.encode(&Reply::Subscribed {
                        channel: &channel,
                        members: Some(&members),
                    })
                }
                None => {
                    let home = self.per_app[app].homes.get(&channel);
                    subscribed(join.wire, &channel, home.and_then(HomeChannel::roster))
                }
            };
            self.confirm(join, confirmation, now);
        }
        if !via_redis {
            // Redis did not publish the member events: this node's subscribers get them.
            for user in &transitions.added {
                let info = match &op {
                    Some(PresenceOp::Join { info, .. }) => info.clone(),
                    _ => None,
                };
                let frames = Frames::encode(
                    &Event::MemberAdded {
                        channel: &channel,
                        user,
                        info: info.as_deref(),
                    },
                    self.wires(app),
                );
                self.home_publish(app, &channel, frames, joining, now, None);
            }
            for user in &transitions.removed {
                let frames = Frames::encode(
                    &Event::MemberRemoved {
                        channel: &channel,
                        user,
                        info: None,
                    },
                    self.wires(app),
                );
                self.home_publish(app, &channel, frames, None, now, None);
            }
        }
        if !via_redis {
            // Without Redis this node announces what it alone saw; with it, the webhooks
            // come from the cluster's queue (see `scripts`), sent by whichever node claims
            // them.
            self.announce(app, &channel, &transitions, now);
        }
        self.subscription_count_changed(app, &channel, transitions.total as usize, now);
    }

    /// The cluster's roster was full: undo the local admission and refuse.
    fn refuse_cluster_join(&mut self, join: Join) {
        let (app, channel) = (join.app, join.channel.clone());
        let user = join.member.as_ref().map(|m| m.user_id.clone());
        if let Some(home) = self.per_app[app].homes.get_mut(&channel) {
            let released = home.release(join.shard, join.socket_id, user.as_ref());
            let count = home.stats().subscription_count;
            if home.is_empty() {
                self.per_app[app].homes.remove(&channel);
            }
            let left = user.as_ref().filter(|_| released.last_socket_of_user);
            // The user was never added to the cluster roster, so there is nothing to remove
            // there; only this node's count goes back.
            self.cluster_out
                .push(ClusterOut::Sync(Box::new(ChannelSync {
                    app,
                    channel: channel.clone(),
                    node_subscribers: count as u32,
                    op: left.map(|user| PresenceOp::Leave { user: user.clone() }),
                    waiting: None,
                    fetch_cache: false,
                    local: Transitions::default(),
                })));
        }
        self.refuse_full(&join);
    }

    /// Without Redis: sends the webhooks due for the transitions this node saw.
    fn announce(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        transitions: &Transitions,
        now: Instant,
    ) {
        let shard_count = self.shard_count;
        let home = self.per_app[app]
            .homes
            .entry(channel.clone())
            .or_insert_with(|| HomeChannel::new(shard_count));
        let mut events = Vec::new();
        match transitions.occupied {
            Some(true) if home.cluster_occupied() => events.push(WebhookEvent::channel(
                WebhookKind::ChannelOccupied,
                channel.as_str(),
            )),
            Some(false) => home.cluster_vacated(now),
            _ => {}
        }
        for user in &transitions.added {
            if home.cluster_member_added(user) {
                events.push(WebhookEvent::member(
                    WebhookKind::MemberAdded,
                    channel.as_str(),
                    user.as_str(),
                ));
            }
        }
        for user in &transitions.removed {
            home.cluster_member_removed(user.clone(), now);
        }
        if home.is_empty() {
            self.per_app[app].homes.remove(channel);
        }
        for event in events {
            self.webhook(app, event);
        }
    }

    /// Reports every channel and signed-in user homed here, complete, for a
    /// resynchronization.
    pub(super) fn cluster_dump(&mut self, round: ResyncRound) {
        let mut channels = Vec::new();
        for (app, state) in self.per_app.iter() {
            for (channel, home) in &state.homes {
                let count = home.stats().subscription_count;
                if count == 0 {
                    continue;
                }
                let base = ChannelSync {
                    app,
                    channel: channel.clone(),
                    node_subscribers: count as u32,
                    op: None,
                    waiting: None,
                    fetch_cache: false,
                    local: Transitions::default(),
                };
                let members: Vec<_> = home
                    .roster()
                    .map(|r| {
                        r.members()
                            .map(|(user, info)| (user.clone(), info.map(std::sync::Arc::from)))
                            .collect()
                    })
                    .unwrap_or_default();
                if members.is_empty() {
                    channels.push(base);
                    continue;
                }
                for (user, info) in members {
                    let op = self.join_op(app, channel, &user, info, None);
                    channels.push(ChannelSync {
                        op: Some(op),
                        ..base.clone()
                    });
                }
            }
        }
        let mut users = Vec::new();
        for (app, state) in self.per_app.iter() {
            users.extend(
                state
                    .user_homes
                    .iter()
                    .filter(|(_, home)| home.sockets > 0)
                    .map(|(user, _)| (app, user.clone())),
            );
        }
        let mut resources = Vec::new();
        if self.id == 0 {
            for (app, state) in self.per_app.iter() {
                for ((kind, id), resource) in &state.resources {
                    if let Ok(json) = serde_json::to_string(resource) {
                        resources.push(StoredResource {
                            app,
                            kind: kind.clone(),
                            id: id.clone(),
                            json,
                        });
                    }
                }
            }
        }
        self.cluster_out.push(ClusterOut::Dump {
            round,
            channels,
            users,
            resources,
        });
    }
}
