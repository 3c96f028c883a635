//! The fan-control loop of agentless BMCs (DESIGN §8): for every BMC with an enabled
//! curve and no linked agent (an agent runs its own BMC's curve in-band), one task that
//! every [`CurveConfig::interval_s`] reads the temperatures and fan speeds from the
//! SDR and the fan mode and duties over RMCP+, lets the curve engine
//! ([`Controller::step`]) decide, and carries out its writes with [`fans::execute`].
//!
//! Fail-safe is the engine's: it decides Full mode at 100 % (Supermicro) or the iDRAC's
//! automatic control (Dell) when the BMC does not answer, when no temperature can be
//! read, and when this loop has not run for two intervals (from `last_run_ms`, kept
//! here across controller rebuilds). This loop carries that decision out on the next
//! cycle, so "within one cycle" holds for everything but a BMC that cannot be reached
//! at all, whose writes land as soon as it answers again.
//!
//! Every write is audited (`ipmi.fan_write`: command, old value, new value, result), and
//! fail-safe transitions are stored as events (`fan_fail_safe`) and logged at warn.
//! When a BMC's loop stops (its curve removed or disabled, its BMC removed or linked to
//! an agent, the server shutting down), the fans are handed back to the BMC
//! ([`Controller::shutdown`]) if the loop has written to it.
//!
//! A supervisor notices curve and inventory changes from any process (the REST API or
//! `dcmon fans` in another process) through [`ControlDb::data_version`] and a cheap
//! signature query, and starts, updates or stops the per-BMC tasks.

use crate::bmcs::{BmcError, BmcRecord, BmcTarget, vendor_key};
use crate::control::{ControlDb, now_ms};
use crate::events::NewEvent;
use crate::fan_curves::{StoredCurve, effective_vendor};
use crate::secrets::SecretBox;
use crate::state::AppState;
use dcmon_ipmi::IpmiError;
use dcmon_ipmi::client;
use dcmon_ipmi::cmd::sdr::{SdrRecord, SensorRecord};
use dcmon_ipmi::curve::{
    Controller, CurrentFans, CurveConfig, Decision, Event, FanRpm, FanWrite, Inputs, Reading,
    SensorKind,
};
use dcmon_ipmi::fans::{self, FanAction, FanError, ZoneDuty};
use dcmon_ipmi::transport::lan::LanSession;
use dcmon_ipmi::vendor::Vendor;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the supervisor looks for curve and inventory changes.
const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// The most one hand-back may take at shutdown: a BMC that does not answer must not
/// hold the server's exit.
const HAND_BACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Sensor type 01h temperature, 04h fan (IPMI 2.0 Table 42-3).
const SENSOR_TYPE_TEMPERATURE: u8 = 0x01;
const SENSOR_TYPE_FAN: u8 = 0x04;
/// Base unit codes (IPMI 2.0 Table 43-15).
const UNIT_CELSIUS: u8 = 1;
const UNIT_FAHRENHEIT: u8 = 2;
/// Entity ID 03h: processor (IPMI 2.0 Table 43-13); Dell names its CPU sensors "Temp".
const ENTITY_PROCESSOR: u8 = 0x03;
/// Audit action of every fan write.
pub(crate) const AUDIT_ACTION: &str = "ipmi.fan_write";

/// The time one IPMI exchange may take before the BMC counts as not answering: half an
/// interval, so that a silent BMC still leaves time to decide within the cycle, and
/// between 1 and 5 seconds.
fn ipmi_timeout(interval_s: u64) -> Duration {
    Duration::from_millis(interval_s.saturating_mul(500))
        .clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// What a temperature sensor measures, from its entity and name.
fn sensor_kind(r: &SensorRecord) -> SensorKind {
    let name = r.name.to_ascii_lowercase();
    if (name.contains("cpu") && !name.contains("vrm")) || r.entity_id == ENTITY_PROCESSOR {
        SensorKind::CpuTemp
    } else if name.contains("gpu") {
        SensorKind::GpuTemp
    } else if name.contains("nvme") {
        SensorKind::NvmeTemp
    } else {
        SensorKind::Other
    }
}

/// The Supermicro zone of a fan: FAN1… zone 0 (CPU/system), FANA… zone 1
/// (peripheral). Dell has no zones.
fn fan_zone(vendor: Vendor, name: &str) -> Option<u8> {
    if vendor != Vendor::Supermicro {
        return None;
    }
    let rest = name
        .get(..3)?
        .eq_ignore_ascii_case("fan")
        .then(|| &name[3..])?;
    match rest.chars().next()? {
        c if c.is_ascii_digit() => Some(0),
        c if c.is_ascii_alphabetic() => Some(1),
        _ => None,
    }
}

/// One read of a BMC: temperatures and fan speeds from the SDR, mode and duties.
struct Observation {
    temps: Vec<Reading>,
    fans: Vec<FanRpm>,
    /// The lower thresholds of each fan in `fans` (same order), for the fan view.
    fan_limits: Vec<FanLimits>,
    current: CurrentFans,
}

/// A fan's lower thresholds from its SDR record, in RPM, where the BMC has them: a
/// duty that brings a fan near them is what trips the BMC's own alarms (and, on
/// Supermicro, its jump to Full).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct FanLimits {
    pub lower_non_recoverable: Option<f64>,
    pub lower_critical: Option<f64>,
    pub lower_non_critical: Option<f64>,
}

