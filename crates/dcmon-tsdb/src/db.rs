//! The SQLite file: connections, schema, migration from the row-per-sample layout, and
//! the chunk reads shared by queries, the writer and `check`.

use crate::{SeriesId, TsdbError};
use dcmon_wire::Labels;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::Path;
use std::time::Duration;

pub(crate) const SCHEMA_VERSION: i64 = 2;
pub(crate) const FILE_NAME: &str = "tsdb.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    labels TEXT NOT NULL UNIQUE,
    sealed_max_t INTEGER,
    sealed_log_seq INTEGER NOT NULL DEFAULT 0,
    sealed_samples INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chunks (
    series_id INTEGER NOT NULL,
    min_t INTEGER NOT NULL,
    max_t INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (series_id, min_t)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollups (
    series_id INTEGER NOT NULL,
    resolution_ms INTEGER NOT NULL,
    min_t INTEGER NOT NULL,
    max_t INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (series_id, resolution_ms, min_t)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ingest_log (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
";

pub(crate) fn sqlite_err(path: &Path) -> impl Fn(rusqlite::Error) -> TsdbError + '_ {
    move |source| TsdbError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// The one read-write connection (the writer's).
pub(crate) fn open_writer(path: &Path) -> Result<Connection, TsdbError> {
    let err = sqlite_err(path);
    let conn = Connection::open(path).map_err(&err)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(&err)?;
    // Pages freed by trimming the ingest log and expiring chunks are given back to the
    // file system in bounded steps (`Maintenance::Vacuum`). Takes effect on a new file;
    // `prepare` converts an older one.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(&err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(&err)?;
    // FULL: the WAL is fsync'd at every commit, so an acknowledged append survives a
    // power cut, not only a process crash.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(&err)?;
    // The checkpointer thread copies the WAL into the database beside the writer (see
    // `store::checkpointer`); the writer checkpoints itself only if that falls far behind
    // (100,000 pages, about 400 MiB of WAL), because a checkpoint on the commit path
    // stalls every waiting append for its copy and fsync.
    conn.pragma_update(None, "wal_autocheckpoint", 100_000)
        .map_err(&err)?;
    // After a checkpoint lets the WAL restart, give its disk space back beyond 64 MiB.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .map_err(&err)?;
    Ok(conn)
}

/// A second read-write connection, for checkpoints only (never writes rows).
pub(crate) fn open_reader_writer(path: &Path) -> Result<Connection, TsdbError> {
    let err = sqlite_err(path);
    let conn = Connection::open(path).map_err(&err)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(&err)?;
    Ok(conn)
}

pub(crate) fn open_reader(path: &Path) -> Result<Connection, TsdbError> {
    let err = sqlite_err(path);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(&err)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(&err)?;
    Ok(conn)
}

pub(crate) fn schema_version(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let has_meta: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
        [],
        |r| r.get(0),
    )?;
    if !has_meta {
        return Ok(None);
    }
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(v.and_then(|v| v.parse().ok()))
}

/// Creates the schema, or migrates version 1 (one row per sample) into chunks of
/// `chunk_samples`, in one transaction: a crash half-way leaves version 1 intact.
pub(crate) fn prepare(
    conn: &mut Connection,
    path: &Path,
    chunk_samples: usize,
) -> Result<(), TsdbError> {
    let err = sqlite_err(path);
    let auto_vacuum: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .map_err(&err)?;
    let has_tables: bool = conn
        .query_row("SELECT count(*) > 0 FROM sqlite_master", [], |r| r.get(0))
        .map_err(&err)?;
    if auto_vacuum != 2 && has_tables {
        // A file from before incremental vacuum: one full VACUUM switches it over.
        tracing::info!(path = %path.display(), "tsdb: converting the file to incremental vacuum (one-time rewrite)");
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")
            .map_err(&err)?;
    }
    match schema_version(conn).map_err(&err)? {
        Some(v) if v > SCHEMA_VERSION => Err(TsdbError::SchemaTooNew {
            path: path.to_owned(),
            found: v,
        }),
        Some(SCHEMA_VERSION) => Ok(()),
        Some(1) => migrate_v1(conn, path, chunk_samples),
        _ => {
            let tx = conn.transaction().map_err(&err)?;
            tx.execute_batch(SCHEMA).map_err(&err)?;
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
                params![SCHEMA_VERSION.to_string()],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)
        }
    }
}

fn migrate_v1(conn: &mut Connection, path: &Path, chunk_samples: usize) -> Result<(), TsdbError> {
    let err = sqlite_err(path);
    tracing::info!(path = %path.display(), "tsdb: migrating schema version 1 (row per sample) to version 2 (compressed chunks)");
    let tx = conn.transaction().map_err(&err)?;
    tx.execute_batch(
        "ALTER TABLE series ADD COLUMN sealed_max_t INTEGER;
         ALTER TABLE series ADD COLUMN sealed_log_seq INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE series ADD COLUMN sealed_samples INTEGER NOT NULL DEFAULT 0;",
    )
    .map_err(&err)?;
    tx.execute_batch(SCHEMA).map_err(&err)?;
    let ids: Vec<i64> = {
        let mut stmt = tx
            .prepare("SELECT id FROM series ORDER BY id")
            .map_err(&err)?;
        stmt.query_map([], |r| r.get(0))
            .map_err(&err)?
            .collect::<Result<_, _>>()
            .map_err(&err)?
    };
    let mut moved = 0u64;
    for id in ids {
        let samples: Vec<(i64, f64)> = {
            let mut stmt = tx
                .prepare_cached("SELECT ts, bits FROM samples WHERE series_id = ?1 ORDER BY ts")
                .map_err(&err)?;
            stmt.query_map(params![id], |r| {
                Ok((r.get(0)?, f64::from_bits(r.get::<_, i64>(1)? as u64)))
            })
            .map_err(&err)?
            .collect::<Result<_, _>>()
            .map_err(&err)?
        };
        for part in samples.chunks(chunk_samples.max(1)) {
            insert_chunk(&tx, id, part).map_err(&err)?;
        }
        if let Some(last) = samples.last() {
            tx.execute(
                "UPDATE series SET sealed_max_t = ?2, sealed_samples = ?3 WHERE id = ?1",
                params![id, last.0, samples.len() as i64],
            )
            .map_err(&err)?;
        }
        moved += samples.len() as u64;
    }
    tx.execute_batch(
        "DROP TABLE samples;
         UPDATE meta SET value = '2' WHERE key = 'schema_version';",
    )
    .map_err(&err)?;
    tx.commit().map_err(&err)?;
    tracing::info!(samples = moved, "tsdb: migration to version 2 done");
    Ok(())
}

/// Encodes and stores one chunk; returns its bytes.
pub(crate) fn insert_chunk(
    conn: &Connection,
    id: SeriesId,
    samples: &[(i64, f64)],
) -> rusqlite::Result<Vec<u8>> {
    let ts: Vec<i64> = samples.iter().map(|s| s.0).collect();
    let vs: Vec<f64> = samples.iter().map(|s| s.1).collect();
    let bytes = dcmon_chunk::encode(&ts, &vs);
    conn.prepare_cached(
        "INSERT INTO chunks (series_id, min_t, max_t, data) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, ts[0], ts[ts.len() - 1], bytes])?;
    Ok(bytes)
}

/// One stored chunk row.
pub(crate) struct ChunkRow {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    pub(crate) data: Vec<u8>,
}

/// The chunks of `id` overlapping `[start, end]`, oldest first. A series' chunks never
/// overlap, so walking back from `end` can stop at the first one ending before `start`.
pub(crate) fn chunks_in(
    conn: &Connection,
    id: SeriesId,
    start: i64,
    end: i64,
) -> rusqlite::Result<Vec<ChunkRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT min_t, max_t, data FROM chunks WHERE series_id = ?1 AND min_t <= ?2 ORDER BY min_t DESC",
    )?;
    let mut rows = stmt.query(params![id, end])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let max_t: i64 = r.get(1)?;
        if max_t < start {
            break;
        }
        out.push(ChunkRow {
            min_t: r.get(0)?,
            max_t,
            data: r.get(2)?,
        });
    }
    out.reverse();
    Ok(out)
}

