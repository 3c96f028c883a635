//! The agentless BMC poller (DESIGN §8): every BMC of the inventory ([`crate::bmcs`]) is
//! polled over RMCP+ on its interval, its sensors stored in the tsdb under ipmi_exporter
//! names ([`dcmon_ipmi::exporter`]) with labels `bmc` and `host`, new SEL entries stored
//! once each as events ([`crate::events`]), and the outcome of every poll recorded.
//!
//! Scheduling: one loop keeps the inventory in memory and reloads it when the control
//! store's [`ControlDb::data_version`] moves (so a `dcmon bmc add` in another process is
//! polled within seconds, and a removed BMC stops). BMCs known at start are spread over
//! their interval by a random offset, so a restart does not poll the whole fleet at
//! once; a few added later are polled within seconds, a bulk import is spread like a
//! start. A semaphore bounds the polls in flight (`bmc_poll.concurrency`); a poll never
//! overlaps the previous poll of the same BMC, and a whole poll is cut off after the
//! BMC's interval.
//!
//! One poll: a session from the shared [`LanPool`] (a few UDP sockets for the whole
//! fleet), Get Device ID (the vendor is recorded at first contact), the sensors (the SDR
//! cached per BMC, see [`SensorCache`]), Get Chassis Status, on Supermicro the fan mode
//! (`dcmon_bmc_fan_mode{mode}`, the mode's code as value, as the agent's `bmc_fan`
//! collector writes it), the SEL from the entry after the last one seen, Close Session.
//!
//! States, as `dcmon bmc list` and `dcmon_bmc_state{state}` show them:
//! - `ok`: sensors and SEL read.
//! - `degraded`: the BMC answered but its sensors or its SEL could not be read (a
//!   command refused or malformed); samples read are stored. Not a failure.
//! - `unreachable`: no session, or the BMC stopped answering during the poll (timeout,
//!   network error, garbage); nothing is stored but the poll's own series.
//! - `auth_failed`: the BMC refused the credentials.
//!
//! `unreachable` and `auth_failed` are failures: `consecutive_failures` counts them in a
//! row (reset by `ok` or `degraded`), so a rule such as
//! `dcmon_bmc_consecutive_failures >= 3` fires after three polls in a row failed.
//!
//! Writes are batched: results go to one writer task that appends the samples of all
//! polls finished in the last second in one tsdb append, and records the polls, SEL
//! positions and events in one control-store transaction. A SEL position is stored in
//! the same transaction as its events, so an entry becomes an event exactly once.

use crate::bmcs::{BmcRecord, BmcTarget};
use crate::control::{ControlDb, random_bytes};
use crate::events::{NewEvent, insert_events};
use crate::secrets::SecretBox;
use crate::state::AppState;
use dcmon_ipmi::IpmiError;
use dcmon_ipmi::client;
use dcmon_ipmi::cmd::sel::{self, SelEntry};
use dcmon_ipmi::exporter::{SensorCache, sensor_series};
use dcmon_ipmi::transport::lan::{LanPool, LanSession};
use dcmon_ipmi::vendor::{Vendor, supermicro};
use dcmon_wire::Labels;
use rusqlite::{OptionalExtension, params};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::time::Instant;

/// How often the inventory's version is checked.
const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// New BMCs of one reload at or below this many are polled within [`SOON`]; more are
/// spread over their interval like at start.
const FEW_ADDED: usize = 64;
const SOON: Duration = Duration::from_secs(2);
/// How often the writer stores what finished polls produced.
const WRITE_EVERY: Duration = Duration::from_secs(1);
/// SEL entries read in one poll at most; a longer backlog continues at the next poll.
const MAX_SEL_PER_POLL: usize = 512;
/// UDP sockets shared by all sessions (each serves one session per BMC address).
const POOL_SOCKETS: usize = 4;

/// What a poll found the BMC in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollState {
    Ok,
    Degraded,
    Unreachable,
    AuthFailed,
}

impl PollState {
    pub const ALL: [PollState; 4] = [
        PollState::Ok,
        PollState::Degraded,
        PollState::Unreachable,
        PollState::AuthFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PollState::Ok => "ok",
            PollState::Degraded => "degraded",
            PollState::Unreachable => "unreachable",
            PollState::AuthFailed => "auth_failed",
        }
    }

    /// Whether the poll failed (counts towards `consecutive_failures`).
    pub fn is_failure(self) -> bool {
        matches!(self, PollState::Unreachable | PollState::AuthFailed)
    }
}

