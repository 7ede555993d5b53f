//! The home shard's side of a channel: admission, subscriber counts, presence member events,
//! and forwarding each event to the shards with subscribers.

use std::time::Instant;

use bytes::Bytes;

use super::Shard;
use super::home_channel::HomeChannel;
use super::mesh::{Admission, Join, MeshMsg, ShardId, route};
use crate::core::channel::ChannelName;
use crate::core::channel::presence::PresenceRoster;
use crate::core::ids::{AppIdx, SocketId, UserId};
use crate::core::webhook::{WebhookEvent, WebhookKind};
use crate::core::wire::{Event, Frames, Refusal, Reply, Wire};

impl Shard {
    pub(super) fn home_subscribe(&mut self, join: Join, now: Instant) {
        let (app, channel) = (join.app, join.channel.clone());
        let max_members = self.state.apps.get(app).config.max_presence_members;
        let clustered = self.clustered();
        let home = self.per_app[app]
            .homes
            .entry(channel.clone())
            .or_insert_with(|| HomeChannel::new(self.shard_count));
        let admitted = home.admit(
            join.shard,
            join.socket_id,
            join.member.as_ref(),
            max_members,
        );
        let Some(admitted) = admitted else {
            if home.is_empty() {
                self.per_app[app].homes.remove(&channel);
            }
            self.refuse_full(&join);
            return;
        };
        let count = home.stats().subscription_count;
        if clustered {
            self.cluster_subscribe(join, admitted.first_socket_of_user, count, now);
            return;
        }
        let confirmation = subscribed(join.wire, &channel, home.roster());
        let member = join.member.clone();
        let occupancy = home.note_admission(&admitted, member.as_ref().map(|m| &m.user_id));
        if occupancy.announce_occupied {
            self.webhook(
                app,
                WebhookEvent::channel(WebhookKind::ChannelOccupied, channel.as_str()),
            );
        }
        if let (true, Some(member)) = (occupancy.announce_member, &member) {
            let event = WebhookEvent::member(
                WebhookKind::MemberAdded,
                channel.as_str(),
                member.user_id.as_str(),
            );
            self.webhook(app, event);
        }
        let socket_id = join.socket_id;
        self.confirm(join, confirmation, now);
        self.subscription_count_changed(app, &channel, count, now);
        if admitted.first_socket_of_user
            && let Some(member) = member
        {
            let frames = Frames::encode(
                &Event::MemberAdded {
                    channel: &channel,
                    user: &member.user_id,
                    info: member.user_info.as_deref(),
                },
                self.wires(app),
            );
            self.home_publish(app, &channel, frames, Some(socket_id), now, None);
        }
    }

    pub(super) fn home_unsubscribe(
        &mut self,
        shard: ShardId,
        socket_id: SocketId,
        app: AppIdx,
        channel: &ChannelName,
        user: Option<&UserId>,
        now: Instant,
    ) {
        let clustered = self.clustered();
        let Some(home) = self.per_app[app].homes.get_mut(channel) else {
            return;
        };
        let removed = home.release(shard, socket_id, user);
        if clustered {
            let count = home.stats().subscription_count;
            if home.is_empty() {
                self.per_app[app].homes.remove(channel);
            }
            let left = user.filter(|_| removed.last_socket_of_user);
            if let Some(user) = left {
                self.forget_typist(app, channel, user);
            }
            self.cluster_unsubscribe(app, channel, left, count);
            return;
        }
        home.note_release(&removed, user, now);
        let count = home.stats().subscription_count;
        if home.is_empty() {
            self.per_app[app].homes.remove(channel);
        }
        self.subscription_count_changed(app, channel, count, now);
        if let (Some(user), true) = (user, removed.last_socket_of_user) {
            self.forget_typist(app, channel, user);
            let frames = Frames::encode(
                &Event::MemberRemoved {
                    channel,
                    user,
                    info: removed.left_info.as_deref(),
                },
                self.wires(app),
            );
            self.home_publish(app, channel, frames, None, now, None);
        }
    }

    /// A channel's subscriber count changed: the `subscription_count` webhook and, when the
    /// app opts in, a subscription-count event to the subscribers. Presence channels
    /// have member events instead.
    pub(super) fn subscription_count_changed(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        count: usize,
        now: Instant,
    ) {
        if channel.kind().is_presence() {
            return;
        }
        let event = WebhookEvent {
            subscription_count: Some(count),
            ..WebhookEvent::channel(WebhookKind::SubscriptionCount, channel.as_str())
        };
        self.webhook(app, event);
        if count > 0 && self.state.apps.get(app).config.subscription_count_events {
            let frames = Frames::encode(
                &Event::SubscriptionCount { channel, count },
                self.wires(app),
            );
            if self.clustered() {
                self.publish_frames(app, channel, frames, None, None, now);
            } else {
                self.home_publish(app, channel, frames, None, now, None);
            }
        }
    }

