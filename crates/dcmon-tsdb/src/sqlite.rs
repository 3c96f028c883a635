//! SQLite-backed store: a `series` table (labels → id) and a `samples` table keyed by
//! (series, timestamp). Values are stored as their IEEE-754 bits so NaN payloads and
//! -0.0 survive (SQLite would turn a NaN REAL into NULL).

use crate::matcher::Matcher;
use dcmon_wire::Labels;
use rusqlite::{Connection, OpenFlags, params};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

/// Stable id of a series within one data directory.
pub type SeriesId = i64;

const SCHEMA_VERSION: i64 = 1;
const FILE_NAME: &str = "tsdb.sqlite";

#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    #[error("tsdb {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "tsdb {path}: schema version {found} is newer than this dcmon understands ({SCHEMA_VERSION}); upgrade dcmon"
    )]
    SchemaTooNew { path: PathBuf, found: i64 },
    #[error("tsdb {path}: series {id} has unreadable labels: {message}")]
    CorruptSeries {
        path: PathBuf,
        id: SeriesId,
        message: String,
    },
    #[error("creating {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One series and its samples in the selected range, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsdbStats {
    pub series: u64,
    pub samples: u64,
    pub disk_bytes: u64,
}

#[derive(Default)]
struct Index {
    by_labels: HashMap<Labels, SeriesId>,
    series: Vec<(SeriesId, Labels)>,
}

/// The store of one data directory. Cheap to share behind an `Arc`; every method blocks
/// on disk IO, so async callers use `spawn_blocking`.
pub struct Tsdb {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    index: RwLock<Index>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave SQLite half-written (transactions roll
    // back on drop), so the guarded connection stays usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Tsdb {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, TsdbError> {
        std::fs::create_dir_all(dir).map_err(|source| TsdbError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let err = |source| TsdbError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        // FULL: the WAL is fsync'd at every commit, so an acknowledged append survives a
        // power cut, not only a process crash.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS series (
                 id INTEGER PRIMARY KEY,
                 labels TEXT NOT NULL UNIQUE
             );
             CREATE TABLE IF NOT EXISTS samples (
                 series_id INTEGER NOT NULL,
                 ts INTEGER NOT NULL,
                 bits INTEGER NOT NULL,
                 PRIMARY KEY (series_id, ts)
             ) WITHOUT ROWID;",
        )
        .map_err(err)?;
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .ok();
        match version.and_then(|v| v.parse::<i64>().ok()) {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(TsdbError::SchemaTooNew { path, found: v });
            }
            Some(_) => {}
            None => {
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
                    params![SCHEMA_VERSION.to_string()],
                )
                .map_err(err)?;
            }
        }
        let mut index = Index::default();
        {
            let mut stmt = conn
                .prepare("SELECT id, labels FROM series ORDER BY id")
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .map_err(err)?;
            for row in rows {
                let (id, text) = row.map_err(err)?;
                let labels = decode_labels(&text).map_err(|message| TsdbError::CorruptSeries {
                    path: path.clone(),
                    id,
                    message,
                })?;
                index.by_labels.insert(labels.clone(), id);
                index.series.push((id, labels));
            }
        }
        Ok(Self {
            path,
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            index: RwLock::new(index),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> TsdbError + '_ {
        |source| TsdbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, TsdbError>,
    ) -> Result<T, TsdbError> {
        let conn = lock(&self.readers).pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(self.err())?;
                c.busy_timeout(Duration::from_secs(10))
                    .map_err(self.err())?;
                c
            }
        };
        let out = f(&conn);
        lock(&self.readers).push(conn);
        out
    }

    /// Returns the id of each series, creating the missing ones (durably).
    pub fn resolve(&self, series: &[Labels]) -> Result<Vec<SeriesId>, TsdbError> {
        let mut out = Vec::with_capacity(series.len());
        let mut missing = Vec::new();
        {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            for (i, l) in series.iter().enumerate() {
                match index.by_labels.get(l) {
                    Some(id) => out.push(*id),
                    None => {
                        out.push(0);
                        missing.push(i);
                    }
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(self.err())?;
        let mut created = Vec::new();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO series (labels) VALUES (?1) ON CONFLICT (labels) DO NOTHING",
                )
                .map_err(self.err())?;
            let mut select = tx
                .prepare_cached("SELECT id FROM series WHERE labels = ?1")
                .map_err(self.err())?;
            for &i in &missing {
                let text = encode_labels(&series[i]);
                insert.execute(params![text]).map_err(self.err())?;
                let id: i64 = select
                    .query_row(params![text], |r| r.get(0))
                    .map_err(self.err())?;
                out[i] = id;
                created.push((id, series[i].clone()));
            }
        }
        tx.commit().map_err(self.err())?;
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        for (id, labels) in created {
            if index.by_labels.insert(labels.clone(), id).is_none() {
                index.series.push((id, labels));
            }
        }
        Ok(out)
    }

    /// Stores samples in one transaction; returns once it is on disk. A sample at a
    /// timestamp the series already has replaces it (retransmissions are idempotent).
    pub fn append(&self, samples: &[(SeriesId, i64, f64)]) -> Result<usize, TsdbError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(self.err())?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO samples (series_id, ts, bits) VALUES (?1, ?2, ?3)
                     ON CONFLICT (series_id, ts) DO UPDATE SET bits = excluded.bits",
                )
                .map_err(self.err())?;
            for &(id, ts, v) in samples {
                stmt.execute(params![id, ts, v.to_bits() as i64])
                    .map_err(self.err())?;
            }
        }
        tx.commit().map_err(self.err())?;
        Ok(samples.len())
    }

    /// Series whose labels satisfy every matcher.
    pub fn matching(&self, matchers: &[Matcher]) -> Vec<(SeriesId, Labels)> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        index
            .series
            .iter()
            .filter(|(_, l)| matchers.iter().all(|m| m.matches(l)))
            .cloned()
            .collect()
    }

    /// Samples with `start_ms <= ts <= end_ms` of every matching series that has any.
    pub fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, TsdbError> {
        let series = self.matching(matchers);
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT ts, bits FROM samples WHERE series_id = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts")
                .map_err(self.err())?;
            let mut out = Vec::new();
            for (id, labels) in series {
                let rows = stmt
                    .query_map(params![id, start_ms, end_ms], |r| {
                        Ok((r.get::<_, i64>(0)?, f64::from_bits(r.get::<_, i64>(1)? as u64)))
                    })
                    .map_err(self.err())?;
                let samples = rows.collect::<Result<Vec<_>, _>>().map_err(self.err())?;
                if !samples.is_empty() {
                    out.push(SeriesData { labels, samples });
                }
            }
            Ok(out)
        })
    }

    /// Every label name in use, sorted.
    pub fn label_names(&self, matchers: &[Matcher]) -> Vec<String> {
        let mut names = BTreeSet::new();
        for (_, l) in self.matching(matchers) {
            for (k, _) in l.pairs() {
                names.insert(k.clone());
            }
        }
        names.into_iter().collect()
    }

    /// Every value of label `name` in use, sorted.
    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Vec<String> {
        let mut values = BTreeSet::new();
        for (_, l) in self.matching(matchers) {
            if let Some(v) = l.get(name) {
                values.insert(v.to_owned());
            }
        }
        values.into_iter().collect()
    }

    /// Deletes samples older than `before_ms`, one series per transaction so that
    /// appends are never blocked for long. Returns the number of samples deleted.
    pub fn delete_before(&self, before_ms: i64) -> Result<u64, TsdbError> {
        let ids: Vec<SeriesId> = {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            index.series.iter().map(|(id, _)| *id).collect()
        };
        let mut deleted = 0u64;
        for id in ids {
            let conn = lock(&self.writer);
            deleted += conn
                .execute(
                    "DELETE FROM samples WHERE series_id = ?1 AND ts < ?2",
                    params![id, before_ms],
                )
                .map_err(self.err())? as u64;
        }
        Ok(deleted)
    }

    pub fn stats(&self) -> Result<TsdbStats, TsdbError> {
        let series = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .series
            .len() as u64;
        let samples = self.with_reader(|c| {
            c.query_row("SELECT COUNT(*) FROM samples", [], |r| r.get::<_, i64>(0))
                .map_err(self.err())
        })? as u64;
        let disk_bytes = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", self.path.display())).ok())
            .map(|m| m.len())
            .sum();
        Ok(TsdbStats {
            series,
            samples,
            disk_bytes,
        })
    }
}