/// How far a BMC's SEL has been read: the last entry turned into an event, and the SEL's
/// addition and erase times then (Get SEL Info, IPMI 2.0 §31.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct SelPosition {
    last_record_id: Option<u16>,
    /// 0 when the last poll stopped before the end of the SEL (read on next time).
    last_add: u32,
    last_erase: u32,
}

/// What the poller remembers of one BMC between polls.
struct BmcMemory {
    sensors: SensorCache,
    vendor_known: bool,
    failures: u32,
    sel: Option<SelPosition>,
}

/// One inventory entry as scheduled.
struct Scheduled {
    /// The fields that, changed, make a new entry (credentials come with `updated_ms`).
    key: (i64, String, String, u16, String, u32, Option<String>),
    target: Arc<BmcTarget>,
    host: Arc<str>,
    interval: Duration,
    next: Instant,
    memory: Arc<Mutex<BmcMemory>>,
}

/// What one poll produced, for the writer.
struct PollResult {
    bmc_id: i64,
    started_ms: i64,
    state: PollState,
    failures: u32,
    samples: Vec<(Labels, f64)>,
    events: Vec<NewEvent>,
    sel: Option<SelPosition>,
    vendor: Option<Vendor>,
    error: Option<String>,
}

/// Starts the poller on the current runtime; it runs for the life of the process.
pub(crate) fn spawn(state: AppState) {
    if !state.config().bmc_poll.enabled {
        tracing::info!("BMC polling is off (bmc_poll.enabled: false)");
        return;
    }
    tokio::spawn(async move {
        let pool = match LanPool::new(POOL_SOCKETS, false).await {
            Ok(p) => Arc::new(p),
            Err(e) => {
                tracing::error!(error = %e, "BMC poller: binding its UDP sockets failed; no BMC is polled");
                return;
            }
        };
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer(state.clone(), rx));
        schedule(state, pool, tx).await;
    });
}

fn record_key(r: &BmcRecord) -> (i64, String, String, u16, String, u32, Option<String>) {
    (
        r.updated_ms,
        r.name.clone(),
        r.address.clone(),
        r.port,
        r.username.clone(),
        r.interval_s,
        r.agent_host.clone(),
    )
}

/// A random duration in `[0, max)`.
fn jitter(max: Duration) -> Duration {
    let r = u64::from_le_bytes(random_bytes::<8>());
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(r % ms)
}

/// Loads what a new schedule entry needs from the control store: decrypted credentials
/// and the SEL position.
fn load_entry(
    db: &ControlDb,
    secrets: &SecretBox,
    r: &BmcRecord,
) -> anyhow::Result<(BmcTarget, Option<SelPosition>)> {
    let target = db.bmc_target(secrets, &r.id.to_string())?;
    let sel = db
        .conn()
        .query_row(
            "SELECT last_record_id, last_add, last_erase FROM bmc_sel_state WHERE bmc_id = ?1",
            params![r.id],
            |row| {
                Ok(SelPosition {
                    last_record_id: row.get(0)?,
                    last_add: row.get(1)?,
                    last_erase: row.get(2)?,
                })
            },
        )
        .optional()?;
    Ok((target, sel))
}

/// New or changed inventory entries with their loaded data, and the ids of all BMCs.
type Loaded = (
    Vec<(BmcRecord, anyhow::Result<(BmcTarget, Option<SelPosition>)>)>,
    Vec<i64>,
);

async fn reload(state: &AppState, known: &HashMap<i64, Scheduled>) -> anyhow::Result<Loaded> {
    let db = state.control.clone();
    let data_dir = state.config().data_dir.clone();
    let keys: HashMap<i64, _> = known.iter().map(|(id, s)| (*id, s.key.clone())).collect();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Loaded> {
        let records = db.list_bmcs()?;
        let present = records.iter().map(|r| r.id).collect();
        let changed: Vec<BmcRecord> = records
            .into_iter()
            .filter(|r| keys.get(&r.id) != Some(&record_key(r)))
            .collect();
        if changed.is_empty() {
            return Ok((Vec::new(), present));
        }
        // Read per reload (a small file), so a key restored while the server runs is used.
        let secrets = SecretBox::open(&data_dir)?;
        let loaded = changed
            .into_iter()
            .map(|r| {
                let data = load_entry(&db, &secrets, &r);
                (r, data)
            })
            .collect();
        Ok((loaded, present))
    })
    .await?
}

