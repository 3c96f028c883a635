//! The fleet table: one row per approved agent with the health columns of the web UI's
//! first page (DESIGN §6), kept current while pushes are ingested.
//!
//! Answering the table from the store would mean ten aggregations over every host's
//! series on each refresh (the CPU column alone is a rate over cores × modes). Instead
//! the ingest path hands over the few samples that feed a column (a vector index per
//! sample decides it), each row recomputes its ten values when its host pushes, and
//! keeps them rendered as a JSON fragment. Serving 10,000 rows is then one pass that
//! concatenates fragments. At start the rows are seeded from the store's last minutes.

use crate::config::UiConfig;
use crate::control::AgentRecord;
use dcmon_tsdb::{MatchOp, Matcher, SeriesId, Tsdb};
use dcmon_wire::Labels;
use dcmon_wire::api::AgentStatus;
use foldhash::HashMap;
use std::fmt::Write as _;
use std::sync::RwLock;

/// One numeric column of the table.
pub struct Column {
    /// Stable key, used in the API and in `ui.thresholds`.
    pub key: &'static str,
    /// Header text.
    pub label: &'static str,
    /// Unit of the values (`celsius`, `percent`, `watts`).
    pub unit: &'static str,
    /// `[green_from, yellow_from, red_from]` unless `ui.thresholds` replaces it.
    pub thresholds: Option<[f64; 3]>,
}

const fn col(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    thresholds: Option<[f64; 3]>,
) -> Column {
    Column {
        key,
        label,
        unit,
        thresholds,
    }
}

/// The numeric columns, in table order (Status and Machine come first and are not numeric).
pub const COLUMNS: [Column; 10] = [
    col("cpu_temp", "CPU °C", "celsius", Some([45.0, 70.0, 85.0])),
    col("cpu_pct", "CPU %", "percent", Some([10.0, 60.0, 90.0])),
    col("vrm_temp", "VRM °C", "celsius", Some([45.0, 75.0, 95.0])),
    col("gpu_temp", "GPU °C", "celsius", Some([40.0, 75.0, 85.0])),
    col("gpu_power", "GPU Power", "watts", None),
    col("gpu_limit", "GPU Limit", "watts", None),
    col("gpu_fan", "GPU Fan %", "percent", Some([30.0, 60.0, 85.0])),
    col("ram_pct", "RAM %", "percent", Some([25.0, 75.0, 90.0])),
    col("root_pct", "Root %", "percent", Some([25.0, 75.0, 90.0])),
    col(
        "docker_pct",
        "Docker %",
        "percent",
        Some([25.0, 75.0, 90.0]),
    ),
];

/// What a series contributes to a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    CpuTemp,
    VrmTemp,
    GpuTemp,
    GpuPower,
    GpuLimit,
    GpuFan,
    CpuIdle,
    CpuBusy,
    MemTotal,
    MemAvailable,
    RootSize,
    RootAvail,
    DockerSize,
    DockerAvail,
}

/// hwmon drivers of CPU package/core sensors.
const CPU_CHIPS: &[&str] = &["coretemp", "k10temp", "zenpower", "cpu_thermal"];

/// Metric names that feed the table (the seed query selects exactly these).
const METRICS: &[&str] = &[
    "node_hwmon_chip_names",
    "node_hwmon_temp_celsius",
    "ipmi_temperature_celsius",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_POWER_MGMT_LIMIT",
    "DCGM_FI_DEV_FAN_SPEED",
    "node_cpu_seconds_total",
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_filesystem_size_bytes",
    "node_filesystem_avail_bytes",
];

/// Decides which of a host's series feed its row. One per ingest session: AMD and ARM
/// hwmon chips are recognised by the `node_hwmon_chip_names` series that the agent
/// sends before their temperatures (the temperature series carry only the chip path).
#[derive(Default)]
pub struct Classifier {
    cpu_chips: Vec<String>,
}

