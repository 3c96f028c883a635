//! The push side of the agent: scrapes go to the server in signed batches; what the
//! server cannot take (unreachable, 5xx, refusing the agent) goes to the on-disk
//! [`Spool`] and is sent oldest first once the server answers again.
//!
//! Order: while anything is spooled, new scrapes are appended to the spool too, and the
//! spool is drained before anything newer is sent, so the server receives every host's
//! scrapes in collection order.

use crate::client::{PushError, ServerClient};
use crate::spool::{Position, Spool, SpoolStats};
use dcmon_wire::Scrape;
use dcmon_wire::batch::{BatchError, Encoder};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Most scrapes sent in one upload (a backlog goes up in several).
pub const MAX_SCRAPES_PER_BATCH: usize = 60;

/// A batch on its way: the encoded bytes (resent as they are after a transport error)
/// and the scrapes they hold (re-encoded when the server asks for a new session).
struct InFlight {
    bytes: Vec<u8>,
    scrapes: Vec<Scrape>,
    /// Where these scrapes came from in the spool; `None` for scrapes held in memory.
    spooled: Option<Position>,
}

fn new_encoder() -> Encoder {
    let mut b = [0u8; 8];
    // A constant session id would only cost a resync; randomness failing is not fatal here.
    let _ = getrandom::fill(&mut b);
    Encoder::new(u64::from_le_bytes(b))
}

/// Spool figures shared with the collector loop, which reports them as metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct PushStats {
    pub spool: SpoolStats,
    /// Scrapes dropped from memory (no spool, or the spool could not be written).
    pub dropped_in_memory: u64,
}

/// Sends scrapes, spooling what cannot be sent now.
pub struct Pusher {
    client: ServerClient,
    encoder: Encoder,
    memory: VecDeque<Scrape>,
    spool: Option<Spool>,
    in_flight: Option<InFlight>,
    max_memory: usize,
    /// Set by a failed push, cleared by a successful one: while set, scrapes go straight
    /// to the spool.
    offline: bool,
    last_refusal: Option<String>,
    stats: Arc<Mutex<PushStats>>,
}

impl Pusher {
    /// `spool`: where to keep what cannot be sent (`None`: memory only, bounded by
    /// `max_memory` scrapes, oldest dropped first).
    pub fn new(client: ServerClient, spool: Option<Spool>, max_memory: usize) -> Self {
        let stats = Arc::new(Mutex::new(PushStats::default()));
        let p = Self {
            client,
            encoder: new_encoder(),
            memory: VecDeque::new(),
            spool,
            in_flight: None,
            max_memory: max_memory.max(1),
            offline: false,
            last_refusal: None,
            stats,
        };
        p.publish();
        p
    }

    /// Figures for the agent's own metrics, updated after every change.
    pub fn stats_handle(&self) -> Arc<Mutex<PushStats>> {
        self.stats.clone()
    }

    fn publish(&self) {
        let mut s = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.spool = self.spool.as_ref().map(Spool::stats).unwrap_or_default();
    }

    fn spool_is_empty(&self) -> bool {
        self.spool.as_ref().is_none_or(Spool::is_empty)
    }

    /// Writes scrapes to the spool; on failure (disk full, read-only) keeps them in
    /// memory instead.
    fn spool_scrapes(&mut self, scrapes: Vec<Scrape>) {
        if let Some(spool) = self.spool.as_mut() {
            match spool.append(&scrapes) {
                Ok(()) => {
                    self.publish();
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot write the spool; keeping scrapes in memory")
                }
            }
        }
        for s in scrapes {
            self.hold_in_memory(s);
        }
    }

    fn hold_in_memory(&mut self, scrape: Scrape) {
        self.memory.push_back(scrape);
        while self.memory.len() > self.max_memory {
            self.memory.pop_front();
            let mut s = self
                .stats
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.dropped_in_memory += 1;
            tracing::warn!(
                dropped_total = s.dropped_in_memory,
                "in-memory queue full; dropped the oldest scrape"
            );
        }
    }

    /// Queues a scrape: in memory while the server takes everything, in the spool
    /// (durably) while it does not or while older scrapes wait there.
    pub fn enqueue(&mut self, scrape: Scrape) {
        if self.spool.is_some() && (self.offline || !self.spool_is_empty()) {
            self.spool_scrapes(vec![scrape]);
        } else {
            self.hold_in_memory(scrape);
        }
    }

    /// Scrapes waiting to be sent (memory, spool and the batch in flight).
    pub fn backlog(&self) -> u64 {
        self.memory.len() as u64
            + self.spool.as_ref().map_or(0, |s| s.stats().scrapes)
            + self
                .in_flight
                .as_ref()
                .filter(|f| f.spooled.is_none())
                .map_or(0, |f| f.scrapes.len() as u64)
    }

