//! History channels at their home shard: each event kept with its id, the bounds enforced,
//! departures of identified users remembered and replayed to them once, and the history API
//! answered. The subscriber's shard notes the last id queued to each of its subscriptions.

use std::time::Instant;

use bytes::Bytes;

use super::conn::{Conn, SubState, Subscription};
use super::mesh::{AnswerPart, ConnKey, MeshMsg, ReplyTo};
use super::{Shard, home_shard};
use crate::core::channel::ChannelName;
use crate::core::counters::{add, inc};
use crate::core::history::{
    Evicted, HistoryOffset, HistoryOptions, HistoryWrite, REPLAY_END, REPLAY_START, StoredEvent,
};
use crate::core::ids::{AppIdx, UserId};
use crate::core::wire::{Event, Frames, Wire};

impl Shard {
    /// The app's history options if `channel` keeps history.
    fn history_of(&self, app: AppIdx, channel: &ChannelName) -> Option<&HistoryOptions> {
        self.state
            .apps
            .get(app)
            .history
            .as_ref()
            .filter(|h| h.covers(channel))
    }

    /// This shard's share of the app's history bytes.
    fn history_budget(&self, options: &HistoryOptions) -> usize {
        options.max_bytes / self.shard_count.max(1)
    }

    /// Whether `channel` of `app` keeps history.
    pub fn keeps_history(&self, app: AppIdx, channel: &ChannelName) -> bool {
        self.history_of(app, channel).is_some()
    }

    /// Hands out what the history store is to do, in order.
    pub fn take_history(&mut self, out: &mut Vec<HistoryWrite>) {
        out.append(&mut self.history_out);
    }

    /// At start: keeps the stored events of the channels homed on this shard.
    pub(super) fn restore_history(&mut self) {
        let state = self.state.clone();
        for (app, channels) in state.initial_history.iter() {
            let wires = self.wires(app);
            for (channel, events) in channels {
                if home_shard(app, channel, self.shard_count) != self.id {
                    continue;
                }
                for event in events {
                    let frames = Frames::from_pusher(event.frame.clone(), wires);
                    let frames = self.with_offset(app, channel, event.id, frames);
                    self.per_app[app].history.restore(channel, event, frames);
                }
            }
            if let Some(options) = state.apps.get(app).history.clone() {
                let mut evicted = Evicted::default();
                let budget = self.history_budget(&options);
                let names: Vec<ChannelName> =
                    channels.iter().map(|(name, _)| name.clone()).collect();
                for channel in &names {
                    self.per_app[app]
                        .history
                        .enforce(&options, budget, channel, &mut evicted);
                }
                self.history_evicted(app, evicted);
            }
        }
    }

    /// Whether the app's Socket.IO events carry offsets: it offers connection state
    /// recovery, so its clients have a `pid` and send their last offset back.
    fn offsets_on(&self, app: AppIdx) -> bool {
        let config = &self.state.apps.get(app).config;
        config
            .socketio
            .as_ref()
            .is_some_and(|s| !s.recovery.is_zero())
    }

    /// `frames` of event `id` on `channel`, its Socket.IO frame carrying the offset when the
    /// app's clients use them.
    fn with_offset(&self, app: AppIdx, channel: &ChannelName, id: u64, frames: Frames) -> Frames {
        match self.offsets_on(app) {
            true => frames.with_socketio_offset(&HistoryOffset::text(channel, id)),
            false => frames,
        }
    }

    /// At the home shard: keeps an event of a history channel. The frames to deliver (the
    /// Pusher one carrying its id, the Socket.IO one its offset) and its id; the frames as they came and `None`
    /// when the channel keeps no history or the event is no app event.
    pub(super) fn home_record(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        frames: Frames,
        now: Instant,
    ) -> (Frames, Option<u64>) {
        let Some(options) = self.history_of(app, channel).cloned() else {
            return (frames, None);
        };
        let next = self.per_app[app].history.next_id(channel);
        let frames = self.with_offset(app, channel, next, frames.with_pusher_id(next));
        let id = self.record(app, channel, &options, frames.clone(), now);
        (frames, id)
    }

