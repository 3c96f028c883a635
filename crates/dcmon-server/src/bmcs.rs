//! The BMC inventory (DESIGN §5, §8): BMCs the server polls without an agent, with
//! their address, credentials (sealed by [`SecretBox`], never returned by a listing),
//! poll interval, vendor and poll state, in the control store's `bmcs` table.
//!
//! Written by the REST API and by `dcmon bmc ...` in another process alike. A running
//! server picks changes up at once: a poller compares [`ControlDb::data_version`] with
//! the value it last loaded at, and re-reads [`ControlDb::list_bmcs`] (one small query)
//! when it moved. The version moves on any commit to the control store, so a reload
//! can find nothing changed; it never misses a change.
//!
//! The password of BMC `id` is sealed for the purpose `bmc-password:<id>`, so a sealed
//! password copied into another row does not decrypt. Audit entries name the BMC,
//! address, user and interval, never the password.

use crate::control::{ControlDb, audit, now_ms, resolve_agent};
use crate::secrets::{Secret, SecretBox, SecretError};
use dcmon_ipmi::IpmiError;
use dcmon_ipmi::cmd::app::DeviceId;
use dcmon_ipmi::transport::lan::{LanConfig, LanSession, parse_target};
use dcmon_ipmi::vendor::Vendor;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::time::Duration;

/// How often a BMC is polled unless told otherwise (DESIGN §8: every 5 minutes).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
const MIN_INTERVAL: Duration = Duration::from_secs(10);
const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
/// IPMI user names are at most 16 bytes (IPMI 2.0 §22.28, Set User Name).
pub const MAX_USER_BYTES: usize = 16;
/// IPMI 2.0 passwords are at most 20 bytes (§22.30, Set User Password).
pub const MAX_PASSWORD_BYTES: usize = 20;
const MAX_NAME_BYTES: usize = 64;
/// Most import problems listed at once; the rest are counted.
const MAX_REPORTED_ERRORS: usize = 20;
const CSV_COLUMNS: &str = "name,address,user,password[,interval][,agent][,vendor]";

/// Why a BMC operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BmcError {
    /// The request is wrong (a bad field, an import with errors); the message says where.
    #[error("{0}")]
    Invalid(String),
    #[error("no BMC named {0:?}; see `dcmon bmc list`")]
    NotFound(String),
    #[error("a BMC named {0:?} exists already; remove it first or choose another name")]
    Exists(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(
        "BMC {name} ({target}) is unreachable: {error}; check the address, that UDP port {port} is open to this server, and that IPMI over LAN is enabled on the BMC"
    )]
    Unreachable {
        name: String,
        target: String,
        port: u16,
        error: Box<IpmiError>,
    },
    #[error(
        "BMC {name}: authentication failed for user {user:?}: {error}; fix the credentials with `dcmon bmc set {name} --user U --password-stdin`"
    )]
    AuthFailed {
        name: String,
        user: String,
        error: Box<IpmiError>,
    },
    #[error("BMC {name}: {error}")]
    Ipmi { name: String, error: Box<IpmiError> },
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl From<rusqlite::Error> for BmcError {
    fn from(e: rusqlite::Error) -> Self {
        BmcError::Store(e.into())
    }
}

/// A BMC as listings show it: everything but the password.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BmcRecord {
    pub id: i64,
    pub name: String,
    /// Host name or IP address (without the port).
    pub address: String,
    pub port: u16,
    pub username: String,
    pub interval_s: u32,
    /// Detected at first contact ([`vendor_key`] form); `None` before.
    pub vendor: Option<String>,
    /// Set by an administrator; wins over the detected vendor.
    pub vendor_override: Option<String>,
    /// The agent host this BMC belongs to, if linked.
    pub agent_id: Option<String>,
    pub agent_host: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub last_state: Option<String>,
    pub consecutive_failures: u32,
    pub last_poll_ms: Option<i64>,
}

impl BmcRecord {
    /// `host:port`, with brackets around an IPv6 address.
    pub fn target(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

/// A BMC to add, as the CLI, the REST API (JSON) and an import row give it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBmc {
    pub name: String,
    /// `HOST`, `HOST:PORT` or `[V6]:PORT`; the port defaults to 623.
    pub address: String,
    pub user: String,
    pub password: Secret,
    /// Poll interval (`"5m"`); default 5 minutes.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// The agent host whose machine this BMC is in (id, host label or hostname).
    #[serde(default)]
    pub agent: Option<String>,
    /// Vendor override: supermicro, dell or hpe (default: detected at first contact).
    #[serde(default)]
    pub vendor: Option<String>,
}

/// Changes to a BMC; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct BmcUpdate {
    pub interval: Option<Duration>,
    /// `Some(None)` unlinks the agent.
    pub agent: Option<Option<String>>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// `Some(None)` clears the override.
    pub vendor_override: Option<Option<String>>,
}

/// Where and how to log in to one BMC: for the poller and `dcmon bmc check` only.
#[derive(Debug)]
pub(crate) struct BmcTarget {
    pub id: i64,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: Secret,
}

impl BmcTarget {
    pub fn lan_config(&self, timeout: Duration) -> LanConfig {
        let mut c = LanConfig::new(
            self.host.clone(),
            self.username.clone(),
            self.password.expose().to_vec(),
        );
        c.port = self.port;
        c.timeout = timeout;
        c
    }
}

