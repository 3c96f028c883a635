//! The control store (`data_dir/control.sqlite`): users, API tokens, enrollment tokens,
//! agents and the audit log. Admin commands open it directly, also while the server
//! runs (SQLite WAL allows it), and the server reads it on every request, so a revoked
//! agent or token is refused at once.
//!
//! Secrets are stored only as hashes: API and enrollment tokens as SHA-256 (they are
//! 192+ random bits, so a fast hash is enough), passwords as Argon2id.

use crate::auth::Role;
use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dcmon_wire::api::AgentStatus;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

const FILE_NAME: &str = "control.sqlite";
/// Prefix of API tokens, so that secret scanners and people recognise them.
pub const API_TOKEN_PREFIX: &str = "dcmon_at_";
/// Prefix of enrollment tokens.
pub const ENROLL_TOKEN_PREFIX: &str = "dcmon_et_";

const MIGRATIONS: &[&str] = &[
    // 1: first schema.
    "CREATE TABLE users (
         id INTEGER PRIMARY KEY,
         name TEXT NOT NULL UNIQUE,
         role TEXT NOT NULL,
         password_hash TEXT NOT NULL,
         created_ms INTEGER NOT NULL
     );
     CREATE TABLE api_tokens (
         id INTEGER PRIMARY KEY,
         name TEXT NOT NULL,
         role TEXT NOT NULL,
         token_hash TEXT NOT NULL UNIQUE,
         created_ms INTEGER NOT NULL,
         revoked INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE enroll_tokens (
         id INTEGER PRIMARY KEY,
         token_hash TEXT NOT NULL UNIQUE,
         uses_left INTEGER NOT NULL,
         expires_ms INTEGER NOT NULL,
         created_ms INTEGER NOT NULL,
         created_by TEXT NOT NULL
     );
     CREATE TABLE agents (
         id TEXT PRIMARY KEY,
         machine_id TEXT NOT NULL UNIQUE,
         hostname TEXT NOT NULL,
         host TEXT NOT NULL UNIQUE,
         public_key TEXT NOT NULL,
         status TEXT NOT NULL,
         agent_version TEXT NOT NULL,
         created_ms INTEGER NOT NULL,
         updated_ms INTEGER NOT NULL,
         last_seen_ms INTEGER,
         remote_addr TEXT
     );
     CREATE TABLE audit_log (
         id INTEGER PRIMARY KEY,
         ts_ms INTEGER NOT NULL,
         actor TEXT NOT NULL,
         action TEXT NOT NULL,
         target TEXT NOT NULL,
         detail TEXT NOT NULL,
         remote TEXT
     );",
    // 2: live commands for agents (see `commands`).
    "CREATE TABLE commands (
         id INTEGER PRIMARY KEY,
         agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
         kind TEXT NOT NULL,
         spec TEXT NOT NULL,
         status TEXT NOT NULL,
         created_ms INTEGER NOT NULL,
         created_by TEXT NOT NULL,
         expires_ms INTEGER NOT NULL,
         delivered_ms INTEGER,
         finished_ms INTEGER,
         message TEXT,
         output TEXT
     );
     CREATE INDEX commands_queued ON commands (agent_id) WHERE status = 'queued';
     CREATE INDEX commands_agent ON commands (agent_id, id);",
    // 3: the BMC inventory (see `bmcs`); `password` is sealed by `secrets::SecretBox`.
    "CREATE TABLE bmcs (
         id INTEGER PRIMARY KEY,
         name TEXT NOT NULL UNIQUE,
         address TEXT NOT NULL,
         port INTEGER NOT NULL,
         username TEXT NOT NULL,
         password TEXT NOT NULL,
         interval_s INTEGER NOT NULL DEFAULT 300,
         vendor TEXT,
         vendor_override TEXT,
         agent_id TEXT REFERENCES agents(id) ON DELETE SET NULL,
         created_ms INTEGER NOT NULL,
         updated_ms INTEGER NOT NULL,
         last_state TEXT,
         consecutive_failures INTEGER NOT NULL DEFAULT 0,
         last_poll_ms INTEGER
     );
     CREATE INDEX bmcs_agent ON bmcs (agent_id);",
    // 4: events (see `events`), and how far the BMC poller has read each BMC's SEL.
    "CREATE TABLE events (
         id INTEGER PRIMARY KEY,
         ts_ms INTEGER NOT NULL,
         source TEXT NOT NULL,
         host TEXT NOT NULL,
         bmc TEXT,
         kind TEXT NOT NULL,
         severity TEXT NOT NULL,
         message TEXT NOT NULL,
         detail TEXT NOT NULL,
         dedup_key TEXT NOT NULL UNIQUE
     );
     CREATE INDEX events_ts ON events (ts_ms);
     CREATE TABLE bmc_sel_state (
         bmc_id INTEGER PRIMARY KEY REFERENCES bmcs(id) ON DELETE CASCADE,
         last_record_id INTEGER,
         last_add INTEGER NOT NULL,
         last_erase INTEGER NOT NULL,
         updated_ms INTEGER NOT NULL
     );",
    // 5: fan curves of agentless BMCs (see `fan_curves`); `config` is a CurveConfig as JSON.
    "CREATE TABLE fan_curves (
         bmc_id INTEGER PRIMARY KEY REFERENCES bmcs(id) ON DELETE CASCADE,
         config TEXT NOT NULL,
         enabled INTEGER NOT NULL DEFAULT 1,
         updated_ms INTEGER NOT NULL,
         updated_by TEXT NOT NULL
     );",
    // 6: accounts (see `accounts`): sessions, lock-out, TOTP, recovery codes; token
    // owners and last use; the audit log becomes append-only and searchable.
    "CREATE TABLE sessions (
         id_hash TEXT PRIMARY KEY,
         user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
         csrf TEXT NOT NULL,
         created_ms INTEGER NOT NULL,
         last_seen_ms INTEGER NOT NULL,
         remote TEXT
     );
     CREATE INDEX sessions_user ON sessions (user_id);
     ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE users ADD COLUMN locked_until_ms INTEGER;
     ALTER TABLE users ADD COLUMN totp_secret TEXT;
     ALTER TABLE users ADD COLUMN totp_pending TEXT;
     ALTER TABLE users ADD COLUMN totp_last_step INTEGER;
     CREATE TABLE recovery_codes (
         user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
         code_hash TEXT NOT NULL,
         used_ms INTEGER,
         PRIMARY KEY (user_id, code_hash)
     );
     ALTER TABLE api_tokens ADD COLUMN owner TEXT;
     ALTER TABLE api_tokens ADD COLUMN last_used_ms INTEGER;
     CREATE INDEX audit_log_actor ON audit_log (actor, id);
     CREATE INDEX audit_log_action ON audit_log (action, id);
     CREATE INDEX audit_log_ts ON audit_log (ts_ms);
     CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
         BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
     CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
         BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;",
    // 7: alert rules, channels (secrets sealed), silences, alerts with history, and the
    // notification outbox (see `alerts`).
    "CREATE TABLE alert_rules (
         name TEXT PRIMARY KEY,
         spec TEXT NOT NULL,
         created_ms INTEGER NOT NULL,
         updated_ms INTEGER NOT NULL,
         updated_by TEXT NOT NULL
     );
     CREATE TABLE alert_channels (
         id INTEGER PRIMARY KEY,
         name TEXT NOT NULL UNIQUE,
         kind TEXT NOT NULL,
         config TEXT NOT NULL,
         secrets TEXT NOT NULL,
         created_ms INTEGER NOT NULL,
         updated_by TEXT NOT NULL
     );
     CREATE TABLE silences (
         id INTEGER PRIMARY KEY,
         matchers TEXT NOT NULL,
         starts_ms INTEGER NOT NULL,
         ends_ms INTEGER NOT NULL,
         author TEXT NOT NULL,
         comment TEXT NOT NULL,
         created_ms INTEGER NOT NULL
     );
     CREATE TABLE alerts (
         id INTEGER PRIMARY KEY,
         rule TEXT NOT NULL,
         fingerprint TEXT NOT NULL,
         labels TEXT NOT NULL,
         annotations TEXT NOT NULL,
         state TEXT NOT NULL,
         value REAL,
         active_since_ms INTEGER NOT NULL,
         fired_ms INTEGER,
         resolved_ms INTEGER,
         updated_ms INTEGER NOT NULL,
         acked_by TEXT,
         acked_ms INTEGER,
         notified_state TEXT,
         notified_ms INTEGER,
         channels TEXT NOT NULL
     );
     CREATE UNIQUE INDEX alerts_open ON alerts (rule, fingerprint) WHERE state != 'resolved';
     CREATE INDEX alerts_resolved ON alerts (resolved_ms);
     CREATE TABLE alert_history (
         id INTEGER PRIMARY KEY,
         alert_id INTEGER NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
         ts_ms INTEGER NOT NULL,
         state TEXT NOT NULL,
         value REAL
     );
     CREATE INDEX alert_history_alert ON alert_history (alert_id);
     CREATE TABLE notifications (
         id INTEGER PRIMARY KEY,
         channel TEXT NOT NULL,
         group_key TEXT NOT NULL,
         idempotency_key TEXT NOT NULL UNIQUE,
         status TEXT NOT NULL,
         message TEXT NOT NULL,
         created_ms INTEGER NOT NULL,
         attempts INTEGER NOT NULL DEFAULT 0,
         next_attempt_ms INTEGER NOT NULL,
         sent_ms INTEGER,
         last_error TEXT
     );
     CREATE INDEX notifications_queued ON notifications (next_attempt_ms) WHERE status = 'queued';
     CREATE INDEX notifications_group ON notifications (channel, group_key, created_ms);",
];

