//! The subscription to Laravel's Redis broadcaster (`[apps.redis_broadcast]`) as a task on
//! one shard: it drives the sans-IO [`Subscriber`] over a connection made, read and written
//! as the cluster link's is, and publishes each event through
//! [`Shard::publish`](crate::core::shard::Shard::publish), the HTTP API's path, so that it is
//! delivered, sent through the cluster, kept by cache channels and audited as an API publish
//! is.
//!
//! Events are published one at a time, each after the last was confirmed (in cluster mode),
//! so they arrive in the order Laravel published them; while one waits, the connection is
//! not read, and Redis holds what follows.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::cluster::{Connections, SocketEvent, Tagged, sleep_until};
use super::runtime::ShardRt;
use crate::config::RedisTarget;
use crate::core::broadcast::link::{Effect, Message, Notice, Subscriber, SubscriberOptions};
use crate::core::broadcast::receive;
use crate::core::cluster::link::Credentials;
use crate::core::ids::AppIdx;
use crate::core::options::RedisBroadcast;
use crate::core::shard::{Answer, Publish};
use crate::metrics::RedisBroadcastMetrics;

/// Silence from Redis after which it is pinged (and as long again after which it is given
/// up).
const PING_INTERVAL: Duration = Duration::from_secs(15);
/// How often a subscriber looks whether its shard is shutting down, when nothing else
/// wakes it.
const SHUTDOWN_CHECK: Duration = Duration::from_millis(250);
/// Batches of decoded values that may wait before the reader stops reading.
const READ_QUEUE: usize = 16;

/// The apps whose subscriber runs on shard `shard` of `shard_count`: each app's on the
/// shard its index falls to, so that several are spread over the shards.
pub(super) fn spawn_for_shard(rt: &Rc<ShardRt>, shard: usize, shard_count: usize) {
    for app in rt.state.shared.apps.iter() {
        if app.config.redis_broadcast.is_none() || app.idx.get() % shard_count != shard {
            continue;
        }
        if !app.config.enabled {
            tracing::info!(app = %app.config.id, "the app is disabled; not subscribing to its Redis broadcasts");
            continue;
        }
        monoio::spawn(run(rt.clone(), app.idx));
    }
}

/// One app's subscription: the state machine, its connections, and where it publishes.
struct Subscription<'a> {
    rt: Rc<ShardRt>,
    app: AppIdx,
    app_id: &'a str,
    settings: &'a RedisBroadcast,
    metrics: &'a RedisBroadcastMetrics,
    subscriber: Subscriber,
    connections: Connections,
}

async fn run(rt: Rc<ShardRt>, app: AppIdx) {
    let state = rt.state.clone();
    let config = &state.shared.apps.get(app).config;
    let (Some(settings), Some(Some(metrics))) = (
        config.redis_broadcast.as_ref(),
        state.redis_broadcast.get(app.get()),
    ) else {
        return;
    };
    let options = SubscriberOptions {
        pattern: settings.pattern(),
        credentials: credentials(&settings.url),
        ping_interval: PING_INTERVAL,
    };
    tracing::info!(app = %config.id, redis = ?settings.url, pattern = %options.pattern, "subscribing to Laravel's Redis broadcasts");
    let (events, socket_events) = async_channel::bounded::<Tagged>(READ_QUEUE);
    let mut subscription = Subscription {
        rt,
        app,
        app_id: &config.id,
        settings,
        metrics,
        subscriber: Subscriber::new(options, Instant::now()),
        connections: Connections::new(settings.url.clone(), events),
    };
    loop {
        subscription.carry_out();
        if subscription.rt.shutting_down.get() {
            subscription.connections.close();
            tracing::info!(app = %config.id, "shutting down: unsubscribed from Laravel's Redis broadcasts");
            return;
        }
        let shutdown_check = Instant::now() + SHUTDOWN_CHECK;
        let timeout = subscription
            .subscriber
            .poll_timeout()
            .map_or(shutdown_check, |at| at.min(shutdown_check));
        monoio::select! {
            event = socket_events.recv() => match event {
                Ok((number, event)) => subscription.socket_event(number, event).await,
                Err(_) => return,
            },
            () = sleep_until(Some(timeout)) => subscription.subscriber.handle_timeout(Instant::now()),
        }
    }
}