/// What `dcmon bmc check` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BmcCheck {
    pub name: String,
    pub target: String,
    /// [`vendor_key`] of the detected vendor.
    pub vendor: String,
    pub firmware: String,
    pub ipmi_version: String,
    pub device: DeviceId,
}

/// The stored form of a vendor: `supermicro`, `dell`, `hpe` or `other:<IANA number>`.
pub fn vendor_key(v: Vendor) -> String {
    match v {
        Vendor::Supermicro => "supermicro".into(),
        Vendor::Dell => "dell".into(),
        Vendor::Hpe => "hpe".into(),
        Vendor::Other(id) => format!("other:{id}"),
    }
}

/// Parses a vendor override as users type it.
pub fn parse_vendor(s: &str) -> Result<Vendor, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "supermicro" => Ok(Vendor::Supermicro),
        "dell" => Ok(Vendor::Dell),
        "hpe" | "hp" => Ok(Vendor::Hpe),
        other => Err(format!(
            "unknown vendor {other:?}; use supermicro, dell or hpe"
        )),
    }
}

/// A poll interval as written in an import file: `300` (seconds) or `5m`.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}; use e.g. 5m or 300"))
}

fn password_purpose(id: i64) -> String {
    format!("bmc-password:{id}")
}

/// A [`NewBmc`] that passed validation.
struct ValidBmc {
    name: String,
    host: String,
    port: u16,
    user: String,
    interval_s: u32,
    agent: Option<String>,
    vendor_override: Option<String>,
}

/// Every problem with `new` at once, each with the field it is about.
fn validate(new: &NewBmc) -> Result<ValidBmc, Vec<(&'static str, String)>> {
    let mut errors = Vec::new();
    if let Err(e) = check_name(&new.name) {
        errors.push(("name", e));
    }
    let target = check_address(&new.address);
    if let Err(e) = &target {
        errors.push(("address", e.clone()));
    }
    if let Err(e) = check_user(&new.user) {
        errors.push(("user", e));
    }
    if let Err(e) = check_password(&new.password) {
        errors.push(("password", e));
    }
    let interval = new.interval.unwrap_or(DEFAULT_INTERVAL);
    if let Err(e) = check_interval(interval) {
        errors.push(("interval", e));
    }
    let vendor = new.vendor.as_deref().map(parse_vendor).transpose();
    if let Err(e) = &vendor {
        errors.push(("vendor", e.clone()));
    }
    match (target, vendor) {
        (Ok((host, port)), Ok(vendor)) if errors.is_empty() => Ok(ValidBmc {
            name: new.name.clone(),
            host,
            port,
            user: new.user.clone(),
            interval_s: interval.as_secs() as u32,
            agent: new.agent.clone().filter(|a| !a.trim().is_empty()),
            vendor_override: vendor.map(vendor_key),
        }),
        _ => Err(errors),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a BMC name: use 1 to {MAX_NAME_BYTES} of A-Z a-z 0-9 . _ -"
        ))
    }
}

fn check_address(address: &str) -> Result<(String, u16), String> {
    let (host, port) = parse_target(address.trim())?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if !host_ok {
        return Err(format!(
            "{address:?} is not a host name or IP address (HOST, HOST:PORT or [V6]:PORT)"
        ));
    }
    if port == 0 {
        return Err(format!("{address:?}: port 0 is not a port"));
    }
    Ok((host, port))
}

fn check_user(user: &str) -> Result<(), String> {
    if user.len() > MAX_USER_BYTES {
        return Err(format!(
            "user name is {} bytes; IPMI allows at most {MAX_USER_BYTES}",
            user.len()
        ));
    }
    Ok(())
}

/// Says only the length: the message may end up in logs and API answers.
fn check_password(password: &Secret) -> Result<(), String> {
    if password.is_empty() {
        return Err("password is empty; set a password on the BMC".into());
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "password is {} bytes; IPMI 2.0 allows at most {MAX_PASSWORD_BYTES}",
            password.len()
        ));
    }
    Ok(())
}

fn check_interval(interval: Duration) -> Result<(), String> {
    if interval < MIN_INTERVAL || interval > MAX_INTERVAL {
        return Err(format!(
            "interval {} is out of range: {} to {}",
            humantime::format_duration(interval),
            humantime::format_duration(MIN_INTERVAL),
            humantime::format_duration(MAX_INTERVAL),
        ));
    }
    Ok(())
}

fn join_field_errors(errors: Vec<(&'static str, String)>) -> BmcError {
    BmcError::Invalid(
        errors
            .into_iter()
            .map(|(field, e)| format!("{field}: {e}"))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

const COLUMNS: &str = "b.id, b.name, b.address, b.port, b.username, b.interval_s, b.vendor, b.vendor_override, b.agent_id, a.host, b.created_ms, b.updated_ms, b.last_state, b.consecutive_failures, b.last_poll_ms";
const FROM: &str = "bmcs b LEFT JOIN agents a ON a.id = b.agent_id";

fn record_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BmcRecord> {
    Ok(BmcRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        address: r.get(2)?,
        port: r.get(3)?,
        username: r.get(4)?,
        interval_s: r.get(5)?,
        vendor: r.get(6)?,
        vendor_override: r.get(7)?,
        agent_id: r.get(8)?,
        agent_host: r.get(9)?,
        created_ms: r.get(10)?,
        updated_ms: r.get(11)?,
        last_state: r.get(12)?,
        consecutive_failures: r.get(13)?,
        last_poll_ms: r.get(14)?,
    })
}

fn get_by_id(conn: &Connection, id: i64) -> Result<Option<BmcRecord>, BmcError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE b.id = ?1"),
            params![id],
            record_row,
        )
        .optional()?)
}

