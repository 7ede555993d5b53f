//! Ringcast admin dashboard: a Leptos client-side-rendered app compiled to wasm32, served by
//! the broker at `/admin/` (build it with `scripts/build-admin-ui`).
//!
//! Signing in gives a session cookie (set by the broker, unreadable here) and a CSRF token
//! kept in memory for state-changing calls. Pages are chosen by the URL fragment
//! (`#overview`, `#apps`, ...), so reloading keeps the page and the broker serves one file.

mod api;
mod charts;
mod pages;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos::wasm_bindgen::prelude::wasm_bindgen;

pub use api::Session;

/// The dashboard's pages, in navigation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// Live metrics.
    Overview,
    /// Failed authorizations and security events as they happen.
    Security,
    /// Search over the audit log.
    Audit,
    /// Disputed escrow chats, watched live.
    Disputes,
    /// Occupied channels, members, test events.
    Channels,
    /// Configured apps and their limits.
    Apps,
}

impl Page {
    const ALL: [Page; 6] = [
        Page::Overview,
        Page::Security,
        Page::Audit,
        Page::Disputes,
        Page::Channels,
        Page::Apps,
    ];

    fn slug(self) -> &'static str {
        match self {
            Page::Overview => "overview",
            Page::Security => "security",
            Page::Audit => "audit",
            Page::Disputes => "disputes",
            Page::Channels => "channels",
            Page::Apps => "apps",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Page::Overview => "Overview",
            Page::Security => "Security",
            Page::Audit => "Audit",
            Page::Disputes => "Disputes",
            Page::Channels => "Channels",
            Page::Apps => "Apps",
        }
    }

    fn from_hash(hash: &str) -> Page {
        let slug = hash.trim_start_matches('#');
        Page::ALL
            .into_iter()
            .find(|p| p.slug() == slug)
            .unwrap_or(Page::Overview)
    }
}

fn current_hash() -> String {
    window().location().hash().unwrap_or_default()
}

/// The application: sign-in until there is a session, then the pages.
#[component]
pub fn App() -> impl IntoView {
    let session = RwSignal::new(None::<Session>);
    let checked = RwSignal::new(false);
    spawn_local(async move {
        session.set(api::session().await);
        checked.set(true);
    });
    let page = RwSignal::new(Page::from_hash(&current_hash()));
    let handle = window_event_listener(leptos::ev::hashchange, move |_| {
        page.set(Page::from_hash(&current_hash()));
    });
    on_cleanup(move || handle.remove());

    let sign_out = move |_| {
        let Some(current) = session.get_untracked() else {
            return;
        };
        spawn_local(async move {
            let _ = api::post::<serde_json::Value>(
                "/admin/api/logout",
                &current.csrf,
                &serde_json::json!({}),
            )
            .await;
            session.set(None);
        });
    };

    view! {
        <main class="ringcast-admin">
            <Show when=move || checked.get() fallback=|| view! { <p class="muted">"Loading…"</p> }>
                <Show
                    when=move || session.get().is_some()
                    fallback=move || view! { <pages::signin::SignIn on_session=move |s| session.set(Some(s)) /> }
                >
                    <header class="top">
                        <h1>"Ringcast"</h1>
                        <nav>
                            {Page::ALL
                                .into_iter()
                                .map(|p| {
                                    view! {
                                        <a
                                            href=format!("#{}", p.slug())
                                            class:active=move || page.get() == p
                                        >
                                            {p.title()}
                                        </a>
                                    }
                                })
                                .collect_view()}
                        </nav>
                        <span class="who">
                            {move || session.get().map(|s| s.name).unwrap_or_default()}
                            <button class="link" on:click=sign_out>"Sign out"</button>
                        </span>
                    </header>
                    {move || match page.get() {
                        Page::Overview => view! { <pages::overview::Overview /> }.into_any(),
                        Page::Security => view! { <pages::audit::Security /> }.into_any(),
                        Page::Audit => view! { <pages::audit::Audit /> }.into_any(),
                        Page::Disputes => view! { <pages::disputes::Disputes session=Signal::from(session) /> }.into_any(),
                        Page::Channels => view! { <pages::channels::Channels session=Signal::from(session) /> }.into_any(),
                        Page::Apps => view! { <pages::apps::Apps /> }.into_any(),
                    }}
                </Show>
            </Show>
        </main>
    }
}

/// Mounts the app on the page's `<body>`.
pub fn mount() {
    leptos::mount::mount_to_body(App);
}

/// The wasm entry point: wasm-bindgen's generated `init()` runs this once the module is
/// instantiated (`boot.js` imports `./admin_ui.js` and calls its default export).
/// Leptos' re-export of `wasm_bindgen` is used, so the crate needs no direct dependency on it.
#[wasm_bindgen(start, wasm_bindgen = leptos::wasm_bindgen)]
pub fn start() {
    mount();
}

#[cfg(test)]
mod tests {
    use super::Page;

    #[test]
    fn pages_come_from_the_url_fragment() {
        assert_eq!(Page::from_hash("#apps"), Page::Apps);
        assert_eq!(Page::from_hash("#security"), Page::Security);
        assert_eq!(Page::from_hash("#overview"), Page::Overview);
        assert_eq!(Page::from_hash(""), Page::Overview);
        assert_eq!(Page::from_hash("#nonsense"), Page::Overview);
    }
}