/// The chunk that would hold `t`: the newest starting at or before it, else the oldest.
pub(crate) fn chunk_for(
    conn: &Connection,
    id: SeriesId,
    t: i64,
) -> rusqlite::Result<Option<ChunkRow>> {
    let row = |r: &rusqlite::Row<'_>| {
        Ok(ChunkRow {
            min_t: r.get(0)?,
            max_t: r.get(1)?,
            data: r.get(2)?,
        })
    };
    let before = conn
        .prepare_cached(
            "SELECT min_t, max_t, data FROM chunks WHERE series_id = ?1 AND min_t <= ?2 ORDER BY min_t DESC LIMIT 1",
        )?
        .query_row(params![id, t], row)
        .optional()?;
    if before.is_some() {
        return Ok(before);
    }
    conn.prepare_cached(
        "SELECT min_t, max_t, data FROM chunks WHERE series_id = ?1 ORDER BY min_t LIMIT 1",
    )?
    .query_row(params![id], row)
    .optional()
}

pub(crate) fn encode_labels(l: &Labels) -> String {
    serde_json::to_string(l.pairs()).expect("a list of string pairs always serialises")
}

pub(crate) fn decode_labels(text: &str) -> Result<Labels, String> {
    let pairs: Vec<(String, String)> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Labels::from_pairs(pairs).map_err(|e| e.to_string())
}
