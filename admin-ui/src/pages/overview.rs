//! Live metrics: one snapshot a second from `/admin/api/live` (server-sent events), turned
//! into rates and drawn as sparklines over the last two minutes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use gloo_net::eventsource::futures::EventSource;
use leptos::prelude::*;
use leptos::task::spawn_local;
use ringcast_shared::Overview as Snapshot;

use crate::charts::Sparkline;

/// Snapshots kept for the charts (two minutes at one a second).
const HISTORY: usize = 120;

/// Per-second rates between two snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Messages received per second.
    pub messages_in: f64,
    /// Frames sent per second.
    pub messages_out: f64,
    /// Event deliveries per second.
    pub deliveries: f64,
    /// Denied authorizations per minute.
    pub auth_failures_per_minute: f64,
    /// Rate-limit refusals per second.
    pub rate_limited: f64,
}

/// The rates from `before` to `after`.
pub fn rates(before: &Snapshot, after: &Snapshot) -> Rates {
    let seconds = (after.time_ms.saturating_sub(before.time_ms) as f64 / 1000.0).max(0.001);
    let per_second = |a: u64, b: u64| a.saturating_sub(b) as f64 / seconds;
    Rates {
        messages_in: per_second(after.messages_in, before.messages_in),
        messages_out: per_second(after.messages_out, before.messages_out),
        deliveries: per_second(after.deliveries, before.deliveries),
        auth_failures_per_minute: per_second(after.auth_failures, before.auth_failures) * 60.0,
        rate_limited: per_second(after.rate_limited, before.rate_limited),
    }
}

fn ms(us: Option<u64>) -> String {
    us.map_or("–".to_owned(), |us| {
        format!("{:.1} ms", us as f64 / 1000.0)
    })
}

/// What the page says about the cluster this node is part of.
pub fn cluster_line(cluster: &ringcast_shared::ClusterView) -> String {
    let nodes = match cluster.nodes {
        1 => "1 node".to_owned(),
        n => format!("{n} nodes"),
    };
    let state = if cluster.in_sync {
        "in sync with Redis"
    } else {
        "degraded: Redis is unreachable, so this node works alone"
    };
    format!(
        "Node {} of a cluster of {nodes}, {state}. The figures below are this node's.",
        cluster.node
    )
}

/// The overview page.
#[component]
pub fn Overview() -> impl IntoView {
    let history = RwSignal::new(VecDeque::<(Snapshot, Rates)>::with_capacity(HISTORY));
    let status = RwSignal::new("connecting…".to_owned());
    // Cleared when the page goes away; the stream is closed at its next event.
    let alive = Arc::new(AtomicBool::new(true));
    {
        let alive = alive.clone();
        spawn_local(async move {
            let Ok(mut source) = EventSource::new("/admin/api/live") else {
                status.set("live updates are not available in this browser".into());
                return;
            };
            let Ok(mut messages) = source.subscribe("message") else {
                return;
            };
            while let Some(Ok((_, event))) = messages.next().await {
                if !alive.load(Ordering::Relaxed) {
                    break;
                }
                let Some(text) = event.data().as_string() else {
                    continue;
                };
                let Ok(snapshot) = serde_json::from_str::<Snapshot>(&text) else {
                    continue;
                };
                status.set(String::new());
                history.update(|h| {
                    let rate = h
                        .back()
                        .map(|(last, _)| rates(last, &snapshot))
                        .unwrap_or_default();
                    if h.len() == HISTORY {
                        h.pop_front();
                    }
                    h.push_back((snapshot, rate));
                });
            }
            source.close();
            if alive.load(Ordering::Relaxed) {
                status.set("the live stream ended; reload to reconnect".into());
            }
        });
    }
    on_cleanup(move || alive.store(false, Ordering::Relaxed));

    let latest = move || history.with(|h| h.back().cloned());
    let series = move |f: fn(&(Snapshot, Rates)) -> f64| {
        Signal::derive(move || history.with(|h| h.iter().map(f).collect::<Vec<f64>>()))
    };
    let card = move |label: &'static str, value: Signal<String>, values: Signal<Vec<f64>>| {
        view! {
            <section class="card">
                <h2>{label}</h2>
                <p class="value" data-metric=label>{move || value.get()}</p>
                <Sparkline values=values />
            </section>
        }
    };
    let number = move |f: fn(&(Snapshot, Rates)) -> String| {
        Signal::derive(move || latest().map(|l| f(&l)).unwrap_or_else(|| "–".into()))
    };

    view! {
        <h2 class="page">"Overview"</h2>
        {move || {
            let s = status.get();
            (!s.is_empty()).then(|| view! { <p class="muted">{s}</p> })
        }}
        {move || latest().and_then(|(s, _)| s.cluster).map(|c| view! {
            <p class="muted" data-cluster=c.node.clone()>{cluster_line(&c)}</p>
        })}
        <div class="cards">
            {card("Connections", number(|(s, _)| s.connections.to_string()), series(|(s, _)| s.connections as f64))}
            {card("Subscriptions", number(|(s, _)| s.subscriptions.to_string()), series(|(s, _)| s.subscriptions as f64))}
            {card("Messages in /s", number(|(_, r)| format!("{:.0}", r.messages_in)), series(|(_, r)| r.messages_in))}
            {card("Messages out /s", number(|(_, r)| format!("{:.0}", r.messages_out)), series(|(_, r)| r.messages_out))}
            {card("Deliveries /s", number(|(_, r)| format!("{:.0}", r.deliveries)), series(|(_, r)| r.deliveries))}
            {card(
                "Delivery latency p50 / p99",
                number(|(s, _)| format!("{} / {}", ms(s.latency_p50_us), ms(s.latency_p99_us))),
                series(|(s, _)| s.latency_p99_us.unwrap_or(0) as f64),
            )}
            {card("Failed auths /min", number(|(_, r)| format!("{:.0}", r.auth_failures_per_minute)), series(|(_, r)| r.auth_failures_per_minute))}
            {card("Rate-limit hits /s", number(|(_, r)| format!("{:.1}", r.rate_limited)), series(|(_, r)| r.rate_limited))}
        </div>
        <div class="tables">
            <section>
                <h2>"Shard balance"</h2>
                <table>
                    <thead><tr><th>"Shard"</th><th>"Connections"</th></tr></thead>
                    <tbody>
                        {move || latest().map(|(s, _)| {
                            s.shards.iter().enumerate().map(|(i, c)| view! {
                                <tr><td>{i}</td><td>{*c}</td></tr>
                            }).collect_view()
                        })}
                    </tbody>
                </table>
            </section>
            <section>
                <h2>"Apps"</h2>
                <table>
                    <thead><tr><th>"App"</th><th>"Connections"</th><th>"Published"</th><th>"Failed auths"</th><th>"Rate limited"</th><th>"Kept for later"</th></tr></thead>
                    <tbody>
                        {move || latest().map(|(s, _)| {
                            s.apps.iter().map(|a| view! {
                                <tr>
                                    <td>{a.id.clone()}</td>
                                    <td data-app-connections=a.id.clone()>
                                        {a.connections}
                                        {a.cluster_connections.map(|n| format!(" ({n} in the cluster)"))}
                                    </td>
                                    <td>{a.publishes}</td>
                                    <td>{a.auth_failures}</td>
                                    <td>{a.rate_limited}</td>
                                    <td data-app-kept=a.id.clone()>{kept(a)}</td>
                                </tr>
                            }).collect_view()
                        })}
                    </tbody>
                </table>
            </section>
            {move || latest().and_then(|(s, _)| (s.receipts_tracked > 0).then(|| view! {
                <p class="muted" data-receipts="">{format!("Delivery receipts kept for {} messages.", s.receipts_tracked)}</p>
            }))}
            <section>
                <h2>"Tenants"</h2>
                <table>
                    <thead><tr><th>"App"</th><th>"Tenant"</th><th>"Connections"</th><th>"Failed auths"</th></tr></thead>
                    <tbody>
                        {move || latest().map(|(s, _)| {
                            if s.tenants.is_empty() {
                                return view! { <tr><td colspan="4" class="muted">"No connection or failure names a tenant yet."</td></tr> }.into_any();
                            }
                            s.tenants.iter().map(|t| view! {
                                <tr><td>{t.app.clone()}</td><td>{t.tenant.clone()}</td><td>{t.connections}</td><td>{t.auth_failures}</td></tr>
                            }).collect_view().into_any()
                        })}
                    </tbody>
                </table>
            </section>
        </div>
    }
}

