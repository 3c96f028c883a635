//! Live commands: queued in the control store by the REST API or `dcmon command send`,
//! handed to the agent's long-poll, and kept with their results as history.
//!
//! States: `queued` → `delivered` (handed to the agent) → `succeeded` | `failed`; a
//! command not picked up before `expires_ms` becomes `expired` and is never delivered,
//! so a reboot asked for today does not happen when a machine comes back next week.
//!
//! Wake-ups: a poll waits on its agent's [`Notify`]. Commands queued through this
//! server's API notify it directly; commands written by another process (the CLI) are
//! found by [`watch`], which looks at `PRAGMA data_version` four times a second.

use crate::control::{ControlDb, audit, get_agent, now_ms, resolve_agent};
use anyhow::{Context, Result, bail};
use dcmon_wire::command::{AgentCommand, CommandResult, CommandSpec};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// How long a queued command waits for its agent by default.
pub const DEFAULT_TTL_MS: i64 = 10 * 60 * 1000;
/// Longest result message and output kept.
pub const MAX_MESSAGE_BYTES: usize = 4096;
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;

/// A command and what became of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CommandRecord {
    pub id: i64,
    pub agent_id: String,
    pub host: String,
    pub kind: String,
    pub command: CommandSpec,
    pub status: String,
    pub created_ms: i64,
    pub created_by: String,
    pub expires_ms: i64,
    pub delivered_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub message: Option<String>,
    /// The agent's structured output (JSON), when it sent one.
    pub output: Option<serde_json::Value>,
}

impl CommandRecord {
    /// Whether nothing more will happen to it.
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "expired")
    }
}

const COLUMNS: &str = "c.id, c.agent_id, a.host, c.kind, c.spec, c.status, c.created_ms, c.created_by, c.expires_ms, c.delivered_ms, c.finished_ms, c.message, c.output";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CommandRecord> {
    let spec: String = r.get(4)?;
    let output: Option<String> = r.get(12)?;
    Ok(CommandRecord {
        id: r.get(0)?,
        agent_id: r.get(1)?,
        host: r.get(2)?,
        kind: r.get(3)?,
        command: serde_json::from_str(&spec).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
        })?,
        status: r.get(5)?,
        created_ms: r.get(6)?,
        created_by: r.get(7)?,
        expires_ms: r.get(8)?,
        delivered_ms: r.get(9)?,
        finished_ms: r.get(10)?,
        message: r.get(11)?,
        output: output.and_then(|o| serde_json::from_str(&o).ok()),
    })
}

fn get(conn: &Connection, id: i64) -> Result<Option<CommandRecord>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM commands c JOIN agents a ON a.id = c.agent_id WHERE c.id = ?1"),
            params![id],
            row,
        )
        .optional()?)
}

