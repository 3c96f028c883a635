//! Events (DESIGN §5, §7): things that happened once, such as a BMC's SEL entry, kept in
//! the control store's `events` table. Each carries a `dedup_key`, UNIQUE in the table,
//! so a source that reports the same happening again (a SEL read twice after a poll
//! was cut short) stores it once.

use crate::control::ControlDb;
use rusqlite::params;

/// Most events one listing returns.
pub const MAX_LIST: u32 = 10_000;

/// An event to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub ts_ms: i64,
    /// What reported it: `bmc` for the BMC poller.
    pub source: String,
    pub host: String,
    pub bmc: Option<String>,
    /// `sel` for a SEL entry.
    pub kind: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub message: String,
    pub detail: serde_json::Value,
    /// Same key, same event: a second insert is ignored.
    pub dedup_key: String,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub ts_ms: i64,
    pub source: String,
    pub host: String,
    pub bmc: Option<String>,
    pub kind: String,
    pub severity: String,
    pub message: String,
    pub detail: serde_json::Value,
}

/// Which events a listing returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    pub host: Option<String>,
    pub bmc: Option<String>,
    pub kind: Option<String>,
    pub severity: Option<String>,
    /// Events at or after this time (ms since 1970).
    pub since_ms: Option<i64>,
}

/// Inserts events, ignoring those whose key is stored already; returns how many were new.
pub(crate) fn insert_events(
    conn: &rusqlite::Connection,
    events: &[NewEvent],
) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO events
             (ts_ms, source, host, bmc, kind, severity, message, detail, dedup_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut new = 0;
    for e in events {
        new += stmt.execute(params![
            e.ts_ms,
            e.source,
            e.host,
            e.bmc,
            e.kind,
            e.severity,
            e.message,
            e.detail.to_string(),
            e.dedup_key
        ])?;
    }
    Ok(new)
}

impl ControlDb {
    /// Stores events (each once, by its dedup key); returns how many were new.
    pub fn add_events(&self, events: &[NewEvent]) -> anyhow::Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let new = insert_events(&tx, events)?;
        tx.commit()?;
        Ok(new)
    }

    /// The newest `limit` events (at most [`MAX_LIST`]) matching `filter`, newest first.
    pub fn list_events(
        &self,
        filter: &EventFilter,
        limit: u32,
    ) -> anyhow::Result<Vec<EventRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, ts_ms, source, host, bmc, kind, severity, message, detail FROM events
             WHERE (?1 IS NULL OR host = ?1) AND (?2 IS NULL OR bmc = ?2)
               AND (?3 IS NULL OR kind = ?3) AND (?4 IS NULL OR severity = ?4)
               AND (?5 IS NULL OR ts_ms >= ?5)
             ORDER BY ts_ms DESC, id DESC LIMIT ?6",
        )?;
        let rows = stmt.query_map(
            params![
                filter.host,
                filter.bmc,
                filter.kind,
                filter.severity,
                filter.since_ms,
                limit.min(MAX_LIST)
            ],
            |r| {
                let detail: String = r.get(8)?;
                Ok(EventRecord {
                    id: r.get(0)?,
                    ts_ms: r.get(1)?,
                    source: r.get(2)?,
                    host: r.get(3)?,
                    bmc: r.get(4)?,
                    kind: r.get(5)?,
                    severity: r.get(6)?,
                    message: r.get(7)?,
                    // Written by `insert_events` from a JSON value; text that does not
                    // parse (edited by hand) is shown as it is.
                    detail: serde_json::from_str(&detail)
                        .unwrap_or(serde_json::Value::String(detail)),
                })
            },
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str, ts_ms: i64, severity: &str) -> NewEvent {
        NewEvent {
            ts_ms,
            source: "bmc".into(),
            host: "node1".into(),
            bmc: Some("node1-bmc".into()),
            kind: "sel".into(),
            severity: severity.into(),
            message: format!("event {key}"),
            detail: serde_json::json!({ "record_id": 1 }),
            dedup_key: key.into(),
        }
    }

    #[test]
    fn events_are_stored_once_and_listed_newest_first_with_filters() {
        let dir = tempfile::tempdir().unwrap();
        let db = ControlDb::open(dir.path()).unwrap();
        let batch = [event("a", 1, "info"), event("b", 2, "critical")];
        assert_eq!(db.add_events(&batch).unwrap(), 2);
        assert_eq!(db.add_events(&batch).unwrap(), 0, "same keys again");
        let all = db.list_events(&EventFilter::default(), 10).unwrap();
        let keys: Vec<&str> = all.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(keys, ["event b", "event a"]);
        assert_eq!(all[0].detail["record_id"], 1);
        let critical = EventFilter {
            severity: Some("critical".into()),
            ..EventFilter::default()
        };
        assert_eq!(db.list_events(&critical, 10).unwrap().len(), 1);
        let other_host = EventFilter {
            host: Some("node2".into()),
            ..EventFilter::default()
        };
        assert!(db.list_events(&other_host, 10).unwrap().is_empty());
        assert_eq!(db.list_events(&EventFilter::default(), 1).unwrap().len(), 1);
    }
}