async fn schedule(state: AppState, pool: Arc<LanPool>, tx: mpsc::Sender<PollResult>) {
    let mut entries: HashMap<i64, Scheduled> = HashMap::new();
    let mut version: Option<i64> = None;
    let mut first = true;
    let mut next_check = Instant::now();
    let concurrency = state.config().bmc_poll.concurrency;
    let permits = Arc::new(Semaphore::new(concurrency));
    // Polls in flight, by BMC: a BMC is not polled again before its last poll ended.
    let running: Arc<std::sync::Mutex<std::collections::HashSet<i64>>> = Arc::default();
    loop {
        let now = Instant::now();
        if now >= next_check {
            next_check = now + RELOAD_CHECK;
            let db = state.control.clone();
            let v = tokio::task::spawn_blocking(move || db.data_version())
                .await
                .ok()
                .and_then(Result::ok);
            if v.is_none() || v != version {
                match apply_reload(&state, &mut entries, first).await {
                    Ok(()) => {
                        version = v;
                        first = false;
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "BMC poller: reading the inventory")
                    }
                }
            }
        }
        let now = Instant::now();
        let config = state.config();
        for (id, e) in entries.iter_mut() {
            if e.next > now {
                continue;
            }
            let interval = config.bmc_poll.interval_override.unwrap_or(e.interval);
            e.next += interval;
            if e.next <= now {
                // Behind (a suspended process, a slow fleet): start again from now.
                e.next = now + interval;
            }
            {
                let mut r = running
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if !r.insert(*id) {
                    continue;
                }
            }
            let job = PollJob {
                target: e.target.clone(),
                host: e.host.clone(),
                memory: e.memory.clone(),
                timeout: config.bmc_poll.timeout,
                attempts: config.bmc_poll.attempts,
                budget: interval,
            };
            let (pool, tx, permits, running, clock) = (
                pool.clone(),
                tx.clone(),
                permits.clone(),
                running.clone(),
                state.clock.clone(),
            );
            let id = *id;
            tokio::spawn(async move {
                if let Ok(_permit) = permits.acquire().await {
                    let result = job.run(&pool, clock.now_ms()).await;
                    let _ = tx.send(result).await;
                }
                running
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id);
            });
        }
        let wake = entries
            .values()
            .map(|e| e.next)
            .min()
            .unwrap_or(next_check)
            .min(next_check);
        tokio::time::sleep_until(wake).await;
    }
}

async fn apply_reload(
    state: &AppState,
    entries: &mut HashMap<i64, Scheduled>,
    first: bool,
) -> anyhow::Result<()> {
    let (loaded, present) = reload(state, entries).await?;
    let present: std::collections::HashSet<i64> = present.into_iter().collect();
    entries.retain(|id, _| present.contains(id));
    let added = loaded
        .iter()
        .filter(|(r, _)| !entries.contains_key(&r.id))
        .count();
    let now = Instant::now();
    for (r, data) in loaded {
        let (target, sel) = match data {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(bmc = %r.name, error = %format!("{e:#}"), "BMC poller: cannot load the BMC's credentials; it is not polled");
                entries.remove(&r.id);
                continue;
            }
        };
        let interval = Duration::from_secs(u64::from(r.interval_s.max(1)));
        let spread = state
            .config()
            .bmc_poll
            .interval_override
            .unwrap_or(interval);
        let offset = if first || added > FEW_ADDED {
            jitter(spread)
        } else {
            jitter(spread.min(SOON))
        };
        let host: Arc<str> = r.agent_host.as_deref().unwrap_or(&r.name).into();
        let memory = match entries.remove(&r.id) {
            // Changed settings keep what was learnt; the schedule keeps its phase.
            Some(old) => {
                let next = old.next;
                let memory = old.memory;
                entries.insert(
                    r.id,
                    Scheduled {
                        key: record_key(&r),
                        target: Arc::new(target),
                        host,
                        interval,
                        next,
                        memory,
                    },
                );
                continue;
            }
            None => Arc::new(Mutex::new(BmcMemory {
                sensors: SensorCache::default(),
                vendor_known: r.vendor.is_some(),
                failures: r.consecutive_failures,
                sel,
            })),
        };
        entries.insert(
            r.id,
            Scheduled {
                key: record_key(&r),
                target: Arc::new(target),
                host,
                interval,
                next: now + offset,
                memory,
            },
        );
    }
    Ok(())
}

