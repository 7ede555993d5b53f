//! What the process counts, and how it is read: per-shard counters merged on read.
//!
//! - The core's counters ([`crate::core::counters`]) are what the shard state machines count;
//!   [`ShardMetrics`] adds what the shell counts of the same shard (bytes, writes, HTTP,
//!   delivery latency).
//! - [`counters::Totals`] is the one sum over shards, read by both the dashboard's
//!   [`counters::overview`] and [`prometheus::render_prometheus`].
//! - [`latency`] is the delivery-latency histogram; [`process`] reads `/proc`.

pub mod counters;
pub mod history;
pub mod latency;
pub mod process;
pub mod prometheus;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

pub use self::counters::{Totals, overview};
pub use self::latency::{LATENCY_BUCKETS, LatencyHistogram};
pub use self::prometheus::{ServerFacts, render_prometheus};
pub use crate::core::counters::{ShardCounters, TenantCounters, add, inc};

/// Everything counted about one shard: what its state machine counts, and what its shell
/// counts around it.
#[derive(Debug)]
pub struct ShardMetrics {
    /// What the shard's core counts (the shard holds the same `Arc`).
    pub core: Arc<ShardCounters>,
    /// Bytes received on WebSocket connections.
    pub bytes_in: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_out: AtomicU64,
    /// `write`/`writev` calls made to sockets.
    pub write_calls: AtomicU64,
    /// Mesh messages that waited because a queue to another shard was full.
    pub mesh_delayed: AtomicU64,
    /// HTTP requests served.
    pub http_requests: AtomicU64,
    /// From an event's acceptance to its frame's write completing, per event frame written.
    pub delivery_latency: LatencyHistogram,
    /// The CPU the shard's thread is pinned to, once pinning it has succeeded.
    cpu: OnceLock<usize>,
}

impl ShardMetrics {
    /// Counters for a shard of a server with `app_count` apps.
    pub fn new(app_count: usize) -> Self {
        Self {
            core: Arc::new(ShardCounters::new(app_count)),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            write_calls: AtomicU64::new(0),
            mesh_delayed: AtomicU64::new(0),
            http_requests: AtomicU64::new(0),
            delivery_latency: LatencyHistogram::default(),
            cpu: OnceLock::new(),
        }
    }

    /// Open WebSocket connections on the shard, every app.
    pub fn connections(&self) -> i64 {
        let apps = self.core.apps.values();
        apps.map(|a| a.connections.load(Ordering::Relaxed)).sum()
    }

    /// Records that the shard's thread now runs on `cpu` only.
    pub fn pin_to(&self, cpu: usize) {
        let _ = self.cpu.set(cpu);
    }

    /// The CPU the shard's thread is pinned to; `None` when it is not pinned.
    pub fn cpu(&self) -> Option<usize> {
        self.cpu.get().copied()
    }
}

/// Counters of one app's backend token verification (`[apps.token_verification]`).
#[derive(Default, Debug)]
pub struct VerifierMetrics {
    /// Backend calls answered with a usable 200.
    pub verified: AtomicU64,
    /// Backend calls answered with a definite refusal (4xx).
    pub refused: AtomicU64,
    /// Backend calls that failed: timeout, unreachable, 5xx, unusable answer.
    pub failed: AtomicU64,
    /// Connections answered from the cache.
    pub cache_hits: AtomicU64,
    /// Connections that waited for another connection's call with the same credentials.
    pub shared: AtomicU64,
    /// Connections refused without a call: too many were waiting.
    pub overloaded: AtomicU64,
}

/// Counters of one app's subscription to Laravel's Redis broadcaster
/// (`[apps.redis_broadcast]`).
#[derive(Default, Debug)]
pub struct RedisBroadcastMetrics {
    /// Events from Redis published as an HTTP API publish would be.
    pub messages: AtomicU64,
    /// Messages from Redis refused: no Laravel payload, a channel outside the prefix or not
    /// a channel name, or an event the HTTP API would refuse (over `max_message_bytes`, ...).
    pub invalid: AtomicU64,
    /// Connection attempts after the first, each after the connection was lost or refused.
    pub reconnects: AtomicU64,
}

/// Counters of the webhook sender.
#[derive(Default, Debug)]
pub struct WebhookMetrics {
    /// Events handed to the sender.
    pub queued: AtomicU64,
    /// Events dropped because the sender's queue was full.
    pub dropped: AtomicU64,
    /// Requests answered with 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed (non-2xx or network error).
    pub failed_attempts: AtomicU64,
    /// Requests given up after retrying for five minutes (or evicted from a full retry queue).
    pub abandoned: AtomicU64,
}

/// Heap allocations made by the process, when built with the `count-allocations` feature.
pub static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations into [`ALLOCATIONS`].
#[cfg(feature = "count-allocations")]
pub struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
// GlobalAlloc contract; the counter is a relaxed atomic with no effect on memory.
#[cfg(feature = "count-allocations")]
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}
