//! `server.yaml` (or `.toml`): typed, validated, overridable from the environment and
//! the command line. Precedence: defaults < file < environment < command line.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port the HTTPS listener binds.
    pub listen: SocketAddr,
    /// Directory of the databases, the TLS certificate and the installation secrets.
    pub data_dir: PathBuf,
    /// URL agents and browsers use to reach this server (printed in join commands).
    /// Default: `https://<hostname>:<listen port>`.
    pub public_url: Option<String>,
    pub tls: TlsConfig,
    pub agents: AgentsConfig,
    pub retention: RetentionConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub bmc_poll: BmcPollConfig,
    pub ui: UiConfig,
    pub auth: AuthConfig,
    pub alerts: AlertsConfig,
}

/// HTTPS certificate. Without files, a self-signed certificate is made in `data_dir/tls`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; set together with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key_file: Option<PathBuf>,
    /// Extra DNS names or IP addresses for the generated certificate.
    pub san: Vec<String>,
}

/// How agents join and authenticate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// `auto`: a valid enrollment token admits the agent; `manual`: it waits for `dcmon agents approve`.
    pub approval: Approval,
    /// Largest accepted difference between an agent's signing time and the server clock.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    Auto,
    Manual,
}

/// How long data is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Raw samples older than this are deleted (their 5-minute and 1-hour rollups stay).
    #[serde(with = "humantime_serde")]
    pub raw: Duration,
    /// 5-minute rollups (min, max, sum, count, last) older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub rollup_5m: Duration,
    /// 1-hour rollups older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub rollup_1h: Duration,
}

/// The time-series store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// How far behind a series' newest sample a late sample is still stored; older ones
    /// are rejected (counted as `dcmon_tsdb_samples_rejected_total{reason="too_old"}`).
    #[serde(with = "humantime_serde")]
    pub out_of_order_window: Duration,
}

/// Guards against runaway cardinality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most series one `host` label value may have; new series past it are refused (422).
    /// 0: no limit.
    pub max_series_per_host: usize,
}

/// Agentless polling of the BMCs in the inventory (`dcmon bmc ...`, DESIGN §8). Each BMC
/// is polled on its own interval (set per BMC in the inventory, default 5 minutes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BmcPollConfig {
    /// Poll the inventory's BMCs. Off: the inventory is kept but nobody is polled.
    pub enabled: bool,
    /// Most polls in flight at once; the rest wait their turn, so a fleet of slow or
    /// dead BMCs cannot exhaust the server's sockets or memory.
    pub concurrency: usize,
    /// The longest one IPMI request may take, its retransmissions and a session
    /// (re)establishment included: a dead BMC costs this much per poll.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Sends of each message within `timeout` (UDP loses datagrams; BMCs drop some
    /// under load).
    pub attempts: u32,
    /// Polls every BMC at this interval instead of the one in the inventory (which is
    /// at least 10 s). For tests and benchmarks that need polls seconds apart; unset in
    /// production.
    #[serde(default, with = "humantime_serde")]
    pub interval_override: Option<Duration>,
}

/// The web UI's fleet table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// How often the fleet table's live stream sends what changed.
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
    /// A machine whose last push is older than this shows as stale.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// A machine whose last push is older than this shows as offline.
    #[serde(with = "humantime_serde")]
    pub offline_after: Duration,
    /// Colour thresholds per fleet column (`cpu_temp`, `cpu_pct`, `vrm_temp`, `gpu_temp`,
    /// `gpu_power`, `gpu_limit`, `gpu_fan`, `ram_pct`, `root_pct`, `docker_pct`): three
    /// ascending values `[green_from, yellow_from, red_from]`; below the first is blue.
    /// A column without thresholds is not coloured. Replaces the defaults per column.
    pub thresholds: std::collections::BTreeMap<String, [f64; 3]>,
}