/// What an app keeps for clients that were away: its history channels' events and replays,
/// and its users' inbox; "—" when it keeps neither.
fn kept(app: &ringcast_shared::AppLoad) -> String {
    let mut parts = Vec::new();
    if let Some(h) = &app.history {
        parts.push(format!(
            "history: {} events ({} KB), {} replays of {} events",
            h.events,
            h.bytes.div_euclid(1024),
            h.replays,
            h.replayed_events
        ));
    }
    if let Some(i) = &app.inbox {
        parts.push(format!("inbox: {} held, {} read", i.held, i.acked));
    }
    if parts.is_empty() {
        "—".to_owned()
    } else {
        parts.join(" · ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_says_what_it_keeps_for_clients_that_were_away() {
        let mut app = ringcast_shared::AppLoad::default();
        assert_eq!(kept(&app), "—");
        app.history = Some(ringcast_shared::HistoryLoad {
            events: 3,
            bytes: 2048,
            replays: 1,
            replayed_events: 2,
        });
        app.inbox = Some(ringcast_shared::InboxLoad { held: 5, acked: 2 });
        assert_eq!(
            kept(&app),
            "history: 3 events (2 KB), 1 replays of 2 events · inbox: 5 held, 2 read"
        );
    }

    #[test]
    fn rates_are_per_second_between_snapshots() {
        let before = Snapshot {
            time_ms: 10_000,
            deliveries: 100,
            auth_failures: 1,
            ..Snapshot::default()
        };
        let after = Snapshot {
            time_ms: 12_000,
            deliveries: 2_100,
            auth_failures: 3,
            ..Snapshot::default()
        };
        let r = rates(&before, &after);
        assert_eq!(r.deliveries, 1000.0);
        assert_eq!(r.auth_failures_per_minute, 60.0);
        assert_eq!(r.messages_in, 0.0);
    }

    #[test]
    fn the_cluster_line_names_the_node_and_its_state() {
        let mut cluster = ringcast_shared::ClusterView {
            node: "a1b2".into(),
            in_sync: true,
            nodes: 3,
        };
        assert_eq!(
            cluster_line(&cluster),
            "Node a1b2 of a cluster of 3 nodes, in sync with Redis. The figures below are this node's."
        );
        cluster.in_sync = false;
        cluster.nodes = 1;
        assert!(cluster_line(&cluster).contains("1 node, degraded"));
    }
}
