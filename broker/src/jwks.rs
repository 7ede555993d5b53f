//! The JWKS fetchers: one thread per app with `[apps.jwt] jwks_url`, keeping the app's
//! [`LiveKeys`] current.
//!
//! Each fetches at start, every `jwks_refresh_secs`, and when a token names an unknown `kid`
//! (no sooner than `jwks_min_refetch_secs` after its last fetch). A fetch that fails, or a
//! document that gives no usable key, keeps the keys in use; it is logged and counted. The
//! document is read up to [`MAX_JWKS_BYTES`], within [`FETCH_TIMEOUT`].

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::core::app::AppTable;
use crate::core::auth::jwks::{JwksError, KeySet, LiveKeys, MAX_JWKS_BYTES};
use crate::core::options::JwksSource;

/// Longest a fetch may take, connection and body included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The running fetchers.
pub struct JwksFetchers {
    fetchers: Vec<(Arc<LiveKeys>, JoinHandle<()>)>,
}

/// Why a fetch gave no key set.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    /// No answer: connection, TLS, timeout, or a body over the size limit.
    #[error("{0}")]
    Http(#[from] ureq::Error),
    /// An answer other than 200.
    #[error("HTTP status {0}")]
    Status(u16),
    /// A document without a usable key.
    #[error(transparent)]
    Document(#[from] JwksError),
}

/// Starts a fetcher for every app whose keys come from a JWKS.
pub fn spawn(apps: &AppTable) -> std::io::Result<JwksFetchers> {
    let mut fetchers = Vec::new();
    for app in apps.iter() {
        let (Some(live), Some(source)) =
            (app.jwks(), app.config.jwt.as_ref().and_then(|j| j.jwks()))
        else {
            continue;
        };
        let fetcher = Fetcher {
            app_id: app.config.id.clone(),
            source: source.clone(),
            live: live.clone(),
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(FETCH_TIMEOUT))
                .http_status_as_error(false)
                .build()
                .into(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("ringcast-jwks-{}", app.config.id))
            .spawn(move || fetcher.run())?;
        fetchers.push((live.clone(), thread));
    }
    Ok(JwksFetchers { fetchers })
}

impl JwksFetchers {
    /// Asks every fetcher to end and waits for them until `deadline`; one still in a fetch
    /// then is left to end by itself (within [`FETCH_TIMEOUT`]), holding nothing the
    /// process needs.
    pub fn stop(mut self, deadline: Instant) {
        let fetchers = std::mem::take(&mut self.fetchers);
        for (live, _) in &fetchers {
            live.stop();
        }
        for (_, thread) in fetchers {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for JwksFetchers {
    /// Tells the fetchers not stopped yet (a server that failed to start) to end.
    fn drop(&mut self) {
        for (live, _) in &self.fetchers {
            live.stop();
        }
    }
}

struct Fetcher {
    app_id: String,
    source: JwksSource,
    live: Arc<LiveKeys>,
    agent: ureq::Agent,
}

impl Fetcher {
    fn run(self) {
        loop {
            let started = Instant::now();
            match self.fetch() {
                Ok(set) => {
                    let keys = set.len();
                    if self.live.current().as_deref() == Some(&set) {
                        tracing::debug!(app = %self.app_id, keys, "JWKS unchanged");
                    } else {
                        tracing::info!(app = %self.app_id, keys, "JWKS loaded");
                    }
                    self.live.install(set);
                }
                Err(err) => {
                    self.live.count_failure();
                    tracing::warn!(
                        app = %self.app_id,
                        url = %self.source.url,
                        %err,
                        keys_kept = self.live.keys_loaded(),
                        "JWKS fetch failed; the keys in use stay"
                    );
                }
            }
            if !self.live.wait_for_fetch(self.source.schedule, started) {
                return;
            }
        }
    }

    fn fetch(&self) -> Result<KeySet, FetchError> {
        let mut response = self
            .agent
            .get(&self.source.url)
            .header("Accept", "application/json")
            .call()?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status(status));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_JWKS_BYTES as u64)
            .read_to_vec()?;
        Ok(KeySet::parse(&body, self.source.algorithm)?)
    }
}