    /// At the home shard: forward an event to every shard that has subscribers (an event
    /// a history channel keeps carries its `history_id`).
    pub(super) fn home_publish(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        frames: Frames,
        except: Option<SocketId>,
        published: Instant,
        history_id: Option<u64>,
    ) {
        // The queues are borrowed beside the channel's counts, so no list of shards is built.
        let Self {
            per_app,
            id,
            to_self,
            to_others,
            ..
        } = self;
        let Some(home) = per_app[app].homes.get(channel) else {
            return;
        };
        for shard in home.shards_with_subscribers() {
            let msg = MeshMsg::Deliver {
                app,
                channel: channel.clone(),
                frames: frames.clone(),
                except,
                published,
                history_id,
            };
            route(*id, to_self, to_others, shard, msg);
        }
    }

    /// At the home shard: an event for the channel's subscribers. A cache channel keeps it
    /// as its last event, and a history channel in its history, unless it is a presence
    /// notice (`remember` false). Events from other nodes come this way too, in Redis's
    /// order.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn home_event(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        frames: Frames,
        except: Option<SocketId>,
        published: Instant,
        remember: bool,
        now: Instant,
    ) {
        let mut frames = frames;
        self.track_at_home(app, channel, &mut frames, now);
        if remember && channel.kind().is_cache() {
            let shard_count = self.shard_count;
            self.per_app[app]
                .homes
                .entry(channel.clone())
                .or_insert_with(|| HomeChannel::new(shard_count))
                .remember(frames.clone(), now);
        }
        let (frames, history_id) = match remember {
            true => self.home_record(app, channel, frames, now),
            false => (frames, None),
        };
        self.home_publish(app, channel, frames, except, published, history_id);
    }

    /// Confirms a subscription to the socket's shard, with a cache channel's last event.
    pub(super) fn confirm(&mut self, join: Join, confirmation: Bytes, now: Instant) {
        let Join {
            shard,
            conn,
            socket_id,
            app,
            channel,
            member,
            wire,
            recover_as,
            replay_after,
        } = join;
        let cached = channel
            .kind()
            .is_cache()
            .then(|| match self.cached(app, &channel, now) {
                Some(frames) => frames.get(wire).clone(),
                None => {
                    self.webhook(
                        app,
                        WebhookEvent::channel(WebhookKind::CacheMiss, channel.as_str()),
                    );
                    wire.encode(&Reply::CacheMiss { channel: &channel })
                }
            });
        let mut then: Vec<Bytes> = cached.into_iter().collect();
        let history_id = self.replay(
            app,
            &channel,
            recover_as.as_ref(),
            replay_after,
            wire,
            now,
            &mut then,
        );
        self.send_to(
            shard,
            MeshMsg::SubscribeAccepted(Admission {
                conn,
                socket_id,
                app,
                channel,
                user: member.map(|m| m.user_id),
                frame: confirmation,
                then,
                history_id,
            }),
        );
    }

    /// A cache channel's last event as this node has it, if still fresh.
    pub(super) fn cached(
        &self,
        app: AppIdx,
        channel: &ChannelName,
        now: Instant,
    ) -> Option<&Frames> {
        let ttl = self.state.apps.get(app).config.cache_ttl;
        self.per_app[app]
            .homes
            .get(channel)
            .and_then(|home| home.cached(now, ttl))
    }

    /// Refuses a join because the presence roster is full.
    pub(super) fn refuse_full(&mut self, join: &Join) {
        let max = self.state.apps.get(join.app).config.max_presence_members;
        let refusal = Refusal::PresenceFull { max };
        let msg = MeshMsg::SubscribeRefused {
            conn: join.conn,
            socket_id: join.socket_id,
            app: join.app,
            channel: join.channel.clone(),
            frame: join.wire.encode(&Reply::SubscriptionRefused {
                channel: join.channel.as_str(),
                refusal: &refusal,
            }),
        };
        self.send_to(join.shard, msg);
    }
}

/// The confirmation of a subscription in `wire`, with the roster of a presence channel.
pub(super) fn subscribed(
    wire: Wire,
    channel: &ChannelName,
    roster: Option<&PresenceRoster>,
) -> Bytes {
    let members: Option<Vec<_>> = roster.map(|r| r.members().collect());
    wire.encode(&Reply::Subscribed {
        channel,
        members: members.as_deref(),
    })
}
