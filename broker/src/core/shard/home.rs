//! The home shard's side of a channel: admission, subscriber counts, presence member events,
//! and forwarding each event to the shards with subscribers.

use std::time::Instant;

use bytes::Bytes;

use super::Shard;
use super::home_channel::HomeChannel;
use super::mesh::{Join, MeshMsg, ShardId};
use crate::core::channel::ChannelName;
use crate::core::ids::{AppIdx, SocketId, UserId};
use crate::core::pusher::message;
use crate::core::webhook::{WebhookEvent, WebhookKind};
use crate::core::ws::frame::{self, Opcode};

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
        let json = match home.roster() {
            Some(roster) => {
                message::presence_subscription_succeeded(channel.as_str(), roster.members())
            }
            None => message::subscription_succeeded(channel.as_str()),
        };
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
        self.confirm(join, json, now);
        self.subscription_count_changed(app, &channel, count, now);
        if admitted.first_socket_of_user
            && let Some(member) = member
        {
            let json = message::member_added(
                channel.as_str(),
                &member.user_id,
                member.user_info.as_deref(),
            );
            let frame = frame::encode_frame(Opcode::Text, &json);
            self.home_publish(app, &channel, frame, Some(socket_id), now);
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
            let json = message::member_removed(channel.as_str(), user);
            let frame = frame::encode_frame(Opcode::Text, &json);
            self.home_publish(app, channel, frame, None, now);
        }
    }

    /// A channel's subscriber count changed: the `subscription_count` webhook and, when the
    /// app opts in, `pusher_internal:subscription_count` to the subscribers. Presence channels
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
            let json = message::subscription_count(channel.as_str(), count);
            let frame = frame::encode_frame(Opcode::Text, &json);
            if self.clustered() {
                self.publish_frame(app, channel, frame, None, now);
            } else {
                self.home_publish(app, channel, frame, None, now);
            }
        }
    }

    /// At the home shard: forward a frame to every shard that has subscribers.
    pub(super) fn home_publish(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        frame: Bytes,
        except: Option<SocketId>,
        published: Instant,
    ) {
        let Some(home) = self.per_app[app].homes.get(channel) else {
            return;
        };
        let shards: Vec<ShardId> = home.shards_with_subscribers().collect();
        for shard in shards {
            let msg = MeshMsg::Deliver {
                app,
                channel: channel.clone(),
                frame: frame.clone(),
                except,
                published,
            };
            self.send_to(shard, msg);
        }
    }

    /// At the home shard: an event for the channel's subscribers. A cache channel keeps it
    /// as its last event unless it is a presence notice (`remember` false).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn home_event(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        frame: Bytes,
        except: Option<SocketId>,
        published: Instant,
        remember: bool,
        now: Instant,
    ) {
        if remember && channel.kind().is_cache() {
            let shard_count = self.shard_count;
            self.per_app[app]
                .homes
                .entry(channel.clone())
                .or_insert_with(|| HomeChannel::new(shard_count))
                .remember(frame.clone(), now);
        }
        self.home_publish(app, channel, frame, except, published);
    }
}
