//! The agent's main loop: collect every interval, push in signed batches, keep what
//! could not be sent (oldest dropped first past the bound) and send it oldest first.

use crate::client::ServerClient;
use crate::collectors::{
    Collector, apt::AptCollector, gpu::GpuCollector, nvme::NvmeCollector, os::OsCollector,
};
use crate::collectors::{bmc_fan::BmcFanCollector, ipmi::IpmiCollector};
use crate::config::AgentConfig;
use crate::pusher::{PushStats, Pusher};
use crate::spool::Spool;
use dcmon_wire::{Labels, MetricSample, Scrape};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Builds the enabled collectors and logs, once, which are available.
pub fn build_collectors(cfg: &AgentConfig) -> Vec<Box<dyn Collector>> {
    let mut all: Vec<Box<dyn Collector>> = Vec::new();
    if !cfg.collectors.disabled.iter().any(|d| d == "os") {
        all.push(Box::new(OsCollector::new(cfg.collectors.os.clone())));
    }
    if !cfg.collectors.disabled.iter().any(|d| d == "gpu") {
        all.push(Box::new(GpuCollector::new(&cfg.collectors.gpu)));
    }
    if !cfg.collectors.disabled.iter().any(|d| d == "nvme") {
        all.push(Box::new(NvmeCollector::new(cfg.collectors.nvme.clone())));
    }
    if !cfg.collectors.disabled.iter().any(|d| d == "apt") {
        all.push(Box::new(AptCollector::new(cfg.collectors.apt.clone())));
    }
    let runtime_failed = |name: &str, e: std::io::Error| {
        tracing::warn!(collector = name, error = %e, "cannot start the collector's runtime; skipped");
    };
    if !cfg.collectors.disabled.iter().any(|d| d == "ipmi") {
        match IpmiCollector::inband(&cfg.ipmi) {
            Ok(c) => all.push(Box::new(c)),
            Err(e) => runtime_failed("ipmi", e),
        }
    }
    if !cfg.collectors.disabled.iter().any(|d| d == "bmc_fan") {
        match BmcFanCollector::inband(&cfg.ipmi) {
            Ok(c) => all.push(Box::new(c)),
            Err(e) => runtime_failed("bmc_fan", e),
        }
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

/// What the command handler asks of the collection loop.
pub enum Control {
    /// Collect and push now; answers with a one-line summary and per-collector state.
    CollectNow(oneshot::Sender<CollectSummary>),
    /// Replace the running configuration (interval, collectors); answers when applied.
    Reconfigure(Box<AgentConfig>, oneshot::Sender<()>),
}

/// What one out-of-schedule collection found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CollectSummary {
    pub timestamp_ms: i64,
    pub samples: usize,
    /// Collector name → whether it worked.
    pub collectors: Vec<(String, bool)>,
}

impl CollectSummary {
    fn of(scrape: &Scrape) -> Self {
        let collectors = scrape
            .samples
            .iter()
            .filter(|s| s.labels.metric() == "dcmon_collector_up")
            .filter_map(|s| Some((s.labels.get("collector")?.to_owned(), s.value == 1.0)))
            .collect();
        Self {
            timestamp_ms: scrape.timestamp_ms,
            samples: scrape.samples.len(),
            collectors,
        }
    }
}

/// The agent's own figures, appended to every scrape.
fn self_metrics(stats: &PushStats, out: &mut Vec<MetricSample>) {
    for (metric, value) in [
        ("dcmon_agent_spool_bytes", stats.spool.bytes as f64),
        ("dcmon_agent_spool_scrapes", stats.spool.scrapes as f64),
        (
            "dcmon_agent_spool_dropped_scrapes_total",
            (stats.spool.dropped_scrapes + stats.dropped_in_memory) as f64,
        ),
        (
            "dcmon_agent_spool_corrupt_segments_total",
            stats.spool.corrupt_segments as f64,
        ),
    ] {
        if let Ok(labels) = Labels::new(metric, []) {
            out.push(MetricSample { labels, value });
        }
    }
}

/// Runs collect-and-push, the command long-poll and the local exporter until
/// `shutdown` completes. `config_path` is where `config_update` commands persist.
pub async fn run(
    cfg: AgentConfig,
    config_path: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
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
    let spool = if cfg.spool_max_mib > 0 {
        let dir = cfg.state_dir.join("spool");
        match Spool::open(&dir, cfg.spool_max_mib.saturating_mul(1 << 20)) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "spool unusable; keeping unsent scrapes in memory only");
                None
            }
        }
    } else {
        None
    };
    let mut pusher = Pusher::new(client.clone(), spool, cfg.max_pending_scrapes);
    let push_stats = pusher.stats_handle();
    let exported = match &cfg.exporter.listen {
        Some(addr) => Some(crate::exporter::start(addr, &cfg.exporter).await?),
        None => None,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let (scrape_tx, mut scrape_rx) = mpsc::unbounded_channel::<Scrape>();
    let (control_tx, mut control_rx) = mpsc::channel::<Control>(8);

    let mut stop = stop_rx.clone();
    let push_task = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                s = scrape_rx.recv() => {
                    let Some(s) = s else { break };
                    pusher.enqueue(s);
                    while let Ok(s) = scrape_rx.try_recv() {
                        pusher.enqueue(s);
                    }
                    tokio::select! {
                        _ = pusher.flush() => {}
                        _ = stop.changed() => break,
                    }
                }
            }
        }
        while let Ok(s) = scrape_rx.try_recv() {
            pusher.enqueue(s);
        }
        // One last attempt so a clean stop sends what it can; the rest is spooled.
        let _ = tokio::time::timeout(Duration::from_secs(5), pusher.flush()).await;
        pusher.persist();
        if pusher.backlog() > 0 {
            tracing::info!(
                backlog = pusher.backlog(),
                "stopping with scrapes not yet sent; they are sent after the next start"
            );
        }
    });
    let command_task = cfg.commands.enabled.then(|| {
        tokio::spawn(crate::commands::run(
            client.clone(),
            cfg.clone(),
            config_path,
            control_tx.clone(),
        ))
    });

    let events = Arc::new(crate::events::EventSink::default());
    // Stopped last, so the fan loop's hand-back is reported too.
    let (events_stop, events_stop_rx) = watch::channel(false);
    let events_task = tokio::spawn(crate::events::run(
        client.clone(),
        events.clone(),
        events_stop_rx,
    ));
    let agent_temps = Arc::new(crate::fanloop::AgentTemps::default());
    let (curve_tx, curve_rx) = watch::channel(cfg.fan_curve.clone());
    let fan_task = tokio::spawn(crate::fanloop::run(
        cfg.clone(),
        curve_rx,
        agent_temps.clone(),
        events.clone(),
        stop_rx.clone(),
    ));

    let mut cfg = cfg;
    // Collectors that talk to a BMC own a small runtime of their own, which may only be
    // created and dropped where blocking is allowed.
    let mut collectors = tokio::task::block_in_place(|| build_collectors(&cfg));
    let host = cfg.hostname();
    tracing::info!(server = %link.url, agent = %link.agent_id, interval = ?cfg.interval, "agent running");
    let mut tick = new_tick(cfg.interval);
    tokio::pin!(shutdown);
    loop {
        let reply = tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => None,
            c = control_rx.recv() => match c {
                Some(Control::CollectNow(reply)) => Some(reply),
                Some(Control::Reconfigure(new, done)) => {
                    cfg = *new;
                    let old = std::mem::replace(
                        &mut collectors,
                        tokio::task::block_in_place(|| build_collectors(&cfg)),
                    );
                    tokio::task::block_in_place(move || drop(old));
                    curve_tx.send_if_modified(|c| {
                        let changed = *c != cfg.fan_curve;
                        *c = cfg.fan_curve.clone();
                        changed
                    });
                    tick = new_tick(cfg.interval);
                    tracing::info!(interval = ?cfg.interval, disabled = ?cfg.collectors.disabled, "configuration updated");
                    let _ = done.send(());
                    continue;
                }
                None => continue,
            },
        };
        let mut scrape = tokio::task::block_in_place(|| collect_once(&mut collectors, &host));
        for c in collectors.iter_mut() {
            for e in c.take_events() {
                events.push(e.kind, e.severity, e.message, e.detail);
            }
        }
        let stats = *push_stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut own = Vec::new();
        self_metrics(&stats, &mut own);
        for s in &mut own {
            s.labels.set("host", &host);
            s.labels.set("instance", &host);
        }
        scrape.samples.extend(own);
        if let Some(e) = &exported {
            e.publish(&scrape);
        }
        if cfg.fan_curve.is_some() {
            agent_temps.update(&scrape);
        }
        if let Some(reply) = reply {
            let _ = reply.send(CollectSummary::of(&scrape));
        }
        if scrape_tx.send(scrape).is_err() {
            break;
        }
    }
    tokio::task::block_in_place(move || drop(collectors));
    let _ = stop_tx.send(true);
    drop(scrape_tx);
    if let Some(t) = command_task {
        t.abort();
    }
    if tokio::time::timeout(Duration::from_secs(10), push_task)
        .await
        .is_err()
    {
        tracing::warn!("the push task did not stop within 10 s");
    }
    // The fan loop hands manual fan control back to the BMC before the agent exits.
    if tokio::time::timeout(Duration::from_secs(15), fan_task)
        .await
        .is_err()
    {
        tracing::warn!("the fan loop did not hand control back within 15 s");
    }
    let _ = events_stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), events_task).await;
    Ok(())
}

fn new_tick(every: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}