impl FanLimits {
    fn of(r: &SensorRecord) -> Self {
        let t = r.thresholds;
        Self {
            lower_non_recoverable: r.threshold(t.lower_non_recoverable),
            lower_critical: r.threshold(t.lower_critical),
            lower_non_critical: r.threshold(t.lower_non_critical),
        }
    }
}

/// Reads the sensors (SDR records from `sdr`, read once and kept: they change only with
/// the BMC's firmware, and a failed read drops them) and the fan state.
async fn observe(
    s: &LanSession,
    vendor: Vendor,
    sdr: &mut Option<Vec<SdrRecord>>,
    now_ms: i64,
) -> Result<Observation, FanError> {
    let records = match sdr {
        Some(r) => r,
        None => sdr.insert(client::sdr_records(s).await?),
    };
    let values = match client::read_sensors(s, records).await {
        Ok(v) => v,
        Err(e) => {
            *sdr = None;
            return Err(e.into());
        }
    };
    let mut temps = Vec::new();
    let mut fans = Vec::new();
    let mut fan_limits = Vec::new();
    for v in values {
        let (Some(x), true) = (v.value, v.record.is_analog()) else {
            continue;
        };
        match v.record.sensor_type {
            SENSOR_TYPE_TEMPERATURE => {
                let celsius = match v.record.unit {
                    UNIT_CELSIUS => x,
                    UNIT_FAHRENHEIT => (x - 32.0) * 5.0 / 9.0,
                    _ => continue,
                };
                temps.push(Reading {
                    kind: sensor_kind(&v.record),
                    name: v.record.name,
                    celsius,
                    at_ms: now_ms,
                });
            }
            SENSOR_TYPE_FAN => {
                fan_limits.push(FanLimits::of(&v.record));
                fans.push(FanRpm {
                    zone: fan_zone(vendor, &v.record.name),
                    name: v.record.name,
                    rpm: x,
                    at_ms: now_ms,
                });
            }
            _ => {}
        }
    }
    let current = match vendor {
        Vendor::Supermicro => {
            let report = fans::execute(s, &FanAction::Mode { mode: None }).await?;
            let mode = report.mode.as_deref().map(fans::parse_mode).transpose()?;
            let mut zones = Vec::new();
            for zone in 0..=1 {
                let report = fans::execute(s, &FanAction::Zone { zone, duty: None }).await?;
                zones.extend(report.zones);
            }
            CurrentFans { mode, zones }
        }
        // The iDRAC reports neither mode nor duty over IPMI.
        _ => CurrentFans::default(),
    };
    Ok(Observation {
        temps,
        fans,
        fan_limits,
        current,
    })
}

/// The engine's inputs for this cycle; an unanswered read makes the BMC unreachable.
fn inputs(observed: Option<&Observation>, now_ms: i64, last_run_ms: Option<i64>) -> Inputs {
    Inputs {
        now_ms,
        temps: observed.map(|o| o.temps.clone()).unwrap_or_default(),
        fans: observed.map(|o| o.fans.clone()).unwrap_or_default(),
        current: observed.map(|o| o.current.clone()),
        bmc_reachable: observed.is_some(),
        last_run_ms,
    }
}