/// An agent as the server knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentRecord {
    pub id: String,
    pub machine_id: String,
    pub hostname: String,
    /// The `host` label of its samples (the hostname, made unique if two machines share one).
    pub host: String,
    pub public_key: String,
    pub status: AgentStatus,
    pub agent_version: String,
    pub created_ms: i64,
    pub last_seen_ms: Option<i64>,
    pub remote_addr: Option<String>,
}

/// An API token's identity (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRecord {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// Who created it: a user, or `cli:<login>` for `dcmon token create`; `None` for
    /// tokens made before owners were recorded.
    pub owner: Option<String>,
    pub created_ms: i64,
    /// Last request made with it (recorded at most once a minute).
    pub last_used_ms: Option<i64>,
    pub revoked: bool,
}

/// Why an enrollment was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnrollError {
    #[error("enrollment token is not known (mistyped, or issued by another server)")]
    Unknown,
    #[error("enrollment token expired; issue a new one with `dcmon enroll create`")]
    Expired,
    #[error("enrollment token has no uses left; issue a new one with `dcmon enroll create`")]
    UsedUp,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub ts_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    /// The client's address, when the action came over the network.
    pub remote: Option<String>,
}

/// Which audit entries to list: all given conditions hold. Newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exactly this actor.
    pub actor: Option<String>,
    /// This action, or (when it names a family such as `login`) every `login.*` action.
    pub action: Option<String>,
    /// Text found (any case) in the actor, action, target, detail or address.
    pub text: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Entries older than this id (keyset paging: pass the previous page's last id).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Most audit entries one page of `GET /api/audit` may hold.
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// Handle on the control database.
pub struct ControlDb {
    path: PathBuf,
    conn: Mutex<Connection>,
    tokens: Mutex<TokenCache>,
}

/// API-token lookups answered from memory while the file is unchanged. A second
/// connection of its own watches `PRAGMA data_version`, which moves whenever any other
/// connection (this server's, or a `dcmon token revoke` in another process) commits; then
/// the cache is dropped, so a revocation takes effect on the next request.
struct TokenCache {
    conn: Connection,
    version: i64,
    entries: std::collections::HashMap<String, Option<TokenRecord>>,
}

/// Cached lookups (valid and unknown tokens alike) before the cache starts over, so a
/// flood of random tokens cannot grow it without bound.
const TOKEN_CACHE_ENTRIES: usize = 1024;

/// Creates `dir` with mode 0700 when it does not exist (hashes, agent keys and the audit
/// log are nobody else's business); an existing directory keeps its mode.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating data dir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("restricting data dir {}", dir.display()))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system's random source is available");
    b
}

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