impl Classifier {
    pub fn classify(&mut self, labels: &Labels) -> Option<Input> {
        let name = labels.get("__name__")?;
        let mount = || match labels.get("mountpoint") {
            Some("/") => Some(false),
            Some("/var/lib/docker") => Some(true),
            _ => None,
        };
        match name {
            "node_hwmon_chip_names" => {
                if let (Some(chip), Some(driver)) = (labels.get("chip"), labels.get("chip_name"))
                    && CPU_CHIPS.contains(&driver)
                    && !self.cpu_chips.iter().any(|c| c == chip)
                {
                    self.cpu_chips.push(chip.to_owned());
                }
                None
            }
            "node_hwmon_temp_celsius" => {
                let chip = labels.get("chip")?;
                (chip.contains("coretemp") || self.cpu_chips.iter().any(|c| c == chip))
                    .then_some(Input::CpuTemp)
            }
            "ipmi_temperature_celsius" => {
                let sensor = labels.get("name")?.to_ascii_lowercase();
                if sensor.contains("vrm") {
                    Some(Input::VrmTemp)
                } else if sensor.contains("cpu") {
                    Some(Input::CpuTemp)
                } else {
                    None
                }
            }
            "DCGM_FI_DEV_GPU_TEMP" => Some(Input::GpuTemp),
            "DCGM_FI_DEV_POWER_USAGE" => Some(Input::GpuPower),
            "DCGM_FI_DEV_POWER_MGMT_LIMIT" => Some(Input::GpuLimit),
            "DCGM_FI_DEV_FAN_SPEED" => Some(Input::GpuFan),
            "node_cpu_seconds_total" => Some(match labels.get("mode") {
                Some("idle" | "iowait") => Input::CpuIdle,
                _ => Input::CpuBusy,
            }),
            "node_memory_MemTotal_bytes" => Some(Input::MemTotal),
            "node_memory_MemAvailable_bytes" => Some(Input::MemAvailable),
            "node_filesystem_size_bytes" => mount().map(|docker| {
                if docker {
                    Input::DockerSize
                } else {
                    Input::RootSize
                }
            }),
            "node_filesystem_avail_bytes" => mount().map(|docker| {
                if docker {
                    Input::DockerAvail
                } else {
                    Input::RootAvail
                }
            }),
            _ => None,
        }
    }
}

/// One sample that feeds a row: series, what it is, time, value.
pub type Observation = (SeriesId, Input, i64, f64);

/// Readings older than this (relative to the row's newest) no longer count: a GPU that
/// left the bus or a file system that was unmounted drops out of the row.
const READING_MAX_AGE_MS: i64 = 10 * 60 * 1000;

struct Reading {
    input: Input,
    ts: i64,
    v: f64,
    /// The reading before this one, for counters.
    prev: Option<(i64, f64)>,
}

struct Row {
    agent_id: String,
    host: String,
    last_seen_ms: Option<i64>,
    readings: HashMap<SeriesId, Reading>,
    /// Rendered `"host":…,"agent_id":…,"last_seen_ms":…,"v":[…]` (no braces, no status).
    json: String,
    version: u64,
}

impl Row {
    fn new(agent_id: &str, host: &str, last_seen_ms: Option<i64>) -> Self {
        let mut row = Self {
            agent_id: agent_id.to_owned(),
            host: host.to_owned(),
            last_seen_ms,
            readings: HashMap::default(),
            json: String::new(),
            version: 0,
        };
        row.render();
        row
    }

    fn apply(&mut self, obs: &[Observation]) {
        for &(id, input, ts, v) in obs {
            if !v.is_finite() {
                continue;
            }
            match self.readings.get_mut(&id) {
                Some(r) if ts > r.ts => {
                    r.prev = Some((r.ts, r.v));
                    r.ts = ts;
                    r.v = v;
                    r.input = input;
                }
                Some(r) if ts == r.ts => r.v = v,
                Some(_) => {}
                None => {
                    self.readings.insert(
                        id,
                        Reading {
                            input,
                            ts,
                            v,
                            prev: None,
                        },
                    );
                }
            }
        }
        if let Some(newest) = self.readings.values().map(|r| r.ts).max() {
            self.readings
                .retain(|_, r| newest - r.ts <= READING_MAX_AGE_MS);
        }
    }

    /// The ten column values from the current readings.
    fn values(&self) -> [Option<f64>; 10] {
        let pick = |input: Input| self.readings.values().filter(move |r| r.input == input);
        let max = |input| pick(input).map(|r| r.v).reduce(f64::max);
        let sum = |input| pick(input).map(|r| r.v).reduce(|a, b| a + b);
        // Latest value of a single-valued input (the newest reading wins).
        let latest = |input| pick(input).max_by_key(|r| r.ts).map(|r| r.v);
        let used_pct = |total: Option<f64>, free: Option<f64>| match (total, free) {
            (Some(t), Some(f)) if t > 0.0 => Some((100.0 * (1.0 - f / t)).clamp(0.0, 100.0)),
            _ => None,
        };
        [
            max(Input::CpuTemp),
            self.cpu_busy_pct(),
            max(Input::VrmTemp),
            max(Input::GpuTemp),
            sum(Input::GpuPower),
            sum(Input::GpuLimit),
            max(Input::GpuFan),
            used_pct(latest(Input::MemTotal), latest(Input::MemAvailable)),
            used_pct(latest(Input::RootSize), latest(Input::RootAvail)),
            used_pct(latest(Input::DockerSize), latest(Input::DockerAvail)),
        ]
    }