/// The id of the BMC named `who` (a name, or a numeric id when no BMC has that name).
fn resolve(conn: &Connection, who: &str) -> Result<i64, BmcError> {
    let by_name: Option<i64> = conn
        .query_row("SELECT id FROM bmcs WHERE name = ?1", params![who], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(id) = by_name {
        return Ok(id);
    }
    if let Ok(id) = who.parse::<i64>() {
        let exists: Option<i64> = conn
            .query_row("SELECT id FROM bmcs WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(id) = exists {
            return Ok(id);
        }
    }
    Err(BmcError::NotFound(who.to_owned()))
}

fn link_agent(conn: &Connection, who: &str) -> Result<String, BmcError> {
    resolve_agent(conn, who).map_err(|e| BmcError::Invalid(format!("agent: {e:#}")))
}

/// Inserts a validated BMC; the password is sealed for the new row's id.
fn insert(
    conn: &Connection,
    secrets: &SecretBox,
    bmc: &ValidBmc,
    password: &Secret,
    actor: &str,
    remote: Option<&str>,
    source: &str,
) -> Result<i64, BmcError> {
    let taken: Option<i64> = conn
        .query_row(
            "SELECT id FROM bmcs WHERE name = ?1",
            params![bmc.name],
            |r| r.get(0),
        )
        .optional()?;
    if taken.is_some() {
        return Err(BmcError::Exists(bmc.name.clone()));
    }
    let agent_id = bmc
        .agent
        .as_deref()
        .map(|a| link_agent(conn, a))
        .transpose()?;
    let now = now_ms();
    conn.execute(
        "INSERT INTO bmcs (name, address, port, username, password, interval_s, vendor_override,
             agent_id, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, '', ?5, ?6, ?7, ?8, ?8)",
        params![
            bmc.name,
            bmc.host,
            bmc.port,
            bmc.user,
            bmc.interval_s,
            bmc.vendor_override,
            agent_id,
            now
        ],
    )?;
    let id = conn.last_insert_rowid();
    conn.execute(
        "UPDATE bmcs SET password = ?2 WHERE id = ?1",
        params![id, secrets.seal(&password_purpose(id), password.expose())],
    )?;
    let mut detail = format!(
        "address={}:{} user={} interval={}s",
        bmc.host, bmc.port, bmc.user, bmc.interval_s
    );
    if let Some(a) = &agent_id {
        detail += &format!(" agent={a}");
    }
    if let Some(v) = &bmc.vendor_override {
        detail += &format!(" vendor={v}");
    }
    if !source.is_empty() {
        detail += &format!(" source={source}");
    }
    audit(conn, actor, "bmc.add", &bmc.name, &detail, remote)?;
    Ok(id)
}

