//! Ringcast admin dashboard: a Leptos client-side-rendered app compiled to wasm32.
//!
//! For now this is the application shell only, so the workspace builds the UI crate for real;
//! the pages (overview, security, audit, disputes, channels, apps) arrive with the dashboard
//! work.

use leptos::prelude::*;

/// The application shell.
#[component]
pub fn App() -> impl IntoView {
    view! {
        <main class="ringcast-admin">
            <h1>"Ringcast"</h1>
            <p>"Admin dashboard"</p>
        </main>
    }
}

/// Mounts the app on the page's `<body>` (the wasm entry point calls this).
pub fn mount() {
    leptos::mount::mount_to_body(App);
}
