//! User accounts in the control store: Argon2id passwords, sign-in with lock-out and an
//! optional TOTP second factor, server-side sessions, user administration.
//!
//! A session id is 256 random bits, handed to the browser once in the session cookie;
//! the store keeps only its SHA-256, so a copy of `control.sqlite` signs nobody in. Each
//! session has its own random CSRF token, which pages send back in `X-CSRF-Token`.
//! TOTP secrets are sealed with the installation key (`secrets`, purpose
//! `totp-secret:<user>`); recovery codes are stored as SHA-256 (80 random bits each).
//! Every function takes the time as an argument: the server passes its `Clock`, tests
//! move it.

use crate::auth::Role;
use crate::control::{ControlDb, audit, random_bytes};
use crate::secrets::{SecretBox, SecretError};
use crate::totp;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password accepted (Argon2 hashes any length; this bounds the work per request).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Why an account operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The request is wrong; the message names the field and the rule.
    #[error("{0}")]
    Invalid(String),
    #[error("no user named {0:?}; see `dcmon user list`")]
    NotFound(String),
    #[error(
        "a user named {0:?} exists already; change it with `dcmon user passwd` or PUT /api/users/{0}"
    )]
    Exists(String),
    #[error("{0:?} is the last admin; make another user admin first")]
    LastAdmin(String),
    #[error("the current password is wrong")]
    WrongPassword,
    #[error(
        "the code is wrong or was already used; enter the current code from the authenticator app"
    )]
    WrongCode,
    #[error("no TOTP enrolment is pending; start one with POST /api/me/totp")]
    NoPendingTotp,
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl From<rusqlite::Error> for AccountError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

type Result<T, E = AccountError> = std::result::Result<T, E>;

/// Hashes a password with Argon2id (the crate's defaults: 19 MiB, 2 passes) and a random salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt =
        SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
        .to_string())
}

/// Whether `password` matches the stored hash; an unreadable hash matches nothing.
fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash of a random password, verified against for unknown users so that a wrong
/// user name costs as long as a wrong password and timing does not tell which names exist.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        hash_password(&URL_SAFE_NO_PAD.encode(random_bytes::<16>()))
            .unwrap_or_else(|_| "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$AAAA".into())
    })
}

/// Refuses passwords too short or too long, naming the limit.
pub fn check_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(AccountError::Invalid(format!(
            "password: must be at least {MIN_PASSWORD_LEN} characters (got {n})"
        )));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AccountError::Invalid(format!(
            "password: must be at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(())
}

/// Refuses user names that could be confused with other actors in the audit log
/// (`cli:...`, `token:...`) or break a URL path.
pub fn check_user_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return Err(AccountError::Invalid(format!(
            "user name {name:?}: must be 1 to 64 characters of letters, digits, '.', '_', '-', '@'"
        )));
    }
    Ok(())
}

/// A random password for `dcmon user add --generate`: 120 bits, 20 characters.
pub fn generate_password() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<15>())
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The purpose a user's TOTP secret is sealed for: a sealed secret copied to another
/// user's row does not open.
fn totp_purpose(user: &str) -> String {
    format!("totp-secret:{user}")
}

/// A user as listed (never the password hash or TOTP secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    pub created_ms: i64,
    pub totp_enabled: bool,
    /// Set while the user is locked out (in the past once the lock-out is over).
    pub locked_until_ms: Option<i64>,
}

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// A session unused for this long is over.
    pub idle_ms: i64,
    /// A session this old is over, however busy.
    pub max_ms: i64,
}

impl SessionPolicy {
    pub fn from_config(c: &crate::config::AuthConfig) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self {
            idle_ms: ms(c.session_idle),
            max_ms: ms(c.session_max),
        }
    }

    /// Last-seen times are written at most this often per session: a busy page does
    /// not write the store on every request, and idle expiry is off by at most this much.
    fn touch_every_ms(&self) -> i64 {
        (self.idle_ms / 2).min(60_000)
    }
}

/// When sign-in failures lock a user out.
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    /// Consecutive failures that lock the user.
    pub failures: u32,
    /// How long the lock lasts.
    pub lock_ms: i64,
}

impl LockoutPolicy {
    pub fn from_config(c: &crate::config::AuthConfig) -> Self {
        Self {
            failures: c.lockout_failures,
            lock_ms: i64::from(c.lockout_minutes) * 60_000,
        }
    }
}

/// A new session: the cookie value (shown to the browser once) and its CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub csrf: String,
    pub user: String,
    pub role: Role,
}