impl ControlDb {
    /// Adds a BMC after validating every field; audited without the password.
    pub fn add_bmc(
        &self,
        secrets: &SecretBox,
        new: &NewBmc,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<BmcRecord, BmcError> {
        let valid = validate(new).map_err(join_field_errors)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id = insert(&tx, secrets, &valid, &new.password, actor, remote, "")?;
        let record = get_by_id(&tx, id)?.ok_or_else(|| anyhow::anyhow!("BMC row just written"))?;
        tx.commit()?;
        Ok(record)
    }

    /// Every BMC, by name; never with a password.
    pub fn list_bmcs(&self) -> Result<Vec<BmcRecord>, BmcError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM {FROM} ORDER BY b.name"))?;
        let rows = stmt
            .query_map([], record_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The BMC named by name or id.
    pub fn bmc(&self, who: &str) -> Result<BmcRecord, BmcError> {
        let conn = self.conn();
        let id = resolve(&conn, who)?;
        get_by_id(&conn, id)?.ok_or_else(|| BmcError::NotFound(who.to_owned()))
    }

    /// Removes the BMC named by name or id; audited. Returns what was removed.
    pub fn remove_bmc(
        &self,
        who: &str,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<BmcRecord, BmcError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id = resolve(&tx, who)?;
        let record = get_by_id(&tx, id)?.ok_or_else(|| BmcError::NotFound(who.to_owned()))?;
        tx.execute("DELETE FROM bmcs WHERE id = ?1", params![id])?;
        audit(
            &tx,
            actor,
            "bmc.remove",
            &record.name,
            &format!("address={}", record.target()),
            remote,
        )?;
        tx.commit()?;
        Ok(record)
    }

    /// Changes interval, agent link, credentials or vendor override; audited (a new
    /// password as `password=changed`).
    pub fn update_bmc(
        &self,
        secrets: &SecretBox,
        who: &str,
        update: &BmcUpdate,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<BmcRecord, BmcError> {
        let mut errors = Vec::new();
        if let Some(i) = update.interval
            && let Err(e) = check_interval(i)
        {
            errors.push(("interval", e));
        }
        if let Some(u) = &update.user
            && let Err(e) = check_user(u)
        {
            errors.push(("user", e));
        }
        if let Some(p) = &update.password
            && let Err(e) = check_password(p)
        {
            errors.push(("password", e));
        }
        let vendor = match &update.vendor_override {
            Some(Some(v)) => match parse_vendor(v) {
                Ok(v) => Some(Some(vendor_key(v))),
                Err(e) => {
                    errors.push(("vendor", e));
                    None
                }
            },
            Some(None) => Some(None),
            None => None,
        };
        if !errors.is_empty() {
            return Err(join_field_errors(errors));
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id = resolve(&tx, who)?;
        let mut changes = Vec::new();
        if let Some(i) = update.interval {
            let secs = i.as_secs();
            tx.execute(
                "UPDATE bmcs SET interval_s = ?2 WHERE id = ?1",
                params![id, secs],
            )?;
            changes.push(format!("interval={secs}s"));
        }
        if let Some(agent) = &update.agent {
            let agent_id = agent.as_deref().map(|a| link_agent(&tx, a)).transpose()?;
            tx.execute(
                "UPDATE bmcs SET agent_id = ?2 WHERE id = ?1",
                params![id, agent_id],
            )?;
            changes.push(format!("agent={}", agent_id.as_deref().unwrap_or("none")));
        }
        if let Some(user) = &update.user {
            tx.execute(
                "UPDATE bmcs SET username = ?2 WHERE id = ?1",
                params![id, user],
            )?;
            changes.push(format!("user={user}"));
        }
        if let Some(password) = &update.password {
            tx.execute(
                "UPDATE bmcs SET password = ?2 WHERE id = ?1",
                params![id, secrets.seal(&password_purpose(id), password.expose())],
            )?;
            changes.push("password=changed".into());
        }
        if let Some(v) = &vendor {
            tx.execute(
                "UPDATE bmcs SET vendor_override = ?2 WHERE id = ?1",
                params![id, v],
            )?;
            changes.push(format!("vendor={}", v.as_deref().unwrap_or("detect")));
        }
        if changes.is_empty() {
            return Err(BmcError::Invalid("nothing to change".into()));
        }
        tx.execute(
            "UPDATE bmcs SET updated_ms = ?2 WHERE id = ?1",
            params![id, now_ms()],
        )?;
        let record = get_by_id(&tx, id)?.ok_or_else(|| BmcError::NotFound(who.to_owned()))?;
        audit(
            &tx,
            actor,
            "bmc.update",
            &record.name,
            &changes.join(" "),
            remote,
        )?;
        tx.commit()?;
        Ok(record)
    }

    /// Records the vendor found at first contact (the override, if any, still wins).
    pub fn set_bmc_vendor(&self, id: i64, vendor: Vendor) -> Result<(), BmcError> {
        self.conn().execute(
            "UPDATE bmcs SET vendor = ?2 WHERE id = ?1",
            params![id, vendor_key(vendor)],
        )?;
        Ok(())
    }

    /// Records the outcome of one poll: `state` is what the UI shows (`ok`, or why it
    /// failed); failures in a row feed the "BMC unreachable N polls" alert.
    pub fn record_bmc_poll(
        &self,
        id: i64,
        ok: bool,
        state: &str,
        at_ms: i64,
    ) -> Result<(), BmcError> {
        self.conn().execute(
            "UPDATE bmcs SET last_state = ?2, last_poll_ms = ?3,
                 consecutive_failures = CASE WHEN ?4 THEN 0 ELSE consecutive_failures + 1 END
             WHERE id = ?1",
            params![id, state, at_ms, ok],
        )?;
        Ok(())
    }

    /// Address and decrypted credentials of one BMC.
    pub(crate) fn bmc_target(&self, secrets: &SecretBox, who: &str) -> Result<BmcTarget, BmcError> {
        let conn = self.conn();
        let id = resolve(&conn, who)?;
        let (name, host, port, username, sealed): (String, String, u16, String, String) = conn
            .query_row(
                "SELECT name, address, port, username, password FROM bmcs WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
        let password = Secret::from(secrets.open_sealed(&password_purpose(id), &sealed)?);
        Ok(BmcTarget {
            id,
            name,
            host,
            port,
            username,
            password,
        })
    }

    /// Adds every BMC of a CSV file (`name,address,user,password[,interval][,agent]
    /// [,vendor]` with a header line naming the columns), or none: the first problem
    /// found does not stop the check, and the error lists each with its line and column.
    pub fn import_bmcs_csv(
        &self,
        secrets: &SecretBox,
        text: &str,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<Vec<BmcRecord>, BmcError> {
        let rows = parse_csv(text)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut errors = Vec::new();
        let mut ids = Vec::new();
        for row in &rows {
            match insert(
                &tx,
                secrets,
                &row.bmc,
                &row.password,
                actor,
                remote,
                &format!("import:{}", row.line),
            ) {
                Ok(id) => ids.push(id),
                Err(BmcError::Exists(name)) => errors.push(format!(
                    "line {}, column {} (name): a BMC named {name:?} exists already",
                    row.line, row.columns["name"]
                )),
                Err(BmcError::Invalid(e)) => errors.push(format!(
                    "line {}, column {} (agent): {}",
                    row.line,
                    row.columns.get("agent").copied().unwrap_or(0),
                    e.trim_start_matches("agent: ")
                )),
                Err(e) => return Err(e),
            }
        }
        if !errors.is_empty() {
            return Err(import_errors(errors));
        }
        audit(
            &tx,
            actor,
            "bmc.import",
            &format!("{} BMCs", ids.len()),
            "",
            remote,
        )?;
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            records
                .push(get_by_id(&tx, id)?.ok_or_else(|| anyhow::anyhow!("BMC row just written"))?);
        }
        tx.commit()?;
        Ok(records)
    }
}

/// One valid row of an import file.
struct CsvRow {
    line: u64,
    bmc: ValidBmc,
    password: Secret,
    /// Column name → 1-based column number, for messages.
    columns: HashMap<&'static str, usize>,
}

fn import_errors(mut errors: Vec<String>) -> BmcError {
    let more = errors.len().saturating_sub(MAX_REPORTED_ERRORS);
    errors.truncate(MAX_REPORTED_ERRORS);
    if more > 0 {
        errors.push(format!("... and {more} more"));
    }
    BmcError::Invalid(format!(
        "nothing imported; fix these and import again:\n  {}",
        errors.join("\n  ")
    ))
}

/// Parses and validates a whole import file, returning every problem at once.
fn parse_csv(text: &str) -> Result<Vec<CsvRow>, BmcError> {
    const KNOWN: [&str; 7] = [
        "name", "address", "user", "password", "interval", "agent", "vendor",
    ];
    // Spreadsheet exports often start with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| BmcError::Invalid(format!("line 1: {e}")))?
        .clone();
    let mut columns: HashMap<&'static str, usize> = HashMap::new();
    let mut errors = Vec::new();
    for (i, h) in header.iter().enumerate() {
        let h = h.trim().to_ascii_lowercase();
        match KNOWN.iter().find(|k| **k == h) {
            Some(k) if columns.contains_key(k) => errors.push(format!(
                "line 1, column {}: column {h:?} appears twice",
                i + 1
            )),
            Some(k) => {
                columns.insert(k, i);
            }
            None => errors.push(format!(
                "line 1, column {}: unknown column {h:?}; the header names {CSV_COLUMNS}",
                i + 1
            )),
        }
    }
    for required in ["name", "address", "user", "password"] {
        if !columns.contains_key(required) {
            errors.push(format!(
                "line 1: the header has no {required:?} column; it names {CSV_COLUMNS}"
            ));
        }
    }
    if !errors.is_empty() {
        return Err(import_errors(errors));
    }
    let numbers: HashMap<&'static str, usize> = columns.iter().map(|(k, i)| (*k, i + 1)).collect();
    let mut rows = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut lines = LineCounter::new(text);
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| lines.line_of(p));
                let reason = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!("{len} fields, but the header has {expected_len}"),
                    csv::ErrorKind::Utf8 { err, .. } => {
                        format!("field {} is not valid UTF-8", err.field() + 1)
                    }
                    _ => e.to_string(),
                };
                errors.push(format!("line {line}: {reason}"));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| lines.line_of(p));
        // Passwords are taken verbatim: spaces may belong to them.
        let cell = |k: &str| columns.get(k).and_then(|&i| record.get(i)).unwrap_or("");
        let text = |k: &str| Some(cell(k).trim()).filter(|s| !s.is_empty());
        let interval = match text("interval").map(parse_interval).transpose() {
            Ok(i) => i,
            Err(e) => {
                errors.push(format!(
                    "line {line}, column {} (interval): {e}",
                    numbers["interval"]
                ));
                continue;
            }
        };
        let new = NewBmc {
            name: cell("name").trim().to_owned(),
            address: cell("address").trim().to_owned(),
            user: cell("user").trim().to_owned(),
            password: Secret::new(cell("password").as_bytes()),
            interval,
            agent: text("agent").map(str::to_owned),
            vendor: text("vendor").map(str::to_owned),
        };
        match validate(&new) {
            Ok(bmc) => {
                if let Some(first) = seen.insert(bmc.name.clone(), line) {
                    errors.push(format!(
                        "line {line}, column {} (name): {:?} is also on line {first}",
                        numbers["name"], bmc.name
                    ));
                    continue;
                }
                rows.push(CsvRow {
                    line,
                    bmc,
                    password: new.password,
                    columns: numbers.clone(),
                });
            }
            Err(field_errors) => {
                for (field, e) in field_errors {
                    errors.push(format!(
                        "line {line}, column {} ({field}): {e}",
                        numbers.get(field).copied().unwrap_or(0)
                    ));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(import_errors(errors));
    }
    if rows.is_empty() {
        return Err(BmcError::Invalid(
            "the file has a header but no BMCs".into(),
        ));
    }
    Ok(rows)
}

/// Line numbers of records, for messages. The csv reader's position of a record is
/// where it began reading, before the blank lines it skipped; this finds the line the
/// record's text starts on, counting forward from the previous record.
struct LineCounter<'a> {
    text: &'a [u8],
    byte: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text: text.as_bytes(),
            byte: 0,
            line: 1,
        }
    }

    fn line_of(&mut self, pos: &csv::Position) -> u64 {
        let mut start = usize::try_from(pos.byte())
            .unwrap_or(usize::MAX)
            .min(self.text.len());
        while matches!(self.text.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        if start < self.byte {
            // Positions only move forward; start over rather than count backwards.
            self.byte = 0;
            self.line = 1;
        }
        let newlines = self.text[self.byte..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.line += newlines as u64;
        self.byte = start;
        self.line
    }
}

/// Logs in to the BMC named `who` with its stored credentials, runs Get Device ID and
/// records the vendor found. Blocking (the control store, and a runtime of its own for
/// the exchange): call it from a CLI or a blocking task.
pub fn check_bmc(
    db: &ControlDb,
    secrets: &SecretBox,
    who: &str,
    timeout: Duration,
) -> Result<BmcCheck, BmcError> {
    let target = db.bmc_target(secrets, who)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting an IO runtime: {e}"))?;
    let device = rt
        .block_on(device_id(&target, timeout))
        .map_err(|e| classify(&target, e))?;
    db.set_bmc_vendor(target.id, device.vendor())?;
    Ok(BmcCheck {
        name: target.name.clone(),
        target: format!("{}:{}", target.host, target.port),
        vendor: vendor_key(device.vendor()),
        firmware: device.firmware(),
        ipmi_version: device.ipmi_version_string(),
        device,
    })
}

async fn device_id(target: &BmcTarget, timeout: Duration) -> Result<DeviceId, IpmiError> {
    let session = LanSession::connect(target.lan_config(timeout)).await?;
    let result = dcmon_ipmi::client::device_id(&session).await;
    session.close().await;
    result
}

fn classify(target: &BmcTarget, e: IpmiError) -> BmcError {
    match e {
        IpmiError::Timeout { .. } | IpmiError::Io { .. } => BmcError::Unreachable {
            name: target.name.clone(),
            target: format!("{}:{}", target.host, target.port),
            port: target.port,
            error: Box::new(e),
        },
        IpmiError::Authentication { .. } => BmcError::AuthFailed {
            name: target.name.clone(),
            user: target.username.clone(),
            error: Box::new(e),
        },
        other => BmcError::Ipmi {
            name: target.name.clone(),
            error: Box::new(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcmon_ipmi::sim::{Fleet, SimConfig, Vendor as SimVendor};

    const PW: &str = "pw-SENTINEL-9";

    fn open() -> (tempfile::TempDir, ControlDb, SecretBox) {
        let dir = tempfile::tempdir().unwrap();
        let db = ControlDb::open(dir.path()).unwrap();
        let secrets = SecretBox::from_key(&[3; 32]);
        (dir, db, secrets)
    }

    fn new(name: &str, address: &str) -> NewBmc {
        NewBmc {
            name: name.into(),
            address: address.into(),
            user: "ADMIN".into(),
            password: Secret::new(PW),
            interval: None,
            agent: None,
            vendor: None,
        }
    }

    /// Adds a BMC with one field changed and returns the error, if any.
    fn add_err(db: &ControlDb, s: &SecretBox, edit: impl FnOnce(&mut NewBmc)) -> String {
        let mut n = new("x", "10.0.0.9");
        edit(&mut n);
        match db.add_bmc(s, &n, "test", None) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn add_list_update_remove_and_credentials() {
        let (_dir, db, s) = open();
        let r = db
            .add_bmc(&s, &new("gpu01-bmc", "10.0.0.5"), "alice", None)
            .unwrap();
        assert_eq!(
            (r.address.as_str(), r.port, r.interval_s),
            ("10.0.0.5", 623, 300)
        );
        assert_eq!(r.vendor, None);
        let mut n = new("gpu02-bmc", "[fd00::2]:1623");
        n.interval = Some(Duration::from_secs(60));
        n.vendor = Some("Dell".into());
        let r2 = db.add_bmc(&s, &n, "alice", None).unwrap();
        assert_eq!((r2.address.as_str(), r2.port), ("fd00::2", 1623));
        assert_eq!(r2.target(), "[fd00::2]:1623");
        assert_eq!(r2.vendor_override.as_deref(), Some("dell"));
        assert!(matches!(
            db.add_bmc(&s, &new("gpu01-bmc", "10.0.0.6"), "alice", None),
            Err(BmcError::Exists(_))
        ));
        let names: Vec<_> = db
            .list_bmcs()
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["gpu01-bmc", "gpu02-bmc"]);

        let t = db.bmc_target(&s, "gpu01-bmc").unwrap();
        assert_eq!(t.password.expose(), PW.as_bytes());
        assert!(!format!("{t:?}").contains(PW));
        let other_key = SecretBox::from_key(&[4; 32]);
        let e = db.bmc_target(&other_key, "gpu01-bmc").unwrap_err();
        assert!(e.to_string().contains("secret key changed"), "{e}");

        let up = BmcUpdate {
            interval: Some(Duration::from_secs(30)),
            user: Some("root".into()),
            password: Some(Secret::new("new-pw")),
            vendor_override: Some(Some("supermicro".into())),
            ..Default::default()
        };
        let r = db
            .update_bmc(&s, &r.id.to_string(), &up, "alice", None)
            .unwrap();
        assert_eq!((r.interval_s, r.username.as_str()), (30, "root"));
        assert_eq!(r.vendor_override.as_deref(), Some("supermicro"));
        assert_eq!(
            db.bmc_target(&s, "gpu01-bmc").unwrap().password.expose(),
            b"new-pw"
        );
        let e = db
            .update_bmc(&s, "gpu01-bmc", &BmcUpdate::default(), "alice", None)
            .unwrap_err();
        assert!(e.to_string().contains("nothing to change"));

        db.set_bmc_vendor(r.id, Vendor::Dell).unwrap();
        db.record_bmc_poll(r.id, false, "timeout", 5).unwrap();
        db.record_bmc_poll(r.id, false, "timeout", 6).unwrap();
        let b = db.bmc("gpu01-bmc").unwrap();
        assert_eq!(b.vendor.as_deref(), Some("dell"));
        assert_eq!((b.consecutive_failures, b.last_poll_ms), (2, Some(6)));
        db.record_bmc_poll(r.id, true, "ok", 7).unwrap();
        assert_eq!(db.bmc("gpu01-bmc").unwrap().consecutive_failures, 0);

        assert_eq!(db.remove_bmc("gpu01-bmc", "alice", None).unwrap().id, r.id);
        assert!(matches!(
            db.remove_bmc("gpu01-bmc", "alice", None),
            Err(BmcError::NotFound(_))
        ));
        assert_eq!(
            db.remove_bmc(&r2.id.to_string(), "alice", None)
                .unwrap()
                .name,
            "gpu02-bmc"
        );
        assert!(db.list_bmcs().unwrap().is_empty());

        let log = serde_json::to_string(&db.audit_tail(100).unwrap()).unwrap();
        assert!(
            log.contains("bmc.add") && log.contains("bmc.update") && log.contains("bmc.remove")
        );
        assert!(log.contains("password=changed"));
        assert!(!log.contains(PW) && !log.contains("new-pw"), "{log}");
        let raw = std::fs::read(db.path()).unwrap();
        let wal = std::fs::read(db.path().with_extension("sqlite-wal")).unwrap_or_default();
        for bytes in [raw, wal] {
            assert!(!String::from_utf8_lossy(&bytes).contains(PW));
        }
    }

    #[test]
    fn a_bmc_links_to_an_agent_host_and_unlinks() {
        let (_dir, db, s) = open();
        let token = db
            .create_enroll_token(1, Duration::from_secs(60), "t")
            .unwrap();
        let req = dcmon_wire::api::RegisterRequest {
            token: String::new(),
            public_key: "ed25519:x".into(),
            hostname: "gpu01".into(),
            machine_id: "m1".into(),
            agent_version: "0".into(),
        };
        let agent = db
            .register_agent(&token, &req, dcmon_wire::api::AgentStatus::Approved, None)
            .unwrap()
            .unwrap();
        let mut n = new("gpu01-bmc", "10.0.0.5");
        n.agent = Some("gpu01".into());
        let r = db.add_bmc(&s, &n, "t", None).unwrap();
        assert_eq!(r.agent_id.as_deref(), Some(agent.id.as_str()));
        assert_eq!(r.agent_host.as_deref(), Some("gpu01"));
        let unlink = BmcUpdate {
            agent: Some(None),
            ..Default::default()
        };
        let r = db.update_bmc(&s, "gpu01-bmc", &unlink, "t", None).unwrap();
        assert_eq!((r.agent_id, r.agent_host), (None, None));
    }

    #[test]
    fn invalid_fields_are_refused_with_the_field_named() {
        let (_dir, db, s) = open();
        for (edit, expect) in [
            (
                Box::new(|n: &mut NewBmc| n.name = "a b".into()) as Box<dyn FnOnce(&mut NewBmc)>,
                "name:",
            ),
            (Box::new(|n: &mut NewBmc| n.name = "x".repeat(65)), "name:"),
            (Box::new(|n: &mut NewBmc| n.address = "".into()), "address:"),
            (
                Box::new(|n: &mut NewBmc| n.address = "h:99999".into()),
                "not a port number",
            ),
            (
                Box::new(|n: &mut NewBmc| n.address = "h/x".into()),
                "not a host name",
            ),
            (
                Box::new(|n: &mut NewBmc| n.user = "u".repeat(17)),
                "at most 16",
            ),
            (
                Box::new(|n: &mut NewBmc| n.password = Secret::new("p".repeat(21))),
                "at most 20",
            ),
            (
                Box::new(|n: &mut NewBmc| n.password = Secret::new("")),
                "password is empty",
            ),
            (
                Box::new(|n: &mut NewBmc| n.interval = Some(Duration::from_secs(5))),
                "interval",
            ),
            (
                Box::new(|n: &mut NewBmc| n.interval = Some(Duration::from_secs(86_401))),
                "interval",
            ),
            (
                Box::new(|n: &mut NewBmc| n.vendor = Some("ibm".into())),
                "unknown vendor",
            ),
            (
                Box::new(|n: &mut NewBmc| n.agent = Some("nohost".into())),
                "no agent",
            ),
        ] {
            let e = add_err(&db, &s, edit);
            assert!(e.contains(expect), "{expect}: {e}");
            assert!(!e.contains(PW));
        }
        assert_eq!(add_err(&db, &s, |n| n.name = "ok.name_1-x".into()), "");
        assert!(
            add_err(&db, &s, |n| n.password = Secret::new("p".repeat(21))).contains("21 bytes")
        );
    }

    #[test]
    fn csv_import_adds_all_rows() {
        let (_dir, db, s) = open();
        let csv = "\u{feff}name,address,user,password,interval,agent\n\
                   \n\
                   r1-bmc,10.0.1.1,ADMIN,\"p,w\",5m,\n\
                   r2-bmc,10.0.1.2:624,root, spaced ,600,\n";
        let added = db.import_bmcs_csv(&s, csv, "alice", None).unwrap();
        assert_eq!(added.len(), 2);
        assert_eq!((added[0].interval_s, added[1].interval_s), (300, 600));
        assert_eq!(added[1].port, 624);
        assert_eq!(
            db.bmc_target(&s, "r1-bmc").unwrap().password.expose(),
            b"p,w"
        );
        assert_eq!(
            db.bmc_target(&s, "r2-bmc").unwrap().password.expose(),
            b" spaced "
        );
        let log = serde_json::to_string(&db.audit_tail(10).unwrap()).unwrap();
        assert!(
            log.contains("bmc.import") && log.contains("source=import:3"),
            "{log}"
        );
        assert!(!log.contains("p,w") && !log.contains("spaced"));
    }

    #[test]
    fn a_bad_csv_imports_nothing_and_names_line_and_column() {
        let (_dir, db, s) = open();
        db.add_bmc(&s, &new("taken", "10.0.0.1"), "alice", None)
            .unwrap();
        let check = |csv: &str, expect: &[&str]| {
            let e = db
                .import_bmcs_csv(&s, csv, "alice", None)
                .unwrap_err()
                .to_string();
            for x in expect {
                assert!(e.contains(x), "want {x:?} in: {e}");
            }
            assert!(!e.contains("SECRETPW"), "{e}");
            assert_eq!(db.list_bmcs().unwrap().len(), 1, "nothing imported: {e}");
        };
        let head = "name,address,user,password,interval\n";
        check(
            &format!("{head}good,10.0.0.2,u,SECRETPW,\nbad name,10.0.0.3,u,SECRETPW,1s\n"),
            &["line 3, column 1 (name)", "line 3, column 5 (interval)"],
        );
        check(
            &format!("{head}\r\n\ngood,10.0.0.2,u,SECRETPW,\r\n\nb,h:x,u,SECRETPW,\n"),
            &["line 6, column 2 (address)"],
        );
        check(
            &format!("{head}good,10.0.0.2,u,SECRETPW,\nb,h:x,u,SECRETPW,\n"),
            &["line 3, column 2 (address)", "nothing imported"],
        );
        check(
            &format!("{head}good,10.0.0.2,u,SECRETPW,\nb,h,u,SECRETPW,soon\n"),
            &["line 3, column 5 (interval)"],
        );
        check(
            &format!("{head}good,10.0.0.2,u,SECRETPW,\nb,h,u\n"),
            &["line 3: 3 fields, but the header has 5"],
        );
        check(
            &format!("{head}good,10.0.0.2,u,SECRETPW,\ngood,10.0.0.3,u,SECRETPW,\n"),
            &["line 3, column 1 (name): \"good\" is also on line 2"],
        );
        check(
            &format!("{head}good,10.0.0.2,u,SECRETPW,\ntaken,10.0.0.3,u,SECRETPW,\n"),
            &["line 3, column 1 (name): a BMC named \"taken\" exists already"],
        );
        check(
            "name,address,user,password,agent\nok,10.0.0.2,u,SECRETPW,ghost\n",
            &["line 2, column 5 (agent): no agent"],
        );
        check(
            "name,addr,user\n",
            &[
                "column 2: unknown column \"addr\"",
                "no \"password\" column",
            ],
        );
        check(head, &["no BMCs"]);
    }

    #[test]
    fn check_logs_in_records_the_vendor_and_tells_auth_from_unreachable() {
        let (_dir, db, s) = open();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let fleet = rt
            .block_on(Fleet::start(SimConfig::loopback(
                SimVendor::Supermicro,
                "admin",
                "s3cret",
            )))
            .unwrap();
        let addr = fleet.addrs()[0];
        let mut good = new("sim", &addr.to_string());
        good.user = "admin".into();
        good.password = Secret::new("s3cret");
        db.add_bmc(&s, &good, "t", None).unwrap();
        let found = check_bmc(&db, &s, "sim", Duration::from_secs(5)).unwrap();
        assert_eq!(found.vendor, "supermicro");
        assert_eq!(db.bmc("sim").unwrap().vendor.as_deref(), Some("supermicro"));

        let mut wrong = new("wrong", &addr.to_string());
        wrong.user = "admin".into();
        wrong.password = Secret::new("nope");
        db.add_bmc(&s, &wrong, "t", None).unwrap();
        let e = check_bmc(&db, &s, "wrong", Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, BmcError::AuthFailed { .. }), "{e}");
        assert!(!e.to_string().contains("nope"));

        // A port nobody listens on: refused or silent, either way unreachable.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        db.add_bmc(&s, &new("dead", &dead.to_string()), "t", None)
            .unwrap();
        let e = check_bmc(&db, &s, "dead", Duration::from_millis(600)).unwrap_err();
        assert!(matches!(e, BmcError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("unreachable"), "{e}");
        assert_eq!(db.bmc("dead").unwrap().vendor, None);
        rt.block_on(fleet.shutdown());
    }
}