/// Users' sign-in: sessions, lock-out, login rate limit, reverse-proxy header auth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A session unused for this long ends (the user signs in again).
    #[serde(with = "humantime_serde")]
    pub session_idle: Duration,
    /// A session ends this long after sign-in, however busy, so a stolen cookie expires.
    #[serde(with = "humantime_serde")]
    pub session_max: Duration,
    /// Consecutive failed sign-ins after which a user is locked out.
    pub lockout_failures: u32,
    /// How long a lock-out lasts (an admin's `PUT /api/users/{name}` with `unlock`, or
    /// `dcmon user passwd`, ends it sooner).
    pub lockout_minutes: u32,
    /// Sign-in attempts accepted per client address per minute (any user); more get 429.
    pub login_attempts_per_minute: u32,
    /// Reverse proxies (IP addresses or CIDR ranges) whose `X-Fleet-Auth-User` and
    /// `X-Fleet-Auth-Role` headers are trusted as the signed-in user. Headers from any
    /// other address are ignored. Empty: header auth is off.
    pub trusted_proxies: Vec<String>,
}

/// Alert rules and notifications (DESIGN §7). Rules, channels and silences live in the
/// control store (`dcmon rules|channels|alerts ...`); these are the engine's tunables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Evaluate rules. Off: nothing is evaluated and nothing is sent.
    pub enabled: bool,
    /// How often every rule is evaluated. A pending alert is also evaluated again the
    /// moment its `for:` elapses, so this does not delay notifications.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long the first notification of a group waits for more alerts of its group.
    #[serde(with = "humantime_serde")]
    pub group_wait: Duration,
    /// Least time between two notifications of one group (rule and channel): changes in
    /// between are sent together, so a flapping rule cannot produce a storm.
    #[serde(with = "humantime_serde")]
    pub group_interval: Duration,
    /// A firing, unacknowledged alert is notified again this often.
    #[serde(with = "humantime_serde")]
    pub repeat_interval: Duration,
    /// First retry delay of a failed delivery; doubled per attempt, with jitter.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Deliveries are given up (status `failed`) after this many attempts.
    pub retry_attempts: u32,
    /// Built-in rules by name (see `dcmon rules list`): each can be turned off
    /// (`enabled: false`) or tuned (`threshold`, `resolve`, `for`, `severity`).
    pub builtins: std::collections::BTreeMap<String, BuiltinSetting>,
}

/// Changes to one built-in rule; unset fields keep the rule's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuiltinSetting {
    pub enabled: Option<bool>,
    pub threshold: Option<f64>,
    pub resolve: Option<f64>,
    #[serde(rename = "for", with = "humantime_serde")]
    pub for_: Option<Duration>,
    /// `info`, `warning` or `critical`.
    pub severity: Option<String>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(15),
            group_wait: Duration::ZERO,
            group_interval: Duration::from_secs(60),
            repeat_interval: Duration::from_secs(4 * 3600),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            retry_attempts: 12,
            builtins: Default::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter such as `dcmon=debug`.
    pub level: String,
    /// `text` or `json` (one object per line).
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8443".parse().expect("literal address"),
            data_dir: PathBuf::from("/var/lib/dcmon"),
            public_url: None,
            tls: TlsConfig::default(),
            agents: AgentsConfig::default(),
            retention: RetentionConfig::default(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            bmc_poll: BmcPollConfig::default(),
            ui: UiConfig::default(),
            auth: AuthConfig::default(),
            alerts: AlertsConfig::default(),
        }
    }
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(5),
            stale_after: Duration::from_secs(60),
            offline_after: Duration::from_secs(180),
            thresholds: std::collections::BTreeMap::new(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_idle: Duration::from_secs(12 * 3600),
            session_max: Duration::from_secs(7 * 86_400),
            lockout_failures: 5,
            lockout_minutes: 15,
            login_attempts_per_minute: 10,
            trusted_proxies: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// The trusted proxy ranges (entries that do not parse are refused by `validate`).
    pub fn proxy_nets(&self) -> Vec<IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|s| IpNet::parse(s).ok())
            .collect()
    }
}