    /// Busy share of all CPU time between the last two collections: counters of every
    /// core and mode, taken at the newest collection that has them.
    fn cpu_busy_pct(&self) -> Option<f64> {
        let cpu = |r: &&Reading| matches!(r.input, Input::CpuIdle | Input::CpuBusy);
        let at = self.readings.values().filter(cpu).map(|r| r.ts).max()?;
        let (mut idle, mut total) = (0.0, 0.0);
        for r in self.readings.values().filter(cpu).filter(|r| r.ts == at) {
            // A counter that went down was reset (agent or host restart): no rate from it.
            let Some((_, before)) = r.prev.filter(|(_, before)| r.v >= *before) else {
                continue;
            };
            let d = r.v - before;
            total += d;
            if r.input == Input::CpuIdle {
                idle += d;
            }
        }
        (total > 0.0).then(|| (100.0 * (total - idle) / total).clamp(0.0, 100.0))
    }

    fn render(&mut self) {
        let mut s = String::with_capacity(160);
        s.push_str("\"host\":");
        s.push_str(&json_string(&self.host));
        s.push_str(",\"agent_id\":");
        s.push_str(&json_string(&self.agent_id));
        s.push_str(",\"last_seen_ms\":");
        match self.last_seen_ms {
            Some(t) => {
                let _ = write!(s, "{t}");
            }
            None => s.push_str("null"),
        }
        s.push_str(",\"v\":[");
        for (i, v) in self.values().iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            match v {
                Some(v) if v.is_finite() => {
                    let _ = write!(s, "{}", (v * 10.0).round() / 10.0);
                }
                _ => s.push_str("null"),
            }
        }
        s.push(']');
        self.json = s;
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a str always serialises")
}

/// Online, stale or offline, from the last push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Online,
    Stale,
    Offline,
}

impl Status {
    fn of(last_seen_ms: Option<i64>, now_ms: i64, ui: &UiConfig) -> Self {
        match last_seen_ms {
            Some(t) if now_ms - t <= ui.stale_after.as_millis() as i64 => Self::Online,
            Some(t) if now_ms - t <= ui.offline_after.as_millis() as i64 => Self::Stale,
            _ => Self::Offline,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Stale => "stale",
            Self::Offline => "offline",
        }
    }
}

#[derive(Default)]
struct Inner {
    rows: Vec<Row>,
    by_agent: HashMap<String, usize>,
    version: u64,
}

impl Inner {
    fn bump(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    fn remove(&mut self, agent_id: &str) {
        let Some(i) = self.by_agent.remove(agent_id) else {
            return;
        };
        self.rows.swap_remove(i);
        if let Some(moved) = self.rows.get(i) {
            self.by_agent.insert(moved.agent_id.clone(), i);
        }
        self.bump();
    }

    fn row_mut(&mut self, agent_id: &str, host: &str) -> &mut Row {
        let i = match self.by_agent.get(agent_id) {
            Some(&i) => i,
            None => {
                self.rows.push(Row::new(agent_id, host, None));
                self.by_agent
                    .insert(agent_id.to_owned(), self.rows.len() - 1);
                self.rows.len() - 1
            }
        };
        &mut self.rows[i]
    }
}

/// What one live-update stream has been sent so far.
pub struct StreamCursor {
    since: u64,
    sent: HashMap<String, Status>,
}

/// The fleet table, shared by the ingest path and the API.
#[derive(Default)]
pub struct FleetView {
    inner: RwLock<Inner>,
}

impl FleetView {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A push of `agent` was stored at `now_ms`, with these samples for its row.
    pub fn observe(&self, agent: &AgentRecord, obs: &[Observation], now_ms: i64) {
        let mut inner = self.write();
        let version = inner.bump();
        let row = inner.row_mut(&agent.id, &agent.host);
        row.host.clone_from(&agent.host);
        row.last_seen_ms = Some(now_ms);
        row.apply(obs);
        row.render();
        row.version = version;
    }