/// `(command, old value, new value)` of a write, for the audit log.
fn describe(
    write: FanWrite,
    vendor: Vendor,
    current: Option<&CurrentFans>,
) -> (String, String, String) {
    let mode = || {
        current
            .and_then(|c| c.mode)
            .map_or_else(|| "unknown".to_owned(), |m| m.name())
    };
    let back = if vendor == Vendor::Dell {
        "automatic"
    } else {
        "standard"
    };
    match write {
        FanWrite::FullMode => ("set fan mode".into(), mode(), "full".into()),
        FanWrite::HandBack => ("set fan mode".into(), mode(), back.into()),
        FanWrite::Duty { zone, duty } => {
            let old = current
                .and_then(|c| c.zones.iter().find(|z| z.zone == zone))
                .map_or_else(|| "unknown".to_owned(), |z| format!("{} %", z.duty_percent));
            (format!("set zone {zone} duty"), old, format!("{duty} %"))
        }
    }
}

/// Carries out one fan write and audits it, whatever the outcome: action
/// [`AUDIT_ACTION`], target the BMC, detail the command, old value, new value and result.
async fn write_audited(
    db: &Arc<ControlDb>,
    s: &LanSession,
    bmc: &str,
    actor: &str,
    write: FanWrite,
    vendor: Vendor,
    current: Option<&CurrentFans>,
) -> Result<(), FanError> {
    let (command, old, new) = describe(write, vendor, current);
    let result = fans::execute(s, &write.action()).await;
    let outcome = match &result {
        Ok(r) => format!("ok ({})", r.message),
        Err(e) => format!("failed: {e}"),
    };
    let detail = format!("command=\"{command}\" old=\"{old}\" new=\"{new}\" result={outcome}");
    let (db, bmc_name, actor_name) = (db.clone(), bmc.to_owned(), actor.to_owned());
    let audited = tokio::task::spawn_blocking(move || {
        db.audit(&actor_name, AUDIT_ACTION, &bmc_name, &detail, None)
    })
    .await;
    match audited {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(bmc, error = %e, "auditing a fan write"),
        Err(e) => tracing::error!(bmc, error = %e, "auditing a fan write"),
    }
    result.map(drop)
}

/// A fail-safe transition as an event.
fn fail_safe_event(bmc: &BmcRecord, event: &Event, decision: &Decision, now_ms: i64) -> NewEvent {
    let (kind, severity, message) = match event {
        Event::FailSafeEntered { reason } => (
            "fan_fail_safe",
            "critical",
            decision
                .explanation
                .iter()
                .find(|l| l.starts_with("FAIL-SAFE"))
                .cloned()
                .unwrap_or_else(|| format!("FAIL-SAFE: {reason}")),
        ),
        Event::FailSafeCleared { reason } => (
            "fan_fail_safe_cleared",
            "info",
            format!("fan fail-safe cleared: no longer true that {reason}"),
        ),
    };
    NewEvent {
        ts_ms: now_ms,
        source: "fan_control".into(),
        host: bmc.agent_host.clone().unwrap_or_else(|| bmc.name.clone()),
        bmc: Some(bmc.name.clone()),
        kind: kind.into(),
        severity: severity.into(),
        message,
        detail: serde_json::to_value(event).unwrap_or(serde_json::Value::Null),
        dedup_key: format!("fan_control:{}:{now_ms}:{kind}", bmc.id),
    }
}

/// What one BMC's loop runs: the BMC, its curve and its credentials.
#[derive(Clone)]
struct Plan {
    bmc: BmcRecord,
    curve: StoredCurve,
    target: Arc<BmcTarget>,
}

impl Plan {
    /// What, when it changes, makes the loop rebuild and run at once.
    fn key(&self) -> (&StoredCurve, i64, Option<Vendor>) {
        (
            &self.curve,
            self.bmc.updated_ms,
            effective_vendor(&self.bmc),
        )
    }
}

/// The controller and what it was built from.
struct Built {
    controller: Controller,
    vendor: Vendor,
    config: CurveConfig,
}

/// One BMC's loop state, kept across cycles.
#[derive(Default)]
struct BmcLoop {
    built: Option<Built>,
    sdr: Option<Vec<SdrRecord>>,
    /// The vendor found by Get Device ID when none was stored.
    detected: Option<Vendor>,
    last_run_ms: Option<i64>,
    /// This loop has written to the BMC: it hands the fans back when it stops.
    wrote: bool,
    /// The refusal reported last, so that a refused curve is reported once.
    refused: Option<String>,
}

