//! Alert rules, channels, silences, alerts with their history, and the notification
//! outbox in the control store. Written by the server, the REST API and `dcmon rules|
//! channels|alerts` in another process alike (the engine notices other processes'
//! writes through `data_version`, see `engine`).

use super::AlertError;
use super::channels::{
    self, Channel, ChannelConfig, ChannelRecord, ChannelSecrets, NewChannel, Notification,
};
use super::lifecycle::{Alert, State, Transition};
use super::rules::RuleSpec;
use super::silences::{NewSilence, SilenceRecord};
use crate::control::{ControlDb, audit, now_ms};
use crate::secrets::SecretBox;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use std::collections::BTreeMap;

/// A stored rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleRecord {
    #[serde(flatten)]
    pub spec: RuleSpec,
    pub updated_ms: i64,
    pub updated_by: String,
}

/// An alert as listings show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRecord {
    pub id: i64,
    pub rule: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: State,
    pub value: f64,
    pub active_since_ms: i64,
    pub fired_ms: Option<i64>,
    pub resolved_ms: Option<i64>,
    pub acked_by: Option<String>,
    pub acked_ms: Option<i64>,
    /// The state last notified (`firing`, `resolved`), if any.
    pub notified_state: Option<String>,
    pub notified_ms: Option<i64>,
    /// Channels the rule named (empty: routes decide).
    pub channels: Vec<String>,
    /// The silence covering it now (filled in by the API from the silences in force).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<i64>,
}

/// One change of an alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub alert_id: i64,
    pub ts_ms: i64,
    pub state: State,
    pub value: f64,
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationRecord {
    pub id: i64,
    pub channel: String,
    pub group_key: String,
    pub idempotency_key: String,
    /// `queued`, `sent` or `failed`.
    pub status: String,
    pub message: Notification,
    pub created_ms: i64,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub sent_ms: Option<i64>,
    pub last_error: Option<String>,
}

const ALERT_COLUMNS: &str = "id, rule, fingerprint, labels, annotations, state, value, active_since_ms, fired_ms, resolved_ms, acked_by, acked_ms, notified_state, notified_ms, channels";

fn json_col<T: serde::de::DeserializeOwned>(
    r: &rusqlite::Row<'_>,
    i: usize,
) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    serde_json::from_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRecord> {
    let state: String = r.get(5)?;
    Ok(AlertRecord {
        id: r.get(0)?,
        rule: r.get(1)?,
        fingerprint: r.get(2)?,
        labels: json_col(r, 3)?,
        annotations: json_col(r, 4)?,
        state: State::parse(&state).unwrap_or(State::Resolved),
        value: r.get::<_, Option<f64>>(6)?.unwrap_or(f64::NAN),
        active_since_ms: r.get(7)?,
        fired_ms: r.get(8)?,
        resolved_ms: r.get(9)?,
        acked_by: r.get(10)?,
        acked_ms: r.get(11)?,
        notified_state: r.get(12)?,
        notified_ms: r.get(13)?,
        channels: json_col(r, 14)?,
        silenced_by: None,
    })
}

const NOTIFICATION_COLUMNS: &str = "id, channel, group_key, idempotency_key, status, message, created_ms, attempts, next_attempt_ms, sent_ms, last_error";

fn notification_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NotificationRecord> {
    Ok(NotificationRecord {
        id: r.get(0)?,
        channel: r.get(1)?,
        group_key: r.get(2)?,
        idempotency_key: r.get(3)?,
        status: r.get(4)?,
        message: json_col(r, 5)?,
        created_ms: r.get(6)?,
        attempts: r.get(7)?,
        next_attempt_ms: r.get(8)?,
        sent_ms: r.get(9)?,
        last_error: r.get(10)?,
    })
}

fn channel_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ChannelRecord, String)> {
    let kind: String = r.get(2)?;
    Ok((
        ChannelRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            kind: channels::ChannelKind::parse(&kind).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
            })?,
            config: json_col::<ChannelConfig>(r, 3)?,
            created_ms: r.get(5)?,
            updated_by: r.get(6)?,
        },
        r.get(4)?,
    ))
}