/// One poll of one BMC.
struct PollJob {
    target: Arc<BmcTarget>,
    host: Arc<str>,
    memory: Arc<Mutex<BmcMemory>>,
    timeout: Duration,
    attempts: u32,
    /// The whole poll is cut off after this long.
    budget: Duration,
}

/// Why a poll stopped early.
fn classify(e: &IpmiError) -> PollState {
    match e {
        IpmiError::Authentication { .. } => PollState::AuthFailed,
        _ => PollState::Unreachable,
    }
}

/// Whether an error means the BMC answered (a refused or malformed command) rather than
/// that it is gone.
fn answered(e: &IpmiError) -> bool {
    matches!(
        e,
        IpmiError::Completion { .. } | IpmiError::Unexpected { .. }
    )
}

impl PollJob {
    async fn run(self, pool: &LanPool, started_ms: i64) -> PollResult {
        let started = Instant::now();
        let mut memory = self.memory.lock().await;
        let mut result = PollResult {
            bmc_id: self.target.id,
            started_ms,
            state: PollState::Ok,
            failures: 0,
            samples: Vec::new(),
            events: Vec::new(),
            sel: None,
            vendor: None,
            error: None,
        };
        let mut config = self.target.lan_config(self.timeout);
        config.attempts = self.attempts;
        let polled = match pool.session(config).await {
            Ok(session) => {
                let r = tokio::time::timeout(
                    self.budget,
                    self.exchange(&session, &mut memory, &mut result),
                )
                .await;
                session.close().await;
                match r {
                    Ok(r) => r,
                    Err(_) => Err((
                        PollState::Unreachable,
                        format!(
                            "the poll took longer than the BMC's interval ({})",
                            humantime::format_duration(self.budget)
                        ),
                    )),
                }
            }
            Err(e) => Err((classify(&e), e.to_string())),
        };
        if let Err((state, error)) = polled {
            result.state = state;
            result.error = Some(error);
            result.samples.clear();
            result.events.clear();
            result.sel = None;
        }
        if result.state.is_failure() {
            memory.failures = memory.failures.saturating_add(1);
        } else {
            memory.failures = 0;
            if result.vendor.is_some() {
                memory.vendor_known = true;
            }
            if let Some(sel) = result.sel {
                memory.sel = Some(sel);
            }
        }
        result.failures = memory.failures;
        self.push_poll_series(&mut result, started.elapsed());
        result
    }