impl BmcLoop {
    async fn cycle(&mut self, state: &AppState, plan: &Plan) {
        let now = state.clock.now_ms();
        let name = plan.bmc.name.as_str();
        let interval_s = plan.curve.config.interval_s;
        let session =
            match LanSession::connect(plan.target.lan_config(ipmi_timeout(interval_s))).await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::debug!(bmc = name, error = %e, "fan control: opening a session");
                    None
                }
            };
        let vendor = match (effective_vendor(&plan.bmc).or(self.detected), &session) {
            (Some(v), _) => Some(v),
            (None, Some(s)) => match fans::detect_vendor(s).await {
                Ok(v) => {
                    self.detected = Some(v);
                    let (db, id) = (state.control.clone(), plan.bmc.id);
                    match tokio::task::spawn_blocking(move || db.set_bmc_vendor(id, v)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(bmc = name, error = %e, "recording the vendor")
                        }
                        Err(e) => tracing::warn!(bmc = name, error = %e, "recording the vendor"),
                    }
                    Some(v)
                }
                Err(e) => {
                    tracing::debug!(bmc = name, error = %e, "fan control: Get Device ID");
                    None
                }
            },
            (None, None) => None,
        };
        if let Some(vendor) = vendor
            && self.build(state, plan, vendor).await
        {
            self.control(state, plan, vendor, session.as_ref(), now)
                .await;
        }
        self.last_run_ms = Some(now);
        if let Some(s) = session {
            s.close().await;
        }
    }

    /// Builds the controller when there is none or the curve or vendor changed; `false`
    /// when the engine refuses the curve for this vendor (reported once).
    async fn build(&mut self, state: &AppState, plan: &Plan, vendor: Vendor) -> bool {
        let config = &plan.curve.config;
        if self
            .built
            .as_ref()
            .is_some_and(|b| b.vendor == vendor && &b.config == config)
        {
            return true;
        }
        match Controller::new(vendor, config.clone()) {
            Ok(controller) => {
                self.built = Some(Built {
                    controller,
                    vendor,
                    config: config.clone(),
                });
                self.refused = None;
                true
            }
            Err(problems) => {
                self.built = None;
                let why = problems.join("; ");
                if self.refused.as_deref() != Some(why.as_str()) {
                    let name = &plan.bmc.name;
                    tracing::warn!(bmc = %name, %vendor, problems = %why, "fan curve refused; the fans stay with the BMC");
                    let event = NewEvent {
                        ts_ms: state.clock.now_ms(),
                        source: "fan_control".into(),
                        host: plan.bmc.agent_host.clone().unwrap_or_else(|| name.clone()),
                        bmc: Some(name.clone()),
                        kind: "fan_curve_refused".into(),
                        severity: "warning".into(),
                        message: format!(
                            "fan curve refused for {vendor}: {why}; fix it with `dcmon fans curve set --bmc {name} --file F`"
                        ),
                        detail: serde_json::json!({ "problems": problems }),
                        dedup_key: format!(
                            "fan_control:{}:{}:refused",
                            plan.bmc.id, plan.curve.updated_ms
                        ),
                    };
                    store_events(state, vec![event]).await;
                    self.refused = Some(why);
                }
                false
            }
        }
    }

    /// Reads, decides, records events and carries out the writes.
    async fn control(
        &mut self,
        state: &AppState,
        plan: &Plan,
        vendor: Vendor,
        session: Option<&LanSession>,
        now: i64,
    ) {
        let name = plan.bmc.name.as_str();
        let observed = match session {
            Some(s) => match observe(s, vendor, &mut self.sdr, now).await {
                Ok(o) => Some(o),
                Err(e) => {
                    tracing::debug!(bmc = name, error = %e, "fan control: reading the BMC");
                    None
                }
            },
            None => None,
        };
        let Some(built) = self.built.as_mut() else {
            return;
        };
        let decision = built
            .controller
            .step(&inputs(observed.as_ref(), now, self.last_run_ms));
        let events: Vec<NewEvent> = decision
            .events
            .iter()
            .map(|e| fail_safe_event(&plan.bmc, e, &decision, now))
            .collect();
        for e in &events {
            tracing::warn!(bmc = name, kind = %e.kind, "{}", e.message);
        }
        if !events.is_empty() {
            store_events(state, events).await;
        }
        let Some(s) = session else {
            return;
        };
        let actor = format!("curve:{name}");
        let current = observed.as_ref().map(|o| &o.current);
        for &write in &decision.writes {
            self.wrote = true;
            // A refused write does not stop the others: in fail-safe each adds air. A BMC
            // that does not answer would only time the rest out (and fill the audit log
            // with them); they are decided again next cycle.
            match write_audited(&state.control, s, name, &actor, write, vendor, current).await {
                Ok(()) => {}
                Err(e @ FanError::Ipmi(IpmiError::Timeout { .. })) => {
                    tracing::warn!(bmc = name, error = %e, "fan write: the BMC does not answer");
                    break;
                }
                Err(e) => tracing::warn!(bmc = name, error = %e, "fan write failed"),
            }
        }
    }

    /// Gives the fans back to the BMC if this loop has written to it.
    async fn hand_back(&mut self, state: &AppState, plan: &Plan) {
        let Some(built) = self.built.as_ref().filter(|_| self.wrote) else {
            return;
        };
        let name = plan.bmc.name.as_str();
        let timeout = ipmi_timeout(plan.curve.config.interval_s);
        let session = match LanSession::connect(plan.target.lan_config(timeout)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(bmc = name, error = %e, "handing the fans back: no session");
                return;
            }
        };
        let actor = format!("curve:{name}");
        for write in built.controller.shutdown() {
            match write_audited(
                &state.control,
                &session,
                name,
                &actor,
                write,
                built.vendor,
                None,
            )
            .await
            {
                Ok(()) => tracing::info!(
                    bmc = name,
                    "fan control stopped; fans handed back to the BMC"
                ),
                Err(e) => tracing::warn!(bmc = name, error = %e, "handing the fans back"),
            }
        }
        session.close().await;
        self.wrote = false;
    }
}