    /// Makes the rows match the registered agents: a row per approved agent, none for
    /// pending or revoked ones.
    pub fn sync(&self, agents: &[AgentRecord]) {
        let mut inner = self.write();
        let approved: HashMap<&str, &AgentRecord> = agents
            .iter()
            .filter(|a| a.status == AgentStatus::Approved)
            .map(|a| (a.id.as_str(), a))
            .collect();
        let gone: Vec<String> = inner
            .rows
            .iter()
            .filter(|r| !approved.contains_key(r.agent_id.as_str()))
            .map(|r| r.agent_id.clone())
            .collect();
        for id in gone {
            inner.remove(&id);
        }
        for a in approved.values() {
            let known = inner.by_agent.get(&a.id).copied();
            let changed = match known {
                None => true,
                Some(i) => {
                    let r = &inner.rows[i];
                    r.host != a.host || r.last_seen_ms.unwrap_or(0) < a.last_seen_ms.unwrap_or(0)
                }
            };
            if !changed {
                continue;
            }
            let version = inner.bump();
            let row = inner.row_mut(&a.id, &a.host);
            row.host.clone_from(&a.host);
            row.last_seen_ms = row.last_seen_ms.max(a.last_seen_ms);
            row.render();
            row.version = version;
        }
    }

    /// Fills the rows from the store's samples of the last `window_ms` (at server start,
    /// before agents push again). Rows must exist already (see [`FleetView::sync`]).
    pub fn seed(
        &self,
        tsdb: &Tsdb,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<(), dcmon_tsdb::TsdbError> {
        let names = format!("^(?:{})$", METRICS.join("|"));
        let matcher = Matcher::new("__name__", MatchOp::RegexMatch, &names)
            .expect("the metric-name pattern is a valid regex");
        let ids: HashMap<Labels, SeriesId> = tsdb
            .matching(std::slice::from_ref(&matcher))
            .into_iter()
            .map(|(id, l)| (l, id))
            .collect();
        let mut by_host: HashMap<String, Vec<dcmon_tsdb::SeriesData>> = HashMap::default();
        for s in tsdb.select(&[matcher], now_ms - window_ms, now_ms)? {
            if let Some(host) = s.labels.get("host") {
                by_host.entry(host.to_owned()).or_default().push(s);
            }
        }
        let mut inner = self.write();
        let hosts: HashMap<String, usize> = inner
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.host.clone(), i))
            .collect();
        for (host, mut series) in by_host {
            let Some(&i) = hosts.get(&host) else {
                continue;
            };
            // Chip names first, so that the classifier knows the CPU chips.
            series.sort_by_key(|s| s.labels.get("__name__") != Some("node_hwmon_chip_names"));
            let mut classifier = Classifier::default();
            let mut obs = Vec::new();
            for s in &series {
                let (Some(input), Some(&id)) = (classifier.classify(&s.labels), ids.get(&s.labels))
                else {
                    continue;
                };
                let start = s.samples.len().saturating_sub(2);
                obs.extend(s.samples[start..].iter().map(|&(t, v)| (id, input, t, v)));
            }
            obs.sort_by_key(|o| o.2);
            let version = inner.bump();
            let row = &mut inner.rows[i];
            row.apply(&obs);
            row.render();
            row.version = version;
        }
        Ok(())
    }

    /// The whole table as the JSON of `GET /api/fleet`.
    pub fn snapshot_json(&self, ui: &UiConfig, now_ms: i64) -> String {
        let inner = self.read();
        let statuses: Vec<Status> = inner
            .rows
            .iter()
            .map(|r| Status::of(r.last_seen_ms, now_ms, ui))
            .collect();
        let online = statuses.iter().filter(|s| **s == Status::Online).count();
        let mut out = String::with_capacity(
            512 + inner.rows.iter().map(|r| r.json.len() + 24).sum::<usize>(),
        );
        let _ = write!(
            out,
            "{{\"generated_ms\":{now_ms},\"version\":{},\"total\":{},\"online\":{online},\"stale_after_ms\":{},\"offline_after_ms\":{},\"columns\":{},\"thresholds\":{},\"rows\":[",
            inner.version,
            inner.rows.len(),
            ui.stale_after.as_millis(),
            ui.offline_after.as_millis(),
            columns_json(),
            thresholds_json(ui),
        );
        for (i, (row, status)) in inner.rows.iter().zip(&statuses).enumerate() {
            push_row(&mut out, i > 0, row, *status);
        }
        out.push_str("]}");
        out
    }