fn encode_labels(l: &Labels) -> String {
    serde_json::to_string(l.pairs()).expect("a list of string pairs always serialises")
}

fn decode_labels(text: &str) -> Result<Labels, String> {
    let pairs: Vec<(String, String)> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Labels::from_pairs(pairs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MatchOp;

    fn labels(metric: &str, host: &str) -> Labels {
        Labels::new(metric, [("host", host)]).unwrap()
    }

    #[test]
    fn append_select_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Tsdb::open(dir.path()).unwrap();
            let ids = db
                .resolve(&[labels("up", "a"), labels("up", "b"), labels("load", "a")])
                .unwrap();
            assert_eq!(db.resolve(&[labels("up", "b")]).unwrap(), vec![ids[1]]);
            let nan = f64::from_bits(0x7ff8_0000_0000_0123);
            db.append(&[
                (ids[0], 1000, 1.0),
                (ids[0], 2000, -0.0),
                (ids[1], 1000, nan),
                (ids[2], 1500, 0.5),
            ])
            .unwrap();
            // A retransmission replaces, never duplicates.
            db.append(&[(ids[0], 2000, -0.0)]).unwrap();
        }
        let db = Tsdb::open(dir.path()).unwrap();
        let got = db
            .select(&[Matcher::equal("__name__", "up")], 0, 5000)
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].samples.len(), 2);
        assert_eq!(got[0].samples[1].1.to_bits(), (-0.0f64).to_bits());
        assert_eq!(got[1].samples[0].1.to_bits(), 0x7ff8_0000_0000_0123);
        let only_b = db
            .select(
                &[Matcher::new("host", MatchOp::RegexMatch, "b|c").unwrap()],
                0,
                5000,
            )
            .unwrap();
        assert_eq!(only_b.len(), 1);
        assert_eq!(db.select(&[], 1600, 5000).unwrap().len(), 1);
        assert_eq!(db.label_names(&[]), vec!["__name__", "host"]);
        assert_eq!(db.label_values("host", &[]), vec!["a", "b"]);
        assert_eq!(db.stats().unwrap().samples, 4);
        assert_eq!(db.delete_before(1500).unwrap(), 2);
        assert_eq!(db.stats().unwrap().samples, 2);
    }
}