async fn store_events(state: &AppState, events: Vec<NewEvent>) {
    let db = state.control.clone();
    match tokio::task::spawn_blocking(move || db.add_events(&events)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "storing fan-control events"),
        Err(e) => tracing::error!(error = %e, "storing fan-control events"),
    }
}

/// One BMC's loop: a cycle every interval, at once when the plan changes, until the
/// supervisor drops the plan's sender; then the hand-back.
async fn run_bmc(state: AppState, mut plans: watch::Receiver<Plan>) {
    let mut lp = BmcLoop::default();
    let mut plan = plans.borrow_and_update().clone();
    loop {
        let started = tokio::time::Instant::now();
        lp.cycle(&state, &plan).await;
        let next = started + Duration::from_secs(plan.curve.config.interval_s.max(1));
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            changed = plans.changed() => if changed.is_err() { break },
        }
        plan = plans.borrow_and_update().clone();
    }
    if tokio::time::timeout(HAND_BACK_TIMEOUT, lp.hand_back(&state, &plan))
        .await
        .is_err()
    {
        tracing::warn!(bmc = %plan.bmc.name, "handing the fans back took too long; gave up");
    }
}

/// A running BMC loop.
struct Running {
    plan: watch::Sender<Plan>,
    task: JoinHandle<()>,
}

/// The running fan-control loop: started by `Server::start`, stopped (with every BMC's
/// fans handed back) by `Server::shutdown`.
pub(crate) struct FanLoop {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl FanLoop {
    pub(crate) fn start(state: AppState) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(supervise(state, stopped));
        Self { stop, task }
    }

    /// Stops every BMC's loop; each hands its fans back (audited) before this returns.
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "fan-control loop");
        }
    }
}

/// Loads the plans when the curves or the inventory changed (`None` when nothing did).
fn load_plans(
    db: &ControlDb,
    data_dir: &Path,
    version: &mut Option<i64>,
    signature: &mut Option<Vec<String>>,
) -> Result<Option<Vec<Plan>>, String> {
    let v = db.data_version().map_err(|e| format!("{e:#}"))?;
    if *version == Some(v) && signature.is_some() {
        return Ok(None);
    }
    *version = Some(v);
    let sig = db.fan_curves_signature().map_err(|e| e.to_string())?;
    if signature.as_ref() == Some(&sig) {
        return Ok(None);
    }
    let rows = db.fan_curves_to_run().map_err(|e| e.to_string())?;
    let mut plans = Vec::with_capacity(rows.len());
    if !rows.is_empty() {
        let secrets = SecretBox::open(data_dir).map_err(|e| e.to_string())?;
        for row in rows {
            let name = row.bmc.name.clone();
            let curve = match row.curve {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(bmc = %name, "fan control: {e}");
                    continue;
                }
            };
            match db.bmc_target(&secrets, &name) {
                Ok(target) => plans.push(Plan {
                    bmc: row.bmc,
                    curve,
                    target: Arc::new(target),
                }),
                Err(e) => tracing::warn!(bmc = %name, error = %e, "fan control: credentials"),
            }
        }
    }
    *signature = Some(sig);
    Ok(Some(plans))
}

