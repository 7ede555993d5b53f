//! Sign-in with a name and password; wrong ones show the broker's error.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, Session};

/// The sign-in form; calls `on_session` once the broker accepts.
#[component]
pub fn SignIn(on_session: impl Fn(Session) + Clone + Send + Sync + 'static) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        error.set(None);
        let on_session = on_session.clone();
        spawn_local(async move {
            match api::sign_in(&name.get_untracked(), &password.get_untracked()).await {
                Ok(session) => on_session(session),
                Err(e) => error.set(Some(e.message)),
            }
            password.set(String::new());
            busy.set(false);
        });
    };
    view! {
        <form class="signin" on:submit=submit>
            <h1>"Ringcast admin"</h1>
            <label>
                "Name"
                <input
                    name="name"
                    autocomplete="username"
                    required
                    prop:value=move || name.get()
                    on:input=move |ev| name.set(event_target_value(&ev))
                />
            </label>
            <label>
                "Password"
                <input
                    name="password"
                    type="password"
                    autocomplete="current-password"
                    required
                    prop:value=move || password.get()
                    on:input=move |ev| password.set(event_target_value(&ev))
                />
            </label>
            <button type="submit" disabled=move || busy.get()>"Sign in"</button>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </form>
    }
}