/// The user behind a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub name: String,
    pub role: Role,
    pub csrf: String,
}

/// A sign-in attempt as the user typed it.
#[derive(Debug, Clone, Copy)]
pub struct LoginAttempt<'a> {
    pub user: &'a str,
    pub password: &'a str,
    /// The authenticator's current code, for users with TOTP.
    pub totp: Option<&'a str>,
    /// A recovery code instead of the TOTP code (each works once).
    pub recovery_code: Option<&'a str>,
    pub remote: Option<&'a str>,
}

/// How a sign-in ended. Unknown user and wrong password are the same outcome.
#[derive(Debug)]
pub enum LoginOutcome {
    Success(NewSession),
    BadCredentials,
    /// The password is right, but the user has TOTP and no valid code came with it.
    TotpRequired,
    /// Locked out until then (also the answer to the failure that caused it).
    Locked {
        until_ms: i64,
    },
}

/// TOTP enrolment material, shown to the user once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TotpEnrolment {
    /// Base32, for typing into an authenticator app.
    pub secret: String,
    pub otpauth_url: String,
    /// The URL as a QR code.
    pub qr_svg: String,
}

/// Changes an admin makes to a user; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub role: Option<Role>,
    pub password: Option<String>,
    /// Ends a lock-out now.
    pub unlock: bool,
}

