//! The agent's main loop: collect every interval, push in signed batches, keep what
//! could not be sent (oldest dropped first past the bound) and send it oldest first.

use crate::client::{PushError, ServerClient};
use crate::collectors::{Collector, os::OsCollector};
use crate::config::AgentConfig;
use dcmon_wire::batch::{BatchError, Encoder};
use dcmon_wire::{Labels, MetricSample, Scrape};
use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

/// Most scrapes sent in one upload (a backlog goes up in several).
const MAX_SCRAPES_PER_BATCH: usize = 60;

/// Builds the enabled collectors and logs, once, which are available.
pub fn build_collectors(cfg: &AgentConfig) -> Vec<Box<dyn Collector>> {
    let mut all: Vec<Box<dyn Collector>> = Vec::new();
    if !cfg.collectors.disabled.iter().any(|d| d == "os") {
        all.push(Box::new(OsCollector::new(cfg.collectors.os.clone())));
    }
    all.retain(|c| {
        let available = c.is_available();
        if available {
            tracing::info!(collector = c.name(), "collector available");
        } else {
            tracing::info!(
                collector = c.name(),
                "collector not available on this machine; skipped"
            );
        }
        available
    });
    all
}

/// Runs every collector once and returns the scrape, with `host`/`instance` labels
/// and `dcmon_collector_up` / `dcmon_collector_duration_seconds` per collector.
pub fn collect_once(collectors: &mut [Box<dyn Collector>], host: &str) -> Scrape {
    let timestamp_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut samples: Vec<MetricSample> = Vec::with_capacity(256);
    for c in collectors.iter_mut() {
        let started = Instant::now();
        let result = c.collect(&mut samples);
        let up = match result {
            Ok(()) => 1.0,
            Err(e) => {
                tracing::warn!(collector = c.name(), error = %e, "collection failed");
                0.0
            }
        };
        for (metric, value) in [
            ("dcmon_collector_up", up),
            (
                "dcmon_collector_duration_seconds",
                started.elapsed().as_secs_f64(),
            ),
        ] {
            if let Ok(labels) = Labels::new(metric, [("collector", c.name())]) {
                samples.push(MetricSample { labels, value });
            }
        }
    }
    for s in &mut samples {
        s.labels.set("host", host);
        s.labels.set("instance", host);
    }
    Scrape {
        timestamp_ms,
        samples,
    }
}

/// A batch on its way: the encoded bytes (resent as they are after a transport error)
/// and the scrapes they hold (re-encoded when the server asks for a new session).
struct InFlight {
    bytes: Vec<u8>,
    scrapes: Vec<Scrape>,
}

fn new_encoder() -> Encoder {
    let mut b = [0u8; 8];
    // A constant session id would only cost a resync; randomness failing is not fatal here.
    let _ = getrandom::fill(&mut b);
    Encoder::new(u64::from_le_bytes(b))
}

/// The push side of the loop.
pub struct Pusher {
    client: ServerClient,
    encoder: Encoder,
    pending: VecDeque<Scrape>,
    in_flight: Option<InFlight>,
    max_pending: usize,
    dropped_scrapes: u64,
    last_refusal: Option<String>,
}

impl Pusher {
    pub fn new(client: ServerClient, max_pending: usize) -> Self {
        Self {
            client,
            encoder: new_encoder(),
            pending: VecDeque::new(),
            in_flight: None,
            max_pending,
            dropped_scrapes: 0,
            last_refusal: None,
        }
    }

    /// Queues a scrape, dropping the oldest when the bound is reached.
    pub fn enqueue(&mut self, scrape: Scrape) {
        self.pending.push_back(scrape);
        while self.pending.len() > self.max_pending {
            self.pending.pop_front();
            self.dropped_scrapes += 1;
            tracing::warn!(
                dropped_total = self.dropped_scrapes,
                "pending queue full; dropped the oldest scrape"
            );
        }
    }

    /// Scrapes waiting to be sent (including the batch in flight).
    pub fn backlog(&self) -> usize {
        self.pending.len() + self.in_flight.as_ref().map_or(0, |f| f.scrapes.len())
    }

