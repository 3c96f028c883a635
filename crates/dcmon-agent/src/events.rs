//! Events for the server: GPU XID errors from the collectors, and the fan loop's writes
//! and fail-safe transitions (the server stores each once and audits fan writes).
//!
//! Kept in memory, bounded (oldest dropped first, counted), and sent in reports of up to
//! [`MAX_EVENTS_PER_REPORT`] with back-off while the server is unreachable. Each event
//! has a random id, so a report resent after a lost answer stores nothing twice.

use crate::client::ServerClient;
use dcmon_wire::api::{AgentEvent, MAX_EVENTS_PER_REPORT};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Events kept while the server is unreachable.
const MAX_QUEUED: usize = 2000;

/// Where events wait to be sent.
#[derive(Default)]
pub struct EventSink {
    queue: Mutex<VecDeque<AgentEvent>>,
    wake: Notify,
    dropped: AtomicU64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl EventSink {
    /// Queues an event for the server.
    pub fn push(&self, kind: &str, severity: &str, message: String, detail: serde_json::Value) {
        let mut id = [0u8; 12];
        let _ = getrandom::fill(&mut id);
        let event = AgentEvent {
            id: hex::encode(id),
            ts_ms: now_ms(),
            kind: kind.to_owned(),
            severity: severity.to_owned(),
            message,
            detail: (!detail.is_null()).then(|| detail.to_string()),
        };
        let mut q = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        q.push_back(event);
        while q.len() > MAX_QUEUED {
            q.pop_front();
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                dropped_total = n,
                "event queue full; dropped the oldest event"
            );
        }
        drop(q);
        self.wake.notify_one();
    }

    fn peek(&self) -> Vec<AgentEvent> {
        let q = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        q.iter().take(MAX_EVENTS_PER_REPORT).cloned().collect()
    }

    /// Removes the sent events (by id: the queue may have dropped some meanwhile).
    fn remove(&self, sent: &[AgentEvent]) {
        let mut q = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        q.retain(|e| !sent.iter().any(|s| s.id == e.id));
    }
}

/// Sends queued events until `stop`; one last attempt at the end.
pub async fn run(
    client: ServerClient,
    sink: std::sync::Arc<EventSink>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let batch = sink.peek();
        if batch.is_empty() {
            tokio::select! {
                _ = sink.wake.notified() => continue,
                _ = stop.changed() => break,
            }
        }
        match client.report_events(&batch).await {
            Ok(()) => {
                sink.remove(&batch);
                backoff = Duration::from_secs(1);
            }
            Err(e) => {
                tracing::debug!(error = %e, events = batch.len(), "cannot report events yet");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
    let batch = sink.peek();
    if !batch.is_empty() {
        if let Ok(Ok(())) =
            tokio::time::timeout(Duration::from_secs(3), client.report_events(&batch)).await
        {
            sink.remove(&batch);
        }
    }
}