/// An IP address range: an address and a prefix length (a bare address is /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `10.0.0.5`, `10.0.0.0/8`, `::1`, `fd00::/8`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: std::net::IpAddr = addr.parse().map_err(|_| {
            format!("{text:?} is not an IP address or CIDR range (e.g. 10.0.0.5 or 10.0.0.0/24)")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0 to {max}"))?,
        };
        Ok(Self { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            V6(v6) => v6.to_ipv4_mapped().map_or(ip, V4),
            v4 => v4,
        };
        let (net, ip, width) = match (self.addr, ip) {
            (V4(n), V4(i)) => (u128::from(u32::from(n)), u128::from(u32::from(i)), 32),
            (V6(n), V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let host_bits = width - u32::from(self.prefix);
        host_bits >= 128 || (net >> host_bits) == (ip >> host_bits)
    }
}

impl Default for BmcPollConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 64,
            timeout: Duration::from_secs(5),
            attempts: 3,
            interval_override: None,
        }
    }
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            approval: Approval::Auto,
            max_clock_skew: Duration::from_secs(300),
        }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            raw: Duration::from_secs(7 * 24 * 3600),
            rollup_5m: Duration::from_secs(90 * 24 * 3600),
            rollup_1h: Duration::from_secs(730 * 24 * 3600),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            out_of_order_window: Duration::from_secs(3600),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_series_per_host: 10_000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Environment variables that override a setting, and the setting's dotted path.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("DCMON_LISTEN", "listen"),
    ("DCMON_DATA_DIR", "data_dir"),
    ("DCMON_PUBLIC_URL", "public_url"),
    ("DCMON_TLS_CERT_FILE", "tls.cert_file"),
    ("DCMON_TLS_KEY_FILE", "tls.key_file"),
    ("DCMON_AGENTS_APPROVAL", "agents.approval"),
    ("DCMON_AGENTS_MAX_CLOCK_SKEW", "agents.max_clock_skew"),
    ("DCMON_RETENTION_RAW", "retention.raw"),
    ("DCMON_RETENTION_ROLLUP_5M", "retention.rollup_5m"),
    ("DCMON_RETENTION_ROLLUP_1H", "retention.rollup_1h"),
    (
        "DCMON_STORAGE_OUT_OF_ORDER_WINDOW",
        "storage.out_of_order_window",
    ),
    (
        "DCMON_LIMITS_MAX_SERIES_PER_HOST",
        "limits.max_series_per_host",
    ),
    ("DCMON_AUTH_SESSION_IDLE", "auth.session_idle"),
    ("DCMON_AUTH_SESSION_MAX", "auth.session_max"),
    ("DCMON_AUTH_LOCKOUT_FAILURES", "auth.lockout_failures"),
    ("DCMON_AUTH_LOCKOUT_MINUTES", "auth.lockout_minutes"),
    ("DCMON_LOG_LEVEL", "log.level"),
    ("DCMON_LOG_FORMAT", "log.format"),
];

/// Everything wrong with a configuration, one problem per line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// One override: a dotted setting path, its text value, and where it came from.
#[derive(Debug, Clone)]
pub struct Override {
    pub path: String,
    pub value: String,
    pub source: String,
}