    /// Sends everything queued; stops at the first transport error (kept for later).
    pub async fn flush(&mut self) {
        loop {
            if self.in_flight.is_none() {
                if self.pending.is_empty() {
                    return;
                }
                let n = self.pending.len().min(MAX_SCRAPES_PER_BATCH);
                let scrapes: Vec<Scrape> = self.pending.drain(..n).collect();
                let mut encoded = self.encoder.encode(&scrapes);
                if let Err(BatchError::SessionFull { .. }) = encoded {
                    // Series come and go; a fresh session forgets the ones gone.
                    self.encoder = new_encoder();
                    encoded = self.encoder.encode(&scrapes);
                }
                match encoded {
                    Ok(bytes) => self.in_flight = Some(InFlight { bytes, scrapes }),
                    Err(e) => {
                        // Only a scrape beyond the codec's limits fails; it can never be sent.
                        tracing::error!(error = %e, scrapes = n, "cannot encode scrapes; dropping them");
                        self.dropped_scrapes += n as u64;
                    }
                }
                continue;
            }
            let Some(flight) = self.in_flight.as_mut() else {
                return;
            };
            match self.client.push(flight.bytes.clone()).await {
                Ok(resp) => {
                    tracing::debug!(
                        samples = resp.accepted_samples,
                        duplicate = resp.duplicate,
                        "batch stored"
                    );
                    if self.last_refusal.take().is_some() {
                        tracing::info!("server accepts this agent again");
                    }
                    self.in_flight = None;
                }
                Err(PushError::Resync(why)) => {
                    tracing::info!(%why, "starting a new batch session");
                    self.encoder = new_encoder();
                    match self.encoder.encode(&flight.scrapes) {
                        Ok(bytes) => flight.bytes = bytes,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot re-encode scrapes; dropping them");
                            self.dropped_scrapes += flight.scrapes.len() as u64;
                            self.in_flight = None;
                        }
                    }
                }
                Err(PushError::Rejected(why)) => {
                    tracing::error!(%why, scrapes = flight.scrapes.len(), "server rejected a batch; dropping it");
                    self.dropped_scrapes += flight.scrapes.len() as u64;
                    self.in_flight = None;
                    // The encoder state advanced past a batch the server never applied.
                    self.encoder = new_encoder();
                }
                Err(PushError::Refused { code, message }) => {
                    if self.last_refusal.as_deref() != Some(code.as_str()) {
                        tracing::error!(%code, %message, "server refuses this agent; keeping data and retrying");
                        self.last_refusal = Some(code);
                    }
                    return;
                }
                Err(PushError::Transport(why)) => {
                    tracing::warn!(%why, backlog = self.backlog(), "server unreachable; will retry");
                    return;
                }
            }
        }
    }
}

/// Runs collect-and-push until `shutdown` completes.
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let link = cfg.server.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "this agent is not registered: run `dcmon-agent register --server URL --token T`"
        )
    })?;
    let key = crate::identity::load_or_create_key(&cfg.state_dir)?;
    let client = ServerClient::new(
        &link.url,
        &link.fingerprint,
        key,
        Some(link.agent_id.clone()),
    )?;
    let mut pusher = Pusher::new(client, cfg.max_pending_scrapes);
    let mut collectors = build_collectors(&cfg);
    let host = cfg.hostname();
    tracing::info!(server = %link.url, agent = %link.agent_id, interval = ?cfg.interval, "agent running");
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let scrape = tokio::task::block_in_place(|| collect_once(&mut collectors, &host));
        pusher.enqueue(scrape);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = pusher.flush() => {}
        }
    }
    // One last attempt so a clean stop loses nothing that can still be sent.
    let _ = tokio::time::timeout(Duration::from_secs(5), pusher.flush()).await;
    if pusher.backlog() > 0 {
        tracing::warn!(
            backlog = pusher.backlog(),
            "stopping with scrapes not yet sent"
        );
    }
    Ok(())
}
