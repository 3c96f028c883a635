//! Offline verification of a data directory: schema, series index, every chunk and
//! rollup decodes (checksums) and agrees with its row, chunks of a series do not
//! overlap, ingest-log rows decode and name known series.

use crate::db::{self, sqlite_err};
use crate::{SeriesId, TsdbError};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// What `check` found. `problems` is empty for a healthy store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub schema_version: i64,
    pub series: u64,
    pub chunks: u64,
    pub samples: u64,
    pub rollup_rows: u64,
    pub log_rows: u64,
    pub log_samples: u64,
    /// One line per problem, naming the series and time range where there is one.
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "schema version   {}", self.schema_version)?;
        writeln!(f, "series           {}", self.series)?;
        writeln!(
            f,
            "chunks           {} ({} samples)",
            self.chunks, self.samples
        )?;
        writeln!(f, "rollup rows      {}", self.rollup_rows)?;
        writeln!(
            f,
            "ingest log rows  {} ({} samples not yet in chunks or trimmed)",
            self.log_rows, self.log_samples
        )?;
        if self.problems.is_empty() {
            writeln!(f, "OK: no damage found")
        } else {
            writeln!(f, "DAMAGED: {} problem(s)", self.problems.len())?;
            for p in &self.problems {
                writeln!(f, "  - {p}")?;
            }
            Ok(())
        }
    }
}

/// Verifies the store in `dir` without changing it. Errors only when the file cannot be
/// read at all; damage is reported in [`CheckReport::problems`].
pub fn check(dir: &Path) -> Result<CheckReport, TsdbError> {
    let path = dir.join(db::FILE_NAME);
    if !path.exists() {
        return Err(TsdbError::CreateDir {
            path,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no tsdb database here"),
        });
    }
    let err = sqlite_err(&path);
    let conn = db::open_reader(&path)?;
    let mut r = CheckReport::default();
    let integrity: String = conn
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(&err)?;
    if integrity != "ok" {
        r.problems.push(format!("SQLite quick_check: {integrity}"));
    }
    r.schema_version = db::schema_version(&conn).map_err(&err)?.unwrap_or(0);
    if r.schema_version != db::SCHEMA_VERSION {
        r.problems.push(format!(
            "schema version {} (this dcmon writes {}); start the server once to migrate version 1",
            r.schema_version,
            db::SCHEMA_VERSION
        ));
        return Ok(r);
    }
    let mut series: HashMap<SeriesId, (String, Option<i64>)> = HashMap::new();
    {
        let mut stmt = conn
            .prepare("SELECT id, labels, sealed_max_t FROM series")
            .map_err(&err)?;
        let mut rows = stmt.query([]).map_err(&err)?;
        while let Some(row) = rows.next().map_err(&err)? {
            let id: i64 = row.get(0).map_err(&err)?;
            let text: String = row.get(1).map_err(&err)?;
            let name = match db::decode_labels(&text) {
                Ok(l) => l.to_string(),
                Err(e) => {
                    r.problems
                        .push(format!("series {id}: unreadable labels {text:?}: {e}"));
                    format!("series {id}")
                }
            };
            series.insert(id, (name, row.get(2).map_err(&err)?));
            r.series += 1;
        }
    }
    let name = |id: SeriesId| {
        series
            .get(&id)
            .map_or_else(|| format!("unknown series {id}"), |s| s.0.clone())
    };
    {
        let mut stmt = conn
            .prepare("SELECT series_id, min_t, max_t, data FROM chunks ORDER BY series_id, min_t")
            .map_err(&err)?;
        let mut rows = stmt.query([]).map_err(&err)?;
        let mut prev: Option<(SeriesId, i64)> = None;
        while let Some(row) = rows.next().map_err(&err)? {
            let id: i64 = row.get(0).map_err(&err)?;
            let min_t: i64 = row.get(1).map_err(&err)?;
            let max_t: i64 = row.get(2).map_err(&err)?;
            let data: Vec<u8> = row.get(3).map_err(&err)?;
            r.chunks += 1;
            let at = format!("chunk of {} covering {min_t}..{max_t} ms", name(id));
            if !series.contains_key(&id) {
                r.problems
                    .push(format!("{at}: its series is not in the index"));
            }
            match dcmon_chunk::decode(&data) {
                Ok((ts, _)) => {
                    r.samples += ts.len() as u64;
                    if ts.first() != Some(&min_t) || ts.last() != Some(&max_t) {
                        r.problems.push(format!(
                            "{at}: row says {min_t}..{max_t}, data holds {:?}..{:?}",
                            ts.first(),
                            ts.last()
                        ));
                    }
                    if series
                        .get(&id)
                        .is_some_and(|s| s.1.is_none_or(|m| max_t > m))
                    {
                        r.problems
                            .push(format!("{at}: ends after the series' sealed watermark"));
                    }
                }
                Err(e) => r.problems.push(format!("{at}: {e}")),
            }
            if let Some((pid, pmax)) = prev
                && pid == id
                && pmax >= min_t
            {
                r.problems
                    .push(format!("{at}: overlaps the previous chunk (ending {pmax})"));
            }
            prev = Some((id, max_t));
        }
    }
    {
        let mut stmt = conn
            .prepare("SELECT series_id, resolution_ms, min_t, max_t, data FROM rollups")
            .map_err(&err)?;
        let mut rows = stmt.query([]).map_err(&err)?;
        while let Some(row) = rows.next().map_err(&err)? {
            let id: i64 = row.get(0).map_err(&err)?;
            let res: i64 = row.get(1).map_err(&err)?;
            let min_t: i64 = row.get(2).map_err(&err)?;
            let max_t: i64 = row.get(3).map_err(&err)?;
            let data: Vec<u8> = row.get(4).map_err(&err)?;
            r.rollup_rows += 1;
            let at = format!(
                "{res} ms rollup of {} covering {min_t}..{max_t} ms",
                name(id)
            );
            if crate::rollup::Resolution::from_ms(res).is_none() {
                r.problems.push(format!("{at}: unknown resolution"));
            }
            if let Err(e) = crate::rollup::decode(&data) {
                r.problems.push(format!("{at}: {e}"));
            }
        }
    }
    {
        let mut stmt = conn
            .prepare("SELECT seq, data FROM ingest_log ORDER BY seq")
            .map_err(&err)?;
        let mut rows = stmt.query([]).map_err(&err)?;
        while let Some(row) = rows.next().map_err(&err)? {
            let seq: i64 = row.get(0).map_err(&err)?;
            let data: Vec<u8> = row.get(1).map_err(&err)?;
            r.log_rows += 1;
            match crate::log::decode(&data) {
                Ok(samples) => {
                    r.log_samples += samples.len() as u64;
                    if let Some((id, ..)) = samples.iter().find(|s| !series.contains_key(&s.0)) {
                        r.problems
                            .push(format!("ingest log row {seq}: names unknown series {id}"));
                    }
                }
                Err(e) => r.problems.push(format!("ingest log row {seq}: {e}")),
            }
        }
    }
    Ok(r)
}