impl Subscription<'_> {
    /// Does what the subscriber asks: effects, then writes; logs its notices.
    fn carry_out(&mut self) {
        while let Some(effect) = self.subscriber.poll_effect() {
            match effect {
                Effect::Connect => self.connections.connect(),
                Effect::Disconnect => self.connections.close(),
            }
        }
        if let Some(wire) = self.connections.wire()
            && self.subscriber.poll_transmit(&mut wire.out.borrow_mut())
        {
            wire.wake.notify();
        }
        while let Some(notice) = self.subscriber.poll_notice() {
            log(&notice, self.app_id, self.settings);
        }
        let reconnects = self.subscriber.reconnects();
        self.metrics.reconnects.store(reconnects, Ordering::Relaxed);
    }

    async fn socket_event(&mut self, number: u64, event: SocketEvent) {
        if !self.connections.is_current(number) {
            return;
        }
        match event {
            SocketEvent::Connected(stream) => {
                self.connections.opened(number, stream);
                self.subscriber.handle_connected(Instant::now());
            }
            SocketEvent::Failed(err) => {
                tracing::warn!(app = self.app_id, redis = ?self.settings.url, %err, "cannot reach Redis for the app's broadcasts");
                self.connections.close();
                self.subscriber.handle_lost(Instant::now());
            }
            SocketEvent::Values(values) => {
                for value in values {
                    if let Some(message) = self.subscriber.handle_value(value, Instant::now()) {
                        deliver(&self.rt, self.app, self.settings, self.metrics, message).await;
                    }
                }
            }
            SocketEvent::Unreadable(err) => {
                tracing::warn!(app = self.app_id, %err, "unreadable reply from Redis");
                self.connections.close();
                self.subscriber.handle_lost(Instant::now());
            }
            SocketEvent::Closed => {
                self.connections.close();
                self.subscriber.handle_lost(Instant::now());
            }
        }
    }
}

/// Publishes a message as the HTTP API would, or counts and logs (without its body) why not.
async fn deliver(
    rt: &Rc<ShardRt>,
    app: AppIdx,
    settings: &RedisBroadcast,
    metrics: &RedisBroadcastMetrics,
    message: Message,
) {
    let config = &rt.state.shared.apps.get(app).config;
    match receive(config, &settings.prefix, &message.channel, &message.payload) {
        Ok(broadcast) => {
            let publish = Publish {
                app,
                event: &broadcast.event,
                data: &broadcast.data,
                except: broadcast.except,
            };
            let confirm =
                rt.with_core(|core| core.publish(&publish, &broadcast.channel, Instant::now()));
            // In cluster mode, as an API call would be answered 503: the event went to Redis
            // but Redis did not confirm it, so it may not have been delivered.
            if let Some(query) = confirm
                && rt.await_answers(&[query]).await.first() == Some(&Answer::Unavailable)
            {
                tracing::warn!(app = %config.id, "the cluster did not confirm an event from Laravel's Redis broadcaster; it may not have been delivered");
            }
            metrics.messages.fetch_add(1, Ordering::Relaxed);
        }
        Err(refused) => {
            metrics.invalid.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(app = %config.id, reason = %refused, bytes = message.payload.len(), "refused a message from Redis");
        }
    }
}

fn credentials(url: &RedisTarget) -> Option<Credentials> {
    url.password.clone().map(|password| Credentials {
        username: url.username.clone(),
        password,
    })
}

/// One log line per notice, at the level it deserves.
fn log(notice: &Notice, app: &str, settings: &RedisBroadcast) {
    let redis = &settings.url;
    match notice {
        Notice::Subscribed => {
            tracing::info!(app, ?redis, "subscribed to Laravel's Redis broadcasts")
        }
        Notice::Lost { retry_in } => {
            tracing::warn!(
                app,
                ?redis,
                ?retry_in,
                "lost the connection to Redis for the app's broadcasts; reconnecting"
            );
        }
        Notice::Refused(error) => {
            tracing::error!(app, ?redis, %error, "Redis refused the broadcast subscription")
        }
        Notice::Silent => tracing::warn!(app, ?redis, "Redis stopped answering"),
        Notice::Unexpected => tracing::warn!(
            app,
            "Redis sent a reply the broadcast subscription did not expect"
        ),
    }
}