    /// A cursor for a live stream whose client holds the snapshot of version `since`
    /// (0: it holds nothing, so the first update sends every row).
    pub fn cursor(&self, since: u64, ui: &UiConfig, now_ms: i64) -> StreamCursor {
        let inner = self.read();
        let since = since.min(inner.version);
        let sent = if since == 0 {
            HashMap::default()
        } else {
            inner
                .rows
                .iter()
                .filter(|r| r.version <= since)
                .map(|r| (r.agent_id.clone(), Status::of(r.last_seen_ms, now_ms, ui)))
                .collect()
        };
        StreamCursor { since, sent }
    }

    /// What changed for this stream since its last update (rows updated, rows whose
    /// status moved with time, rows removed), as the JSON of one `fleet` event; `None`
    /// when nothing did.
    pub fn changes_json(
        &self,
        cursor: &mut StreamCursor,
        ui: &UiConfig,
        now_ms: i64,
    ) -> Option<String> {
        let inner = self.read();
        let mut out = String::new();
        let mut online = 0;
        let mut n = 0;
        for row in &inner.rows {
            let status = Status::of(row.last_seen_ms, now_ms, ui);
            online += usize::from(status == Status::Online);
            let sent = cursor.sent.get(&row.agent_id);
            if row.version > cursor.since || sent != Some(&status) {
                push_row(&mut out, n > 0, row, status);
                n += 1;
                match cursor.sent.get_mut(&row.agent_id) {
                    Some(s) => *s = status,
                    None => {
                        cursor.sent.insert(row.agent_id.clone(), status);
                    }
                }
            }
        }
        let mut removed = Vec::new();
        cursor.sent.retain(|id, _| {
            let keep = inner.by_agent.contains_key(id);
            if !keep {
                removed.push(json_string(id));
            }
            keep
        });
        cursor.since = inner.version;
        if n == 0 && removed.is_empty() {
            return None;
        }
        Some(format!(
            "{{\"generated_ms\":{now_ms},\"version\":{},\"total\":{},\"online\":{online},\"rows\":[{out}],\"removed\":[{}]}}",
            inner.version,
            inner.rows.len(),
            removed.join(",")
        ))
    }

    /// Rows in the table.
    pub fn len(&self) -> usize {
        self.read().rows.len()
    }

    /// True when no agent is approved.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn push_row(out: &mut String, comma: bool, row: &Row, status: Status) {
    if comma {
        out.push(',');
    }
    out.push_str("{\"status\":\"");
    out.push_str(status.as_str());
    out.push_str("\",");
    out.push_str(&row.json);
    out.push('}');
}

fn columns_json() -> String {
    let cols: Vec<serde_json::Value> = COLUMNS
        .iter()
        .map(|c| serde_json::json!({"key": c.key, "label": c.label, "unit": c.unit}))
        .collect();
    serde_json::Value::from(cols).to_string()
}

fn thresholds_json(ui: &UiConfig) -> String {
    let mut map = serde_json::Map::new();
    for c in &COLUMNS {
        if let Some(t) = ui.thresholds.get(c.key).copied().or(c.thresholds) {
            map.insert(c.key.to_owned(), serde_json::json!(t));
        }
    }
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests;

/// Keeps the rows in step with the registered agents: checks the control store every
/// two seconds and re-reads the agents when it changed (an approval, a revocation, a
/// registration, also by the CLI in another process). The first pass also seeds the
/// values from the store, so a restarted server shows the fleet at once.
pub async fn keep_in_sync(state: crate::state::AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen_version = None;
    loop {
        tick.tick().await;
        let s = state.clone();
        let pass = tokio::task::spawn_blocking(move || -> anyhow::Result<i64> {
            let version = s.control.data_version()?;
            if seen_version == Some(version) {
                return Ok(version);
            }
            let agents = s.control.list_agents()?;
            s.fleet.sync(&agents);
            if seen_version.is_none() {
                s.fleet
                    .seed(&s.tsdb, s.clock.now_ms(), READING_MAX_AGE_MS)?;
            }
            Ok(version)
        })
        .await;
        match pass {
            Ok(Ok(v)) => seen_version = Some(v),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "updating the fleet table from the control store")
            }
            Err(e) => tracing::warn!(error = %e, "fleet table task"),
        }
    }
}