impl ControlDb {
    /// Queues a command for the agent named by id or host; audited. Refuses invalid
    /// parameters and agents that are not approved.
    pub fn queue_command(
        &self,
        who: &str,
        spec: &CommandSpec,
        actor: &str,
        remote: Option<&str>,
        ttl_ms: i64,
    ) -> Result<CommandRecord> {
        spec.validate().map_err(anyhow::Error::msg)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let agent_id = resolve_agent(&tx, who)?;
        let agent = get_agent(&tx, &agent_id)?.context("agent row exists")?;
        if agent.status != dcmon_wire::api::AgentStatus::Approved {
            bail!(
                "agent {} ({}) is {}; commands go only to approved agents",
                agent.id,
                agent.host,
                agent.status.as_str()
            );
        }
        let now = now_ms();
        let text = serde_json::to_string(spec)?;
        tx.execute(
            "INSERT INTO commands (agent_id, kind, spec, status, created_ms, created_by, expires_ms)
             VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6)",
            params![agent_id, spec.kind(), text, now, actor, now + ttl_ms.max(1000)],
        )?;
        let id = tx.last_insert_rowid();
        audit(&tx, actor, "command.queue", &agent.host, &text, remote)?;
        let record = get(&tx, id)?.context("command row just written")?;
        tx.commit()?;
        Ok(record)
    }

    /// Hands an agent its queued commands, oldest first, marking them delivered; those
    /// past their expiry become `expired` instead.
    pub fn take_commands(&self, agent_id: &str) -> Result<Vec<AgentCommand>> {
        let now = now_ms();
        let mut conn = self.conn();
        // Most polls find nothing: answer those without a write transaction.
        let queued: i64 = conn.query_row(
            "SELECT count(*) FROM commands WHERE agent_id = ?1 AND status = 'queued'",
            params![agent_id],
            |r| r.get(0),
        )?;
        if queued == 0 {
            return Ok(Vec::new());
        }
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE commands SET status = 'expired', finished_ms = ?2,
                 message = 'not picked up by the agent before it expired'
             WHERE agent_id = ?1 AND status = 'queued' AND expires_ms < ?2",
            params![agent_id, now],
        )?;
        let rows: Vec<(i64, String, i64)> = {
            let mut stmt = tx.prepare(
                "SELECT id, spec, created_ms FROM commands
                 WHERE agent_id = ?1 AND status = 'queued' ORDER BY id",
            )?;
            stmt.query_map(params![agent_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(rows.len());
        for (id, spec, created_ms) in rows {
            tx.execute(
                "UPDATE commands SET status = 'delivered', delivered_ms = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            match serde_json::from_str::<CommandSpec>(&spec) {
                Ok(command) => out.push(AgentCommand {
                    id,
                    command,
                    created_ms,
                }),
                Err(e) => {
                    tx.execute(
                        "UPDATE commands SET status = 'failed', finished_ms = ?2, message = ?3 WHERE id = ?1",
                        params![id, now, format!("stored command unreadable: {e}")],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Records an agent's result for a command delivered to it. `Ok(None)` when the
    /// command is not this agent's or not awaiting a result.
    pub fn finish_command(
        &self,
        agent_id: &str,
        result: &CommandResult,
    ) -> Result<Option<CommandRecord>> {
        let mut message = result.message.clone();
        truncate(&mut message, MAX_MESSAGE_BYTES);
        let output = result
            .output
            .as_deref()
            .filter(|o| o.len() <= MAX_OUTPUT_BYTES)
            .filter(|o| serde_json::from_str::<serde::de::IgnoredAny>(o).is_ok());
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE commands SET status = ?3, finished_ms = ?4, message = ?5, output = ?6
             WHERE id = ?1 AND agent_id = ?2 AND status = 'delivered'",
            params![
                result.id,
                agent_id,
                if result.ok { "succeeded" } else { "failed" },
                now_ms(),
                message,
                output
            ],
        )?;
        let record = if n == 1 { get(&tx, result.id)? } else { None };
        tx.commit()?;
        Ok(record)
    }

    pub fn command(&self, id: i64) -> Result<Option<CommandRecord>> {
        get(&self.conn(), id)
    }

    /// Newest first; only the named agent's when `who` is given.
    pub fn list_commands(&self, who: Option<&str>, limit: u32) -> Result<Vec<CommandRecord>> {
        let conn = self.conn();
        let agent = who.map(|w| resolve_agent(&conn, w)).transpose()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM commands c JOIN agents a ON a.id = c.agent_id
             WHERE ?1 IS NULL OR c.agent_id = ?1 ORDER BY c.id DESC LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![agent, limit], row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Agents with commands waiting.
    pub fn agents_with_queued_commands(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT DISTINCT agent_id FROM commands WHERE status = 'queued'")?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// Wakes long-polls and result waiters.
#[derive(Default)]
pub struct CommandWaker {
    agents: Mutex<HashMap<String, Arc<Notify>>>,
    /// Notified whenever any result arrives.
    pub results: Notify,
}

impl CommandWaker {
    /// The notifier a poll of `agent_id` waits on.
    pub fn agent(&self, agent_id: &str) -> Arc<Notify> {
        let mut m = self
            .agents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.entry(agent_id.to_owned()).or_default().clone()
    }

    /// Wakes the poll of `agent_id`, or the next one if none is waiting.
    pub fn wake(&self, agent_id: &str) {
        self.agent(agent_id).notify_one();
    }
}

/// Notices commands queued by other processes and wakes their agents' polls; also
/// wakes result waiters, since the CLI may be waiting on a result this server stored.
pub async fn watch(db: Arc<ControlDb>, waker: Arc<CommandWaker>) {
    let mut last = -1i64;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let db2 = db.clone();
        let seen = last;
        let found = tokio::task::spawn_blocking(move || -> Result<Option<(i64, Vec<String>)>> {
            let version = db2.data_version()?;
            if version == seen {
                return Ok(None);
            }
            Ok(Some((version, db2.agents_with_queued_commands()?)))
        })
        .await;
        match found {
            Ok(Ok(Some((version, agents)))) => {
                last = version;
                for a in agents {
                    waker.wake(&a);
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "checking for queued commands"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcmon_wire::api::{AgentStatus, RegisterRequest};
    use dcmon_wire::command::{FanControl, Reboot};

    fn agent(db: &ControlDb, host: &str, status: AgentStatus) -> String {
        let token = db
            .create_enroll_token(1, std::time::Duration::from_secs(60), "test")
            .unwrap();
        let req = RegisterRequest {
            token,
            public_key: format!("ed25519:{host}"),
            hostname: host.into(),
            machine_id: format!("m-{host}"),
            agent_version: "t".into(),
        };
        db.register_agent(&req.token, &req, status, None)
            .unwrap()
            .unwrap()
            .id
    }

    #[test]
    fn queue_deliver_finish_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let db = ControlDb::open(dir.path()).unwrap();
        let a = agent(&db, "gpu01", AgentStatus::Approved);
        agent(&db, "gpu02", AgentStatus::Pending);
        let spec = CommandSpec::FanControl(FanControl::Zone {
            zone: 0,
            duty: Some(40),
        });
        let q = db
            .queue_command("gpu01", &spec, "token:ops", None, DEFAULT_TTL_MS)
            .unwrap();
        assert_eq!((q.status.as_str(), q.host.as_str()), ("queued", "gpu01"));
        let e = db
            .queue_command(
                "gpu02",
                &CommandSpec::CollectNow,
                "token:ops",
                None,
                DEFAULT_TTL_MS,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("pending"), "{e}");
        let e = db
            .queue_command(
                "gpu01",
                &CommandSpec::Reboot(Reboot {
                    delay_s: 100_000,
                    cancel: false,
                }),
                "t",
                None,
                DEFAULT_TTL_MS,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("one day"), "{e}");
        assert!(db.queue_command("nope", &spec, "t", None, 1000).is_err());
        assert_eq!(db.agents_with_queued_commands().unwrap(), vec![a.clone()]);

        let got = db.take_commands(&a).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].command, spec);
        assert!(db.take_commands(&a).unwrap().is_empty(), "delivered once");
        // Another agent cannot answer for it.
        let result = CommandResult {
            id: q.id,
            ok: true,
            message: "Zone 0 duty set to 40 %".into(),
            output: Some(r#"{"zones":[{"zone":0,"duty_percent":40}]}"#.into()),
        };
        assert!(db.finish_command("other", &result).unwrap().is_none());
        let done = db.finish_command(&a, &result).unwrap().unwrap();
        assert_eq!(done.status, "succeeded");
        assert_eq!(done.output.unwrap()["zones"][0]["duty_percent"], 40);
        assert!(
            db.finish_command(&a, &result).unwrap().is_none(),
            "only once"
        );

        // Expired commands are never delivered.
        let old = db
            .queue_command("gpu01", &CommandSpec::CollectNow, "t", None, 1)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(db.take_commands(&a).unwrap().is_empty());
        assert_eq!(db.command(old.id).unwrap().unwrap().status, "expired");
        let history = db.list_commands(Some("gpu01"), 10).unwrap();
        assert_eq!(
            history
                .iter()
                .map(|c| c.status.as_str())
                .collect::<Vec<_>>(),
            ["expired", "succeeded"]
        );
        let audit = db.audit_tail(10).unwrap();
        assert!(audit.iter().any(|e| e.action == "command.queue"));
    }
}