impl ServerConfig {
    /// Loads `file` (or defaults when `None`), then applies environment and `overrides`,
    /// then validates. Every problem is reported at once.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        overrides: &[Override],
    ) -> Result<Self, ConfigError> {
        let base = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                parse_file(path, &text)?
            }
            None => Self::default(),
        };
        let mut all: Vec<Override> = ENV_OVERRIDES
            .iter()
            .filter_map(|(var, path)| {
                env(var).map(|value| Override {
                    path: (*path).to_owned(),
                    value,
                    source: format!("environment variable {var}"),
                })
            })
            .collect();
        all.extend(overrides.iter().cloned());
        let config = if all.is_empty() {
            base
        } else {
            apply_overrides(base, &all)?
        };
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            let origin = file
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "configuration".into());
            Err(ConfigError::Invalid(
                problems
                    .iter()
                    .map(|p| format!("{origin}: {p}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ))
        }
    }

    /// Every semantic problem, each naming its setting.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.data_dir.as_os_str().is_empty() {
            p.push("data_dir: must not be empty".to_owned());
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            p.push(
                "tls: set both cert_file and key_file, or neither (to use a generated certificate)"
                    .to_owned(),
            );
        }
        if let Some(url) = &self.public_url {
            if !url.starts_with("https://") {
                p.push(format!(
                    "public_url: {url:?} must start with https:// (dcmon serves HTTPS only)"
                ));
            }
        }
        let skew = self.agents.max_clock_skew;
        if skew < Duration::from_secs(1) || skew > Duration::from_secs(3600) {
            p.push("agents.max_clock_skew: must be between 1s and 1h".to_owned());
        }
        if self.retention.raw < Duration::from_secs(3600) {
            p.push("retention.raw: must be at least 1h".to_owned());
        }
        if self.retention.rollup_5m < self.retention.raw {
            p.push("retention.rollup_5m: must be at least retention.raw".to_owned());
        }
        if self.retention.rollup_1h < self.retention.rollup_5m {
            p.push("retention.rollup_1h: must be at least retention.rollup_5m".to_owned());
        }
        if self.storage.out_of_order_window >= self.retention.raw {
            p.push(
                "storage.out_of_order_window: must be shorter than retention.raw (late samples must land in raw data)"
                    .to_owned(),
            );
        }
        let poll = &self.bmc_poll;
        if !(1..=4096).contains(&poll.concurrency) {
            p.push("bmc_poll.concurrency: must be between 1 and 4096".to_owned());
        }
        if poll.timeout < Duration::from_millis(100) || poll.timeout > Duration::from_secs(60) {
            p.push("bmc_poll.timeout: must be between 100ms and 60s".to_owned());
        }
        if !(1..=10).contains(&poll.attempts) {
            p.push("bmc_poll.attempts: must be between 1 and 10".to_owned());
        }
        if let Some(every) = poll.interval_override
            && (every < Duration::from_secs(1) || every > Duration::from_secs(86_400))
        {
            p.push("bmc_poll.interval_override: must be between 1s and 1d".to_owned());
        }
        let ui = &self.ui;
        if ui.refresh < Duration::from_secs(1) || ui.refresh > Duration::from_secs(300) {
            p.push("ui.refresh: must be between 1s and 5m".to_owned());
        }
        if ui.stale_after < Duration::from_secs(1) || ui.offline_after <= ui.stale_after {
            p.push(
                "ui.stale_after, ui.offline_after: stale_after must be at least 1s and offline_after longer than stale_after"
                    .to_owned(),
            );
        }
        for (key, t) in &ui.thresholds {
            if !crate::fleet::COLUMNS.iter().any(|c| c.key == key) {
                let keys: Vec<&str> = crate::fleet::COLUMNS.iter().map(|c| c.key).collect();
                p.push(format!(
                    "ui.thresholds.{key}: no such fleet column; columns are {}",
                    keys.join(", ")
                ));
            } else if !(t.iter().all(|v| v.is_finite()) && t[0] < t[1] && t[1] < t[2]) {
                p.push(format!(
                    "ui.thresholds.{key}: {t:?} must be three finite, strictly ascending numbers [green_from, yellow_from, red_from]"
                ));
            }
        }
        let auth = &self.auth;
        if auth.session_idle < Duration::from_secs(60) {
            p.push("auth.session_idle: must be at least 1m".to_owned());
        }
        if auth.session_max < auth.session_idle {
            p.push("auth.session_max: must be at least auth.session_idle".to_owned());
        }
        if !(1..=100).contains(&auth.lockout_failures) {
            p.push("auth.lockout_failures: must be between 1 and 100".to_owned());
        }
        if !(1..=1440).contains(&auth.lockout_minutes) {
            p.push("auth.lockout_minutes: must be between 1 and 1440 (one day)".to_owned());
        }
        if !(1..=10_000).contains(&auth.login_attempts_per_minute) {
            p.push("auth.login_attempts_per_minute: must be between 1 and 10000".to_owned());
        }
        for (i, entry) in auth.trusted_proxies.iter().enumerate() {
            if let Err(e) = IpNet::parse(entry) {
                p.push(format!("auth.trusted_proxies[{i}]: {e}"));
            }
        }
        p.extend(crate::alerts::validate_config(&self.alerts));
        if self.log.level.trim().is_empty() {
            p.push("log.level: must not be empty (e.g. info)".to_owned());
        }
        p
    }

    /// The URL printed for agents and browsers.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let host = if self.listen.ip().is_unspecified() {
                    crate::hostname()
                } else if self.listen.ip().is_ipv6() {
                    format!("[{}]", self.listen.ip())
                } else {
                    self.listen.ip().to_string()
                };
                format!("https://{host}:{}", self.listen.port())
            }
        }
    }

    /// The store's tunables from this configuration.
    pub fn tsdb_options(&self) -> dcmon_tsdb::TsdbOptions {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        dcmon_tsdb::TsdbOptions {
            out_of_order_window_ms: ms(self.storage.out_of_order_window),
            raw_retention_ms: ms(self.retention.raw),
            rollup_5m_retention_ms: ms(self.retention.rollup_5m),
            rollup_1h_retention_ms: ms(self.retention.rollup_1h),
            max_series_per_host: self.limits.max_series_per_host,
            ..dcmon_tsdb::TsdbOptions::default()
        }
    }

    /// Where `dcmon` admin commands find the databases: this config's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