async fn supervise(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut running: HashMap<i64, Running> = HashMap::new();
    let mut stopping: Vec<JoinHandle<()>> = Vec::new();
    let mut version = None;
    let mut signature = None;
    let mut last_error: Option<String> = None;
    loop {
        let (db, dir) = (state.control.clone(), state.config().data_dir.clone());
        let (v, s) = (version, signature.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            let (mut v, mut s) = (v, s);
            load_plans(&db, &dir, &mut v, &mut s).map(|plans| (plans, v, s))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match loaded {
            Ok((plans, v, s)) => {
                (version, signature, last_error) = (v, s, None);
                if let Some(plans) = plans {
                    reconcile(&state, &mut running, &mut stopping, plans);
                }
            }
            // Tried again on the next check; said once.
            Err(e) => {
                if last_error.as_ref() != Some(&e) {
                    tracing::warn!(error = %e, "fan control: loading the curves");
                }
                last_error = Some(e);
            }
        }
        stopping.retain(|t| !t.is_finished());
        tokio::select! {
            () = tokio::time::sleep(RELOAD_CHECK) => {}
            _ = stop.changed() => break,
        }
    }
    // Dropping the senders stops the loops; each hands its fans back.
    stopping.extend(running.into_values().map(|r| r.task));
    for task in stopping {
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "a BMC's fan-control loop");
        }
    }
}

fn reconcile(
    state: &AppState,
    running: &mut HashMap<i64, Running>,
    stopping: &mut Vec<JoinHandle<()>>,
    plans: Vec<Plan>,
) {
    let wanted: Vec<i64> = plans.iter().map(|p| p.bmc.id).collect();
    let gone: Vec<i64> = running
        .keys()
        .filter(|id| !wanted.contains(id))
        .copied()
        .collect();
    for id in gone {
        if let Some(r) = running.remove(&id) {
            tracing::info!(bmc_id = id, "fan control stops for this BMC");
            stopping.push(r.task);
        }
    }
    for plan in plans {
        match running.get(&plan.bmc.id) {
            Some(r) => {
                r.plan.send_if_modified(|cur| {
                    let changed = cur.key() != plan.key();
                    if changed {
                        *cur = plan;
                    }
                    changed
                });
            }
            None => {
                tracing::info!(bmc = %plan.bmc.name, interval_s = plan.curve.config.interval_s, "fan control starts for this BMC");
                let id = plan.bmc.id;
                let (tx, rx) = watch::channel(plan);
                let task = tokio::spawn(run_bmc(state.clone(), rx));
                running.insert(id, Running { plan: tx, task });
            }
        }
    }
}

/// A temperature as the fan view shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TemperatureView {
    pub name: String,
    pub kind: SensorKind,
    pub celsius: f64,
}

/// A fan speed as the fan view shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FanSpeedView {
    pub name: String,
    /// Supermicro zone (FAN1… 0, FANA… 1); `None` on Dell.
    pub zone: Option<u8>,
    pub rpm: f64,
    #[serde(flatten)]
    pub limits: FanLimits,
}

/// A BMC's fans now, its curve, and the curve's decision on what it reads: a dry run,
/// nothing is written (`dcmon fans dry-run`, `GET /api/bmcs/{name}/fans`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FanView {
    pub bmc: String,
    /// [`vendor_key`] form; `None` when it is neither stored nor could be asked.
    pub vendor: Option<String>,
    /// Whether the BMC answered the reads.
    pub reachable: bool,
    /// Why it did not.
    pub error: Option<String>,
    /// Supermicro's fan mode; `None` on Dell.
    pub mode: Option<String>,
    pub zones: Vec<ZoneDuty>,
    pub fans: Vec<FanSpeedView>,
    pub temperatures: Vec<TemperatureView>,
    pub curve: Option<StoredCurve>,
    /// The curve's decision now (its current operating point) — or, for a preview, the
    /// decision of the proposed curve; `None` without a curve or when the vendor is
    /// unknown.
    pub decision: Option<Decision>,
    /// Why there is no decision although there is a curve.
    pub curve_error: Option<String>,
}