    fn record(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        options: &HistoryOptions,
        frames: Frames,
        now: Instant,
    ) -> Option<u64> {
        let budget = self.history_budget(options);
        let published_ms = self.wall.unix_ms(now);
        let mut evicted = Evicted::default();
        let kept = self.per_app[app].history.record(
            options,
            budget,
            channel,
            published_ms,
            frames,
            &mut evicted,
        );
        let id = kept.map(|entry| (entry.id, entry.frames.pusher().clone()));
        if let Some((id, frame)) = &id {
            self.history_out.push(HistoryWrite::Append {
                app: self.app_id(app),
                channel: channel.clone(),
                event: StoredEvent {
                    id: *id,
                    published_ms,
                    frame: frame.clone(),
                },
            });
        }
        self.history_evicted(app, evicted);
        id.map(|(id, _)| id)
    }

    /// Counts evictions, tells the store, and refreshes the gauges.
    fn history_evicted(&mut self, app: AppIdx, evicted: Evicted) {
        let app_id = self.app_id(app);
        for (channel, through) in evicted.through {
            self.history_out.push(HistoryWrite::Evict {
                app: app_id.clone(),
                channel,
                through,
            });
        }
        let counters = &self.counters.app(app).history;
        add(&counters.evictions, evicted.count);
        let history = &self.per_app[app].history;
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        counters.events.store(
            gauge(history.events()),
            std::sync::atomic::Ordering::Relaxed,
        );
        counters
            .bytes
            .store(gauge(history.bytes()), std::sync::atomic::Ordering::Relaxed);
    }

    /// Drops what is past its time: events older than `ttl`, departures older than the
    /// recovery window.
    pub(super) fn history_timers(&mut self, now: Instant) {
        let now_ms = self.wall.unix_ms(now);
        let apps: Vec<(AppIdx, HistoryOptions)> = self
            .state
            .apps
            .iter()
            .filter_map(|app| app.history.clone().map(|h| (app.idx, h)))
            .collect();
        for (app, options) in apps {
            let mut evicted = Evicted::default();
            self.per_app[app]
                .history
                .expire(&options, now_ms, now, &mut evicted);
            self.history_evicted(app, evicted);
        }
    }

    /// The identified user a subscription of `conn` recovers as: its token's (or its
    /// backend's) user, else its sign-in, else the presence member `member`.
    pub(super) fn recovery_user(&self, conn: &Conn, member: Option<&UserId>) -> Option<UserId> {
        let max_chars = self.state.apps.get(conn.app).config.max_user_id_chars;
        conn.identity
            .as_ref()
            .and_then(|i| i.user_id.as_deref())
            .and_then(|id| UserId::parse(id, max_chars).ok())
            .or_else(|| conn.user.clone())
            .or_else(|| member.cloned())
    }

