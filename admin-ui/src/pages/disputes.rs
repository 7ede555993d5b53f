//! Disputed escrow chats: the resources the app backend marked `status = DISPUTED`, and a
//! live view of one chat's messages. The dashboard joins the chat over its own WebSocket as an
//! admin subscriber (signed in by the broker with role `admin`), so the app's policies decide
//! whether it may. A chat whose channel `[apps.history]` keeps opens with its recent events;
//! the dashboard shows bodies and stores none.

use futures::{SinkExt, StreamExt};
use gloo_net::websocket::Message;
use gloo_net::websocket::futures::WebSocket;
use leptos::prelude::*;
use leptos::task::spawn_local;
use ringcast_shared::{AppList, Dispute, DisputeList, PusherAuth};
use serde_json::{Value, json};

use crate::Session;
use crate::api::{self, segment};

/// The event an admin's reply is published as, with data `{"text", "from"}` (the admin's
/// name): the app's chat client binds it beside its own message events.
const ADMIN_MESSAGE_EVENT: &str = "admin-message";

/// How many of the chat's kept events are shown when it is opened.
const RECENT_EVENTS: usize = 50;

/// One line of the chat: an event and its data, and whether it came from the channel's
/// history (published before the chat was opened) rather than live.
#[derive(Clone, Debug)]
struct Line {
    event: String,
    data: String,
    earlier: bool,
}

/// `GET .../channels/{name}/history`, as far as the chat reads it.
#[derive(serde::Deserialize)]
struct HistoryPage {
    events: Vec<HistoryEvent>,
}

#[derive(serde::Deserialize)]
struct HistoryEvent {
    id: u64,
    event: String,
    data: Value,
}

