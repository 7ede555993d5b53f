//! Backend token verification (`[apps.token_verification]`), the I/O half: a pool of
//! threads per app calls the backend, so a slow one never stalls a shard, and one call
//! answers every connection that arrives with the same credentials while it runs.
//!
//! The decisions (what an answer means, the cache and its single flight, the actor check)
//! are in [`crate::core::auth::backend`]; the shard turns a [`Verdict`] into an identity.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender, TrySendError};

use crate::core::auth::backend::{CredentialKey, Lookup, Verdict, VerificationCache, parse_answer};
use crate::core::http::request::RequestHead;
use crate::core::options::{AppConfig, TokenVerification, VerifyMethod};
use crate::core::sync;
use crate::metrics::VerifierMetrics;

/// Calls to an app's backend that may wait for a free thread, per thread.
pub(super) const QUEUED_PER_THREAD: usize = 64;
/// Longest header value forwarded; a longer one refuses the connection without a call.
const MAX_FORWARDED_VALUE_BYTES: usize = 8192;

/// The credentials a connection brought, as they will be forwarded.
pub struct Forwarded {
    /// The configured headers present, by their configured names, in the configured order.
    headers: Vec<(String, String)>,
    key: CredentialKey,
    /// The `actor_header` value, if the client sent one.
    pub requested_actor: Option<String>,
}

/// One app's verifier: the cache every shard consults and the queue to its threads.
pub struct Verifier {
    inner: Arc<Inner>,
    jobs: Sender<Job>,
}

struct Inner {
    settings: TokenVerification,
    pending: Mutex<Pending>,
    metrics: VerifierMetrics,
}

/// The cache, and for each call in flight who waits for its verdict.
struct Pending {
    cache: VerificationCache<Sender<Verdict>>,
}

struct Job {
    key: CredentialKey,
    headers: Vec<(String, String)>,
    queued_at: Instant,
}

/// What one backend call decided, and whether the verdict may be cached.
enum Outcome {
    /// A usable 200, or a definite 4xx refusal: cached.
    Definite(Verdict),
    /// A timeout, an unreachable backend, a 5xx, an unusable answer or an overloaded
    /// verifier: the next connection asks again.
    Transient(String),
}

impl Verifier {
    /// A verifier for `settings` with its threads started; its threads end when it is dropped.
    pub fn start(app_id: &str, settings: TokenVerification) -> std::io::Result<Self> {
        let threads = settings.max_in_flight;
        let (jobs, queue) = async_channel::bounded(threads * QUEUED_PER_THREAD);
        let inner = Arc::new(Inner {
            pending: Mutex::new(Pending {
                cache: VerificationCache::new(settings.cache_policy()),
            }),
            settings,
            metrics: VerifierMetrics::default(),
        });
        let agent = backend_agent(inner.settings.timeout);
        for i in 0..threads {
            let (inner, queue, agent) = (inner.clone(), queue.clone(), agent.clone());
            std::thread::Builder::new()
                .name(format!("ringcast-verify-{app_id}-{i}"))
                .spawn(move || work(&inner, &queue, &agent))?;
        }
        Ok(Self { inner, jobs })
    }

    /// The app's counters.
    pub fn metrics(&self) -> &VerifierMetrics {
        &self.inner.metrics
    }