/// A `Vec` from a statement's rows.
fn collect<T>(rows: impl Iterator<Item = rusqlite::Result<T>>) -> Result<Vec<T>, AlertError> {
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Writes one rule in an open transaction, replacing one of the same name.
fn put_rule(
    tx: &rusqlite::Connection,
    spec: &RuleSpec,
    actor: &str,
    replace: bool,
    remote: Option<&str>,
) -> Result<(), AlertError> {
    let problems = spec.validate();
    if !problems.is_empty() {
        return Err(AlertError::Invalid(format!(
            "rule {}: {}",
            spec.name,
            problems.join("; ")
        )));
    }
    if super::builtins::is_builtin(&spec.name) {
        return Err(AlertError::Invalid(format!(
            "rule {}: that is a built-in rule's name; tune it under alerts.builtins in the server config",
            spec.name
        )));
    }
    let text = serde_json::to_string(spec).map_err(|e| AlertError::Store(e.into()))?;
    let now = now_ms();
    let n = if replace {
        tx.execute(
            "INSERT INTO alert_rules (name, spec, created_ms, updated_ms, updated_by) VALUES (?1, ?2, ?3, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_ms = excluded.updated_ms, updated_by = excluded.updated_by",
            params![spec.name, text, now, actor],
        )?
    } else {
        tx.execute(
            "INSERT OR IGNORE INTO alert_rules (name, spec, created_ms, updated_ms, updated_by) VALUES (?1, ?2, ?3, ?3, ?4)",
            params![spec.name, text, now, actor],
        )?
    };
    if n == 0 {
        return Err(AlertError::Exists(format!("rule {}", spec.name)));
    }
    audit(tx, actor, "alert_rule.put", &spec.name, &text, remote)?;
    Ok(())
}

/// What [`ControlDb::remove_named`] removes.
#[derive(Clone, Copy)]
enum Named {
    Rule,
    Channel,
}

impl ControlDb {
    // ---- rules ------------------------------------------------------------------

    /// Adds a rule; refused when the name is taken.
    pub fn add_alert_rule(
        &self,
        spec: &RuleSpec,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<(), AlertError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        put_rule(&tx, spec, actor, false, remote)?;
        tx.commit()?;
        Ok(())
    }

    /// Adds or replaces every rule, all or none (an import).
    pub fn import_alert_rules(
        &self,
        specs: &[RuleSpec],
        actor: &str,
        remote: Option<&str>,
    ) -> Result<usize, AlertError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for s in specs {
            put_rule(&tx, s, actor, true, remote)?;
        }
        tx.commit()?;
        Ok(specs.len())
    }

    pub fn list_alert_rules(&self) -> Result<Vec<RuleRecord>, AlertError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT spec, updated_ms, updated_by FROM alert_rules ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(RuleRecord {
                spec: json_col(r, 0)?,
                updated_ms: r.get(1)?,
                updated_by: r.get(2)?,
            })
        })?;
        collect(rows)
    }

    /// Removes a rule; its open alerts resolve at the next evaluation.
    pub fn remove_alert_rule(
        &self,
        name: &str,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<(), AlertError> {
        self.remove_named(Named::Rule, name, actor, remote)
    }

    // ---- channels ---------------------------------------------------------------

    pub fn add_alert_channel(
        &self,
        secrets: &SecretBox,
        new: &NewChannel,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<ChannelRecord, AlertError> {
        let problems = new.validate();
        if !problems.is_empty() {
            return Err(AlertError::Invalid(format!(
                "channel {}: {}",
                new.name,
                problems.join("; ")
            )));
        }
        let config: ChannelConfig = new.config.clone().into();
        let text = serde_json::to_string(&config).map_err(|e| AlertError::Store(e.into()))?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO alert_channels (name, kind, config, secrets, created_ms, updated_by) VALUES (?1, ?2, ?3, '', ?4, ?5)",
            params![new.name, new.kind.as_str(), text, now_ms(), actor],
        )?;
        if n == 0 {
            return Err(AlertError::Exists(format!("channel {}", new.name)));
        }
        let id = tx.last_insert_rowid();
        let sealed = channels::seal(
            secrets,
            id,
            &ChannelSecrets {
                url: new.url.clone(),
                token: new.token.clone(),
                password: new.password.clone(),
            },
        );
        tx.execute(
            "UPDATE alert_channels SET secrets = ?2 WHERE id = ?1",
            params![id, sealed],
        )?;
        // The audit names the channel and its settings, never a secret.
        audit(
            &tx,
            actor,
            "alert_channel.add",
            &new.name,
            &format!("type={} {text}", new.kind.as_str()),
            remote,
        )?;
        let record = tx
            .query_row(
                "SELECT id, name, kind, config, secrets, created_ms, updated_by FROM alert_channels WHERE id = ?1",
                params![id],
                channel_row,
            )?
            .0;
        tx.commit()?;
        Ok(record)
    }

    pub fn list_alert_channels(&self) -> Result<Vec<ChannelRecord>, AlertError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, name, kind, config, secrets, created_ms, updated_by FROM alert_channels ORDER BY name",
        )?;
        let rows = stmt.query_map([], channel_row)?;
        Ok(collect(rows)?.into_iter().map(|(c, _)| c).collect())
    }

    pub fn remove_alert_channel(
        &self,
        name: &str,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<(), AlertError> {
        self.remove_named(Named::Channel, name, actor, remote)
    }

    /// Deletes the rule or channel called `name`; audited.
    fn remove_named(
        &self,
        what: Named,
        name: &str,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<(), AlertError> {
        let (table, noun, list, action) = match what {
            Named::Rule => ("alert_rules", "rule", "rules", "alert_rule.remove"),
            Named::Channel => (
                "alert_channels",
                "channel",
                "channels",
                "alert_channel.remove",
            ),
        };
        let conn = self.conn();
        let n = conn.execute(
            &format!("DELETE FROM {table} WHERE name = ?1"),
            params![name],
        )?;
        if n == 0 {
            return Err(AlertError::NotFound(format!(
                "{noun} {name:?}; see `dcmon {list} list`"
            )));
        }
        audit(&conn, actor, action, name, "", remote)?;
        Ok(())
    }

    /// Every channel with its secrets opened (for sending). A channel whose secrets do
    /// not open (the key changed) is left out and named in the second list.
    pub(crate) fn load_alert_channels(
        &self,
        secrets: &SecretBox,
    ) -> Result<(Vec<Channel>, Vec<String>), AlertError> {
        let rows = {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT id, name, kind, config, secrets, created_ms, updated_by FROM alert_channels ORDER BY name",
            )?;
            let rows = stmt.query_map([], channel_row)?;
            collect(rows)?
        };
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for (record, sealed) in rows {
            match channels::open(secrets, record.id, &sealed) {
                Ok(s) => ok.push(Channel { record, secrets: s }),
                Err(e) => bad.push(format!("channel {}: {e}", record.name)),
            }
        }
        Ok((ok, bad))
    }

    /// One channel with its secrets opened.
    pub fn alert_channel(&self, secrets: &SecretBox, name: &str) -> Result<Channel, AlertError> {
        let (record, sealed) = self
            .conn()
            .query_row(
                "SELECT id, name, kind, config, secrets, created_ms, updated_by FROM alert_channels WHERE name = ?1",
                params![name],
                channel_row,
            )
            .optional()?
            .ok_or_else(|| AlertError::NotFound(format!("channel {name:?}; see `dcmon channels list`")))?;
        let s = channels::open(secrets, record.id, &sealed)?;
        Ok(Channel { record, secrets: s })
    }

    // ---- silences ---------------------------------------------------------------

    pub fn add_silence(
        &self,
        new: &NewSilence,
        author: &str,
        remote: Option<&str>,
    ) -> Result<SilenceRecord, AlertError> {
        if new.matchers.is_empty() {
            return Err(AlertError::Invalid(
                "a silence needs at least one matcher (e.g. host=gpu-07)".into(),
            ));
        }
        super::silences::parse_all(&new.matchers).map_err(AlertError::Invalid)?;
        let now = now_ms();
        let starts = new.starts_ms.unwrap_or(now);
        let ends = match (new.ends_ms, new.duration) {
            (Some(e), None) => e,
            (None, Some(d)) => {
                starts.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            }
            _ => {
                return Err(AlertError::Invalid(
                    "a silence needs either ends_ms or duration (e.g. \"2h\")".into(),
                ));
            }
        };
        if ends <= starts {
            return Err(AlertError::Invalid(
                "a silence must end after it starts".into(),
            ));
        }
        let matchers =
            serde_json::to_string(&new.matchers).map_err(|e| AlertError::Store(e.into()))?;
        let conn = self.conn();
        conn.execute(
            "INSERT INTO silences (matchers, starts_ms, ends_ms, author, comment, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![matchers, starts, ends, author, new.comment, now],
        )?;
        let id = conn.last_insert_rowid();
        audit(
            &conn,
            author,
            "silence.add",
            &id.to_string(),
            &format!("{matchers} until {ends} {}", new.comment),
            remote,
        )?;
        Ok(SilenceRecord {
            id,
            matchers: new.matchers.clone(),
            starts_ms: starts,
            ends_ms: ends,
            author: author.to_owned(),
            comment: new.comment.clone(),
            created_ms: now,
        })
    }

    /// Silences not yet ended (all when `all`).
    pub fn list_silences(&self, all: bool) -> Result<Vec<SilenceRecord>, AlertError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, matchers, starts_ms, ends_ms, author, comment, created_ms FROM silences WHERE ?1 OR ends_ms > ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![all, now_ms()], |r| {
            Ok(SilenceRecord {
                id: r.get(0)?,
                matchers: json_col(r, 1)?,
                starts_ms: r.get(2)?,
                ends_ms: r.get(3)?,
                author: r.get(4)?,
                comment: r.get(5)?,
                created_ms: r.get(6)?,
            })
        })?;
        collect(rows)
    }

    /// Ends a silence now.
    pub fn expire_silence(
        &self,
        id: i64,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<(), AlertError> {
        let conn = self.conn();
        let now = now_ms();
        let n = conn.execute(
            "UPDATE silences SET ends_ms = ?2 WHERE id = ?1 AND ends_ms > ?2",
            params![id, now],
        )?;
        if n == 0 {
            return Err(AlertError::NotFound(format!(
                "active silence {id}; see `dcmon alerts silences`"
            )));
        }
        audit(&conn, actor, "silence.expire", &id.to_string(), "", remote)?;
        Ok(())
    }

    // ---- alerts -----------------------------------------------------------------

    /// Pending and firing alerts, for the engine to continue from after a restart.
    pub(crate) fn open_alerts(&self) -> Result<Vec<Alert>, AlertError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE state IN ('pending', 'firing')"
        ))?;
        let rows = stmt.query_map([], alert_row)?;
        Ok(collect(rows)?
            .into_iter()
            .map(|r| Alert {
                id: r.id,
                rule: r.rule,
                fingerprint: r.fingerprint,
                labels: r.labels,
                annotations: r.annotations,
                state: r.state,
                value: r.value,
                active_since_ms: r.active_since_ms,
                fired_ms: r.fired_ms,
                resolved_ms: r.resolved_ms,
            })
            .collect())
    }

    /// Stores the transitions of one evaluation in one transaction, with history; sets
    /// the ids of new alerts. `channels` gives each rule's named channels.
    pub(crate) fn apply_transitions(
        &self,
        changes: &mut [(Transition, Alert)],
        channels: &BTreeMap<String, Vec<String>>,
        now: i64,
    ) -> Result<(), AlertError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (t, a) in changes.iter_mut() {
            let labels =
                serde_json::to_string(&a.labels).map_err(|e| AlertError::Store(e.into()))?;
            let annotations =
                serde_json::to_string(&a.annotations).map_err(|e| AlertError::Store(e.into()))?;
            let chans =
                serde_json::to_string(channels.get(&a.rule).map(Vec::as_slice).unwrap_or(&[]))
                    .map_err(|e| AlertError::Store(e.into()))?;
            let value = a.value.is_finite().then_some(a.value);
            if *t == Transition::Dropped {
                if a.id != 0 {
                    tx.execute("DELETE FROM alerts WHERE id = ?1", params![a.id])?;
                }
                continue;
            }
            if a.id == 0 {
                tx.execute(
                    "INSERT INTO alerts (rule, fingerprint, labels, annotations, state, value, active_since_ms, fired_ms, resolved_ms, updated_ms, channels)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![a.rule, a.fingerprint, labels, annotations, a.state.as_str(), value, a.active_since_ms, a.fired_ms, a.resolved_ms, now, chans],
                )?;
                a.id = tx.last_insert_rowid();
            } else {
                tx.execute(
                    "UPDATE alerts SET state = ?2, value = ?3, annotations = ?4, fired_ms = ?5, resolved_ms = ?6, updated_ms = ?7, channels = ?8 WHERE id = ?1",
                    params![a.id, a.state.as_str(), value, annotations, a.fired_ms, a.resolved_ms, now, chans],
                )?;
            }
            tx.execute(
                "INSERT INTO alert_history (alert_id, ts_ms, state, value) VALUES (?1, ?2, ?3, ?4)",
                params![a.id, now, a.state.as_str(), value],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Alerts, newest first: open ones and those resolved since `resolved_since_ms`.
    pub fn list_alerts(
        &self,
        state: Option<State>,
        resolved_since_ms: i64,
        limit: u32,
    ) -> Result<Vec<AlertRecord>, AlertError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts
             WHERE (?1 IS NULL OR state = ?1) AND (state != 'resolved' OR resolved_ms >= ?2)
             ORDER BY id DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![state.map(State::as_str), resolved_since_ms, limit],
            alert_row,
        )?;
        collect(rows)
    }

    pub fn alert(&self, id: i64) -> Result<AlertRecord, AlertError> {
        self.conn()
            .query_row(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"),
                params![id],
                alert_row,
            )
            .optional()?
            .ok_or_else(|| AlertError::NotFound(format!("alert {id}; see `dcmon alerts list`")))
    }

    pub fn alert_history(&self, id: i64) -> Result<Vec<HistoryEntry>, AlertError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT alert_id, ts_ms, state, value FROM alert_history WHERE alert_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![id], |r| {
            let s: String = r.get(2)?;
            Ok(HistoryEntry {
                alert_id: r.get(0)?,
                ts_ms: r.get(1)?,
                state: State::parse(&s).unwrap_or(State::Resolved),
                value: r.get::<_, Option<f64>>(3)?.unwrap_or(f64::NAN),
            })
        })?;
        collect(rows)
    }

    /// Acknowledges an open alert: no repeat notifications for it.
    pub fn ack_alert(
        &self,
        id: i64,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<AlertRecord, AlertError> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE alerts SET acked_by = ?2, acked_ms = ?3 WHERE id = ?1 AND state != 'resolved'",
            params![id, actor, now_ms()],
        )?;
        if n == 0 {
            return Err(AlertError::NotFound(format!(
                "open alert {id}; see `dcmon alerts list`"
            )));
        }
        audit(&conn, actor, "alert.ack", &id.to_string(), "", remote)?;
        drop(conn);
        self.alert(id)
    }

    // ---- outbox -----------------------------------------------------------------

    /// Alerts whose state has not been notified yet, or that are due a repeat.
    pub(crate) fn alerts_to_notify(
        &self,
        now: i64,
        repeat_ms: i64,
    ) -> Result<Vec<AlertRecord>, AlertError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts
             WHERE (state = 'firing' AND (notified_state IS NULL OR notified_state != 'firing'
                    OR (acked_ms IS NULL AND notified_ms <= ?1)))
                OR (state = 'resolved' AND notified_state = 'firing')
             ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![now.saturating_sub(repeat_ms)], alert_row)?;
        collect(rows)
    }

    /// The outbox write: the notifications and the alerts' notified states in one
    /// transaction, committed before anything is sent.
    pub(crate) fn enqueue_notifications(
        &self,
        messages: &[Notification],
        notified: &[(i64, State)],
        now: i64,
    ) -> Result<(), AlertError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for m in messages {
            let text = serde_json::to_string(m).map_err(|e| AlertError::Store(e.into()))?;
            let key = hex::encode(crate::control::random_bytes::<16>());
            tx.execute(
                "INSERT INTO notifications (channel, group_key, idempotency_key, status, message, created_ms, next_attempt_ms)
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?5)",
                params![m.channel, m.group_key, key, text, now],
            )?;
        }
        for (id, state) in notified {
            tx.execute(
                "UPDATE alerts SET notified_state = ?2, notified_ms = ?3 WHERE id = ?1",
                params![id, state.as_str(), now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// When the group was last notified on its channel.
    pub(crate) fn last_group_notification(
        &self,
        channel: &str,
        group_key: &str,
    ) -> Result<Option<i64>, AlertError> {
        Ok(self.conn().query_row(
            "SELECT MAX(created_ms) FROM notifications WHERE channel = ?1 AND group_key = ?2",
            params![channel, group_key],
            |r| r.get(0),
        )?)
    }

    /// Queued notifications whose next attempt is due, oldest first.
    pub(crate) fn due_notifications(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>, AlertError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE status = 'queued' AND next_attempt_ms <= ?1 ORDER BY id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![now, limit], notification_row)?;
        collect(rows)
    }

    /// When the next queued notification is due.
    pub(crate) fn next_notification_due(&self) -> Result<Option<i64>, AlertError> {
        Ok(self.conn().query_row(
            "SELECT MIN(next_attempt_ms) FROM notifications WHERE status = 'queued'",
            [],
            |r| r.get(0),
        )?)
    }

    /// After a restart every queued notification is tried at once.
    pub(crate) fn retry_queued_now(&self, now: i64) -> Result<usize, AlertError> {
        Ok(self.conn().execute(
            "UPDATE notifications SET next_attempt_ms = ?1 WHERE status = 'queued' AND next_attempt_ms > ?1",
            params![now],
        )?)
    }

    /// Records one attempt: `Ok` → sent; `Err` with a retry time → queued again; `Err`
    /// without → failed for good.
    pub(crate) fn record_attempt(
        &self,
        id: i64,
        result: Result<(), (String, Option<i64>)>,
        now: i64,
    ) -> Result<(), AlertError> {
        let conn = self.conn();
        match result {
            Ok(()) => conn.execute(
                "UPDATE notifications SET status = 'sent', attempts = attempts + 1, sent_ms = ?2, last_error = NULL WHERE id = ?1",
                params![id, now],
            )?,
            Err((e, Some(next))) => conn.execute(
                "UPDATE notifications SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE id = ?1",
                params![id, next, e],
            )?,
            Err((e, None)) => conn.execute(
                "UPDATE notifications SET status = 'failed', attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
                params![id, e],
            )?,
        };
        Ok(())
    }

    /// Notifications, newest first, of one status when given.
    pub fn list_notifications(
        &self,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>, AlertError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE (?1 IS NULL OR status = ?1) ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![status, limit], notification_row)?;
        collect(rows)
    }

    /// Notifications per channel and status (`sent`, `failed`), for the counters.
    pub(crate) fn notification_counts(&self) -> Result<Vec<(String, String, i64)>, AlertError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT channel, status, COUNT(*) FROM notifications WHERE status != 'queued' GROUP BY channel, status",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        collect(rows)
    }
}
