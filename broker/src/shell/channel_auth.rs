//! Channel authorization by the app's auth endpoint (`[apps.socketio] auth_endpoint`), the
//! I/O half: a pool of threads per app POSTs each subscription the shard hands out
//! ([`AuthCall`]) as laravel-echo-server does, so a slow endpoint never stalls a shard. What
//! the answer means is decided in [`crate::core::auth::endpoint`].

use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender, TrySendError};

use super::verify::{QUEUED_PER_THREAD, backend_agent, with_headers};
use crate::core::auth::endpoint::{EndpointAnswer, MAX_ANSWER_BYTES};
use crate::core::ids::AppIdx;
use crate::core::options::{AppConfig, SocketIoConfig};
use crate::core::shard::AuthCall;

/// Headers a client may not set on the broker's request: they describe the connection and
/// the body, which the broker writes itself.
const NOT_FORWARDED: [&str; 7] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "expect",
];

/// One app's auth endpoint client: the queue to its threads.
pub struct Authorizer {
    jobs: Sender<Job>,
    timeout: Duration,
}

struct Job {
    call: AuthCall,
    cookie: Option<String>,
    queued_at: Instant,
    answer: Sender<EndpointAnswer>,
}

impl Authorizer {
    /// An authorizer POSTing to `url` with its threads started; they end when it is dropped.
    fn start(app_id: &str, url: &str, settings: &SocketIoConfig) -> std::io::Result<Self> {
        let threads = settings.max_auth_in_flight;
        let (jobs, queue) = async_channel::bounded(threads * QUEUED_PER_THREAD);
        let agent = backend_agent(settings.auth_timeout);
        for i in 0..threads {
            let (queue, agent, url) = (queue.clone(), agent.clone(), url.to_owned());
            let timeout = settings.auth_timeout;
            std::thread::Builder::new()
                .name(format!("ringcast-auth-{app_id}-{i}"))
                .spawn(move || work(&queue, &agent, &url, timeout))?;
        }
        Ok(Self {
            jobs,
            timeout: settings.auth_timeout,
        })
    }

    /// Asks the endpoint about `call`, sending the connection's `Cookie` header (from its
    /// upgrade request) unless the client forwards one itself.
    pub async fn ask(&self, call: AuthCall, cookie: Option<String>) -> EndpointAnswer {
        let (answer, told) = async_channel::bounded(1);
        let job = Job {
            call,
            cookie,
            queued_at: Instant::now(),
            answer,
        };
        if let Err(TrySendError::Full(_) | TrySendError::Closed(_)) = self.jobs.try_send(job) {
            return EndpointAnswer::Failed(
                "too many subscriptions are waiting for the auth endpoint".into(),
            );
        }
        let patience = self.timeout * 2 + Duration::from_millis(100);
        match monoio::time::timeout(patience, told.recv()).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) | Err(_) => {
                EndpointAnswer::Failed("the auth endpoint did not answer in time".into())
            }
        }
    }
}

/// An authorizer thread: POSTs each job until the authorizer is dropped.
fn work(queue: &Receiver<Job>, agent: &ureq::Agent, url: &str, timeout: Duration) {
    while let Ok(job) = queue.recv_blocking() {
        let answer = if job.queued_at.elapsed() > timeout {
            EndpointAnswer::Failed("waited too long for a free auth endpoint slot".into())
        } else {
            post(agent, url, &job.call, job.cookie.as_deref(), timeout)
        };
        if let EndpointAnswer::Failed(reason) = &answer {
            tracing::warn!(%url, %reason, "auth endpoint call failed");
        }
        // A connection that went away no longer listens.
        let _ = job.answer.try_send(answer);
    }
}

/// The POST laravel-echo-server sends: `channel_name` (and `socket_id`, which Pusher-style
/// endpoints sign) as a form, the client's headers, its cookie, `X-Requested-With`.
fn post(
    agent: &ureq::Agent,
    url: &str,
    call: &AuthCall,
    cookie: Option<&str>,
    timeout: Duration,
) -> EndpointAnswer {
    let headers: Vec<(String, String)> = call
        .headers
        .0
        .iter()
        .filter(|(name, _)| !NOT_FORWARDED.iter().any(|n| name.eq_ignore_ascii_case(n)))
        .cloned()
        .collect();
    let mut request = with_headers(agent.post(url), &headers)
        .header("X-Requested-With", "XMLHttpRequest")
        .header("Accept", "application/json");
    let has_cookie = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("cookie"));
    if let (Some(cookie), false) = (cookie, has_cookie) {
        request = request.header("Cookie", cookie);
    }
    let socket_id = call.socket_id.to_string();
    let form = [
        ("channel_name", call.channel.as_str()),
        ("socket_id", socket_id.as_str()),
    ];
    let mut response = match request.send_form(form) {
        Ok(response) => response,
        Err(ureq::Error::Timeout(_)) => {
            return EndpointAnswer::Failed(format!("no answer within {} ms", timeout.as_millis()));
        }
        Err(err) => return EndpointAnswer::Failed(format!("unreachable: {err}")),
    };
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES as u64)
        .read_to_vec()
        .unwrap_or_default();
    EndpointAnswer::Answered { status, body }
}

/// Each app's authorizer, by app index; `None` for apps without an auth endpoint.
pub struct Authorizers(Vec<Option<Authorizer>>);

impl Authorizers {
    /// Starts an authorizer for every app with `[apps.socketio] auth_endpoint`.
    pub fn start(apps: &[AppConfig]) -> std::io::Result<Self> {
        apps.iter()
            .map(|app| {
                let socketio = app.socketio.as_ref();
                socketio
                    .and_then(|s| s.auth_endpoint.as_deref().map(|url| (s, url)))
                    .map(|(settings, url)| Authorizer::start(&app.id, url, settings))
                    .transpose()
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The authorizer of the app at `idx`, if it has one.
    pub fn get(&self, idx: AppIdx) -> Option<&Authorizer> {
        self.0.get(idx.get()).and_then(Option::as_ref)
    }
}
