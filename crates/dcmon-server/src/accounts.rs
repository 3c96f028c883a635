//! User accounts in the control store: Argon2id passwords, sign-in with lock-out,
//! server-side sessions.
//!
//! A session id is 256 random bits, handed to the browser once in the session cookie;
//! the store keeps only its SHA-256, so a copy of `control.sqlite` signs nobody in. Each
//! session has its own random CSRF token, which pages send back in `X-CSRF-Token`.
//! Every function takes the time as an argument: the server passes its `Clock`, tests
//! move it.

use crate::auth::Role;
use crate::control::{ControlDb, audit, random_bytes};
use anyhow::{Context, Result, bail};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password accepted (Argon2 hashes any length; this bounds the work per request).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Hashes a password with Argon2id (the crate's defaults: 19 MiB, 2 passes) and a random salt.
pub fn hash_password(password: &str) -> Result<String> {
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
        bail!("password: must be at least {MIN_PASSWORD_LEN} characters (got {n})");
    }
    if password.len() > MAX_PASSWORD_LEN {
        bail!("password: must be at most {MAX_PASSWORD_LEN} bytes");
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
        bail!(
            "user name {name:?}: must be 1 to 64 characters of letters, digits, '.', '_', '-', '@'"
        );
    }
    Ok(())
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
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
    pub remote: Option<&'a str>,
}

/// How a sign-in ended. Unknown user and wrong password are the same outcome.
#[derive(Debug)]
pub enum LoginOutcome {
    Success(NewSession),
    BadCredentials,
    /// Locked out until then (also the answer to the failure that caused it).
    Locked {
        until_ms: i64,
    },
}

/// Audit targets are user input on failed sign-ins: bounded so a long name cannot bloat the log.
fn bounded(s: &str) -> String {
    s.chars().take(64).collect()
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
        let exists: bool = conn.query_row(
            "SELECT COUNT(*) FROM users WHERE name = ?1",
            params![name],
            |r| r.get::<_, i64>(0),
        )? > 0;
        if exists {
            bail!(
                "user {name:?} already exists; change it with `dcmon user passwd` or PUT /api/users/{name}"
            );
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

    /// Checks a sign-in and, when it succeeds, opens a session. Every attempt is audited
    /// with the client address; `policy.failures` consecutive failures lock the user.
    pub fn login(
        &self,
        attempt: &LoginAttempt<'_>,
        lockout: LockoutPolicy,
        now: i64,
    ) -> Result<LoginOutcome> {
        let row: Option<(i64, String, String, Option<i64>)> = self
            .conn()
            .query_row(
                "SELECT id, role, password_hash, locked_until_ms FROM users WHERE name = ?1",
                params![attempt.user],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let target = bounded(attempt.user);
        let Some((user_id, role, hash, locked_until)) = row else {
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
            return self.login_failed(user_id, &target, "wrong password", attempt, lockout, now);
        }
        let role = Role::parse(&role).unwrap_or(Role::Viewer);
        self.conn().execute(
            "UPDATE users SET failed_logins = 0, locked_until_ms = NULL WHERE id = ?1",
            params![user_id],
        )?;
        let session = self.create_session(attempt.user, now, attempt.remote)?;
        self.audit(&target, "login.ok", &target, "", attempt.remote)?;
        Ok(LoginOutcome::Success(NewSession { role, ..session }))
    }

    /// Counts a failure; the one that reaches the limit locks the user.
    fn login_failed(
        &self,
        user_id: i64,
        target: &str,
        reason: &str,
        attempt: &LoginAttempt<'_>,
        lockout: LockoutPolicy,
        now: i64,
    ) -> Result<LoginOutcome> {
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
                target,
                "login.lockout",
                target,
                &format!("{reason}; {failures} consecutive failures: locked out until {until} ms"),
                attempt.remote,
            )?;
            return Ok(LoginOutcome::Locked { until_ms: until });
        }
        audit(
            &conn,
            target,
            "login.failed",
            target,
            &format!("{reason} ({failures} consecutive)"),
            attempt.remote,
        )?;
        Ok(LoginOutcome::BadCredentials)
    }

    /// Opens a session for `user` (who must exist) without a password: for sign-in after
    /// the checks, and for tests.
    pub fn create_session(&self, user: &str, now: i64, remote: Option<&str>) -> Result<NewSession> {
        let id = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        let csrf = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        let conn = self.conn();
        let (user_id, role): (i64, String) = conn
            .query_row(
                "SELECT id, role FROM users WHERE name = ?1",
                params![user],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .with_context(|| format!("no user {user:?}"))?;
        conn.execute(
            "INSERT INTO sessions (id_hash, user_id, csrf, created_ms, last_seen_ms, remote)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            params![sha256_hex(&id), user_id, csrf, now, remote],
        )?;
        Ok(NewSession {
            id,
            csrf,
            user: user.to_owned(),
            role: Role::parse(&role).unwrap_or(Role::Viewer),
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
            remote: Some("192.0.2.7"),
        }
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
        assert!(e.to_string().contains("already exists"), "{e}");
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
        let LoginOutcome::Success(s) = db
            .login(&attempt("ann", "correct horse"), LOCK, NOW)
            .unwrap()
        else {
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
            db.login(&attempt("nobody", "x"), LOCK, NOW).unwrap(),
            LoginOutcome::BadCredentials
        ));
        for _ in 0..2 {
            assert!(matches!(
                db.login(&attempt("ann", "wrong"), LOCK, NOW).unwrap(),
                LoginOutcome::BadCredentials
            ));
        }
        let until = NOW + LOCK.lock_ms;
        assert!(matches!(
            db.login(&attempt("ann", "wrong"), LOCK, NOW).unwrap(),
            LoginOutcome::Locked { until_ms } if until_ms == until
        ));
        // The right password does not help while locked.
        assert!(matches!(
            db.login(&attempt("ann", "correct horse"), LOCK, until - 1)
                .unwrap(),
            LoginOutcome::Locked { .. }
        ));
        assert_eq!(
            db.user("ann").unwrap().unwrap().locked_until_ms,
            Some(until)
        );
        assert!(matches!(
            db.login(&attempt("ann", "correct horse"), LOCK, until)
                .unwrap(),
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
}
