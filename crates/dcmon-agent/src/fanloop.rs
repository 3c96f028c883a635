//! The agent's fan-curve loop (DESIGN §8): with `fan_curve` set, the agent runs the curve
//! itself over in-band IPMI (or `bmc_lan`), so fans keep following temperatures when the
//! server is down. Inputs are the BMC's SDR temperatures and fan speeds plus what only
//! the agent sees: GPU temperatures (NVML) and NVMe temperatures, from its latest
//! collection. Decisions come from `dcmon_ipmi::curve` — the same engine the server runs
//! for agentless BMCs — and every write is logged with its reason.
//!
//! Fail-safe is the engine's: a zone without a fresh reading, a BMC that does not answer
//! reads, or a loop that fell two intervals behind puts the fans to full (Supermicro) or
//! automatic (Dell) within one cycle. When the curve is removed or the agent stops,
//! control is handed back to the BMC.

use crate::config::AgentConfig;
use crate::events::EventSink;
use dcmon_ipmi::client::{self, SensorValue};
use dcmon_ipmi::cmd::sdr::SdrRecord;
use dcmon_ipmi::curve::{self, Controller, CurrentFans, CurveConfig, Inputs, Reading, SensorKind};
use dcmon_ipmi::fans::{self, FanAction, FanOptions};
use dcmon_ipmi::transport::Transport;
use dcmon_ipmi::transport::inband::InbandDevice;
use dcmon_ipmi::transport::lan::{LanConfig, LanSession, parse_target};
use dcmon_ipmi::vendor::Vendor;
use dcmon_wire::Scrape;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Temperatures only the agent sees, refreshed after every collection.
#[derive(Default)]
pub struct AgentTemps {
    readings: Mutex<Vec<Reading>>,
}

impl AgentTemps {
    /// Takes the GPU and NVMe temperatures out of a collection.
    pub fn update(&self, scrape: &Scrape) {
        let mut out = Vec::new();
        for s in &scrape.samples {
            let (kind, name) = match s.labels.metric() {
                "DCGM_FI_DEV_GPU_TEMP" => (
                    SensorKind::GpuTemp,
                    format!("GPU{}", s.labels.get("gpu").unwrap_or("?")),
                ),
                "smartctl_device_temperature"
                    if s.labels.get("temperature_type") == Some("current") =>
                {
                    (
                        SensorKind::NvmeTemp,
                        s.labels.get("device").unwrap_or("nvme").to_owned(),
                    )
                }
                _ => continue,
            };
            out.push(Reading {
                name,
                kind,
                celsius: s.value,
                at_ms: scrape.timestamp_ms,
            });
        }
        *self
            .readings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = out;
    }

    fn get(&self) -> Vec<Reading> {
        self.readings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The BMC this agent controls: the local device, or one over RMCP+.
enum Bmc {
    Inband(InbandDevice),
    Lan(Box<LanSession>),
}

async fn connect(cfg: &AgentConfig) -> Result<Bmc, String> {
    match &cfg.bmc_lan {
        Some(lan) => {
            let password = std::fs::read_to_string(&lan.password_file).map_err(|e| {
                format!("bmc_lan.password_file {}: {e}", lan.password_file.display())
            })?;
            let (host, port) =
                parse_target(&lan.address).map_err(|e| format!("bmc_lan.address: {e}"))?;
            let mut config = LanConfig::new(
                host,
                lan.user.clone(),
                password.trim_end_matches(['\r', '\n']),
            );
            config.port = port;
            LanSession::connect(config)
                .await
                .map(|s| Bmc::Lan(Box::new(s)))
                .map_err(|e| e.to_string())
        }
        None => {
            let path = cfg.ipmi.device.to_string_lossy().into_owned();
            InbandDevice::open(&path, cfg.ipmi.timeout)
                .map(Bmc::Inband)
                .map_err(|e| crate::collectors::ipmi::describe_open_error(&path, &e))
        }
    }
}

/// Per-loop state kept across cycles.
struct Loop {
    controller: Controller,
    vendor: Vendor,
    options: FanOptions,
    sdr: Option<Vec<SdrRecord>>,
    last_run_ms: Option<i64>,
    /// Whether this loop has written to the BMC (so stopping hands control back).
    wrote: bool,
}

impl Loop {
    async fn cycle<T: Transport>(&mut self, bmc: &T, agent: &AgentTemps, events: &EventSink) {
        let now = now_ms();
        let mut reachable = true;
        if self.sdr.is_none() {
            match client::sdr_records(bmc).await {
                Ok(r) => self.sdr = Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "fan loop: cannot read the SDR");
                    reachable = false;
                }
            }
        }
        let values: Vec<SensorValue> = match &self.sdr {
            Some(sdr) if reachable => match client::read_sensors(bmc, sdr).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "fan loop: cannot read sensors");
                    self.sdr = None;
                    reachable = false;
                    Vec::new()
                }
            },
            _ => Vec::new(),
        };
        let (mut temps, fans_rpm) = curve::sensors::from_sensors(&values, self.vendor, now);
        temps.extend(agent.get());
        let current = if reachable {
            match fans::execute_with(bmc, &FanAction::Status, self.options).await {
                Ok(r) => Some(CurrentFans {
                    mode: r.mode.as_deref().and_then(|m| fans::parse_mode(m).ok()),
                    zones: r.zones,
                }),
                Err(_) => None,
            }
        } else {
            None
        };
        let inputs = Inputs {
            now_ms: now,
            temps,
            fans: fans_rpm,
            current,
            bmc_reachable: reachable,
            last_run_ms: self.last_run_ms,
        };
        let decision = self.controller.step(&inputs);
        self.last_run_ms = Some(now);
        for e in &decision.events {
            tracing::warn!(event = ?e, "fan loop");
            let (kind, severity, message) = match e {
                curve::Event::FailSafeEntered { reason } => (
                    "fan_fail_safe",
                    "critical",
                    format!("fans to fail-safe: {reason}"),
                ),
                curve::Event::FailSafeCleared { reason } => (
                    "fan_fail_safe_cleared",
                    "info",
                    format!("fail-safe over, curve back in control: {reason}"),
                ),
            };
            events.push(
                kind,
                severity,
                message,
                serde_json::json!({ "explanation": decision.explanation }),
            );
        }
        for w in &decision.writes {
            let action = w.action();
            let why = decision.explanation.join("; ");
            let (message, severity) = match fans::execute_with(bmc, &action, self.options).await {
                Ok(r) => {
                    self.wrote = true;
                    tracing::info!(write = ?w, result = %r.message, %why, "fan write");
                    (format!("curve: {w:?}: ok ({})", r.message), "info")
                }
                Err(e) => {
                    tracing::error!(write = ?w, error = %e, %why, "fan write failed");
                    (format!("curve: {w:?}: failed: {e}"), "warning")
                }
            };
            events.push(
                "fan_write",
                severity,
                message,
                serde_json::json!({ "write": format!("{w:?}"), "why": decision.explanation }),
            );
        }
    }

    async fn hand_back<T: Transport>(&mut self, bmc: &T, events: &EventSink) {
        if !self.wrote {
            return;
        }
        for w in self.controller.shutdown() {
            let (message, severity) = match fans::execute_with(bmc, &w.action(), self.options).await
            {
                Ok(r) => {
                    tracing::info!(result = %r.message, "fan control handed back to the BMC");
                    (format!("curve stopped: {w:?}: ok ({})", r.message), "info")
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot hand fan control back to the BMC");
                    (format!("curve stopped: {w:?}: failed: {e}"), "warning")
                }
            };
            events.push("fan_write", severity, message, serde_json::Value::Null);
        }
        self.wrote = false;
    }
}