/// Audit targets are user input on failed sign-ins: bounded so a long name cannot bloat the log.
fn bounded(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The user's row id and role; `NotFound` when there is none.
fn user_id_role(conn: &Connection, name: &str) -> Result<(i64, Role)> {
    conn.query_row(
        "SELECT id, role FROM users WHERE name = ?1",
        params![name],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
    )
    .optional()?
    .map(|(id, role)| (id, Role::parse(&role).unwrap_or(Role::Viewer)))
    .ok_or_else(|| AccountError::NotFound(name.to_owned()))
}

/// Refuses when `name` is an admin and no other admin exists.
fn ensure_not_last_admin(conn: &Connection, name: &str) -> Result<()> {
    let others: i64 = conn.query_row(
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND name != ?1",
        params![name],
        |r| r.get(0),
    )?;
    if others == 0 {
        return Err(AccountError::LastAdmin(name.to_owned()));
    }
    Ok(())
}

/// Revokes `owner`'s API tokens whose role is above `max` (`None`: all of them), so a
/// demoted or removed user keeps no more power through a token than through sign-in.
fn revoke_tokens_above(
    conn: &Connection,
    owner: &str,
    max: Option<Role>,
    actor: &str,
    remote: Option<&str>,
) -> Result<()> {
    let mut stmt =
        conn.prepare("SELECT id, role FROM api_tokens WHERE owner = ?1 AND revoked = 0")?;
    let tokens: Vec<(i64, String)> = stmt
        .query_map(params![owner], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, role) in tokens {
        let role = Role::parse(&role).unwrap_or(Role::Admin);
        if max.is_none_or(|m| role > m) {
            conn.execute(
                "UPDATE api_tokens SET revoked = 1 WHERE id = ?1",
                params![id],
            )?;
            audit(
                conn,
                actor,
                "api_token.revoke",
                &id.to_string(),
                &format!("owner {owner} lost role {}", role.as_str()),
                remote,
            )?;
        }
    }
    Ok(())
}

impl ControlDb {
    /// Creates a user. The password must meet [`check_password`].
    pub fn create_user(
        &self,
        name: &str,
        role: Role,
        password: &str,
        actor: &str,
        remote: Option<&str>,
        now: i64,
    ) -> Result<UserRecord> {
        check_user_name(name)?;
        check_password(password)?;
        let hash = hash_password(password)?;
        let conn = self.conn();
        if user_id_role(&conn, name).is_ok() {
            return Err(AccountError::Exists(name.to_owned()));
        }
        conn.execute(
            "INSERT INTO users (name, role, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), hash, now],
        )?;
        audit(
            &conn,
            actor,
            "user.create",
            name,
            &format!("role={}", role.as_str()),
            remote,
        )?;
        Ok(UserRecord {
            name: name.to_owned(),
            role,
            created_ms: now,
            totp_enabled: false,
            locked_until_ms: None,
        })
    }

    /// One user, if it exists.
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
                params![name],
                user_row,
            )
            .optional()?)
    }

    /// Every user, by name.
    pub fn list_users(&self) -> Result<Vec<UserRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))?;
        let rows = stmt.query_map([], user_row)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// An admin's change to a user: role (the last admin keeps its role), password
    /// (ends the user's sessions and any lock-out), unlock. Audited per change.
    pub fn update_user(
        &self,
        name: &str,
        change: &UserChange,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<UserRecord> {
        if let Some(p) = &change.password {
            check_password(p)?;
        }
        let hash = change.password.as_deref().map(hash_password).transpose()?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (id, old_role) = user_id_role(&tx, name)?;
        if let Some(role) = change.role.filter(|r| *r != old_role) {
            if old_role == Role::Admin {
                ensure_not_last_admin(&tx, name)?;
            }
            tx.execute(
                "UPDATE users SET role = ?2 WHERE id = ?1",
                params![id, role.as_str()],
            )?;
            revoke_tokens_above(&tx, name, Some(role), actor, remote)?;
            audit(
                &tx,
                actor,
                "user.role",
                name,
                &format!("{} -> {}", old_role.as_str(), role.as_str()),
                remote,
            )?;
        }
        if let Some(hash) = hash {
            tx.execute(
                "UPDATE users SET password_hash = ?2, failed_logins = 0, locked_until_ms = NULL WHERE id = ?1",
                params![id, hash],
            )?;
            tx.execute("DELETE FROM sessions WHERE user_id = ?1", params![id])?;
            audit(
                &tx,
                actor,
                "user.password",
                name,
                "set by admin; sessions ended",
                remote,
            )?;
        }
        if change.unlock {
            tx.execute(
                "UPDATE users SET failed_logins = 0, locked_until_ms = NULL WHERE id = ?1",
                params![id],
            )?;
            audit(&tx, actor, "user.unlock", name, "", remote)?;
        }
        let record = tx.query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
            params![id],
            user_row,
        )?;
        tx.commit()?;
        Ok(record)
    }

    /// Removes a user (not the last admin): its sessions and recovery codes go with it,
    /// its API tokens are revoked.
    pub fn remove_user(&self, name: &str, actor: &str, remote: Option<&str>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (id, role) = user_id_role(&tx, name)?;
        if role == Role::Admin {
            ensure_not_last_admin(&tx, name)?;
        }
        revoke_tokens_above(&tx, name, None, actor, remote)?;
        tx.execute("DELETE FROM users WHERE id = ?1", params![id])?;
        audit(&tx, actor, "user.remove", name, "", remote)?;
        tx.commit()?;
        Ok(())
    }

    /// The user's own password change: needs the current password; ends the user's
    /// other sessions (`keep_session` is the one making the change).
    pub fn change_password(
        &self,
        name: &str,
        current: &str,
        new: &str,
        keep_session: Option<&str>,
        remote: Option<&str>,
    ) -> Result<()> {
        check_password(new)?;
        let hash: String = self
            .conn()
            .query_row(
                "SELECT password_hash FROM users WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| AccountError::NotFound(name.to_owned()))?;
        if !verify_password(&hash, current) {
            self.audit(
                name,
                "user.password_failed",
                name,
                "wrong current password",
                remote,
            )?;
            return Err(AccountError::WrongPassword);
        }
        let new_hash = hash_password(new)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (id, _) = user_id_role(&tx, name)?;
        tx.execute(
            "UPDATE users SET password_hash = ?2 WHERE id = ?1",
            params![id, new_hash],
        )?;
        let keep = keep_session.map(sha256_hex).unwrap_or_default();
        let ended = tx.execute(
            "DELETE FROM sessions WHERE user_id = ?1 AND id_hash != ?2",
            params![id, keep],
        )?;
        audit(
            &tx,
            name,
            "user.password",
            name,
            &format!("changed by the user; {ended} other sessions ended"),
            remote,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Checks a sign-in and, when it succeeds, opens a session. Every attempt is audited
    /// with the client address; `lockout.failures` consecutive failures (wrong password
    /// or wrong second factor) lock the user. `secrets` is opened only for users with TOTP.
    pub fn login(
        &self,
        attempt: &LoginAttempt<'_>,
        lockout: LockoutPolicy,
        secrets: impl FnOnce() -> Result<SecretBox, SecretError>,
        now: i64,
    ) -> Result<LoginOutcome> {
        type Row = (
            i64,
            String,
            String,
            Option<i64>,
            Option<String>,
            Option<i64>,
        );
        let row: Option<Row> = self
            .conn()
            .query_row(
                "SELECT id, role, password_hash, locked_until_ms, totp_secret, totp_last_step
                 FROM users WHERE name = ?1",
                params![attempt.user],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()?;
        let target = bounded(attempt.user);
        let Some((user_id, role, hash, locked_until, totp_secret, last_step)) = row else {
            verify_password(dummy_hash(), attempt.password);
            self.audit(
                &target,
                "login.failed",
                &target,
                "unknown user",
                attempt.remote,
            )?;
            return Ok(LoginOutcome::BadCredentials);
        };
        if let Some(until) = locked_until.filter(|u| *u > now) {
            self.audit(
                &target,
                "login.locked",
                &target,
                &format!("refused: locked out until {until} ms"),
                attempt.remote,
            )?;
            return Ok(LoginOutcome::Locked { until_ms: until });
        }
        // The store is not locked while Argon2 runs (tens of milliseconds).
        if !verify_password(&hash, attempt.password) {
            return self.login_failed(
                user_id,
                "wrong password",
                LoginOutcome::BadCredentials,
                attempt,
                lockout,
                now,
            );
        }
        let mut how = "password";
        if let Some(sealed) = totp_secret {
            if let Some(code) = attempt.recovery_code {
                if !self.spend_recovery_code(user_id, code, now)? {
                    return self.login_failed(
                        user_id,
                        "wrong or used recovery code",
                        LoginOutcome::TotpRequired,
                        attempt,
                        lockout,
                        now,
                    );
                }
                how = "password and recovery code";
            } else if let Some(code) = attempt.totp {
                let secret = secrets()?.open_sealed(&totp_purpose(attempt.user), &sealed)?;
                let fresh = totp::matching_step(&secret, code, now)
                    .filter(|step| last_step.is_none_or(|last| *step > last));
                let accepted = match fresh {
                    // Conditional on the last step, so two requests racing with one code
                    // cannot both be accepted.
                    Some(step) => {
                        self.conn().execute(
                            "UPDATE users SET totp_last_step = ?2
                             WHERE id = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                            params![user_id, step],
                        )? == 1
                    }
                    None => false,
                };
                if !accepted {
                    return self.login_failed(
                        user_id,
                        "wrong or reused TOTP code",
                        LoginOutcome::TotpRequired,
                        attempt,
                        lockout,
                        now,
                    );
                }
                how = "password and TOTP";
            } else {
                self.audit(
                    &target,
                    "login.totp_required",
                    &target,
                    "password right; asked for the TOTP code",
                    attempt.remote,
                )?;
                return Ok(LoginOutcome::TotpRequired);
            }
        }
        let role = Role::parse(&role).unwrap_or(Role::Viewer);
        self.conn().execute(
            "UPDATE users SET failed_logins = 0, locked_until_ms = NULL WHERE id = ?1",
            params![user_id],
        )?;
        let session = self.create_session(attempt.user, now, attempt.remote)?;
        self.audit(&target, "login.ok", &target, how, attempt.remote)?;
        Ok(LoginOutcome::Success(NewSession { role, ..session }))
    }

    /// Counts a failure; the one that reaches the limit locks the user. Otherwise the
    /// answer is `refusal`.
    fn login_failed(
        &self,
        user_id: i64,
        reason: &str,
        refusal: LoginOutcome,
        attempt: &LoginAttempt<'_>,
        lockout: LockoutPolicy,
        now: i64,
    ) -> Result<LoginOutcome> {
        let target = bounded(attempt.user);
        let conn = self.conn();
        let failures: i64 = conn.query_row(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ?1 RETURNING failed_logins",
            params![user_id],
            |r| r.get(0),
        )?;
        if failures >= i64::from(lockout.failures) {
            let until = now.saturating_add(lockout.lock_ms);
            conn.execute(
                "UPDATE users SET failed_logins = 0, locked_until_ms = ?2 WHERE id = ?1",
                params![user_id, until],
            )?;
            audit(
                &conn,
                &target,
                "login.lockout",
                &target,
                &format!("{reason}; {failures} consecutive failures: locked out until {until} ms"),
                attempt.remote,
            )?;
            return Ok(LoginOutcome::Locked { until_ms: until });
        }
        audit(
            &conn,
            &target,
            "login.failed",
            &target,
            &format!("{reason} ({failures} consecutive)"),
            attempt.remote,
        )?;
        Ok(refusal)
    }

    /// Marks one of the user's unused recovery codes used; false when `code` is none of them.
    fn spend_recovery_code(&self, user_id: i64, code: &str, now: i64) -> Result<bool> {
        let hash = sha256_hex(&totp::normalise_recovery_code(code));
        Ok(self.conn().execute(
            "UPDATE recovery_codes SET used_ms = ?3
             WHERE user_id = ?1 AND code_hash = ?2 AND used_ms IS NULL",
            params![user_id, hash, now],
        )? == 1)
    }

    /// Starts TOTP enrolment: a new secret, pending until [`ControlDb::confirm_totp`]
    /// sees a code from it (a second factor the user cannot produce would lock them out).
    pub fn begin_totp(&self, name: &str, secrets: &SecretBox) -> Result<TotpEnrolment> {
        let secret = zeroize::Zeroizing::new(totp::new_secret());
        let url = totp::otpauth_url(secret.as_slice(), name);
        let qr_svg = totp::qr_svg(&url).map_err(AccountError::Invalid)?;
        let sealed = secrets.seal(&totp_purpose(name), secret.as_slice());
        let conn = self.conn();
        let (id, _) = user_id_role(&conn, name)?;
        conn.execute(
            "UPDATE users SET totp_pending = ?2 WHERE id = ?1",
            params![id, sealed],
        )?;
        Ok(TotpEnrolment {
            secret: totp::secret_base32(secret.as_slice()),
            otpauth_url: url,
            qr_svg,
        })
    }

    /// Completes TOTP enrolment with a code from the pending secret; returns the new
    /// recovery codes (shown once; earlier ones stop working).
    pub fn confirm_totp(
        &self,
        name: &str,
        code: &str,
        secrets: &SecretBox,
        remote: Option<&str>,
        now: i64,
    ) -> Result<Vec<String>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (id, _) = user_id_role(&tx, name)?;
        let pending: Option<String> = tx.query_row(
            "SELECT totp_pending FROM users WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )?;
        let pending = pending.ok_or(AccountError::NoPendingTotp)?;
        let secret = secrets.open_sealed(&totp_purpose(name), &pending)?;
        let step = totp::matching_step(&secret, code, now).ok_or(AccountError::WrongCode)?;
        tx.execute(
            "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = ?2
             WHERE id = ?1",
            params![id, step],
        )?;
        tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", params![id])?;
        let codes: Vec<String> = (0..totp::RECOVERY_CODES)
            .map(|_| totp::new_recovery_code())
            .collect();
        for c in &codes {
            tx.execute(
                "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2)",
                params![id, sha256_hex(&totp::normalise_recovery_code(c))],
            )?;
        }
        audit(
            &tx,
            name,
            "totp.enable",
            name,
            &format!("{} recovery codes issued", codes.len()),
            remote,
        )?;
        tx.commit()?;
        Ok(codes)
    }

    /// Turns TOTP off for the user, who proves it is them with the password.
    pub fn disable_totp(&self, name: &str, password: &str, remote: Option<&str>) -> Result<()> {
        let hash: String = self
            .conn()
            .query_row(
                "SELECT password_hash FROM users WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| AccountError::NotFound(name.to_owned()))?;
        if !verify_password(&hash, password) {
            self.audit(name, "totp.disable_failed", name, "wrong password", remote)?;
            return Err(AccountError::WrongPassword);
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (id, _) = user_id_role(&tx, name)?;
        tx.execute(
            "UPDATE users SET totp_secret = NULL, totp_pending = NULL, totp_last_step = NULL
             WHERE id = ?1",
            params![id],
        )?;
        tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", params![id])?;
        audit(&tx, name, "totp.disable", name, "", remote)?;
        tx.commit()?;
        Ok(())
    }

    /// Opens a session for `user` (who must exist) without a password: for sign-in after
    /// the checks, and for tests.
    pub fn create_session(&self, user: &str, now: i64, remote: Option<&str>) -> Result<NewSession> {
        let id = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        let csrf = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        let conn = self.conn();
        let (user_id, role) = user_id_role(&conn, user)?;
        conn.execute(
            "INSERT INTO sessions (id_hash, user_id, csrf, created_ms, last_seen_ms, remote)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            params![sha256_hex(&id), user_id, csrf, now, remote],
        )?;
        Ok(NewSession {
            id,
            csrf,
            user: user.to_owned(),
            role,
        })
    }

    /// The user of a live session; an expired one is deleted and answers `None`.
    pub fn session(
        &self,
        id: &str,
        policy: SessionPolicy,
        now: i64,
    ) -> Result<Option<SessionUser>> {
        let hash = sha256_hex(id);
        let conn = self.conn();
        let row: Option<(String, String, String, i64, i64)> = conn
            .prepare_cached(
                "SELECT u.name, u.role, s.csrf, s.created_ms, s.last_seen_ms
                 FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?1",
            )?
            .query_row(params![hash], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        let Some((name, role, csrf, created, last_seen)) = row else {
            return Ok(None);
        };
        if now.saturating_sub(last_seen) > policy.idle_ms
            || now.saturating_sub(created) > policy.max_ms
        {
            conn.execute("DELETE FROM sessions WHERE id_hash = ?1", params![hash])?;
            return Ok(None);
        }
        if now.saturating_sub(last_seen) >= policy.touch_every_ms() {
            conn.execute(
                "UPDATE sessions SET last_seen_ms = ?2 WHERE id_hash = ?1",
                params![hash, now],
            )?;
        }
        Ok(Some(SessionUser {
            name,
            // An unreadable role grants the least.
            role: Role::parse(&role).unwrap_or(Role::Viewer),
            csrf,
        }))
    }

    /// Ends one session (sign-out). False when it did not exist.
    pub fn end_session(&self, id: &str, remote: Option<&str>) -> Result<bool> {
        let hash = sha256_hex(id);
        let conn = self.conn();
        let user: Option<String> = conn
            .query_row(
                "SELECT u.name FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?1",
                params![hash],
                |r| r.get(0),
            )
            .optional()?;
        let Some(user) = user else {
            return Ok(false);
        };
        conn.execute("DELETE FROM sessions WHERE id_hash = ?1", params![hash])?;
        audit(&conn, &user, "logout", &user, "", remote)?;
        Ok(true)
    }

    /// Deletes sessions past their absolute lifetime (idle ones are deleted when next
    /// presented); run from the server's housekeeping.
    pub fn purge_sessions(&self, policy: SessionPolicy, now: i64) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM sessions WHERE created_ms < ?1 OR last_seen_ms < ?2",
            params![
                now.saturating_sub(policy.max_ms),
                now.saturating_sub(policy.idle_ms)
            ],
        )?)
    }
}

const USER_COLUMNS: &str = "name, role, created_ms, totp_secret IS NOT NULL, locked_until_ms";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    let role: String = r.get(1)?;
    Ok(UserRecord {
        name: r.get(0)?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        created_ms: r.get(2)?,
        totp_enabled: r.get(3)?,
        locked_until_ms: r.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ControlDb;

    const NOW: i64 = 1_800_000_000_000;
    const LOCK: LockoutPolicy = LockoutPolicy {
        failures: 3,
        lock_ms: 15 * 60_000,
    };
    const SESSIONS: SessionPolicy = SessionPolicy {
        idle_ms: 3_600_000,
        max_ms: 86_400_000,
    };

    fn db() -> (tempfile::TempDir, ControlDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = ControlDb::open(dir.path()).unwrap();
        (dir, db)
    }

    fn attempt<'a>(user: &'a str, password: &'a str) -> LoginAttempt<'a> {
        LoginAttempt {
            user,
            password,
            totp: None,
            recovery_code: None,
            remote: Some("192.0.2.7"),
        }
    }

    fn key() -> SecretBox {
        SecretBox::from_key(&[3; 32])
    }

    fn login(db: &ControlDb, a: LoginAttempt<'_>, now: i64) -> LoginOutcome {
        db.login(&a, LOCK, || Ok(key()), now).unwrap()
    }

    #[test]
    fn names_and_passwords_are_checked() {
        let (_d, db) = db();
        for bad in ["", "cli:root", "a b", "x/y", &"n".repeat(65)] {
            assert!(
                db.create_user(bad, Role::Viewer, "long enough pw", "t", None, NOW)
                    .is_err(),
                "{bad:?}"
            );
        }
        let e = db
            .create_user("ann", Role::Viewer, "short", "t", None, NOW)
            .unwrap_err();
        assert!(e.to_string().contains("at least 12"), "{e}");
        db.create_user("ann", Role::Viewer, "correct horse", "t", None, NOW)
            .unwrap();
        let e = db
            .create_user("ann", Role::Admin, "correct horse", "t", None, NOW)
            .unwrap_err();
        assert!(matches!(e, AccountError::Exists(_)), "{e}");
        let users = db.list_users().unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].role, Role::Viewer);
        let raw = std::fs::read(db.path()).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("correct horse"));
    }

    #[test]
    fn sessions_expire_when_idle_or_too_old_and_end_on_logout() {
        let (_d, db) = db();
        db.create_user("ann", Role::Operator, "correct horse", "t", None, NOW)
            .unwrap();
        let LoginOutcome::Success(s) = login(&db, attempt("ann", "correct horse"), NOW) else {
            panic!("login failed")
        };
        assert_eq!(s.role, Role::Operator);
        let user = db.session(&s.id, SESSIONS, NOW + 1000).unwrap().unwrap();
        assert_eq!(user.name, "ann");
        assert_eq!(user.csrf, s.csrf);
        assert_eq!(db.session("forged", SESSIONS, NOW).unwrap(), None);
        // Kept alive by use every 50 minutes, it still ends after the absolute maximum.
        let mut t = NOW;
        while t + 3_000_000 < NOW + SESSIONS.max_ms {
            t += 3_000_000;
            assert!(db.session(&s.id, SESSIONS, t).unwrap().is_some(), "{t}");
        }
        assert_eq!(
            db.session(&s.id, SESSIONS, NOW + SESSIONS.max_ms + 1)
                .unwrap(),
            None
        );
        let s2 = db.create_session("ann", NOW, None).unwrap();
        assert_eq!(
            db.session(&s2.id, SESSIONS, NOW + SESSIONS.idle_ms + 1)
                .unwrap(),
            None,
            "idle too long"
        );
        let s3 = db.create_session("ann", NOW, None).unwrap();
        assert!(db.end_session(&s3.id, None).unwrap());
        assert!(!db.end_session(&s3.id, None).unwrap());
        assert_eq!(db.session(&s3.id, SESSIONS, NOW).unwrap(), None);
        // Only hashes are stored.
        let raw = std::fs::read(db.path()).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains(&s.id));
    }

    #[test]
    fn consecutive_failures_lock_the_user_until_the_time_is_up() {
        let (_d, db) = db();
        db.create_user("ann", Role::Viewer, "correct horse", "t", None, NOW)
            .unwrap();
        assert!(matches!(
            login(&db, attempt("nobody", "x"), NOW),
            LoginOutcome::BadCredentials
        ));
        for _ in 0..2 {
            assert!(matches!(
                login(&db, attempt("ann", "wrong"), NOW),
                LoginOutcome::BadCredentials
            ));
        }
        let until = NOW + LOCK.lock_ms;
        assert!(matches!(
            login(&db, attempt("ann", "wrong"), NOW),
            LoginOutcome::Locked { until_ms } if until_ms == until
        ));
        // The right password does not help while locked.
        assert!(matches!(
            login(&db, attempt("ann", "correct horse"), until - 1),
            LoginOutcome::Locked { .. }
        ));
        assert_eq!(
            db.user("ann").unwrap().unwrap().locked_until_ms,
            Some(until)
        );
        assert!(matches!(
            login(&db, attempt("ann", "correct horse"), until),
            LoginOutcome::Success(_)
        ));
        let actions: Vec<String> = db
            .audit_tail(10)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(
            actions,
            [
                "login.ok",
                "login.locked",
                "login.lockout",
                "login.failed",
                "login.failed",
                "login.failed",
                "user.create"
            ]
        );
    }

    fn code_now(db: &ControlDb, user: &str, now: i64, steps_ahead: i64) -> String {
        let sealed: String = db
            .conn()
            .query_row(
                "SELECT COALESCE(totp_secret, totp_pending) FROM users WHERE name = ?1",
                params![user],
                |r| r.get(0),
            )
            .unwrap();
        let secret = key().open_sealed(&totp_purpose(user), &sealed).unwrap();
        totp::code_at(&secret, now / 1000 / totp::STEP_S + steps_ahead).unwrap()
    }

    #[test]
    fn totp_codes_and_recovery_codes_work_once_each() {
        let (_d, db) = db();
        db.create_user("ann", Role::Admin, "correct horse", "t", None, NOW)
            .unwrap();
        let e = db.begin_totp("ann", &key()).unwrap();
        assert!(e.otpauth_url.contains(&format!("secret={}", e.secret)));
        // Pending: sign-in still needs the password only.
        assert!(matches!(
            login(&db, attempt("ann", "correct horse"), NOW),
            LoginOutcome::Success(_)
        ));
        assert!(matches!(
            db.confirm_totp("ann", "000000x", &key(), None, NOW),
            Err(AccountError::WrongCode)
        ));
        let codes = db
            .confirm_totp("ann", &code_now(&db, "ann", NOW, 0), &key(), None, NOW)
            .unwrap();
        assert_eq!(codes.len(), 10);
        assert!(db.user("ann").unwrap().unwrap().totp_enabled);
        assert!(matches!(
            login(&db, attempt("ann", "correct horse"), NOW),
            LoginOutcome::TotpRequired
        ));
        // The confirming code's step is spent; the next step's code works once.
        let used = code_now(&db, "ann", NOW, 0);
        let with = |totp: &'static str| LoginAttempt {
            totp: Some(totp),
            ..attempt("ann", "correct horse")
        };
        assert!(matches!(
            login(&db, with(used.leak()), NOW),
            LoginOutcome::TotpRequired
        ));
        let next = code_now(&db, "ann", NOW, 1).leak();
        assert!(matches!(
            login(&db, with(next), NOW),
            LoginOutcome::Success(_)
        ));
        assert!(matches!(
            login(&db, with(next), NOW),
            LoginOutcome::TotpRequired
        ));
        // A recovery code, typed loosely, works once.
        let typed: &'static str = codes[3].to_uppercase().replace('-', " ").leak();
        let rec = |code: &'static str| LoginAttempt {
            recovery_code: Some(code),
            ..attempt("ann", "correct horse")
        };
        assert!(matches!(
            login(&db, rec(typed), NOW),
            LoginOutcome::Success(_)
        ));
        assert!(matches!(
            login(&db, rec(typed), NOW),
            LoginOutcome::TotpRequired
        ));
        // Turning it off needs the password.
        assert!(matches!(
            db.disable_totp("ann", "wrong password", None),
            Err(AccountError::WrongPassword)
        ));
        db.disable_totp("ann", "correct horse", None).unwrap();
        assert!(matches!(
            login(&db, attempt("ann", "correct horse"), NOW),
            LoginOutcome::Success(_)
        ));
    }

    #[test]
    fn the_last_admin_stays_and_demotion_revokes_stronger_tokens() {
        let (_d, db) = db();
        db.create_user("root", Role::Admin, "correct horse", "t", None, NOW)
            .unwrap();
        let demote = UserChange {
            role: Some(Role::Viewer),
            ..UserChange::default()
        };
        assert!(matches!(
            db.update_user("root", &demote, "t", None),
            Err(AccountError::LastAdmin(_))
        ));
        assert!(matches!(
            db.remove_user("root", "t", None),
            Err(AccountError::LastAdmin(_))
        ));
        db.create_user("ann", Role::Admin, "correct horse", "t", None, NOW)
            .unwrap();
        let strong = db.create_api_token("ci", Role::Operator, "ann").unwrap();
        let weak = db.create_api_token("grafana", Role::Viewer, "ann").unwrap();
        let r = db.update_user("ann", &demote, "root", None).unwrap();
        assert_eq!(r.role, Role::Viewer);
        assert_eq!(db.lookup_api_token(&strong).unwrap(), None);
        assert!(db.lookup_api_token(&weak).unwrap().is_some());
        db.remove_user("ann", "root", None).unwrap();
        assert_eq!(db.lookup_api_token(&weak).unwrap(), None);
        assert!(matches!(
            db.remove_user("ann", "root", None),
            Err(AccountError::NotFound(_))
        ));
    }

    #[test]
    fn a_password_change_ends_the_other_sessions_and_an_admin_reset_unlocks() {
        let (_d, db) = db();
        db.create_user("ann", Role::Viewer, "correct horse", "t", None, NOW)
            .unwrap();
        let mine = db.create_session("ann", NOW, None).unwrap();
        let other = db.create_session("ann", NOW, None).unwrap();
        assert!(matches!(
            db.change_password("ann", "wrong", "new password 1", Some(&mine.id), None),
            Err(AccountError::WrongPassword)
        ));
        assert!(matches!(
            db.change_password("ann", "correct horse", "short", Some(&mine.id), None),
            Err(AccountError::Invalid(_))
        ));
        db.change_password(
            "ann",
            "correct horse",
            "new password 1",
            Some(&mine.id),
            None,
        )
        .unwrap();
        assert!(db.session(&mine.id, SESSIONS, NOW).unwrap().is_some());
        assert_eq!(db.session(&other.id, SESSIONS, NOW).unwrap(), None);
        for _ in 0..3 {
            login(&db, attempt("ann", "wrong"), NOW);
        }
        assert!(db.user("ann").unwrap().unwrap().locked_until_ms.is_some());
        let reset = UserChange {
            password: Some("admin set it 1".into()),
            ..UserChange::default()
        };
        db.update_user("ann", &reset, "root", None).unwrap();
        assert_eq!(db.session(&mine.id, SESSIONS, NOW).unwrap(), None);
        assert!(matches!(
            login(&db, attempt("ann", "admin set it 1"), NOW),
            LoginOutcome::Success(_)
        ));
    }
}