/// An event's data as the chat shows it: a string's text, else the JSON.
fn shown(data: &Value) -> String {
    match data {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The chat being watched.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Watch {
    app: String,
    key: String,
    /// The full channel name (`private-...`).
    channel: String,
    tenant: Option<String>,
}

/// Every app's disputes, with the app's id and key.
async fn load() -> Result<Vec<(String, String, Dispute)>, api::ApiError> {
    let apps: AppList = api::get("/admin/api/apps").await?;
    let mut out = Vec::new();
    for app in apps.apps {
        let list: DisputeList = api::get(&format!("/admin/api/apps/{}/disputes", app.id)).await?;
        out.extend(
            list.disputes
                .into_iter()
                .map(|d| (app.id.clone(), list.key.clone(), d)),
        );
    }
    Ok(out)
}

/// The disputes page.
#[component]
pub fn Disputes(session: Signal<Option<Session>>) -> impl IntoView {
    let disputes = RwSignal::new(Vec::<(String, String, Dispute)>::new());
    let error = RwSignal::new(None::<String>);
    let refresh = move || {
        spawn_local(async move {
            match load().await {
                Ok(list) => {
                    disputes.set(list);
                    error.set(None);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    refresh();
    let timer = set_interval_with_handle(refresh, std::time::Duration::from_secs(3));
    on_cleanup(move || {
        if let Ok(timer) = timer {
            timer.clear();
        }
    });
    let watching = RwSignal::new(None::<Watch>);

    view! {
        <h2 class="page">"Disputes"</h2>
        <p class="muted">"Escrows whose status is DISPUTED. Opening a chat joins it as an admin subscriber and shows its recent events when the app keeps the channel's history; the dashboard itself stores nothing."</p>
        {move || error.get().map(|e| view! { <p class="error">{e}</p> })}
        <div class="scroll">
            <table class="disputes">
                <thead><tr><th>"App"</th><th>"Resource"</th><th>"Participants"</th><th>"Attributes"</th><th>"Chat"</th></tr></thead>
                <tbody>
                    {move || {
                        let list = disputes.get();
                        if list.is_empty() {
                            return view! { <tr><td colspan="5" class="muted">"Nothing is disputed."</td></tr> }.into_any();
                        }
                        list.into_iter().map(|(app, key, d)| {
                            let attributes = d.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
                            let tenant = d.tenant.clone();
                            view! {
                                <tr data-dispute=format!("{}:{}", d.kind, d.id)>
                                    <td>{app.clone()}</td>
                                    <td>{format!("{} {}", d.kind, d.id)}</td>
                                    <td>{d.participants.join(", ")}</td>
                                    <td>{attributes}</td>
                                    <td class="actions">
                                        {d.channels.into_iter().map(|channel| {
                                            let watch = Watch {
                                                app: app.clone(),
                                                key: key.clone(),
                                                channel: format!("private-{channel}"),
                                                tenant: tenant.clone(),
                                            };
                                            view! {
                                                <button class="link" on:click=move |_| watching.set(Some(watch.clone()))>
                                                    {format!("Open {channel}")}
                                                </button>
                                            }
                                        }).collect_view()}
                                    </td>
                                </tr>
                            }
                        }).collect_view().into_any()
                    }}
                </tbody>
            </table>
        </div>
        {move || watching.get().map(|w| view! { <Chat watch=w session=session /> })}
    }
}

/// One chat, live.
#[component]
fn Chat(watch: Watch, session: Signal<Option<Session>>) -> impl IntoView {
    let status = RwSignal::new("connecting…".to_owned());
    let messages = RwSignal::new(Vec::<Line>::new());
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    let title = watch.channel.clone();
    let (app, channel) = (watch.app.clone(), watch.channel.clone());
    spawn_local(follow(watch, session, status, messages, stop_rx));
    // Leaving the chat closes its socket.
    let stop = std::sync::Mutex::new(Some(stop_tx));
    on_cleanup(move || {
        if let Some(tx) = stop.lock().ok().and_then(|mut s| s.take()) {
            let _ = tx.send(());
        }
    });
    let reply = RwSignal::new(String::new());
    let sent = RwSignal::new(None::<String>);
    let post = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(admin) = session.get_untracked() else {
            return;
        };
        let text = reply.get_untracked();
        if text.trim().is_empty() {
            return;
        }
        let body = json!({
            "name": ADMIN_MESSAGE_EVENT,
            "channel": channel,
            "data": json!({ "text": text, "from": admin.name }).to_string(),
        });
        let url = format!("/admin/api/apps/{}/events", segment(&app));
        spawn_local(async move {
            match api::post::<Value>(&url, &admin.csrf, &body).await {
                Ok(_) => {
                    reply.set(String::new());
                    sent.set(Some("Posted.".into()));
                }
                Err(e) => sent.set(Some(format!("Not posted: {}", e.message))),
            }
        });
    };
    view! {
        <section class="chat">
            <h3>{title}</h3>
            <p class="muted" data-chat-status="">{move || status.get()}</p>
            <ol class="messages">
                {move || messages.get().into_iter().map(|line| view! {
                    <li class:earlier=line.earlier>
                        {line.earlier.then(|| view! { <span class="muted">"earlier · "</span> })}
                        <span class="event">{line.event}</span> " " <code>{line.data}</code>
                    </li>
                }).collect_view()}
            </ol>
            <form class="reply" on:submit=post>
                <label>
                    "Reply as admin"
                    <textarea name="reply" prop:value=move || reply.get() on:input=move |ev| reply.set(event_target_value(&ev))></textarea>
                </label>
                <button type="submit">"Post"</button>
                {move || sent.get().map(|s| view! { <p role="status">{s}</p> })}
            </form>
        </section>
    }
}

/// Joins the chat and appends its events to `messages` until stopped or closed.
async fn follow(
    watch: Watch,
    session: Signal<Option<Session>>,
    status: RwSignal<String>,
    messages: RwSignal<Vec<Line>>,
    stop: futures::channel::oneshot::Receiver<()>,
) {
    let Some(csrf) = session.get_untracked().map(|s| s.csrf) else {
        return;
    };
    // The recent past first, when the app keeps the channel's history (404 when it does
    // not); live events it already holds are skipped by their id.
    let history = format!(
        "/admin/api/apps/{}/channels/{}/history?limit=1000",
        segment(&watch.app),
        segment(&watch.channel)
    );
    let mut seen_up_to = 0;
    if let Ok(page) = api::get::<HistoryPage>(&history).await {
        let skip = page.events.len().saturating_sub(RECENT_EVENTS);
        let earlier: Vec<Line> = page
            .events
            .into_iter()
            .skip(skip)
            .map(|e| {
                seen_up_to = seen_up_to.max(e.id);
                Line {
                    event: e.event,
                    data: shown(&e.data),
                    earlier: true,
                }
            })
            .collect();
        messages.set(earlier);
    }
    let location = window().location();
    let scheme = if location.protocol().as_deref() == Ok("https:") {
        "wss"
    } else {
        "ws"
    };
    let host = location.host().unwrap_or_default();
    let url = format!(
        "{scheme}://{host}/app/{}?protocol=7&client=ringcast-admin",
        watch.key
    );
    let socket = match WebSocket::open(&url) {
        Ok(socket) => socket,
        Err(e) => {
            status.set(format!("cannot connect: {e}"));
            return;
        }
    };
    let (mut tx, mut rx) = socket.split();
    let mut stop = stop;
    let mut channel_auth = None;
    loop {
        let next = futures::future::select(rx.next(), &mut stop).await;
        let text = match next {
            futures::future::Either::Left((Some(Ok(Message::Text(text))), _)) => text,
            futures::future::Either::Left((Some(Ok(Message::Bytes(_))), _)) => continue,
            futures::future::Either::Left(_) => {
                status.set("the connection closed".into());
                return;
            }
            futures::future::Either::Right(_) => return,
        };
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let event = message["event"].as_str().unwrap_or_default().to_owned();
        let reply = match event.as_str() {
            "pusher:connection_established" => {
                let data: Value = serde_json::from_str(message["data"].as_str().unwrap_or("{}"))
                    .unwrap_or_default();
                let body = json!({
                    "socket_id": data["socket_id"],
                    "channel": watch.channel,
                    "tenant": watch.tenant,
                });
                let path = format!("/admin/api/apps/{}/pusher-auth", watch.app);
                match api::post::<PusherAuth>(&path, &csrf, &body).await {
                    Ok(auth) => {
                        channel_auth = auth.channel_auth;
                        Some(json!({
                            "event": "pusher:signin",
                            "data": { "auth": auth.signin.auth, "user_data": auth.signin.user_data },
                        }))
                    }
                    Err(e) => {
                        status.set(format!("not signed: {}", e.message));
                        return;
                    }
                }
            }
            "pusher:signin_success" => Some(json!({
                "event": "pusher:subscribe",
                "data": { "channel": watch.channel, "auth": channel_auth.clone() },
            })),
            "pusher_internal:subscription_succeeded" => {
                status.set("Live".into());
                None
            }
            "pusher:subscription_error" | "pusher:error" => {
                status.set(format!("refused: {}", message["data"]));
                None
            }
            "pusher:ping" => Some(json!({ "event": "pusher:pong", "data": {} })),
            _ if message["channel"].as_str() == Some(watch.channel.as_str())
                && !event.starts_with("pusher")
                && !event.starts_with("ringcast:") =>
            {
                if message["id"].as_u64().is_some_and(|id| id <= seen_up_to) {
                    continue;
                }
                let line = Line {
                    event,
                    data: shown(&message["data"]),
                    earlier: false,
                };
                messages.update(|m| m.push(line));
                None
            }
            _ => None,
        };
        if let Some(reply) = reply
            && tx.send(Message::Text(reply.to_string())).await.is_err()
        {
            status.set("the connection closed".into());
            return;
        }
    }
}