fn parse_file(path: &Path, text: &str) -> Result<ServerConfig, ConfigError> {
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    let result: Result<ServerConfig, String> = if is_toml {
        toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(":{line}")
                })
                .unwrap_or_default();
            format!("{}{at}: {}", path.display(), e.message().trim())
        })
    } else if text.trim().is_empty() {
        Ok(ServerConfig::default())
    } else {
        serde_norway::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            let msg = e.to_string();
            // serde_norway appends " at line N column M"; the location is already in front.
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            format!("{}{at}: {msg}", path.display())
        })
    };
    result.map_err(|m| ConfigError::Invalid(with_hint(m)))
}

/// Adds a how-to-fix line to serde's messages that lack one.
fn with_hint(message: String) -> String {
    if message.contains("unknown field") {
        format!(
            "{message}\n  hint: remove or rename the key; `dcmon config example` prints every valid key with its default"
        )
    } else if message.contains("unknown variant") {
        format!("{message}\n  hint: use one of the listed values")
    } else {
        message
    }
}

/// Sets `value` at `path` (the last key may be new); false when a section on the way
/// is missing or not a section.
fn insert_at(tree: &mut serde_json::Value, path: &[&str], value: serde_json::Value) -> bool {
    let Some((last, sections)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    for part in sections {
        match node.get_mut(*part) {
            Some(next) => node = next,
            None => return false,
        }
    }
    match node.as_object_mut() {
        Some(obj) => {
            obj.insert((*last).to_owned(), value);
            true
        }
        None => false,
    }
}

fn apply_overrides(
    base: ServerConfig,
    overrides: &[Override],
) -> Result<ServerConfig, ConfigError> {
    let mut tree = serde_json::to_value(&base).expect("the config always serialises");
    for o in overrides {
        let value: serde_json::Value = match serde_norway::from_str::<serde_json::Value>(&o.value) {
            Ok(
                v @ (serde_json::Value::Bool(_)
                | serde_json::Value::Number(_)
                | serde_json::Value::Array(_)),
            ) => v,
            _ => serde_json::Value::String(o.value.clone()),
        };
        let parts: Vec<&str> = o.path.split('.').collect();
        // A key that is not there yet is a setting only in a map section (such as
        // `ui.thresholds`); the typed check tells, and elsewhere the walk below names
        // the valid keys.
        let mut probe = tree.clone();
        if insert_at(&mut probe, &parts, value.clone())
            && serde_json::from_value::<ServerConfig>(probe.clone()).is_ok()
        {
            tree = probe;
            continue;
        }
        let mut node = &mut tree;
        for (i, part) in parts.iter().enumerate() {
            let Some(obj) = node.as_object_mut() else {
                return Err(ConfigError::Invalid(format!(
                    "{}: {} is not a section",
                    o.source,
                    parts[..i].join(".")
                )));
            };
            if !obj.contains_key(*part) {
                let valid: Vec<&String> = obj.keys().collect();
                return Err(ConfigError::Invalid(format!(
                    "{}: unknown setting {:?}; valid keys here: {}",
                    o.source,
                    o.path,
                    valid
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if i + 1 == parts.len() {
                obj.insert((*part).to_owned(), value.clone());
                break;
            }
            node = obj.get_mut(*part).expect("checked above");
        }
        // Check each override on its own so the error names the one at fault.
        if let Err(e) = serde_json::from_value::<ServerConfig>(tree.clone()) {
            return Err(ConfigError::Invalid(format!(
                "{}: {}={:?}: {e}",
                o.source, o.path, o.value
            )));
        }
    }
    Ok(serde_json::from_value(tree).expect("validated after each override"))
}

/// A configuration as YAML.
pub fn to_yaml(c: &ServerConfig) -> anyhow::Result<String> {
    Ok(serde_norway::to_string(c)?)
}

/// The example configuration, every key with its default.
pub fn example_yaml() -> String {
    let mut out = String::from(
        "# dcmon server configuration (every key shown with its default).\n\
         # Environment overrides: ",
    );
    out.push_str(
        &ENV_OVERRIDES
            .iter()
            .map(|(v, _)| *v)
            .collect::<Vec<_>>()
            .join(", "),
    );
    out.push('\n');
    out.push_str(
        &serde_norway::to_string(&ServerConfig::default()).expect("the config always serialises"),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, text: &str, env: &[(&str, &str)]) -> Result<ServerConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(a, b)| ((*a).into(), (*b).into()))
            .collect();
        ServerConfig::load(
            Some(&path),
            |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
            &[],
        )
        .map_err(|e| {
            e.to_string()
                .replace(&dir.path().display().to_string(), "DIR")
        })
    }

    #[test]
    fn defaults_and_file_values() {
        let c = load(
            "s.yaml",
            "listen: 127.0.0.1:9000\nagents:\n  approval: manual\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.agents.approval, Approval::Manual);
        assert_eq!(c.retention.raw, Duration::from_secs(7 * 86400));
        let t = load(
            "s.toml",
            "listen = \"127.0.0.1:9001\"\n[retention]\nraw = \"30d\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(t.retention.raw, Duration::from_secs(30 * 86400));
        let c = load(
            "s.yaml",
            "storage:\n  out_of_order_window: 10m\nlimits:\n  max_series_per_host: 50\nretention:\n  rollup_5m: 30d\n",
            &[],
        )
        .unwrap();
        let o = c.tsdb_options();
        assert_eq!(o.out_of_order_window_ms, 600_000);
        assert_eq!(o.max_series_per_host, 50);
        assert_eq!(o.rollup_5m_retention_ms, 30 * 86_400_000);
    }

    #[test]
    fn unknown_key_names_file_line_and_valid_keys() {
        let e = load(
            "s.yaml",
            "listen: 127.0.0.1:9000\nagents:\n  aproval: manual\n",
            &[],
        )
        .unwrap_err();
        assert!(e.starts_with("DIR/s.yaml:3:3: agents: unknown field `aproval`, expected `approval` or `max_clock_skew`"), "{e}");
        assert!(e.contains("hint:"), "{e}");
        let e = load(
            "s.toml",
            "listen = \"127.0.0.1:9000\"\nlisten_port = 3\n",
            &[],
        )
        .unwrap_err();
        assert!(
            e.starts_with("DIR/s.toml:2: unknown field `listen_port`"),
            "{e}"
        );
    }

    #[test]
    fn env_overrides_file_and_bad_values_name_the_variable() {
        let c = load(
            "s.yaml",
            "listen: 127.0.0.1:9000\n",
            &[
                ("DCMON_LISTEN", "127.0.0.1:9100"),
                ("DCMON_LOG_FORMAT", "json"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.log.format, LogFormat::Json);
        let e = load("s.yaml", "", &[("DCMON_AGENTS_MAX_CLOCK_SKEW", "soon")]).unwrap_err();
        assert!(
            e.starts_with(
                "environment variable DCMON_AGENTS_MAX_CLOCK_SKEW: agents.max_clock_skew=\"soon\""
            ),
            "{e}"
        );
    }

    #[test]
    fn validation_reports_every_problem() {
        let e = load(
            "s.yaml",
            "public_url: http://x\ntls:\n  cert_file: /a.pem\nretention:\n  raw: 5m\n",
            &[],
        )
        .unwrap_err();
        // retention.raw 5m is too short, and shorter than the out-of-order window.
        assert_eq!(e.lines().count(), 4, "{e}");
        assert!(
            e.contains("public_url: \"http://x\" must start with https://"),
            "{e}"
        );
    }

    #[test]
    fn bmc_poll_settings_are_checked_each_by_name() {
        let c = load("s.yaml", "bmc_poll:\n  interval_override: 2s\n", &[]).unwrap();
        assert_eq!(c.bmc_poll.interval_override, Some(Duration::from_secs(2)));
        assert_eq!(c.bmc_poll.concurrency, 64);
        let e = load(
            "s.yaml",
            "bmc_poll:\n  concurrency: 0\n  timeout: 0s\n  attempts: 0\n  interval_override: 0s\n",
            &[],
        )
        .unwrap_err();
        for key in ["concurrency", "timeout", "attempts", "interval_override"] {
            assert!(
                e.contains(&format!("bmc_poll.{key}: must be between")),
                "{key}: {e}"
            );
        }
    }

    #[test]
    fn overrides_add_map_entries_and_lists_but_no_unknown_settings() {
        let set = |sets: &[&str]| {
            let overrides: Vec<Override> = sets
                .iter()
                .map(|s| {
                    let (path, value) = s.split_once('=').unwrap();
                    Override {
                        path: path.into(),
                        value: value.into(),
                        source: format!("--set {s}"),
                    }
                })
                .collect();
            ServerConfig::load(None, |_| None, &overrides).map_err(|e| e.to_string())
        };
        let c = set(&[
            "ui.thresholds.gpu_power=[100, 300, 600]",
            "auth.trusted_proxies=[10.0.0.0/8]",
        ])
        .unwrap();
        assert_eq!(c.ui.thresholds["gpu_power"], [100.0, 300.0, 600.0]);
        assert_eq!(c.auth.trusted_proxies, ["10.0.0.0/8"]);
        let e = set(&["agents.colour=blue"]).unwrap_err();
        assert!(
            e.contains("unknown setting \"agents.colour\"; valid keys here: approval"),
            "{e}"
        );
        let e = set(&["ui.thresholds.gpu_tmp=[1, 2, 3]"]).unwrap_err();
        assert!(
            e.contains("ui.thresholds.gpu_tmp: no such fleet column"),
            "{e}"
        );
        let e = set(&["auth.trusted_proxies=[banana]"]).unwrap_err();
        assert!(
            e.contains("auth.trusted_proxies[0]: \"banana\" is not an IP address"),
            "{e}"
        );
    }

    #[test]
    fn fleet_thresholds_name_a_column_and_ascend() {
        let c = load(
            "s.yaml",
            "ui:\n  thresholds:\n    gpu_power: [100, 300, 600]\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.ui.thresholds["gpu_power"], [100.0, 300.0, 600.0]);
        let e = load(
            "s.yaml",
            "ui:\n  refresh: 0s\n  thresholds:\n    cpu_temp: [90, 80, 70]\n    gpu_tmp: [1, 2, 3]\n",
            &[],
        )
        .unwrap_err();
        assert!(e.contains("ui.refresh: must be between"), "{e}");
        assert!(e.contains("ui.thresholds.cpu_temp: [90.0, 80.0, 70.0] must be three finite, strictly ascending"), "{e}");
        assert!(
            e.contains(
                "ui.thresholds.gpu_tmp: no such fleet column; columns are cpu_temp, cpu_pct"
            ),
            "{e}"
        );
    }

    #[test]
    fn auth_settings_are_checked_each_by_name() {
        let c = load(
            "s.yaml",
            "auth:\n  session_idle: 1h\n  trusted_proxies: [10.0.0.5, 192.168.0.0/16, 'fd00::/8']\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.auth.session_idle, Duration::from_secs(3600));
        assert_eq!(c.auth.lockout_failures, 5);
        let nets = c.auth.proxy_nets();
        assert_eq!(nets.len(), 3);
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(nets[0].contains(ip("10.0.0.5")));
        assert!(nets[0].contains(ip("::ffff:10.0.0.5")));
        assert!(!nets[0].contains(ip("10.0.0.6")));
        assert!(nets[1].contains(ip("192.168.44.1")));
        assert!(!nets[1].contains(ip("192.169.0.1")));
        assert!(nets[2].contains(ip("fd12::1")));
        assert!(!nets[2].contains(ip("fe80::1")));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        let e = load(
            "s.yaml",
            "auth:\n  session_idle: 10s\n  session_max: 5s\n  lockout_failures: 0\n  lockout_minutes: 0\n  login_attempts_per_minute: 0\n  trusted_proxies: [proxy.local, 10.0.0.0/33]\n",
            &[],
        )
        .unwrap_err();
        for key in [
            "auth.session_idle:",
            "auth.session_max:",
            "auth.lockout_failures:",
            "auth.lockout_minutes:",
            "auth.login_attempts_per_minute:",
            "auth.trusted_proxies[0]: \"proxy.local\" is not an IP address",
            "auth.trusted_proxies[1]: \"10.0.0.0/33\": prefix length must be 0 to 32",
        ] {
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn example_parses_back() {
        let text = example_yaml();
        assert_eq!(
            serde_norway::from_str::<ServerConfig>(&text).unwrap(),
            ServerConfig::default()
        );
    }
}