    /// Sends what is queued, oldest first; stops at the first failure (kept for later).
    pub async fn flush(&mut self) {
        loop {
            if self.in_flight.is_none() && !self.next_batch() {
                return;
            }
            let Some(flight) = self.in_flight.as_mut() else {
                return;
            };
            match self.client.push(flight.bytes.clone()).await {
                Ok(resp) => {
                    tracing::debug!(
                        samples = resp.accepted_samples,
                        duplicate = resp.duplicate,
                        scrapes = flight.scrapes.len(),
                        from_spool = flight.spooled.is_some(),
                        "batch stored"
                    );
                    if self.offline || self.last_refusal.is_some() {
                        tracing::info!(
                            backlog = self.backlog(),
                            "server takes data again; sending what was kept"
                        );
                    }
                    self.offline = false;
                    self.last_refusal = None;
                    let done = self.in_flight.take();
                    self.commit(done.and_then(|f| f.spooled));
                }
                Err(PushError::Resync(why)) => {
                    tracing::info!(%why, "starting a new batch session");
                    self.encoder = new_encoder();
                    match self.encoder.encode(&flight.scrapes) {
                        Ok(bytes) => flight.bytes = bytes,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot re-encode scrapes; dropping them");
                            let done = self.in_flight.take();
                            self.commit(done.and_then(|f| f.spooled));
                        }
                    }
                }
                Err(PushError::Rejected(why)) => {
                    tracing::error!(%why, scrapes = flight.scrapes.len(), "server rejected a batch; dropping it");
                    // The encoder state advanced past a batch the server never applied.
                    self.encoder = new_encoder();
                    let done = self.in_flight.take();
                    self.commit(done.and_then(|f| f.spooled));
                }
                Err(PushError::Refused { code, message }) => {
                    if self.last_refusal.as_deref() != Some(code.as_str()) {
                        tracing::error!(%code, %message, "server refuses this agent; keeping data and retrying");
                        self.last_refusal = Some(code);
                    }
                    self.set_aside();
                    return;
                }
                Err(PushError::Transport(why)) => {
                    if !self.offline {
                        tracing::warn!(%why, backlog = self.backlog(), "server unreachable; spooling until it is back");
                    }
                    self.set_aside();
                    return;
                }
            }
        }
    }

    /// Picks the next batch: the spool's oldest scrapes first, then memory's.
    fn next_batch(&mut self) -> bool {
        let (scrapes, spooled) = match self.spool.as_mut() {
            Some(spool) if !spool.is_empty() => {
                let (scrapes, pos) = spool.peek(MAX_SCRAPES_PER_BATCH);
                match pos {
                    Some(pos) => (scrapes, Some(pos)),
                    None => {
                        // Counted scrapes the reader cannot reach (damage found late):
                        // the spool has already logged and counted them.
                        self.publish();
                        if self.memory.is_empty() {
                            return false;
                        }
                        let n = self.memory.len().min(MAX_SCRAPES_PER_BATCH);
                        (self.memory.drain(..n).collect(), None)
                    }
                }
            }
            _ => {
                if self.memory.is_empty() {
                    return false;
                }
                let n = self.memory.len().min(MAX_SCRAPES_PER_BATCH);
                (self.memory.drain(..n).collect(), None)
            }
        };
        let mut encoded = self.encoder.encode(&scrapes);
        if let Err(BatchError::SessionFull { .. }) = encoded {
            // Series come and go; a fresh session forgets the ones gone.
            self.encoder = new_encoder();
            encoded = self.encoder.encode(&scrapes);
        }
        match encoded {
            Ok(bytes) => {
                self.in_flight = Some(InFlight {
                    bytes,
                    scrapes,
                    spooled,
                });
                true
            }
            Err(e) => {
                // Only a scrape beyond the codec's limits fails; it can never be sent.
                tracing::error!(error = %e, scrapes = scrapes.len(), "cannot encode scrapes; dropping them");
                self.commit(spooled);
                true
            }
        }
    }

    fn commit(&mut self, pos: Option<Position>) {
        if let (Some(pos), Some(spool)) = (pos, self.spool.as_mut()) {
            if let Err(e) = spool.commit(pos) {
                // The data was delivered; at worst it is sent again after a restart,
                // and the server stores a repeated sample once.
                tracing::warn!(error = %e, "cannot record spool progress");
            }
        }
        self.publish();
    }

    /// After a failed push: the batch's scrapes go to the spool (spooled ones stay
    /// there), and the next attempt starts a new session, since the server may or may
    /// not have applied the one in flight.
    fn set_aside(&mut self) {
        self.offline = true;
        self.encoder = new_encoder();
        if let Some(flight) = self.in_flight.take() {
            if flight.spooled.is_none() {
                let mut scrapes = flight.scrapes;
                scrapes.extend(self.memory.drain(..));
                if self.spool.is_some() {
                    self.spool_scrapes(scrapes);
                } else {
                    for s in scrapes.into_iter().rev() {
                        self.memory.push_front(s);
                    }
                    while self.memory.len() > self.max_memory {
                        self.memory.pop_front();
                        self.stats
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .dropped_in_memory += 1;
                    }
                }
            }
        }
        if self.spool.is_some() && !self.memory.is_empty() {
            let rest: Vec<Scrape> = self.memory.drain(..).collect();
            self.spool_scrapes(rest);
        }
        self.publish();
    }

    /// At shutdown: whatever is still only in memory is written to the spool, so a
    /// restart sends it.
    pub fn persist(&mut self) {
        if self.spool.is_none() {
            return;
        }
        let mut scrapes = Vec::new();
        if let Some(f) = self.in_flight.take() {
            if f.spooled.is_none() {
                scrapes = f.scrapes;
            }
        }
        scrapes.extend(self.memory.drain(..));
        if !scrapes.is_empty() {
            let n = scrapes.len();
            self.spool_scrapes(scrapes);
            tracing::info!(scrapes = n, "unsent scrapes written to the spool");
        }
    }
}
