//! Collectors: each reads one part of the machine and appends samples.
//!
//! Every collector decides `is_available()` once at start-up; the runner logs that once
//! and never calls `collect` on an unavailable one. A failing collector reports
//! `dcmon_collector_up{collector} 0` and never stops the others.

pub mod apt;
pub mod bmc_fan;
pub mod gpu;
pub mod ipmi;
pub mod nvme;
pub mod os;

/// Every collector name, as used in `collectors.disabled`.
pub const NAMES: &[&str] = &["os", "nvme", "apt", "gpu", "ipmi", "bmc_fan"];

use dcmon_wire::MetricSample;

/// Why one collection of one collector failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: String, message: String },
    /// A BMC request failed; the message names the BMC (device path or host).
    #[error("{0}")]
    Ipmi(String),
}

/// One source of metrics.
pub trait Collector: Send {
    /// Stable name, used as the `collector` label and in the config.
    fn name(&self) -> &'static str;
    /// Whether this machine has what the collector reads; decided once at start-up.
    fn is_available(&self) -> bool;
    /// Appends this collection's samples to `out`. Labels `host`/`instance` are added by
    /// the caller. On error, what was appended before the error is kept.
    fn collect(&mut self, out: &mut Vec<MetricSample>) -> Result<(), CollectError>;
    /// Things seen happen during the last collections (a GPU's XID error), to be kept
    /// as events on the server; most collectors have none.
    fn take_events(&mut self) -> Vec<CollectorEvent> {
        Vec::new()
    }
}

/// Test support: renders `samples` in the Prometheus text format and compares them with
/// the snapshot at `path`; `UPDATE_EXPECT=1` rewrites the snapshot after an intended change.
#[cfg(test)]
pub(crate) fn check_exposition_snapshot(samples: Vec<MetricSample>, path: &std::path::Path) {
    let mut text = String::new();
    crate::exposition::prometheus_text(
        &dcmon_wire::Scrape {
            timestamp_ms: 0,
            samples,
        },
        &mut text,
    );
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(path).unwrap();
    if text != expected {
        let first = text.lines().zip(expected.lines()).position(|(a, b)| a != b);
        panic!(
            "exposition differs from {} (first differing line: {first:?}); \
             rerun with UPDATE_EXPECT=1 if intended\n{text}",
            path.display()
        );
    }
}

/// Appends one sample. Collectors build metric and label names from their own
/// constants (their fixture tests emit every one), so an invalid name is a bug, caught
/// in debug builds; label values are free text and always valid.
pub(crate) fn push(out: &mut Vec<MetricSample>, metric: &str, labels: &[(&str, &str)], value: f64) {
    match dcmon_wire::Labels::new(metric, labels.iter().copied()) {
        Ok(labels) => out.push(MetricSample { labels, value }),
        Err(e) => {
            if cfg!(debug_assertions) {
                panic!("a collector built an invalid series {metric}: {e}");
            }
        }
    }
}

/// Something a collector saw happen.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorEvent {
    pub kind: &'static str,
    /// `info`, `warning` or `critical`.
    pub severity: &'static str,
    pub message: String,
    pub detail: serde_json::Value,
}