    /// The exchange with the BMC; `Err` when the poll failed as a whole.
    async fn exchange(
        &self,
        session: &LanSession,
        memory: &mut BmcMemory,
        result: &mut PollResult,
    ) -> Result<(), (PollState, String)> {
        let fail = |e: IpmiError| (classify(&e), e.to_string());
        let device = client::device_id(session).await.map_err(fail)?;
        if !memory.vendor_known {
            result.vendor = Some(device.vendor());
        }
        match memory.sensors.read(session).await {
            Ok(read) => {
                let unreadable = read.values.iter().filter(|v| v.status == "ns").count();
                for s in sensor_series(&read.values) {
                    let pairs: Vec<(&str, &str)> =
                        s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    self.push(result, s.metric, &pairs, s.value);
                }
                self.push(result, "ipmi_up", &[("collector", "ipmi")], 1.0);
                self.push(
                    result,
                    "dcmon_bmc_sensors_unreadable",
                    &[],
                    unreadable as f64,
                );
            }
            Err(e) if answered(&e) => {
                memory.sensors.invalidate();
                result.state = PollState::Degraded;
                result.error = Some(format!("sensors: {e}"));
                self.push(result, "ipmi_up", &[("collector", "ipmi")], 0.0);
            }
            Err(e) => {
                memory.sensors.invalidate();
                return Err(fail(e));
            }
        }
        match client::chassis_status(session).await {
            Ok(c) => {
                let on = f64::from(u8::from(c.power_on));
                self.push(result, "ipmi_chassis_power_state", &[], on);
            }
            // Not every BMC implements the chassis device; that is no fault.
            Err(e) if answered(&e) || matches!(e, IpmiError::Malformed { .. }) => {}
            Err(e) => return Err(fail(e)),
        }
        if device.vendor() == Vendor::Supermicro {
            // The fan mode is not in the SDR; the BMC pages and rules want it per BMC,
            // as the agent's bmc_fan collector gives it for in-band BMCs.
            let mode = client::call(session, &supermicro::get_fan_mode(), "get fan mode")
                .await
                .map(|d| supermicro::parse_fan_mode(&d).ok());
            match mode {
                Ok(Some(m)) => {
                    let code = f64::from(m.code());
                    self.push(result, "dcmon_bmc_fan_mode", &[("mode", &m.name())], code);
                }
                // A board without the OEM command, or an answer we cannot read: no mode
                // series, no fault.
                Ok(None) => {}
                Err(e) if answered(&e) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        match self.read_sel(session, memory.sel).await {
            Ok((entries, position)) => {
                result.events = entries
                    .iter()
                    .map(|e| self.event(e, result.started_ms))
                    .collect();
                result.sel = Some(position);
            }
            Err(e) if answered(&e) || matches!(e, IpmiError::Malformed { .. }) => {
                result.state = PollState::Degraded;
                result.error = Some(format!("SEL: {e}"));
            }
            Err(e) => return Err(fail(e)),
        }
        Ok(())
    }

    /// SEL entries after `seen`, and the position after them.
    async fn read_sel(
        &self,
        session: &LanSession,
        seen: Option<SelPosition>,
    ) -> Result<(Vec<SelEntry>, SelPosition), IpmiError> {
        let info = client::sel_info(session).await?;
        let mut position = SelPosition {
            last_record_id: None,
            last_add: info.last_add,
            last_erase: info.last_erase,
        };
        let same_log = seen.filter(|s| s.last_erase == info.last_erase);
        if let Some(s) = same_log {
            if s.last_add == info.last_add && s.last_add != 0 {
                return Ok((Vec::new(), s));
            }
            position.last_record_id = s.last_record_id;
        }
        if info.entries == 0 {
            return Ok((Vec::new(), position));
        }
        // Continue after the last entry seen, when it is still there; else from the start.
        let mut id = sel::FIRST_ENTRY;
        if let Some(last) = position.last_record_id {
            match client::call(session, &sel::get_entry(last), "Get SEL Entry").await {
                Ok(d) => match sel::parse_get_entry(&d) {
                    Ok((next, _)) => id = next,
                    Err(_) => id = sel::FIRST_ENTRY,
                },
                Err(e) if answered(&e) => id = sel::FIRST_ENTRY,
                Err(e) => return Err(e),
            }
        }
        let mut out = Vec::new();
        while id != sel::LAST_ENTRY {
            if out.len() >= MAX_SEL_PER_POLL {
                // Not at the end: the next poll goes on from here.
                position.last_add = 0;
                break;
            }
            let d = client::call(session, &sel::get_entry(id), "Get SEL Entry").await?;
            let (next, entry) =
                sel::parse_get_entry(&d).map_err(|source| IpmiError::Malformed {
                    host: self.target.host.clone(),
                    source,
                })?;
            position.last_record_id = Some(entry.record_id);
            out.push(entry);
            if next == id {
                break;
            }
            id = next;
        }
        Ok((out, position))
    }

    fn event(&self, e: &SelEntry, polled_ms: i64) -> NewEvent {
        // Timestamps below 2000_0000h count from BMC start, not 1970 (§37.1).
        let ts_ms = e
            .timestamp
            .filter(|t| *t > sel::PRE_INIT_TIMESTAMP)
            .map_or(polled_ms, |t| i64::from(t) * 1000);
        let (message, severity, detail) = match &e.event {
            Some(ev) => {
                let direction = if ev.deassertion {
                    "deasserted"
                } else {
                    "asserted"
                };
                (
                    format!(
                        "{} #{:#04x}: {} ({direction})",
                        sel::sensor_type_name(ev.sensor_type),
                        ev.sensor_number,
                        ev.description()
                    ),
                    sel_severity(ev.event_type, ev.offset(), ev.deassertion),
                    serde_json::json!({
                        "record_id": e.record_id,
                        "record_type": e.record_type,
                        "bmc_timestamp": e.timestamp,
                        "generator_id": ev.generator_id,
                        "sensor_type": ev.sensor_type,
                        "sensor_number": ev.sensor_number,
                        "event_type": ev.event_type,
                        "deassertion": ev.deassertion,
                        "data": ev.data,
                    }),
                )
            }
            None => (
                format!("OEM record type {:#04x}", e.record_type),
                "info",
                serde_json::json!({
                    "record_id": e.record_id,
                    "record_type": e.record_type,
                    "bmc_timestamp": e.timestamp,
                }),
            ),
        };
        let fingerprint = detail.to_string();
        NewEvent {
            ts_ms,
            source: "bmc".into(),
            host: self.host.to_string(),
            bmc: Some(self.target.name.clone()),
            kind: "sel".into(),
            severity: severity.into(),
            message,
            detail,
            // The record, its time and content: the same entry read again (or after a
            // restart) maps to the same key; an entry reusing the ID after a clear not.
            dedup_key: format!("bmc:{}:sel:{fingerprint}", self.target.name),
        }
    }

    fn push(&self, result: &mut PollResult, metric: &str, pairs: &[(&str, &str)], value: f64) {
        let mut all = Vec::with_capacity(pairs.len() + 2);
        all.extend_from_slice(pairs);
        all.push(("bmc", self.target.name.as_str()));
        all.push(("host", &self.host));
        match Labels::new(metric, all) {
            Ok(labels) => result.samples.push((labels, value)),
            // Names are this module's and the exporter's constants; values are free
            // text. A rejected series is dropped, not the poll.
            Err(e) => {
                tracing::debug!(bmc = %self.target.name, metric, error = %e, "series dropped")
            }
        }
    }

    fn push_poll_series(&self, result: &mut PollResult, took: Duration) {
        let up = f64::from(u8::from(!result.state.is_failure()));
        self.push(result, "dcmon_bmc_up", &[], up);
        for s in PollState::ALL {
            let v = f64::from(u8::from(s == result.state));
            self.push(result, "dcmon_bmc_state", &[("state", s.as_str())], v);
        }
        let failures = f64::from(result.failures);
        self.push(result, "dcmon_bmc_consecutive_failures", &[], failures);
        let secs = took.as_secs_f64();
        self.push(result, "dcmon_bmc_poll_duration_seconds", &[], secs);
    }
}

/// Severity of a system event: threshold events by how far the threshold is
/// (Table 42-2: offsets 0–1 and 6–7 non-critical, 2–3 and 8–9 critical, 4–5 and 10–11
/// non-recoverable); a deassertion is information; other events are information.
fn sel_severity(event_type: u8, offset: u8, deassertion: bool) -> &'static str {
    if deassertion || event_type != 0x01 {
        return "info";
    }
    match offset {
        0 | 1 | 6 | 7 => "warning",
        2..=5 | 8..=11 => "critical",
        _ => "info",
    }
}

/// Stores what finished polls produced, batched (see the module documentation).
async fn writer(state: AppState, mut rx: mpsc::Receiver<PollResult>) {
    let mut batch: Vec<PollResult> = Vec::new();
    loop {
        let deadline = Instant::now() + WRITE_EVERY;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                Ok(None) => {
                    store(&state, std::mem::take(&mut batch)).await;
                    return;
                }
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            store(&state, std::mem::take(&mut batch)).await;
        }
    }
}