async fn close(bmc: Bmc) {
    if let Bmc::Lan(s) = bmc {
        s.close().await;
    }
}

/// Runs the curve in `curve_rx` (none: idle) until `stop` turns true; then hands back.
pub async fn run(
    cfg: AgentConfig,
    mut curve_rx: watch::Receiver<Option<CurveConfig>>,
    agent: Arc<AgentTemps>,
    events: Arc<EventSink>,
    mut stop: watch::Receiver<bool>,
) {
    let mut state: Option<Loop> = None;
    let mut running: Option<CurveConfig> = None;
    loop {
        let wanted = curve_rx.borrow_and_update().clone();
        if wanted != running {
            // A changed or removed curve: the old controller gives control back first.
            if let Some(mut l) = state.take() {
                if let Ok(bmc) = connect(&cfg).await {
                    hand_back_any(&mut l, &bmc, &events).await;
                    close(bmc).await;
                }
            }
            running = wanted;
        }
        if let Some(c) = &running {
            match connect(&cfg).await {
                Ok(bmc) => {
                    if state.is_none() {
                        state = build(c, &bmc, &cfg).await;
                    }
                    if let Some(l) = state.as_mut() {
                        cycle_any(l, &bmc, &agent, &events).await;
                    }
                    close(bmc).await;
                }
                Err(e) => tracing::warn!(error = %e, "fan loop: cannot reach the BMC"),
            }
        }
        let interval = running.as_ref().map_or(Duration::from_secs(3600), |c| {
            Duration::from_secs(c.interval_s.max(1))
        });
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = curve_rx.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = stop.changed() => break,
        }
    }
    if let Some(mut l) = state {
        if let Ok(bmc) = connect(&cfg).await {
            hand_back_any(&mut l, &bmc, &events).await;
            close(bmc).await;
        }
    }
}

async fn build(c: &CurveConfig, bmc: &Bmc, cfg: &AgentConfig) -> Option<Loop> {
    let vendor = match bmc {
        Bmc::Inband(t) => fans::detect_vendor(t).await,
        Bmc::Lan(t) => fans::detect_vendor(t.as_ref()).await,
    };
    let vendor = match vendor {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "fan loop: cannot identify the BMC");
            return None;
        }
    };
    match Controller::new(vendor, c.clone()) {
        Ok(controller) => {
            tracing::info!(%vendor, interval_s = c.interval_s, "fan curve running on this agent");
            let supermicro_x9 = matches!(bmc, Bmc::Inband(_))
                && crate::collectors::bmc_fan::SupermicroBoard::detect(&cfg.ipmi.sys_root)
                    .is_some_and(|b| b.is_x9());
            Some(Loop {
                controller,
                vendor,
                options: FanOptions { supermicro_x9 },
                sdr: None,
                last_run_ms: None,
                wrote: false,
            })
        }
        Err(problems) => {
            tracing::error!(problems = %problems.join("; "), "fan curve refused for this BMC; fans left to the BMC");
            None
        }
    }
}

async fn cycle_any(l: &mut Loop, bmc: &Bmc, agent: &AgentTemps, events: &EventSink) {
    match bmc {
        Bmc::Inband(t) => l.cycle(t, agent, events).await,
        Bmc::Lan(t) => l.cycle(t.as_ref(), agent, events).await,
    }
}

async fn hand_back_any(l: &mut Loop, bmc: &Bmc, events: &EventSink) {
    match bmc {
        Bmc::Inband(t) => l.hand_back(t, events).await,
        Bmc::Lan(t) => l.hand_back(t.as_ref(), events).await,
    }
}
