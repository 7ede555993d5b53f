//! The configured apps and their limits (the broker masks the secrets).

use leptos::prelude::*;
use ringcast_shared::AppList;

use crate::api;

/// The apps page.
#[component]
pub fn Apps() -> impl IntoView {
    let apps = LocalResource::new(|| api::get::<AppList>("/admin/api/apps"));
    view! {
        <h2 class="page">"Apps"</h2>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || apps.get().map(|result| match result {
                Err(e) => view! { <p class="error">{e.message}</p> }.into_any(),
                Ok(list) => list.apps.into_iter().map(|a| view! {
                    <section class="app">
                        <h3>{a.id.clone()} {(!a.enabled).then_some(" (disabled)")}</h3>
                        <dl>
                            <dt>"Key"</dt><dd><code>{a.key}</code></dd>
                            <dt>"Secret"</dt><dd><code>{a.secret}</code></dd>
                            <dt>"Connections"</dt><dd>{a.max_connections.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())}</dd>
                            <dt>"Message size"</dt><dd>{format!("{} bytes", a.max_message_bytes)}</dd>
                            <dt>"Client events"</dt><dd>{format!("{}, {}/s per connection", a.client_events, a.client_events_per_second)}</dd>
                            <dt>"Presence members"</dt><dd>{a.max_presence_members}</dd>
                            <dt>"Subscriptions per connection"</dt><dd>{a.max_subscriptions_per_connection}</dd>
                            <dt>"Origins"</dt><dd>{a.allowed_origins.join(", ")}</dd>
                            <dt>"Rate limits"</dt><dd>{if a.rate_limits { "on" } else { "off" }}</dd>
                            <dt>"JWT"</dt><dd>{if a.jwt { "required" } else { "off" }}</dd>
                            <dt>"Policies"</dt><dd>{if a.policies.is_empty() { "none".to_owned() } else { a.policies.join(", ") }}</dd>
                            <dt>"Webhooks"</dt><dd>{a.webhooks}</dd>
                        </dl>
                    </section>
                }).collect_view().into_any(),
            })}
        </Suspense>
    }
}