    /// On the subscriber's shard: connection `key` ends while in `sub`; an identified user
    /// on a history channel leaves a departure at the channel's home.
    pub(super) fn report_departure(&mut self, key: ConnKey, sub: &Subscription) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let (Some(last_id), SubState::Active) = (self.last_history_id(conn.app, sub), sub.state)
        else {
            return;
        };
        let Some(user) = self.recovery_user(conn, sub.user.as_ref()) else {
            return;
        };
        let app = conn.app;
        let msg = MeshMsg::Departed {
            app,
            channel: sub.channel.clone(),
            user,
            last_id,
        };
        self.send_home(app, &sub.channel, msg);
    }

    /// On the subscriber's shard: an event with `history_id` reaches the channel's
    /// subscribers here (the sender of a client event included: it has the event). One
    /// entry per channel, not one write per subscriber, so a delivery costs what it costs
    /// on any other channel.
    pub(super) fn note_history_id(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        history_id: Option<u64>,
    ) {
        let Some(id) = history_id else {
            return;
        };
        let shard = &mut self.per_app[app];
        if let Some(last) = shard.history_delivered.get_mut(channel) {
            *last = id;
        } else if shard.local.contains_key(channel) {
            shard.history_delivered.insert(channel.clone(), id);
        }
    }

    /// The last history event subscription `sub` has: what this shard delivered on its
    /// channel since, else what it had when it became active.
    fn last_history_id(&self, app: AppIdx, sub: &Subscription) -> Option<u64> {
        let joined = sub.history_id?;
        let delivered = self.per_app[app].history_delivered.get(&sub.channel);
        Some(delivered.map_or(joined, |&d| d.max(joined)))
    }

    /// A Socket.IO client that was not recovered (its connection's window had passed, or it
    /// was on another node or before a restart) sent back `offset`, the last history event
    /// it received: when connection `key` subscribes to that channel again, it is replayed
    /// what came after (within the recovery window). An offset that is not ours is ignored.
    pub fn handle_history_offset(&mut self, key: ConnKey, offset: &str) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let max = self.state.apps.get(conn.app).config.max_channel_name_chars;
        if let (Some(recovery), Some(offset)) =
            (conn.recovery.as_mut(), HistoryOffset::parse(offset, max))
        {
            recovery.history_offset = Some(Box::new(offset));
        }
    }

    /// The offset-named id connection `conn` resumes `channel` after, taken (once).
    pub(super) fn take_offset(conn: &mut Conn, channel: &ChannelName) -> Option<u64> {
        let recovery = conn.recovery.as_mut()?;
        let offset = recovery.history_offset.take_if(|o| &o.channel == channel)?;
        Some(offset.id)
    }

    /// At the home shard: `user` left `channel` having been given `last_id`.
    pub(super) fn home_departed(
        &mut self,
        app: AppIdx,
        channel: ChannelName,
        user: UserId,
        last_id: u64,
        now: Instant,
    ) {
        if self
            .history_of(app, &channel)
            .is_none_or(|options| options.recovery.is_zero())
        {
            return;
        }
        if self.per_app[app]
            .history
            .depart(user, channel, last_id, now)
        {
            inc(&self.counters.app(app).history.departures_dropped);
        }
    }

    /// At the home shard, confirming a subscription to a history channel: a returning
    /// user's missed events (by its departure, else by the offset its Socket.IO client sent
    /// back, `after`), framed by the replay markers, go into `then` (encoded for `wire`); the
    /// subscriber's last id is returned (`None`: no history channel).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn replay(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        user: Option<&UserId>,
        after: Option<u64>,
        wire: Wire,
        now: Instant,
        then: &mut Vec<Bytes>,
    ) -> Option<u64> {
        let options = self.history_of(app, channel)?.clone();
        let now_ms = self.wall.unix_ms(now);
        let history = &mut self.per_app[app].history;
        let last = history.last_id(channel).unwrap_or(0);
        let by_departure = user.and_then(|u| history.recover(u, channel, now, options.recovery));
        let replay = by_departure.or_else(|| {
            after
                .filter(|_| !options.recovery.is_zero())
                .and_then(|since| history.since_offset(channel, since, now_ms, options.recovery))
        });
        let Some(replay) = replay else {
            return Some(last);
        };
        let count = replay.entries.len();
        let wires = self.wires(app);
        let marker = |event: &str, data: &str| {
            Frames::encode(
                &Event::Channel {
                    event,
                    channel,
                    data,
                },
                wires,
            )
            .get(wire)
            .clone()
        };
        then.push(marker(
            REPLAY_START,
            &format!("{{\"count\":{count},\"since\":{}}}", replay.since),
        ));
        then.extend(replay.entries.iter().map(|frames| frames.get(wire).clone()));
        then.push(marker(REPLAY_END, &format!("{{\"count\":{count}}}")));
        let counters = &self.counters.app(app).history;
        inc(&counters.replays);
        add(&counters.replayed_events, count as u64);
        Some(replay.last_id)
    }

    /// At the home shard: a page of the channel's history.
    pub(super) fn answer_history(
        &mut self,
        reply_to: ReplyTo,
        app: AppIdx,
        channel: &ChannelName,
        since: Option<u64>,
        limit: usize,
    ) {
        let page = self.per_app[app].history.page(channel, since, limit);
        self.answer(reply_to, AnswerPart::History(page));
    }
}
