//! The audit log: a live feed of security events and denials, and a paginated search over
//! every record (`/admin/api/security-events`, `/admin/api/audit`).

use leptos::prelude::*;
use leptos::task::spawn_local;
use ringcast_shared::{AuditDecision, AuditPage, AuditRecord};

use crate::api;

/// How often the security feed asks for new records.
const FEED_EVERY_MS: u32 = 2_000;

/// Filters both pages offer; empty fields are left out of the query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// App id.
    pub app: String,
    /// Tenant.
    pub tenant: String,
    /// User.
    pub user: String,
    /// Channel.
    pub channel: String,
    /// `allow`, `deny` or empty.
    pub decision: String,
}

impl Filters {
    /// The query string for `endpoint`, with a page size and an optional cursor.
    pub fn url(&self, endpoint: &str, limit: usize, cursor: Option<&str>) -> String {
        let mut params = vec![format!("limit={limit}")];
        for (name, value) in [
            ("app", &self.app),
            ("tenant", &self.tenant),
            ("user", &self.user),
            ("channel", &self.channel),
            ("decision", &self.decision),
        ] {
            let value = value.trim();
            if !value.is_empty() {
                params.push(format!("{name}={}", encode(value)));
            }
        }
        if let Some(cursor) = cursor {
            params.push(format!("cursor={}", encode(cursor)));
        }
        format!("/admin/api/{endpoint}?{}", params.join("&"))
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `HH:MM:SS` (UTC) of a record's time, with the date when it is not today's.
fn when(time_ms: u64, now_ms: u64) -> String {
    let secs = time_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let clock = format!(
        "{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if days == now_ms / 1000 / 86_400 {
        clock
    } else {
        // Days since the epoch to a civil date (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!("{year:04}-{month:02}-{day:02} {clock}")
    }
}

fn now_ms() -> u64 {
    js_sys_now() as u64
}

#[cfg(target_arch = "wasm32")]
fn js_sys_now() -> f64 {
    web_sys::js_sys::Date::now()
}

#[cfg(not(target_arch = "wasm32"))]
fn js_sys_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64)
}

/// The filter inputs, bound to `filters`.
#[component]
fn FilterBar(filters: RwSignal<Filters>, #[prop(optional)] decision: bool) -> impl IntoView {
    let field =
        move |label: &'static str, get: fn(&Filters) -> String, set: fn(&mut Filters, String)| {
            view! {
                <label>
                    {label}
                    <input
                        name=label
                        prop:value=move || filters.with(get)
                        on:change=move |ev| {
                            let value = event_target_value(&ev);
                            filters.update(|f| set(f, value));
                        }
                    />
                </label>
            }
        };
    view! {
        <div class="filters">
            {field("App", |f| f.app.clone(), |f, v| f.app = v)}
            {field("Tenant", |f| f.tenant.clone(), |f, v| f.tenant = v)}
            {field("User", |f| f.user.clone(), |f, v| f.user = v)}
            {field("Channel", |f| f.channel.clone(), |f, v| f.channel = v)}
            {decision.then(|| view! {
                <label>
                    "Decision"
                    <select
                        name="Decision"
                        on:change=move |ev| {
                            let value = event_target_value(&ev);
                            filters.update(|f| f.decision = value);
                        }
                    >
                        <option value="">"any"</option>
                        <option value="allow">"allow"</option>
                        <option value="deny">"deny"</option>
                    </select>
                </label>
            })}
        </div>
    }
}

