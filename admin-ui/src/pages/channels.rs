//! Occupied channels per app with their subscriber counts, a presence channel's members, and
//! a form to send a test event (through the app API mirrored under `/admin/api/apps/{id}`).

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Deserialize;

use ringcast_shared::AppList;

use crate::Session;
use crate::api::{self, segment};

#[derive(Clone, Debug, Default, Deserialize)]
struct ChannelInfo {
    #[serde(default)]
    subscription_count: Option<u64>,
    #[serde(default)]
    user_count: Option<u64>,
}

#[derive(Clone, Debug, Deserialize)]
struct ChannelList {
    channels: BTreeMap<String, ChannelInfo>,
}

#[derive(Clone, Debug, Deserialize)]
struct Users {
    users: Vec<User>,
}

#[derive(Clone, Debug, Deserialize)]
struct User {
    id: String,
}

/// The channels of every app: all of them with subscriber counts, presence ones with users.
async fn load(app: &str) -> Result<Vec<(String, ChannelInfo)>, api::ApiError> {
    let base = format!("/admin/api/apps/{}/channels", segment(app));
    let all: ChannelList = api::get(&format!("{base}?info=subscription_count")).await?;
    let presence: ChannelList = api::get(&format!(
        "{base}?filter_by_prefix=presence-&info=user_count"
    ))
    .await?;
    Ok(all
        .channels
        .into_iter()
        .map(|(name, mut info)| {
            info.user_count = presence.channels.get(&name).and_then(|p| p.user_count);
            (name, info)
        })
        .collect())
}

/// The channels page.
#[component]
pub fn Channels(session: Signal<Option<Session>>) -> impl IntoView {
    let apps = LocalResource::new(|| api::get::<AppList>("/admin/api/apps"));
    let app = RwSignal::new(String::new());
    Effect::new(move |_| {
        if app.with_untracked(String::is_empty)
            && let Some(Ok(list)) = apps.get()
            && let Some(first) = list.apps.first()
        {
            app.set(first.id.clone());
        }
    });
    let channels = RwSignal::new(Vec::<(String, ChannelInfo)>::new());
    let error = RwSignal::new(None::<String>);
    let refresh = move || {
        let id = app.get_untracked();
        if id.is_empty() {
            return;
        }
        spawn_local(async move {
            match load(&id).await {
                Ok(list) => {
                    channels.set(list);
                    error.set(None);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    Effect::new(move |_| {
        app.track();
        refresh();
    });
    let timer = set_interval_with_handle(refresh, std::time::Duration::from_secs(2));
    on_cleanup(move || {
        if let Ok(timer) = timer {
            timer.clear();
        }
    });

    let members = RwSignal::new(None::<(String, Vec<String>)>);
    let show_members = move |channel: String| {
        let id = app.get_untracked();
        spawn_local(async move {
            let url = format!(
                "/admin/api/apps/{}/channels/{}/users",
                segment(&id),
                segment(&channel)
            );
            match api::get::<Users>(&url).await {
                Ok(users) => members.set(Some((
                    channel,
                    users.users.into_iter().map(|u| u.id).collect(),
                ))),
                Err(e) => error.set(Some(e.message)),
            }
        });
    };

    let event_channel = RwSignal::new(String::new());
    let event_name = RwSignal::new("test-event".to_owned());
    let event_data = RwSignal::new("{\"hello\":\"from the dashboard\"}".to_owned());
    let sent = RwSignal::new(None::<String>);
    let send = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(csrf) = session.get_untracked().map(|s| s.csrf) else {
            return;
        };
        let id = app.get_untracked();
        let body = serde_json::json!({
            "name": event_name.get_untracked(),
            "channel": event_channel.get_untracked(),
            "data": event_data.get_untracked(),
        });
        spawn_local(async move {
            let url = format!("/admin/api/apps/{}/events", segment(&id));
            match api::post::<serde_json::Value>(&url, &csrf, &body).await {
                Ok(_) => sent.set(Some("Sent.".into())),
                Err(e) => sent.set(Some(format!("Not sent: {}", e.message))),
            }
        });
    };

    view! {
        <h2 class="page">"Channels"</h2>
        <div class="filters">
            <label>
                "App"
                <select name="App" on:change=move |ev| app.set(event_target_value(&ev))>
                    {move || apps.get().and_then(Result::ok).map(|list| {
                        list.apps.into_iter().map(|a| {
                            let id = a.id.clone();
                            view! { <option value=a.id selected=move || app.get() == id>{a.id.clone()}</option> }
                        }).collect_view()
                    })}
                </select>
            </label>
        </div>
        {move || error.get().map(|e| view! { <p class="error">{e}</p> })}
        <div class="scroll">
            <table class="channels">
                <thead><tr><th>"Channel"</th><th>"Subscriptions"</th><th>"Users"</th><th></th></tr></thead>
                <tbody>
                    {move || {
                        let list = channels.get();
                        if list.is_empty() {
                            return view! { <tr><td colspan="4" class="muted">"No occupied channels."</td></tr> }.into_any();
                        }
                        list.into_iter().map(|(name, info)| {
                            let presence = name.starts_with("presence-");
                            let for_members = name.clone();
                            let for_event = name.clone();
                            view! {
                                <tr data-channel=name.clone()>
                                    <td>{name.clone()}</td>
                                    <td>{info.subscription_count.map(|n| n.to_string()).unwrap_or_default()}</td>
                                    <td>{info.user_count.map(|n| n.to_string()).unwrap_or_default()}</td>
                                    <td class="actions">
                                        {presence.then(|| view! {
                                            <button class="link" on:click=move |_| show_members(for_members.clone())>"Members"</button>
                                        })}
                                        <button class="link" on:click=move |_| event_channel.set(for_event.clone())>"Send event"</button>
                                    </td>
                                </tr>
                            }
                        }).collect_view().into_any()
                    }}
                </tbody>
            </table>
        </div>
        {move || members.get().map(|(channel, users)| view! {
            <section class="members">
                <h3>{format!("Members of {channel}")}</h3>
                <ul>{users.into_iter().map(|u| view! { <li>{u}</li> }).collect_view()}</ul>
            </section>
        })}
        <form class="send" on:submit=send>
            <h3>"Send a test event"</h3>
            <label>"Channel" <input name="channel" required prop:value=move || event_channel.get() on:input=move |ev| event_channel.set(event_target_value(&ev)) /></label>
            <label>"Event" <input name="event" required prop:value=move || event_name.get() on:input=move |ev| event_name.set(event_target_value(&ev)) /></label>
            <label>"Data" <textarea name="data" prop:value=move || event_data.get() on:input=move |ev| event_data.set(event_target_value(&ev))></textarea></label>
            <button type="submit">"Send"</button>
            {move || sent.get().map(|s| view! { <p role="status">{s}</p> })}
        </form>
    }
}
