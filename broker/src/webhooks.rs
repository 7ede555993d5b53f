//! The webhook sender: one thread, fed by the shards through a bounded queue.
//!
//! Events are batched per app for a short window, signed (`X-Pusher-Key`,
//! `X-Pusher-Signature`) and POSTed to every endpoint that wants them. Non-2xx answers and
//! network errors are retried with exponential back-off for up to five minutes. A slow or dead
//! endpoint only ever delays this thread: shards hand events over with `try_send` and count
//! what does not fit.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::core::ids::AppIdx;
use crate::core::shard::Shared;
use crate::core::webhook::{self, WebhookEvent};
use crate::metrics::WebhookMetrics;

/// Events of one app are gathered this long before a batch goes out.
const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// A batch goes out at once when it has this many events.
const MAX_BATCH: usize = 100;
/// First retry delay; doubled per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A request still failing this long after its first attempt is given up.
const RETRY_FOR: Duration = Duration::from_secs(300);
/// Most requests waiting for a retry; beyond it the oldest is given up.
const MAX_RETRIES_PENDING: usize = 10_000;
/// Per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What travels to the sender thread.
enum Message {
    Event(AppIdx, WebhookEvent),
    /// Send what is pending once more, then end.
    Stop,
}

/// The shards' side of the queue.
#[derive(Clone)]
pub struct WebhookQueue {
    tx: SyncSender<Message>,
    metrics: Arc<WebhookMetrics>,
}