/// Reads the BMC and dry-runs a curve on a fresh controller: `proposed` when given (a
/// preview of an edit), else the stored `curve`.
async fn view(
    bmc: BmcRecord,
    curve: Option<StoredCurve>,
    proposed: Option<CurveConfig>,
    target: BmcTarget,
    timeout: Duration,
) -> FanView {
    let now = now_ms();
    let mut error = None;
    let session = LanSession::connect(target.lan_config(timeout))
        .await
        .map_err(|e| error = Some(e.to_string()))
        .ok();
    let mut vendor = effective_vendor(&bmc);
    if let (None, Some(s)) = (vendor, &session) {
        match fans::detect_vendor(s).await {
            Ok(v) => vendor = Some(v),
            Err(e) => error = Some(e.to_string()),
        }
    }
    let mut observed = None;
    if let (Some(v), Some(s)) = (vendor, &session) {
        let mut sdr = None;
        match observe(s, v, &mut sdr, now).await {
            Ok(o) => observed = Some(o),
            Err(e) => error = Some(e.to_string()),
        }
    }
    if let Some(s) = session {
        s.close().await;
    }
    let config = proposed.or_else(|| curve.as_ref().map(|c| c.config.clone()));
    let (decision, curve_error) = match (config, vendor) {
        (None, _) => (None, None),
        (Some(_), None) => (
            None,
            Some("the vendor is not known yet and the BMC did not tell it".to_owned()),
        ),
        (Some(config), Some(v)) => match Controller::new(v, config) {
            Ok(ctl) => (
                Some(ctl.dry_run(&inputs(observed.as_ref(), now, None))),
                None,
            ),
            Err(problems) => (None, Some(problems.join("; "))),
        },
    };
    let o = observed.as_ref();
    FanView {
        bmc: bmc.name,
        vendor: vendor.map(vendor_key),
        reachable: o.is_some(),
        error,
        mode: o.and_then(|o| o.current.mode).map(|m| m.name()),
        zones: o.map(|o| o.current.zones.clone()).unwrap_or_default(),
        fans: o
            .map(|o| {
                o.fans
                    .iter()
                    .zip(&o.fan_limits)
                    .map(|(f, limits)| FanSpeedView {
                        name: f.name.clone(),
                        zone: f.zone,
                        rpm: f.rpm,
                        limits: *limits,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        temperatures: o
            .map(|o| {
                o.temps
                    .iter()
                    .map(|t| TemperatureView {
                        name: t.name.clone(),
                        kind: t.kind,
                        celsius: t.celsius,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        curve,
        decision,
        curve_error,
    }
}

type ViewParts = (BmcRecord, Option<StoredCurve>, BmcTarget);

fn view_parts(db: &ControlDb, secrets: &SecretBox, who: &str) -> Result<ViewParts, BmcError> {
    Ok((
        db.bmc(who)?,
        db.fan_curve(who)?,
        db.bmc_target(secrets, who)?,
    ))
}

/// [`FanView`] of the BMC named by name or id, for the REST API. With `proposed`, the
/// decision is that curve's (a preview of an edit, nothing stored or written).
pub(crate) async fn fan_view(
    state: &AppState,
    who: String,
    proposed: Option<CurveConfig>,
    timeout: Duration,
) -> Result<FanView, BmcError> {
    let (db, dir) = (state.control.clone(), state.config().data_dir.clone());
    let (bmc, curve, target) =
        tokio::task::spawn_blocking(move || view_parts(&db, &SecretBox::open(&dir)?, &who))
            .await
            .map_err(|e| BmcError::Store(anyhow::anyhow!("reading the BMC: {e}")))??;
    Ok(view(bmc, curve, proposed, target, timeout).await)
}

/// [`FanView`] of the BMC named by name or id: contacts the BMC now and dry-runs its
/// curve. Blocking (the control store, and a runtime of its own for the exchange): for
/// `dcmon fans dry-run`.
pub fn dry_run(
    db: &ControlDb,
    secrets: &SecretBox,
    who: &str,
    timeout: Duration,
) -> Result<FanView, BmcError> {
    let (bmc, curve, target) = view_parts(db, secrets, who)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting an IO runtime: {e}"))?;
    Ok(rt.block_on(view(bmc, curve, None, target, timeout)))
}

#[cfg(test)]
mod tests;