/// Records as a table, newest first.
#[component]
fn Records(records: Signal<Vec<AuditRecord>>) -> impl IntoView {
    view! {
        <div class="scroll">
            <table class="records">
                <thead>
                    <tr>
                        <th>"Time (UTC)"</th><th>"Action"</th><th>"Decision"</th><th>"App"</th>
                        <th>"Tenant"</th><th>"User"</th><th>"Channel"</th><th>"Rule"</th>
                        <th>"Reason"</th><th>"Address"</th>
                    </tr>
                </thead>
                <tbody>
                    {move || {
                        let now = now_ms();
                        let rows = records.get();
                        if rows.is_empty() {
                            return view! { <tr><td colspan="10" class="muted">"No records."</td></tr> }.into_any();
                        }
                        rows.into_iter().map(|r| {
                            let deny = r.decision == AuditDecision::Deny;
                            view! {
                                <tr class:deny=deny>
                                    <td>{when(r.time_ms, now)}</td>
                                    <td>{r.action}</td>
                                    <td>{if deny { "deny" } else { "allow" }}</td>
                                    <td>{r.app}</td>
                                    <td>{r.tenant.unwrap_or_default()}</td>
                                    <td>{r.user.unwrap_or_default()}</td>
                                    <td>{r.channel.unwrap_or_default()}</td>
                                    <td>{r.rule.unwrap_or_default()}</td>
                                    <td>{r.reason.unwrap_or_default()}</td>
                                    <td>{r.remote_ip.unwrap_or_default()}</td>
                                </tr>
                            }
                        }).collect_view().into_any()
                    }}
                </tbody>
            </table>
        </div>
    }
}

/// The security page: denials and security events as they happen.
#[component]
pub fn Security() -> impl IntoView {
    let filters = RwSignal::new(Filters::default());
    let records = RwSignal::new(Vec::<AuditRecord>::new());
    let error = RwSignal::new(None::<String>);
    let refresh = move || {
        let url = filters.with_untracked(|f| f.url("security-events", 100, None));
        spawn_local(async move {
            match api::get::<AuditPage>(&url).await {
                Ok(page) => {
                    records.set(page.records);
                    error.set(None);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    // Again whenever the filters change, and every two seconds.
    Effect::new(move |_| {
        filters.track();
        refresh();
    });
    let timer = set_interval_with_handle(
        refresh,
        std::time::Duration::from_millis(u64::from(FEED_EVERY_MS)),
    );
    on_cleanup(move || {
        if let Ok(timer) = timer {
            timer.clear();
        }
    });
    view! {
        <h2 class="page">"Security"</h2>
        <p class="muted">"Failed authorizations and security events, newest first, refreshed every two seconds."</p>
        <FilterBar filters=filters />
        {move || error.get().map(|e| view! { <p class="error">{e}</p> })}
        <Records records=Signal::from(records) />
    }
}

/// The audit page: every decision, searched with filters, fifty at a time.
#[component]
pub fn Audit() -> impl IntoView {
    let filters = RwSignal::new(Filters::default());
    let records = RwSignal::new(Vec::<AuditRecord>::new());
    let next = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let load = move |cursor: Option<String>| {
        let url = filters.with_untracked(|f| f.url("audit", 50, cursor.as_deref()));
        let more = cursor.is_some();
        spawn_local(async move {
            match api::get::<AuditPage>(&url).await {
                Ok(page) => {
                    if more {
                        records.update(|r| r.extend(page.records));
                    } else {
                        records.set(page.records);
                    }
                    next.set(page.next_cursor);
                    error.set(None);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    Effect::new(move |_| {
        filters.track();
        load(None);
    });
    view! {
        <h2 class="page">"Audit"</h2>
        <FilterBar filters=filters decision=true />
        {move || error.get().map(|e| view! { <p class="error">{e}</p> })}
        <Records records=Signal::from(records) />
        {move || next.get().map(|cursor| view! {
            <button class="more" on:click=move |_| load(Some(cursor.clone()))>"Older records"</button>
        })}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_leave_out_empty_filters_and_encode_values() {
        let filters = Filters {
            channel: "private-a b&c".into(),
            decision: "deny".into(),
            ..Filters::default()
        };
        assert_eq!(
            filters.url("audit", 50, Some("00ff")),
            "/admin/api/audit?limit=50&channel=private-a%20b%26c&decision=deny&cursor=00ff"
        );
        assert_eq!(
            Filters::default().url("security-events", 100, None),
            "/admin/api/security-events?limit=100"
        );
    }

    #[test]
    fn times_show_the_date_only_when_it_is_not_today() {
        // 2026-11-23T12:34:56Z
        let t = 1_795_437_296_000;
        assert_eq!(when(t, t + 60_000), "12:34:56");
        assert_eq!(when(t, t + 2 * 86_400_000), "2026-11-23 12:34:56");
    }
}