impl WebhookQueue {
    /// Hands events over without blocking; what does not fit is counted and dropped.
    pub fn push_all(&self, events: &mut Vec<(AppIdx, WebhookEvent)>) {
        for (app, event) in events.drain(..) {
            match self.tx.try_send(Message::Event(app, event)) {
                Ok(()) => self.metrics.queued.fetch_add(1, Ordering::Relaxed),
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.metrics.dropped.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }

    /// Asks the sender to make a last attempt at what is pending and end. Shards' runtimes may
    /// outlive their tasks' handles, so the sender cannot rely on the queue disconnecting.
    pub fn stop(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.tx.try_send(Message::Stop) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(_)) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// Starts the sender thread. It ends after [`WebhookQueue::stop`] (or once every queue handle
/// is dropped), with one last attempt at what is pending.
pub fn spawn(
    state: Arc<Shared>,
    capacity: usize,
    metrics: Arc<WebhookMetrics>,
) -> std::io::Result<(WebhookQueue, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
    let queue = WebhookQueue {
        tx,
        metrics: metrics.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("ringcast-webhooks".into())
        .spawn(move || Sender::new(state, metrics).run(rx))?;
    Ok((queue, thread))
}

struct Request {
    app: AppIdx,
    /// The endpoint's index in the app's `webhooks` (its URL and headers are read from there).
    endpoint: usize,
    body: Vec<u8>,
    first_attempt: Instant,
    next_attempt: Instant,
    attempts: u32,
}

struct Sender {
    state: Arc<Shared>,
    metrics: Arc<WebhookMetrics>,
    agent: ureq::Agent,
    /// Per app: events waiting for their batch, and when the first arrived.
    pending: Vec<(Vec<WebhookEvent>, Option<Instant>)>,
    retries: VecDeque<Request>,
}

impl Sender {
    fn new(state: Arc<Shared>, metrics: Arc<WebhookMetrics>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let pending = (0..state.apps.len()).map(|_| (Vec::new(), None)).collect();
        Self {
            state,
            metrics,
            agent,
            pending,
            retries: VecDeque::new(),
        }
    }

    fn run(mut self, rx: Receiver<Message>) {
        loop {
            let now = Instant::now();
            let wait = self
                .next_deadline(now)
                .map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now));
            let mut stop = false;
            match rx.recv_timeout(wait) {
                Ok(first) => {
                    let mut next = Some(first);
                    while let Some(message) = next.take() {
                        match message {
                            Message::Event(app, event) => self.add(app, event),
                            Message::Stop => stop = true,
                        }
                        next = rx.try_recv().ok();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            if stop {
                self.flush(Instant::now(), true);
                return;
            }
            let now = Instant::now();
            self.flush(now, false);
            self.retry_due(now);
        }
    }

    fn add(&mut self, app: AppIdx, event: WebhookEvent) {
        if let Some((events, since)) = self.pending.get_mut(app.get()) {
            events.push(event);
            since.get_or_insert_with(Instant::now);
        }
    }

    fn next_deadline(&self, _now: Instant) -> Option<Instant> {
        let batch = self
            .pending
            .iter()
            .filter_map(|(_, since)| since.map(|s| s + BATCH_WINDOW))
            .min();
        let retry = self.retries.iter().map(|r| r.next_attempt).min();
        match (batch, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends every batch whose window has passed (or is full, or all of them on `force`).
    fn flush(&mut self, now: Instant, force: bool) {
        for app in 0..self.pending.len() {
            let (events, since) = &mut self.pending[app];
            let due = since.is_some_and(|s| now.saturating_duration_since(s) >= BATCH_WINDOW);
            if events.is_empty() || !(force || due || events.len() >= MAX_BATCH) {
                continue;
            }
            let events = std::mem::take(events);
            *since = None;
            self.send_batch(AppIdx(app as u16), &events, now);
        }
    }

    fn send_batch(&mut self, app: AppIdx, events: &[WebhookEvent], now: Instant) {
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let config = &self.state.apps.get(app).config;
        let mut requests = Vec::new();
        for (index, endpoint) in config.webhooks.iter().enumerate() {
            for chunk in events.chunks(MAX_BATCH) {
                let wanted: Vec<&WebhookEvent> = chunk
                    .iter()
                    .filter(|e| endpoint.wants(e.kind, &e.channel))
                    .collect();
                if !wanted.is_empty() {
                    requests.push(Request {
                        app,
                        endpoint: index,
                        body: webhook::body(time_ms, &wanted),
                        first_attempt: now,
                        next_attempt: now,
                        attempts: 0,
                    });
                }
            }
        }
        for request in requests {
            self.attempt(request);
        }
    }

    fn retry_due(&mut self, now: Instant) {
        let (due, waiting): (Vec<Request>, Vec<Request>) =
            self.retries.drain(..).partition(|r| r.next_attempt <= now);
        self.retries = waiting.into();
        for request in due {
            self.attempt(request);
        }
    }

    fn attempt(&mut self, mut request: Request) {
        let app = self.state.apps.get(request.app);
        // The apps' configuration is fixed for the process, so the index stays valid.
        let Some(endpoint) = app.config.webhooks.get(request.endpoint) else {
            return;
        };
        let signature = webhook::signature(&app.secret, &request.body);
        let mut post = self.agent.post(&endpoint.url);
        for (name, value) in &endpoint.headers {
            post = post.header(name, value);
        }
        let result = post
            .header("Content-Type", "application/json")
            .header("X-Pusher-Key", &app.config.key)
            .header("X-Pusher-Signature", &signature)
            .send(&request.body[..]);
        let status = result.as_ref().map(|r| r.status().as_u16());
        if matches!(status, Ok(200..=299)) {
            self.metrics.delivered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.metrics.failed_attempts.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        request.attempts += 1;
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << request.attempts.min(16).saturating_sub(1))
            .min(MAX_BACKOFF);
        request.next_attempt = now + backoff;
        tracing::warn!(
            url = %endpoint.url,
            status = ?status.as_ref().ok(),
            error = ?status.as_ref().err().map(ToString::to_string),
            attempts = request.attempts,
            "webhook failed; will retry"
        );
        if request
            .next_attempt
            .saturating_duration_since(request.first_attempt)
            > RETRY_FOR
        {
            self.metrics.abandoned.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(url = %endpoint.url, "webhook abandoned after retrying for 5 minutes");
            return;
        }
        if self.retries.len() >= MAX_RETRIES_PENDING {
            self.retries.pop_front();
            self.metrics.abandoned.fetch_add(1, Ordering::Relaxed);
        }
        self.retries.push_back(request);
    }
}