impl ControlDb {
    /// Opens (creating and migrating as needed) the control store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        create_private_dir(data_dir)?;
        let path = data_dir.join(FILE_NAME);
        let mut conn =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // IMMEDIATE takes the write lock before reading the version, so a server and an
        // admin command opening a new data dir at once do not both migrate it.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version as usize > MIGRATIONS.len() {
            bail!(
                "{} has schema version {version}, newer than this dcmon ({}); upgrade dcmon",
                path.display(),
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)
                .with_context(|| format!("migrating {} to version {}", path.display(), i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()?;
        let tokens = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {} for token checks", path.display()))?;
        tokens.busy_timeout(Duration::from_secs(10))?;
        Ok(Self {
            path,
            conn: Mutex::new(conn),
            tokens: Mutex::new(TokenCache {
                conn: tokens,
                version: -1,
                entries: std::collections::HashMap::new(),
            }),
        })
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // Transactions roll back on drop, so a poisoned guard still holds a sound connection.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves whenever another connection commits to the file (`PRAGMA data_version`
    /// of a connection of its own): how the server notices what admin commands wrote.
    pub fn data_version(&self) -> Result<i64> {
        let cache = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(cache
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    // ---- API tokens -------------------------------------------------------------

    /// Creates an API token and returns its secret (shown once, stored hashed). The
    /// actor owns it.
    pub fn create_api_token(&self, name: &str, role: Role, actor: &str) -> Result<String> {
        Ok(self.issue_api_token(name, role, actor, None)?.1)
    }

    /// Creates an API token owned by `owner`; returns its id and secret (shown once).
    pub fn issue_api_token(
        &self,
        name: &str,
        role: Role,
        owner: &str,
        remote: Option<&str>,
    ) -> Result<(i64, String)> {
        let token = format!(
            "{API_TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(random_bytes::<32>())
        );
        let conn = self.conn();
        conn.execute(
            "INSERT INTO api_tokens (name, role, token_hash, created_ms, owner) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, role.as_str(), hash_token(&token), now_ms(), owner],
        )?;
        let id = conn.last_insert_rowid();
        audit(
            &conn,
            owner,
            "api_token.create",
            &id.to_string(),
            &format!("name={name} role={}", role.as_str()),
            remote,
        )?;
        Ok((id, token))
    }

    /// One API token's identity, revoked or not.
    pub fn api_token(&self, id: i64) -> Result<Option<TokenRecord>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
                params![id],
                token_row,
            )
            .optional()?)
    }

    /// Records when API tokens were last used (batched by the server). A token's time
    /// is written at most once a minute, so busy scripts do not keep voiding the cache.
    pub fn touch_api_tokens(&self, uses: &[(i64, i64)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE api_tokens SET last_used_ms = ?2
                 WHERE id = ?1 AND (last_used_ms IS NULL OR last_used_ms <= ?2 - 60000)",
            )?;
            for (id, ts) in uses {
                stmt.execute(params![id, ts])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The unrevoked API token `token`, if any. Microseconds when cached (see
    /// [`TokenCache`]): cheap enough to call on the async runtime.
    pub fn lookup_api_token(&self, token: &str) -> Result<Option<TokenRecord>> {
        if !token.starts_with(API_TOKEN_PREFIX) {
            return Ok(None);
        }
        let hash = hash_token(token);
        let mut cache = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let version: i64 = cache
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if version != cache.version || cache.entries.len() >= TOKEN_CACHE_ENTRIES {
            cache.entries.clear();
            cache.version = version;
        }
        if let Some(hit) = cache.entries.get(&hash) {
            return Ok(hit.clone());
        }
        let row = cache
            .conn
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?1 AND revoked = 0"
            ))?
            .query_row(params![hash], token_row)
            .optional()?;
        cache.entries.insert(hash, row.clone());
        Ok(row)
    }

    pub fn list_api_tokens(&self) -> Result<Vec<TokenRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id"
        ))?;
        let rows = stmt
            .query_map([], token_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn revoke_api_token(&self, id: i64, actor: &str) -> Result<bool> {
        self.revoke_api_token_from(id, actor, None)
    }

    /// Revokes an API token; false when there is no active token with that id.
    pub fn revoke_api_token_from(
        &self,
        id: i64,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<bool> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE api_tokens SET revoked = 1 WHERE id = ?1 AND revoked = 0",
            params![id],
        )?;
        if n > 0 {
            audit(
                &conn,
                actor,
                "api_token.revoke",
                &id.to_string(),
                "",
                remote,
            )?;
        }
        Ok(n > 0)
    }

