//! Ringcast admin dashboard: a Leptos client-side-rendered app compiled to wasm32.
//!
//! For now this is the application shell only, so the workspace builds the UI crate for real;
//! the pages (overview, security, audit, disputes, channels, apps) arrive with the dashboard
//! work. Build it with `scripts/build-admin-ui`; the broker serves the result at `/admin/`.

use leptos::prelude::*;
use leptos::wasm_bindgen::prelude::wasm_bindgen;

/// The application shell.
#[component]
pub fn App() -> impl IntoView {
    view! {
        <main class="ringcast-admin">
            <h1>"Ringcast admin"</h1>
            <p>"Admin dashboard for the Ringcast broker."</p>
        </main>
    }
}

/// Mounts the app on the page's `<body>`.
pub fn mount() {
    leptos::mount::mount_to_body(App);
}

/// The wasm entry point: wasm-bindgen's generated `init()` runs this once the module is
/// instantiated (`index.html` imports `./admin_ui.js` and calls its default export).
/// Leptos' re-export of `wasm_bindgen` is used, so the crate needs no direct dependency on it.
#[wasm_bindgen(start, wasm_bindgen = leptos::wasm_bindgen)]
pub fn start() {
    mount();
}