async fn store(state: &AppState, batch: Vec<PollResult>) {
    let tsdb = state.tsdb.clone();
    let db = state.control.clone();
    let done = tokio::task::spawn_blocking(move || {
        let mut labels = Vec::new();
        let mut values = Vec::new();
        for r in &batch {
            for (l, v) in &r.samples {
                labels.push(l.clone());
                values.push((r.started_ms, *v));
            }
        }
        match tsdb.resolve(&labels) {
            Ok(ids) => {
                let samples: Vec<_> = ids
                    .into_iter()
                    .zip(values)
                    .map(|(id, (ts, v))| (id, ts, v))
                    .collect();
                if let Err(e) = tsdb.append(&samples) {
                    tracing::warn!(error = %e, "BMC poller: storing samples");
                }
            }
            Err(e) => tracing::warn!(error = %e, "BMC poller: creating series"),
        }
        if let Err(e) = record(&db, &batch) {
            tracing::warn!(error = %format!("{e:#}"), "BMC poller: recording polls");
        }
    })
    .await;
    if let Err(e) = done {
        tracing::warn!(error = %e, "BMC poller: storing a batch");
    }
}

/// Records polls, vendors, SEL positions and events in one transaction. A BMC removed
/// meanwhile matches no row: its poll is dropped.
fn record(db: &ControlDb, batch: &[PollResult]) -> anyhow::Result<()> {
    let mut conn = db.conn();
    let tx = conn.transaction()?;
    for r in batch {
        let exists: Option<i64> = tx
            .query_row(
                "SELECT id FROM bmcs WHERE id = ?1",
                params![r.bmc_id],
                |row| row.get(0),
            )
            .optional()?;
        if exists.is_none() {
            continue;
        }
        tx.execute(
            "UPDATE bmcs SET last_state = ?2, last_poll_ms = ?3, consecutive_failures = ?4
             WHERE id = ?1",
            params![r.bmc_id, r.state.as_str(), r.started_ms, r.failures],
        )?;
        if let Some(v) = r.vendor {
            tx.execute(
                "UPDATE bmcs SET vendor = ?2 WHERE id = ?1",
                params![r.bmc_id, crate::bmcs::vendor_key(v)],
            )?;
        }
        if let Some(p) = r.sel {
            insert_events(&tx, &r.events)?;
            tx.execute(
                "INSERT INTO bmc_sel_state (bmc_id, last_record_id, last_add, last_erase, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (bmc_id) DO UPDATE SET last_record_id = ?2, last_add = ?3,
                     last_erase = ?4, updated_ms = ?5",
                params![r.bmc_id, p.last_record_id, p.last_add, p.last_erase, r.started_ms],
            )?;
        }
        if let Some(e) = &r.error {
            tracing::debug!(bmc_id = r.bmc_id, state = r.state.as_str(), error = %e, "BMC poll");
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_events_rate_by_distance_and_deassertions_inform() {
        let check = |event_type, offset, deassertion, expect| {
            assert_eq!(sel_severity(event_type, offset, deassertion), expect);
        };
        check(0x01, 0, false, "warning");
        check(0x01, 9, false, "critical");
        check(0x01, 4, false, "critical");
        check(0x01, 9, true, "info");
        check(0x6F, 1, false, "info");
    }

    /// One poll of the simulator's Supermicro BMC: sensors, and the fan mode the SDR
    /// does not have, as `dcmon_bmc_fan_mode{mode}` with the BMC's labels.
    #[tokio::test]
    async fn a_supermicro_poll_carries_the_fan_mode() {
        use dcmon_ipmi::sim::{Fleet, SimConfig, Vendor as SimVendor};
        let fleet = Fleet::start(SimConfig::loopback(
            SimVendor::Supermicro,
            "admin",
            "s3cret",
        ))
        .await
        .unwrap();
        let addr = fleet.addrs()[0];
        let job = PollJob {
            target: Arc::new(BmcTarget {
                id: 1,
                name: "smc".into(),
                host: addr.ip().to_string(),
                port: addr.port(),
                username: "admin".into(),
                password: crate::secrets::Secret::new("s3cret"),
            }),
            host: Arc::from("smc"),
            memory: Arc::new(Mutex::new(BmcMemory {
                sensors: SensorCache::default(),
                vendor_known: false,
                failures: 0,
                sel: None,
            })),
            timeout: Duration::from_secs(2),
            attempts: 2,
            budget: Duration::from_secs(20),
        };
        let pool = LanPool::new(1, false).await.unwrap();
        let result = job.run(&pool, 0).await;
        assert_eq!(result.state, PollState::Ok, "{:?}", result.error);
        let modes: Vec<String> = result
            .samples
            .iter()
            .filter(|(l, _)| l.get("__name__") == Some("dcmon_bmc_fan_mode"))
            .map(|(l, v)| format!("{:?} {:?} {v}", l.get("mode"), l.get("bmc")))
            .collect();
        assert_eq!(
            modes,
            [r#"Some("standard") Some("smc") 0"#],
            "{:?}",
            result.samples
        );
        fleet.shutdown().await;
    }
}