    /// The credentials in `head` this app forwards (each header, else a query parameter of
    /// the same name), or `None` when it carries none of them.
    pub fn credentials(&self, head: &RequestHead) -> Option<Forwarded> {
        let settings = &self.inner.settings;
        let query = head.query_pairs().unwrap_or_default();
        let value = |name: &str| {
            head.header(name).map(str::to_owned).or_else(|| {
                query
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.to_string())
            })
        };
        let found: Vec<(&str, Option<String>)> = settings
            .headers
            .iter()
            .map(|name| (name.as_str(), value(name)))
            .collect();
        let has_credentials = settings
            .credential_headers()
            .any(|name| found.iter().any(|(n, v)| *n == name && v.is_some()));
        if !has_credentials {
            return None;
        }
        let key = CredentialKey::of(found.iter().map(|(n, v)| (*n, v.as_deref())));
        Some(Forwarded {
            headers: found
                .into_iter()
                .filter_map(|(name, v)| v.map(|v| (name.to_owned(), v)))
                .collect(),
            key,
            requested_actor: value(&settings.actor_header),
        })
    }

    /// The backend's verdict on `forwarded`: from the cache, from another connection's call
    /// in flight, or from a call of its own. Never waits longer than twice the timeout (a
    /// queued call refuses itself after one).
    pub async fn verify(&self, forwarded: &Forwarded) -> Verdict {
        let inner = &self.inner;
        if forwarded
            .headers
            .iter()
            .any(|(_, v)| v.len() > MAX_FORWARDED_VALUE_BYTES)
        {
            return Verdict::Refused("a forwarded header is too long".into());
        }
        let (tell, told) = async_channel::bounded(1);
        let lookup = {
            let mut pending = inner.lock();
            pending.cache.begin(forwarded.key, Instant::now(), tell)
        };
        match lookup {
            Lookup::Cached { verdict, .. } => {
                inner.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
                return verdict;
            }
            Lookup::Follow => {
                inner.metrics.shared.fetch_add(1, Ordering::Relaxed);
            }
            Lookup::Lead => {
                let job = Job {
                    key: forwarded.key,
                    headers: forwarded.headers.clone(),
                    queued_at: Instant::now(),
                };
                if let Err(TrySendError::Full(job) | TrySendError::Closed(job)) =
                    self.jobs.try_send(job)
                {
                    inner.metrics.overloaded.fetch_add(1, Ordering::Relaxed);
                    let reason = "too many verifications are waiting for the backend";
                    inner.settle(job.key, Outcome::Transient(reason.into()));
                }
            }
        }
        let patience = inner.settings.timeout * 2 + Duration::from_millis(100);
        match monoio::time::timeout(patience, told.recv()).await {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(_)) | Err(_) => Verdict::Refused("the backend did not answer in time".into()),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        sync::lock(&self.pending)
    }

    /// Ends the call for `key`: caches a definite verdict and hands it to every connection
    /// waiting for it.
    fn settle(&self, key: CredentialKey, outcome: Outcome) {
        let now = Instant::now();
        let (verdict, waiters) = {
            let mut pending = self.lock();
            match outcome {
                Outcome::Definite(verdict) => {
                    let waiters = pending.cache.finish(key, verdict.clone(), now);
                    (verdict, waiters)
                }
                Outcome::Transient(reason) => {
                    (Verdict::Refused(reason), pending.cache.abandon(key))
                }
            }
        };
        for waiter in waiters {
            // A connection that gave up (closed, or waited too long) no longer listens.
            let _ = waiter.try_send(verdict.clone());
        }
    }

    /// Calls the backend with `headers` and reads its answer.
    fn call(&self, agent: &ureq::Agent, headers: &[(String, String)]) -> Outcome {
        let settings = &self.settings;
        let result = match settings.method {
            VerifyMethod::Get => with_headers(agent.get(&settings.url), headers).call(),
            VerifyMethod::Post => with_headers(agent.post(&settings.url), headers).send_empty(),
        };
        let mut response = match result {
            Ok(response) => response,
            Err(ureq::Error::Timeout(_)) => {
                return Outcome::Transient(format!(
                    "the backend did not answer within {} ms",
                    settings.timeout.as_millis()
                ));
            }
            Err(err) => return Outcome::Transient(format!("the backend is unreachable: {err}")),
        };
        let status = response.status().as_u16();
        match status {
            200 => {}
            // Busy or slow: worth asking again, so not cached.
            408 | 429 => return Outcome::Transient(format!("the backend answered {status}")),
            300..=499 => {
                return Outcome::Definite(Verdict::Refused(format!(
                    "the backend answered {status}"
                )));
            }
            _ => return Outcome::Transient(format!("the backend answered {status}")),
        }
        let limit = settings.max_answer_bytes;
        let body = match response
            .body_mut()
            .with_config()
            .limit(limit as u64)
            .read_to_vec()
        {
            Ok(body) => body,
            Err(err) => return Outcome::Transient(format!("the answer was not read: {err}")),
        };
        match parse_answer(&body, &settings.fields, &settings.default_actor, limit) {
            Ok(answer) => Outcome::Definite(Verdict::Verified(answer)),
            Err(err) => Outcome::Transient(format!("unusable answer: {err}")),
        }
    }
}

/// An HTTP client for an app's backend: every call ends within `timeout`, an answer is read
/// whatever its status (the status is the backend's verdict), and redirects are not followed.
pub(super) fn backend_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// `request` with the forwarded `headers` added.
pub(super) fn with_headers<B>(
    request: ureq::RequestBuilder<B>,
    headers: &[(String, String)],
) -> ureq::RequestBuilder<B> {
    headers.iter().fold(request, |request, (name, value)| {
        request.header(name, value)
    })
}

/// A verifier thread: calls the backend for each job until the verifier is dropped.
fn work(inner: &Inner, queue: &Receiver<Job>, agent: &ureq::Agent) {
    while let Ok(job) = queue.recv_blocking() {
        let outcome = if job.queued_at.elapsed() > inner.settings.timeout {
            inner.metrics.overloaded.fetch_add(1, Ordering::Relaxed);
            Outcome::Transient("waited too long for a free verification slot".into())
        } else {
            let outcome = inner.call(agent, &job.headers);
            let counter = match &outcome {
                Outcome::Definite(Verdict::Verified(_)) => &inner.metrics.verified,
                Outcome::Definite(Verdict::Refused(_)) => &inner.metrics.refused,
                Outcome::Transient(_) => &inner.metrics.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if let Outcome::Transient(reason) = &outcome {
                tracing::warn!(url = %inner.settings.url, %reason, "backend token verification failed");
            }
            outcome
        };
        inner.settle(job.key, outcome);
    }
}

/// Each app's verifier, by app index; `None` for apps without `[apps.token_verification]`.
pub struct Verifiers(Vec<Option<Verifier>>);

impl Verifiers {
    /// Starts a verifier for every app that has `[apps.token_verification]`.
    pub fn start(apps: &[AppConfig]) -> std::io::Result<Self> {
        apps.iter()
            .map(|app| {
                app.token_verification
                    .clone()
                    .map(|settings| Verifier::start(&app.id, settings))
                    .transpose()
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The verifier of the app at `idx`, if it has one.
    pub fn get(&self, idx: crate::core::ids::AppIdx) -> Option<&Verifier> {
        self.0.get(idx.get()).and_then(Option::as_ref)
    }

    /// Each app's counters, `None` where it has no verifier (indexed like the apps).
    pub fn metrics(&self) -> Vec<Option<&VerifierMetrics>> {
        self.0
            .iter()
            .map(|v| v.as_ref().map(Verifier::metrics))
            .collect()
    }
}