    // ---- enrollment tokens ------------------------------------------------------

    /// Creates an enrollment token good for `uses` registrations within `ttl`.
    pub fn create_enroll_token(&self, uses: u32, ttl: Duration, actor: &str) -> Result<String> {
        Ok(self.create_enroll_token_from(uses, ttl, actor, None)?.0)
    }

    /// [`ControlDb::create_enroll_token`] for a client at `remote`; also returns the
    /// expiry time.
    pub fn create_enroll_token_from(
        &self,
        uses: u32,
        ttl: Duration,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<(String, i64)> {
        if uses == 0 {
            bail!("--uses must be at least 1");
        }
        let token = format!(
            "{ENROLL_TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(random_bytes::<24>())
        );
        let now = now_ms();
        let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let conn = self.conn();
        conn.execute(
            "INSERT INTO enroll_tokens (token_hash, uses_left, expires_ms, created_ms, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![hash_token(&token), uses, expires, now, actor],
        )?;
        audit(
            &conn,
            actor,
            "enroll_token.create",
            &token[..ENROLL_TOKEN_PREFIX.len() + 4],
            &format!("uses={uses} ttl={}", humantime::format_duration(ttl)),
            remote,
        )?;
        Ok((token, expires))
    }

    // ---- agents -----------------------------------------------------------------

    /// Registers (or re-registers) an agent with a valid enrollment token, atomically
    /// spending one use of the token. The same machine keeps its id and `host` label,
    /// so its history continues.
    pub fn register_agent(
        &self,
        token: &str,
        req: &dcmon_wire::api::RegisterRequest,
        initial: AgentStatus,
        remote: Option<&str>,
    ) -> Result<Result<AgentRecord, EnrollError>> {
        let now = now_ms();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let tok: Option<(i64, i64, i64)> = tx
            .query_row(
                "SELECT id, uses_left, expires_ms FROM enroll_tokens WHERE token_hash = ?1",
                params![hash_token(token)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((tok_id, uses_left, expires_ms)) = tok else {
            return Ok(Err(EnrollError::Unknown));
        };
        if expires_ms <= now {
            return Ok(Err(EnrollError::Expired));
        }
        if uses_left <= 0 {
            return Ok(Err(EnrollError::UsedUp));
        }
        tx.execute(
            "UPDATE enroll_tokens SET uses_left = uses_left - 1 WHERE id = ?1",
            params![tok_id],
        )?;
        let existing: Option<(String, String)> = tx
            .query_row(
                "SELECT id, host FROM agents WHERE machine_id = ?1",
                params![req.machine_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (id, action) = match existing {
            Some((id, _host)) => {
                tx.execute(
                    "UPDATE agents SET hostname = ?2, public_key = ?3, status = ?4, agent_version = ?5,
                         updated_ms = ?6, remote_addr = ?7 WHERE id = ?1",
                    params![id, req.hostname, req.public_key, initial.as_str(), req.agent_version, now, remote],
                )?;
                (id, "agent.reregister")
            }
            None => {
                let id = hex::encode(random_bytes::<8>());
                let host = unique_host(&tx, &req.hostname, &req.machine_id)?;
                tx.execute(
                    "INSERT INTO agents (id, machine_id, hostname, host, public_key, status, agent_version,
                         created_ms, updated_ms, remote_addr) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
                    params![id, req.machine_id, req.hostname, host, req.public_key, initial.as_str(), req.agent_version, now, remote],
                )?;
                (id, "agent.register")
            }
        };
        audit(
            &tx,
            "enrollment",
            action,
            &id,
            &format!("hostname={} status={}", req.hostname, initial.as_str()),
            remote,
        )?;
        let record = get_agent(&tx, &id)?.context("agent row just written")?;
        tx.commit()?;
        Ok(Ok(record))
    }

    pub fn agent(&self, id: &str) -> Result<Option<AgentRecord>> {
        get_agent(&self.conn(), id)
    }

    pub fn list_agents(&self) -> Result<Vec<AgentRecord>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare(&format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY host"))?;
        let rows = stmt
            .query_map([], agent_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Sets the status of the agent named by id, host or hostname. Returns the agent.
    pub fn set_agent_status(
        &self,
        who: &str,
        status: AgentStatus,
        actor: &str,
    ) -> Result<AgentRecord> {
        self.set_agent_status_from(who, status, actor, None)
    }

    /// [`ControlDb::set_agent_status`] for a client at `remote`.
    pub fn set_agent_status_from(
        &self,
        who: &str,
        status: AgentStatus,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<AgentRecord> {
        let conn = self.conn();
        let id = resolve_agent(&conn, who)?;
        conn.execute(
            "UPDATE agents SET status = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, status.as_str(), now_ms()],
        )?;
        audit(
            &conn,
            actor,
            &format!("agent.{}", status_verb(status)),
            &id,
            "",
            remote,
        )?;
        get_agent(&conn, &id)?.context("agent row exists")
    }

    /// Records when agents were last heard from (batched by the server).
    pub fn touch_agents(&self, seen: &[(String, i64, String)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE agents SET last_seen_ms = ?2, remote_addr = ?3 WHERE id = ?1",
            )?;
            for (id, ts, remote) in seen {
                stmt.execute(params![id, ts, remote])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    // ---- users ------------------------------------------------------------------

    /// Creates user `name` with a random password when no user exists yet; returns the
    /// password (shown once) or `None` when users already exist.
    pub fn ensure_first_admin(&self, name: &str) -> Result<Option<String>> {
        let conn = self.conn();
        let count: i64 = conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
        if count > 0 {
            return Ok(None);
        }
        let password = URL_SAFE_NO_PAD.encode(random_bytes::<15>());
        let hash = crate::accounts::hash_password(&password)?;
        conn.execute(
            "INSERT INTO users (name, role, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![name, Role::Admin.as_str(), hash, now_ms()],
        )?;
        audit(&conn, "quickstart", "user.create", name, "role=admin", None)?;
        Ok(Some(password))
    }

    /// Appends an audit entry.
    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
        remote: Option<&str>,
    ) -> Result<()> {
        audit(&self.conn(), actor, action, target, detail, remote)
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit_tail(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        self.audit_search(&AuditFilter {
            limit,
            ..AuditFilter::default()
        })
    }

    /// Audit entries matching `f`, newest first, at most `f.limit` (the API allows
    /// [`MAX_AUDIT_PAGE`] a page; the CLI any number).
    pub fn audit_search(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, ts_ms, actor, action, target, detail, remote FROM audit_log
             WHERE (?1 IS NULL OR actor = ?1)
               AND (?2 IS NULL OR action = ?2 OR substr(action, 1, length(?2) + 1) = ?2 || '.')
               AND (?3 IS NULL OR instr(lower(actor || ' ' || action || ' ' || target || ' ' || detail || ' ' || COALESCE(remote, '')), lower(?3)) > 0)
               AND (?4 IS NULL OR ts_ms >= ?4)
               AND (?5 IS NULL OR ts_ms < ?5)
               AND (?6 IS NULL OR id < ?6)
             ORDER BY id DESC LIMIT ?7",
        )?;
        let rows = stmt
            .query_map(
                params![
                    f.actor,
                    f.action,
                    f.text,
                    f.since_ms,
                    f.until_ms,
                    f.before_id,
                    f.limit
                ],
                |r| {
                    Ok(AuditEntry {
                        id: r.get(0)?,
                        ts_ms: r.get(1)?,
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        target: r.get(4)?,
                        detail: r.get(5)?,
                        remote: r.get(6)?,
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

/// The id of the agent named by id, host label or hostname.
pub(crate) fn resolve_agent(conn: &Connection, who: &str) -> Result<String> {
    // An id or host label names one agent; a bare hostname may name several.
    let mut matches: Vec<String> = Vec::new();
    for column in ["id", "host", "hostname"] {
        let mut stmt = conn.prepare(&format!("SELECT id FROM agents WHERE {column} = ?1"))?;
        matches = stmt
            .query_map(params![who], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if !matches.is_empty() {
            break;
        }
    }
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no agent with id or host {who:?}; see `dcmon agents list`"),
        _ => bail!(
            "{who:?} names {} agents; use the agent id from `dcmon agents list`",
            matches.len()
        ),
    }
}

fn status_verb(s: AgentStatus) -> &'static str {
    match s {
        AgentStatus::Approved => "approve",
        AgentStatus::Pending => "suspend",
        AgentStatus::Revoked => "revoke",
    }
}

pub(crate) fn audit(
    conn: &Connection,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
    remote: Option<&str>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO audit_log (ts_ms, actor, action, target, detail, remote) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![now_ms(), actor, action, target, detail, remote],
    )?;
    Ok(())
}

const AGENT_COLUMNS: &str = "id, machine_id, hostname, host, public_key, status, agent_version, created_ms, last_seen_ms, remote_addr";

fn agent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRecord> {
    let status: String = r.get(5)?;
    Ok(AgentRecord {
        id: r.get(0)?,
        machine_id: r.get(1)?,
        hostname: r.get(2)?,
        host: r.get(3)?,
        public_key: r.get(4)?,
        // An unreadable status refuses the agent rather than admitting it.
        status: AgentStatus::parse(&status).unwrap_or(AgentStatus::Revoked),
        agent_version: r.get(6)?,
        created_ms: r.get(7)?,
        last_seen_ms: r.get(8)?,
        remote_addr: r.get(9)?,
    })
}

pub(crate) fn get_agent(conn: &Connection, id: &str) -> Result<Option<AgentRecord>> {
    Ok(conn
        .query_row(
            &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"),
            params![id],
            agent_row,
        )
        .optional()?)
}

const TOKEN_COLUMNS: &str = "id, name, role, owner, created_ms, last_used_ms, revoked";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    let role: String = r.get(2)?;
    Ok(TokenRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        // An unreadable role grants the least.
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        owner: r.get(3)?,
        created_ms: r.get(4)?,
        last_used_ms: r.get(5)?,
        revoked: r.get::<_, i64>(6)? != 0,
    })
}

/// The hostname, or `hostname-<machine id prefix>` when another machine already has it.
fn unique_host(conn: &Connection, hostname: &str, machine_id: &str) -> Result<String> {
    let taken = |h: &str| -> Result<bool> {
        Ok(conn.query_row(
            "SELECT COUNT(*) FROM agents WHERE host = ?1",
            params![h],
            |r| r.get::<_, i64>(0),
        )? > 0)
    };
    if !taken(hostname)? {
        return Ok(hostname.to_owned());
    }
    let suffix: String = machine_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect();
    let candidate = format!("{hostname}-{suffix}");
    if !taken(&candidate)? {
        return Ok(candidate);
    }
    Ok(format!("{hostname}-{}", hex::encode(random_bytes::<4>())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcmon_wire::api::RegisterRequest;

    fn req(machine: &str, host: &str) -> RegisterRequest {
        RegisterRequest {
            token: String::new(),
            public_key: "ed25519:x".into(),
            hostname: host.into(),
            machine_id: machine.into(),
            agent_version: "0".into(),
        }
    }

    #[test]
    fn enrollment_tokens_spend_uses_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let db = ControlDb::open(dir.path()).unwrap();
        let t = db
            .create_enroll_token(2, Duration::from_secs(60), "admin")
            .unwrap();
        let a = db
            .register_agent(&t, &req("m1", "gpu1"), AgentStatus::Approved, None)
            .unwrap()
            .unwrap();
        // The same machine again keeps its id and host label.
        let again = db
            .register_agent(&t, &req("m1", "gpu1"), AgentStatus::Approved, None)
            .unwrap()
            .unwrap();
        assert_eq!(a.id, again.id);
        assert_eq!(
            db.register_agent(&t, &req("m2", "gpu1"), AgentStatus::Approved, None)
                .unwrap(),
            Err(EnrollError::UsedUp)
        );
        let t2 = db
            .create_enroll_token(1, Duration::from_secs(60), "admin")
            .unwrap();
        let b = db
            .register_agent(&t2, &req("m2", "gpu1"), AgentStatus::Pending, None)
            .unwrap()
            .unwrap();
        assert_eq!(b.host, "gpu1-m2");
        assert_eq!(b.status, AgentStatus::Pending);
        assert_eq!(
            db.register_agent(
                "dcmon_et_nope",
                &req("m3", "x"),
                AgentStatus::Approved,
                None
            )
            .unwrap(),
            Err(EnrollError::Unknown)
        );
        let t3 = db
            .create_enroll_token(1, Duration::from_millis(0), "admin")
            .unwrap();
        assert_eq!(
            db.register_agent(&t3, &req("m3", "x"), AgentStatus::Approved, None)
                .unwrap(),
            Err(EnrollError::Expired)
        );
        assert_eq!(
            db.set_agent_status("gpu1", AgentStatus::Revoked, "admin")
                .unwrap()
                .status,
            AgentStatus::Revoked
        );
        assert!(
            db.set_agent_status("nobody", AgentStatus::Revoked, "admin")
                .is_err()
        );
    }

    #[test]
    fn api_tokens_are_hashed_and_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let db = ControlDb::open(dir.path()).unwrap();
        let t = db
            .create_api_token("grafana", Role::Viewer, "admin")
            .unwrap();
        let rec = db.lookup_api_token(&t).unwrap().unwrap();
        assert_eq!(rec.role, Role::Viewer);
        let raw = std::fs::read(db.path()).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&raw).contains(&t));
        assert!(db.revoke_api_token(rec.id, "admin").unwrap());
        assert_eq!(db.lookup_api_token(&t).unwrap(), None);
        assert_eq!(
            db.ensure_first_admin("admin").unwrap().map(|p| p.len()),
            Some(20)
        );
        assert_eq!(db.ensure_first_admin("admin").unwrap(), None);
    }

    /// Token checks are cached, but a revocation by another process (a second handle on
    /// the same file, as `dcmon token revoke` is) takes effect on the next lookup.
    #[test]
    fn cached_tokens_see_revocations_from_other_processes() {
        let dir = tempfile::tempdir().unwrap();
        let server = ControlDb::open(dir.path()).unwrap();
        let t = server
            .create_api_token("ci", Role::Operator, "admin")
            .unwrap();
        let id = server.lookup_api_token(&t).unwrap().unwrap().id;
        assert!(server.lookup_api_token(&t).unwrap().is_some(), "cached hit");
        assert_eq!(server.lookup_api_token("dcmon_at_unknown").unwrap(), None);
        let cli = ControlDb::open(dir.path()).unwrap();
        assert!(cli.revoke_api_token(id, "admin").unwrap());
        assert_eq!(server.lookup_api_token(&t).unwrap(), None);
        // A token created by the other handle is seen at once.
        let t2 = cli.create_api_token("new", Role::Viewer, "admin").unwrap();
        assert!(server.lookup_api_token(&t2).unwrap().is_some());
    }

    /// The audit log cannot be edited or trimmed, not even through the server's own
    /// connection: triggers refuse every UPDATE and DELETE.
    #[test]
    fn the_audit_log_is_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = ControlDb::open(dir.path()).unwrap();
        db.audit(
            "ann",
            "login.failed",
            "ann",
            "wrong password",
            Some("192.0.2.1"),
        )
        .unwrap();
        let conn = db.conn();
        for sql in [
            "UPDATE audit_log SET detail = 'nothing happened'",
            "DELETE FROM audit_log",
        ] {
            let e = conn.execute(sql, []).unwrap_err();
            assert!(
                e.to_string().contains("audit_log is append-only"),
                "{sql}: {e}"
            );
        }
        drop(conn);
        let tail = db.audit_tail(10).unwrap();
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].detail, "wrong password");
        assert_eq!(tail[0].remote.as_deref(), Some("192.0.2.1"));
    }
}
