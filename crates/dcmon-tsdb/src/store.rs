//! The public store: opening (schema, index, log replay), the write API that hands work
//! to the writer thread, and the read API that serves heads from memory and sealed
//! chunks from SQLite.

use crate::db::{self, sqlite_err};
use crate::head::Heads;
use crate::index::Index;
use crate::matcher::Matcher;
use crate::rollup::{self, Bucket, Resolution};
use crate::writer::{Job, Maintenance, Writer};
use crate::{SeriesId, TsdbError};
use dcmon_wire::Labels;
use rusqlite::{Connection, params};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

const DAY_MS: i64 = 24 * 3600 * 1000;
/// Series whose expired chunks one retention transaction handles: small, so ingest
/// never waits long behind it (about 5 ms at 3 chunks a series on the reference machine).
const EXPIRE_SERIES_PER_STEP: SeriesId = 16;

/// Tunables of one store; [`Default`] gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsdbOptions {
    /// How far behind a series' newest sample a sample may arrive and still be stored.
    pub out_of_order_window_ms: i64,
    /// Raw samples are kept this long, then only their rollups.
    pub raw_retention_ms: i64,
    pub rollup_5m_retention_ms: i64,
    pub rollup_1h_retention_ms: i64,
    /// Most series one `host` label value may have; 0: no limit.
    pub max_series_per_host: usize,
    /// A head is sealed into a chunk when it holds this many samples.
    pub chunk_samples: usize,
    /// A head whose oldest sample is older than this is sealed at housekeeping.
    pub head_max_age_ms: i64,
}

impl Default for TsdbOptions {
    fn default() -> Self {
        Self {
            out_of_order_window_ms: 3600 * 1000,
            raw_retention_ms: 7 * DAY_MS,
            rollup_5m_retention_ms: 90 * DAY_MS,
            rollup_1h_retention_ms: 730 * DAY_MS,
            max_series_per_host: 10_000,
            chunk_samples: 120,
            head_max_age_ms: 2 * 3600 * 1000,
        }
    }
}

/// What became of the samples of one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppendReport {
    /// Stored now.
    pub accepted: usize,
    /// Already stored with the same value (a retry): nothing to do.
    pub duplicates: usize,
    /// Rejected, reason `too_old`: older than the out-of-order window.
    pub too_old: usize,
    /// Rejected, reason `duplicate_timestamp`: the series has another value at that time.
    pub duplicate_timestamp: usize,
}

impl AppendReport {
    pub fn rejected(&self) -> usize {
        self.too_old + self.duplicate_timestamp
    }
}

/// One series and its samples in the selected range, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// One series and its rollup buckets in the selected range, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupData {
    pub labels: Labels,
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TsdbStats {
    pub series: u64,
    /// Samples stored: sealed plus in the heads.
    pub samples: u64,
    pub head_samples: u64,
    pub disk_bytes: u64,
    pub appended: u64,
    pub duplicates: u64,
    pub rejected_too_old: u64,
    pub rejected_duplicate_timestamp: u64,
    /// Damaged chunks met by reads or housekeeping since start.
    pub corrupt_chunks: u64,
    /// Longest single maintenance step (how long it held ingest up), microseconds.
    pub worst_maintenance_us: u64,
}

/// What one housekeeping pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HousekeepingReport {
    pub heads_sealed: u64,
    /// Heads whose unsealed samples were copied to a fresh log row (see `Relog`).
    pub heads_relogged: u64,
    pub chunks_expired: u64,
    pub log_rows_trimmed: u64,
    /// Longest step, microseconds: the worst time ingest waited on housekeeping.
    pub worst_step_us: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) appended: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) too_old: AtomicU64,
    pub(crate) duplicate_timestamp: AtomicU64,
    pub(crate) corrupt_chunks: AtomicU64,
    pub(crate) head_samples: AtomicU64,
    pub(crate) stored_samples: AtomicU64,
    pub(crate) worst_maintenance_us: AtomicU64,
}

/// State shared by the API and the writer thread.
pub(crate) struct Shared {
    pub(crate) path: PathBuf,
    pub(crate) index: RwLock<Index>,
    /// Heads by series id (same slots as the index).
    pub(crate) heads: RwLock<Heads>,
    pub(crate) options: Mutex<TsdbOptions>,
    pub(crate) counters: Counters,
    /// Set when a write failed; writes are refused from then on.
    pub(crate) failed: Mutex<Option<String>>,
    /// Raw chunks ending before this may have been replaced by rollups; reads of older
    /// ranges consult the rollups. `i64::MIN` until retention first deleted something.
    pub(crate) raw_floor: AtomicI64,
    readers: Mutex<Vec<Connection>>,
    /// The log seq at the previous housekeeping pass: heads still pinning rows below it
    /// are relogged by the next pass, so the log spans at most about two passes.
    log_mark: AtomicU64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent before anything can panic, and
    // SQLite rolls back on its own, so a poisoned lock's data is still good.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// The store of one data directory. Share it behind an `Arc`; every method blocks (on
/// the writer's commit or on disk reads), so async callers use `spawn_blocking`.
/// Free-page steps (2 MiB each) per housekeeping pass: the rest waits for the next pass,
/// so a pass never holds the writer long.
const VACUUM_JOBS_PER_PASS: usize = 64;
/// At close: everything up to 1 GiB.
const VACUUM_JOBS_AT_CLOSE: usize = 512;
/// Heads copied into one log row by a relog step.
const RELOG_HEADS_PER_ROW: usize = 4096;

pub struct Tsdb {
    shared: Arc<Shared>,
    jobs: Option<Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    /// Dropping it stops the checkpointer.
    stop_checkpoints: Option<Sender<()>>,
    checkpointer: Option<JoinHandle<()>>,
}

impl Drop for Tsdb {
    fn drop(&mut self) {
        // Give back what is free before closing: the log rows already sealed and the free
        // pages. Heads are not sealed here: the ingest log has them, and the next open
        // replays it. Closing the channel ends the writer after the jobs already sent.
        if self.jobs.is_some() && lock(&self.shared.failed).is_none() {
            let mut report = HousekeepingReport::default();
            // Every unsealed sample into fresh rows, so all older rows can go: the file
            // left behind holds chunks and one compact copy of the heads.
            let compacted = self
                .relog(u64::MAX, &mut report)
                .and_then(|()| self.trim_and_vacuum(&mut report, VACUUM_JOBS_AT_CLOSE));
            if let Err(e) = compacted {
                tracing::warn!(error = %e, "tsdb: compaction at close");
            }
        }
        // The checkpointer stops first: the writer's last act is a TRUNCATE checkpoint,
        // which a concurrent checkpoint would make fail busy and leave the WAL behind.
        self.stop_checkpoints.take();
        if let Some(c) = self.checkpointer.take() {
            let _ = c.join();
        }
        self.jobs.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Tsdb {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub fn open(dir: &Path) -> Result<Self, TsdbError> {
        Self::open_with(dir, TsdbOptions::default())
    }

    /// Opens the store: creates or migrates the schema, loads the series index, replays
    /// the ingest log into the heads, starts the writer thread.
    pub fn open_with(dir: &Path, options: TsdbOptions) -> Result<Self, TsdbError> {
        std::fs::create_dir_all(dir).map_err(|source| TsdbError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(db::FILE_NAME);
        let err = sqlite_err(&path);
        let mut conn = db::open_writer(&path)?;
        db::prepare(&mut conn, &path, options.chunk_samples)?;
        let mut index = Index::default();
        let mut heads = Heads::default();
        // Per series (by id), what its chunks hold of the log: needed only for the replay.
        let mut sealed_log_seqs: Vec<u64> = Vec::new();
        let mut max_seq = 0u64;
        let mut stored = 0u64;
        {
            let mut stmt = conn
                .prepare("SELECT id, labels, sealed_max_t, sealed_log_seq, sealed_samples FROM series ORDER BY id")
                .map_err(&err)?;
            let mut rows = stmt.query([]).map_err(&err)?;
            while let Some(r) = rows.next().map_err(&err)? {
                let id: i64 = r.get(0).map_err(&err)?;
                let text: String = r.get(1).map_err(&err)?;
                let labels =
                    db::decode_labels(&text).map_err(|message| TsdbError::CorruptSeries {
                        path: path.clone(),
                        id,
                        message,
                    })?;
                let sealed_log_seq = r.get::<_, i64>(3).map_err(&err)? as u64;
                stored += r.get::<_, i64>(4).map_err(&err)?.max(0) as u64;
                max_seq = max_seq.max(sealed_log_seq);
                index.insert(id, labels);
                heads.grow_to(id);
                if let Some(head) = heads.get_mut(id) {
                    head.sealed_max = r.get(2).map_err(&err)?;
                }
                if let Ok(slot) = usize::try_from(id) {
                    if sealed_log_seqs.len() <= slot {
                        sealed_log_seqs.resize(slot + 1, 0);
                    }
                    sealed_log_seqs[slot] = sealed_log_seq;
                }
            }
        }
        // The newest chunk of each series serves recent reads without the database.
        {
            let mut stmt = conn
                .prepare(
                    "SELECT c.series_id, c.data FROM chunks c
                     JOIN (SELECT series_id, max(min_t) AS m FROM chunks GROUP BY series_id) n
                     ON c.series_id = n.series_id AND c.min_t = n.m",
                )
                .map_err(&err)?;
            let mut rows = stmt.query([]).map_err(&err)?;
            while let Some(r) = rows.next().map_err(&err)? {
                let id: i64 = r.get(0).map_err(&err)?;
                if let Some(h) = heads.get_mut(id) {
                    let data: Vec<u8> = r.get(1).map_err(&err)?;
                    // A damaged newest chunk leaves no tail: reads go to the file and
                    // report the damage there.
                    if let Ok((ts, vs)) = dcmon_chunk::decode(&data) {
                        let samples: Vec<(i64, f64)> = ts.into_iter().zip(vs).collect();
                        h.tail = crate::head::tail_of(&samples);
                    }
                }
            }
        }
        let (replayed, last_seq) = replay_log(&conn, &path, &index, &mut heads, &sealed_log_seqs)?;
        drop(sealed_log_seqs);
        let head_samples: u64 = heads
            .iter_mut()
            .map(|h| (h.samples.len() + h.ooo().len()) as u64)
            .sum();
        max_seq = max_seq.max(last_seq);
        let raw_floor = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'raw_floor_ms'",
                [],
                |r| r.get::<_, String>(0),
            )
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(i64::MIN);
        if replayed > 0 {
            tracing::info!(
                samples = replayed,
                "tsdb: replayed the ingest log into the heads"
            );
        }
        let next_id = index.id_bound().max(1) as SeriesId;
        let shared = Arc::new(Shared {
            path: path.clone(),
            index: RwLock::new(index),
            heads: RwLock::new(heads),
            options: Mutex::new(options),
            counters: Counters::default(),
            failed: Mutex::new(None),
            raw_floor: AtomicI64::new(raw_floor),
            readers: Mutex::new(Vec::new()),
            log_mark: AtomicU64::new(0),
        });
        shared
            .counters
            .head_samples
            .store(head_samples, Ordering::Relaxed);
        shared
            .counters
            .stored_samples
            .store(stored, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            shared: shared.clone(),
            conn,
            next_seq: max_seq + 1,
            next_id,
        };
        let handle = std::thread::Builder::new()
            .name("tsdb-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| TsdbError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        let (stop_tx, stop_rx) = mpsc::channel();
        let checkpoint_conn = db::open_reader_writer(&path)?;
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let checkpointer = std::thread::Builder::new()
            .name("tsdb-checkpoint".into())
            .spawn(move || checkpointer(&checkpoint_conn, &wal, &stop_rx))
            .map_err(|source| TsdbError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        Ok(Self {
            shared,
            jobs: Some(tx),
            writer: Some(handle),
            stop_checkpoints: Some(stop_tx),
            checkpointer: Some(checkpointer),
        })
    }

    /// Replaces the tunables (a configuration reload); takes effect for the next write.
    pub fn set_options(&self, options: TsdbOptions) {
        *lock(&self.shared.options) = options;
    }

    fn send<T>(
        &self,
        make: impl FnOnce(mpsc::SyncSender<Result<T, TsdbError>>) -> Job,
    ) -> Result<T, TsdbError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .as_ref()
            .ok_or(TsdbError::Closed)?
            .send(make(tx))
            .map_err(|_| TsdbError::Closed)?;
        rx.recv().map_err(|_| TsdbError::Closed)?
    }

    /// Returns the id of each series, creating the missing ones (durably). Refuses the
    /// whole call with [`TsdbError::TooManySeries`] when a host would pass its limit.
    pub fn resolve(&self, series: &[Labels]) -> Result<Vec<SeriesId>, TsdbError> {
        {
            let index = read_lock(&self.shared.index);
            let known: Option<Vec<SeriesId>> = series.iter().map(|l| index.get(l)).collect();
            if let Some(ids) = known {
                return Ok(ids);
            }
        }
        self.send(|r| Job::Resolve(series.to_vec(), r))
    }

    /// Stores samples; returns once they are durable (fsync'd in the ingest log). Returns
    /// how many are stored (accepted now or already there); rejected samples are counted
    /// in the stats, and [`Tsdb::append_report`] says which.
    pub fn append(&self, samples: &[(SeriesId, i64, f64)]) -> Result<usize, TsdbError> {
        self.append_report(samples)
            .map(|r| r.accepted + r.duplicates)
    }

    /// Like [`Tsdb::append`], with the fate of every sample.
    pub fn append_report(
        &self,
        samples: &[(SeriesId, i64, f64)],
    ) -> Result<AppendReport, TsdbError> {
        if samples.is_empty() {
            return Ok(AppendReport::default());
        }
        self.send(|r| Job::Append(samples.to_vec(), r))
    }

    /// Series whose labels satisfy every matcher, by id.
    pub fn matching(&self, matchers: &[Matcher]) -> Vec<(SeriesId, Labels)> {
        let index = read_lock(&self.shared.index);
        index
            .matching(matchers)
            .into_iter()
            .filter_map(|id| index.labels(id).map(|l| (id, l)))
            .collect()
    }

    /// Samples with `start_ms <= ts <= end_ms` of every matching series that has any.
    pub fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, TsdbError> {
        self.select_with_warnings(matchers, start_ms, end_ms)
            .map(|(d, _)| d)
    }

    /// Like [`Tsdb::select`], plus a warning for every damaged chunk that was skipped
    /// (which series, which time range). Where raw samples of the range have expired,
    /// each 5-minute rollup bucket (else 1-hour) stands in as one sample: the bucket's
    /// `last` value at the bucket's start time.
    pub fn select_with_warnings(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<(Vec<SeriesData>, Vec<String>), TsdbError> {
        let raw_floor = self.shared.raw_floor.load(Ordering::Relaxed);
        self.select_inner(matchers, start_ms, end_ms, raw_floor)
    }

    /// Raw samples, with rollup stand-ins before `raw_floor`.
    fn select_inner(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        raw_floor: i64,
    ) -> Result<(Vec<SeriesData>, Vec<String>), TsdbError> {
        let series: Vec<(SeriesId, Labels)> = {
            let index = read_lock(&self.shared.index);
            index
                .matching(matchers)
                .into_iter()
                .filter_map(|id| index.labels(id).map(|l| (id, l)))
                .collect()
        };
        struct Pending {
            id: SeriesId,
            labels: Labels,
            head: Vec<(i64, f64)>,
            sealed_max: Option<i64>,
            tail: Vec<(i64, f64)>,
            tail_from: Option<i64>,
        }
        let mut pending = Vec::with_capacity(series.len());
        {
            let heads = read_lock(&self.shared.heads);
            for (id, labels) in series {
                let Some(slot) = heads.get(id) else {
                    continue;
                };
                let h = lock(slot);
                let mut head = Vec::new();
                h.read(start_ms, end_ms, &mut head);
                let sealed = h.sealed_max.filter(|&s| s >= start_ms);
                pending.push(Pending {
                    id,
                    labels,
                    head,
                    sealed_max: sealed,
                    tail_from: sealed.and(h.tail.first_time()),
                    tail: match (sealed, h.tail.first_time()) {
                        (Some(_), Some(first)) if first <= start_ms => {
                            let mut t = Vec::new();
                            h.tail.read(start_ms, end_ms, &mut t);
                            t
                        }
                        _ => Vec::new(),
                    },
                });
            }
        }
        let mut warnings = Vec::new();
        let mut out = Vec::new();
        let mut reader: Option<Connection> = None;
        // Decode buffers reused across series: no allocation per chunk.
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        for p in pending {
            let mut samples = Vec::new();
            if let Some(sealed_max) = p.sealed_max {
                let to = end_ms.min(sealed_max);
                let from_memory = p.tail_from.is_some_and(|first| first <= start_ms);
                let mut decode = |data: &[u8], min_t: i64, max_t: i64| {
                    ts.clear();
                    vs.clear();
                    match dcmon_chunk::decode_into(data, &mut ts, &mut vs) {
                        Ok(_) => {
                            let from = ts.partition_point(|&t| t < start_ms);
                            let until = ts.partition_point(|&t| t <= to);
                            if from < until {
                                samples.extend(
                                    ts[from..until]
                                        .iter()
                                        .copied()
                                        .zip(vs[from..until].iter().copied()),
                                );
                            }
                        }
                        Err(e) => {
                            let row = db::ChunkRow {
                                min_t,
                                max_t,
                                data: Vec::new(),
                            };
                            warnings.push(self.damaged(&p.labels, &row, &e.to_string()));
                        }
                    }
                };
                match from_memory {
                    true => samples.extend(p.tail.iter().copied().filter(|s| s.0 <= to)),
                    false => {
                        let conn = self.reader(&mut reader)?;
                        let rows = db::chunks_in(conn, p.id, start_ms, to)
                            .map_err(sqlite_err(&self.shared.path))?;
                        for row in rows {
                            decode(&row.data, row.min_t, row.max_t);
                        }
                    }
                }
            }
            // A seal committed after the head was read can show a sample twice; and
            // out-of-order samples interleave with the chunks'.
            samples.extend_from_slice(&p.head);
            if !samples.windows(2).all(|w| w[0].0 < w[1].0) {
                samples.sort_by_key(|s| s.0);
                samples.dedup_by_key(|s| s.0);
            }
            if start_ms < raw_floor {
                let conn = self.reader(&mut reader)?;
                let first_raw = samples.first().map_or(i64::MAX, |s| s.0);
                let to = end_ms.min(raw_floor);
                let fine = self.stored_rollups(
                    conn,
                    p.id,
                    &p.labels,
                    Resolution::FiveMinutes,
                    start_ms,
                    to,
                    &mut warnings,
                )?;
                // Before the oldest 5-minute bucket (expired), the 1-hour ones.
                let fine_from = fine.first().map_or(i64::MAX, |b| b.start_ms);
                let coarse = if fine_from > start_ms {
                    self.stored_rollups(
                        conn,
                        p.id,
                        &p.labels,
                        Resolution::OneHour,
                        start_ms,
                        to.min(fine_from.saturating_sub(1)),
                        &mut warnings,
                    )?
                } else {
                    Vec::new()
                };
                let old: Vec<(i64, f64)> = coarse
                    .iter()
                    .filter(|b| b.start_ms < fine_from)
                    .chain(&fine)
                    .filter(|b| b.start_ms < first_raw && b.start_ms >= start_ms)
                    .map(|b| (b.start_ms, b.last))
                    .collect();
                if !old.is_empty() {
                    samples.splice(0..0, old);
                }
            }
            if !samples.is_empty() {
                out.push(SeriesData {
                    labels: p.labels,
                    samples,
                });
            }
        }
        if let Some(c) = reader {
            lock(&self.shared.readers).push(c);
        }
        Ok((out, warnings))
    }

    /// Rollup buckets (min, max, sum, count, last) of every matching series over
    /// `[start_ms, end_ms]`: stored rollups where raw samples expired, computed from the
    /// raw samples elsewhere. Buckets are those whose start lies in the range.
    pub fn select_rollup(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        resolution: Resolution,
    ) -> Result<(Vec<RollupData>, Vec<String>), TsdbError> {
        let from = resolution.bucket_start(start_ms);
        let to = resolution
            .bucket_start(end_ms)
            .saturating_add(resolution.ms() - 1);
        let (raw, mut warnings) = self.select_inner(matchers, from, to, i64::MIN)?;
        let raw_floor = self.shared.raw_floor.load(Ordering::Relaxed);
        let series = self.matching(matchers);
        let mut reader: Option<Connection> = None;
        let mut out = Vec::new();
        for (id, labels) in series {
            let mut buckets = Vec::new();
            if from < raw_floor {
                let conn = self.reader(&mut reader)?;
                buckets =
                    self.stored_rollups(conn, id, &labels, resolution, from, to, &mut warnings)?;
            }
            if let Some(r) = raw.iter().find(|r| r.labels == labels) {
                rollup::merge(&mut buckets, &rollup::aggregate(&r.samples, resolution));
            }
            buckets.retain(|b| b.start_ms > start_ms - resolution.ms() && b.start_ms <= end_ms);
            if !buckets.is_empty() {
                out.push(RollupData { labels, buckets });
            }
        }
        if let Some(c) = reader {
            lock(&self.shared.readers).push(c);
        }
        Ok((out, warnings))
    }

    /// Stored rollup buckets of one series starting in `[start, end]`, merged oldest row first.
    #[expect(
        clippy::too_many_arguments,
        reason = "one query's parameters; a struct would only rename them"
    )]
    fn stored_rollups(
        &self,
        conn: &Connection,
        id: SeriesId,
        labels: &Labels,
        res: Resolution,
        start: i64,
        end: i64,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Bucket>, TsdbError> {
        let err = sqlite_err(&self.shared.path);
        let mut stmt = conn
            .prepare_cached(
                "SELECT min_t, max_t, data FROM rollups WHERE series_id = ?1 AND resolution_ms = ?2
                     AND min_t <= ?3 ORDER BY min_t DESC",
            )
            .map_err(&err)?;
        let mut rows = stmt.query(params![id, res.ms(), end]).map_err(&err)?;
        let mut found = Vec::new();
        while let Some(r) = rows.next().map_err(&err)? {
            let max_t: i64 = r.get(1).map_err(&err)?;
            if max_t < start {
                break;
            }
            found.push(db::ChunkRow {
                min_t: r.get(0).map_err(&err)?,
                max_t,
                data: r.get(2).map_err(&err)?,
            });
        }
        let mut buckets = Vec::new();
        for row in found.iter().rev() {
            match rollup::decode(&row.data) {
                Ok(b) => rollup::merge(&mut buckets, &b),
                Err(e) => warnings.push(self.damaged(labels, row, &e.to_string())),
            }
        }
        buckets.retain(|b| b.start_ms >= res.bucket_start(start) && b.start_ms <= end);
        Ok(buckets)
    }

    fn damaged(&self, labels: &Labels, row: &db::ChunkRow, why: &str) -> String {
        self.shared
            .counters
            .corrupt_chunks
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!(series = %labels, min_t = row.min_t, max_t = row.max_t, error = why, "tsdb: damaged chunk skipped");
        format!(
            "damaged chunk of {labels} covering {}..{} ms skipped: {why}",
            row.min_t, row.max_t
        )
    }

    fn reader<'a>(&self, slot: &'a mut Option<Connection>) -> Result<&'a Connection, TsdbError> {
        if slot.is_none() {
            let pooled = lock(&self.shared.readers).pop();
            *slot = Some(match pooled {
                Some(c) => c,
                None => db::open_reader(&self.shared.path)?,
            });
        }
        Ok(slot.as_ref().expect("filled above"))
    }

    /// Every label name in use by matching series, sorted.
    pub fn label_names(&self, matchers: &[Matcher]) -> Vec<String> {
        if matchers.is_empty() {
            return read_lock(&self.shared.index).names();
        }
        let mut names = std::collections::BTreeSet::new();
        for (_, l) in self.matching(matchers) {
            for (k, _) in l.pairs() {
                names.insert(k.clone());
            }
        }
        names.into_iter().collect()
    }

    /// Every value of label `name` among matching series, sorted.
    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Vec<String> {
        if matchers.is_empty() {
            return read_lock(&self.shared.index).values_of(name);
        }
        let mut values = std::collections::BTreeSet::new();
        for (_, l) in self.matching(matchers) {
            if let Some(v) = l.get(name) {
                values.insert(v.to_owned());
            }
        }
        values.into_iter().collect()
    }

    fn maintain(&self, m: Maintenance, report: &mut HousekeepingReport) -> Result<u64, TsdbError> {
        let started = std::time::Instant::now();
        let n = self.send(|r| Job::Maintain(m, r))?;
        report.worst_step_us = report
            .worst_step_us
            .max(started.elapsed().as_micros() as u64);
        Ok(n)
    }

    /// Periodic upkeep, in small steps that interleave with ingest: seals heads older than
    /// `head_max_age` (and merges out-of-order samples), rolls up and deletes raw chunks
    /// older than the raw retention, deletes rollups past theirs, trims the ingest log,
    /// and records the store's own counters as series. `now_ms` is injected for tests.
    pub fn housekeeping(&self, now_ms: i64) -> Result<HousekeepingReport, TsdbError> {
        let o = *lock(&self.shared.options);
        let mut report = HousekeepingReport::default();
        let stale: Vec<SeriesId> = {
            let heads = read_lock(&self.shared.heads);
            let cutoff = now_ms.saturating_sub(o.head_max_age_ms);
            heads
                .iter()
                .filter(|(_, h)| {
                    let h = lock(h);
                    !h.ooo().is_empty() || h.samples.first_time().is_some_and(|t| t < cutoff)
                })
                .map(|(id, _)| id)
                .collect()
        };
        for ids in stale.chunks(256) {
            report.heads_sealed += self.maintain(Maintenance::Seal(ids.to_vec()), &mut report)?;
        }
        let raw_cutoff = now_ms.saturating_sub(o.raw_retention_ms);
        if self.shared.raw_floor.load(Ordering::Relaxed) < raw_cutoff {
            // Before any raw chunk goes, so readers know to look at rollups.
            self.maintain(Maintenance::SetRawFloor(raw_cutoff), &mut report)?;
        }
        let bound = read_lock(&self.shared.index).id_bound() as SeriesId;
        let rollup_cutoffs = [
            (
                Resolution::FiveMinutes,
                now_ms.saturating_sub(o.rollup_5m_retention_ms),
            ),
            (
                Resolution::OneHour,
                now_ms.saturating_sub(o.rollup_1h_retention_ms),
            ),
        ];
        let mut id = 1;
        while id < bound {
            let ids: Vec<SeriesId> = (id..bound.min(id + EXPIRE_SERIES_PER_STEP)).collect();
            id += EXPIRE_SERIES_PER_STEP;
            report.chunks_expired += self.maintain(
                Maintenance::Expire {
                    ids,
                    raw_cutoff,
                    rollup_cutoffs,
                },
                &mut report,
            )?;
        }
        let mark = self.shared.log_mark.load(Ordering::Relaxed);
        self.relog(mark, &mut report)?;
        self.trim_and_vacuum(&mut report, VACUUM_JOBS_PER_PASS)?;
        self.record_self(now_ms)?;
        let next = self.maintain(Maintenance::NextSeq, &mut report)?;
        self.shared.log_mark.store(next, Ordering::Relaxed);
        Ok(report)
    }

    /// Copies the unsealed samples of every head whose oldest log row is below `below` into
    /// fresh log rows (a few thousand heads per row).
    fn relog(&self, below: u64, report: &mut HousekeepingReport) -> Result<(), TsdbError> {
        let pinning: Vec<SeriesId> = {
            let heads = read_lock(&self.shared.heads);
            heads
                .iter()
                .filter(|(_, h)| {
                    let s = lock(h).first_log_seq;
                    s != 0 && s < below
                })
                .map(|(id, _)| id)
                .collect()
        };
        for ids in pinning.chunks(RELOG_HEADS_PER_ROW) {
            report.heads_relogged += self.maintain(
                Maintenance::Relog {
                    ids: ids.to_vec(),
                    below,
                },
                report,
            )?;
        }
        Ok(())
    }

    /// Deletes every log row whose samples are all sealed, then returns free pages to the
    /// file system (at most `vacuum_jobs` steps), each in bounded steps.
    fn trim_and_vacuum(
        &self,
        report: &mut HousekeepingReport,
        vacuum_jobs: usize,
    ) -> Result<(), TsdbError> {
        loop {
            let n = self.maintain(Maintenance::TrimLog, report)?;
            report.log_rows_trimmed += n;
            if n == 0 {
                break;
            }
        }
        let mut left = u64::MAX;
        for _ in 0..vacuum_jobs {
            if left == 0 {
                break;
            }
            let now = self.maintain(Maintenance::Vacuum, report)?;
            if now >= left {
                break;
            }
            left = now;
        }
        Ok(())
    }

    /// Writes the store's counters as series, so they can be queried and alerted on.
    fn record_self(&self, now_ms: i64) -> Result<(), TsdbError> {
        let s = self.stats()?;
        let series: [SelfSeries; 7] = [
            (
                "dcmon_tsdb_samples_rejected_total",
                Some(("reason", "too_old")),
                s.rejected_too_old,
            ),
            (
                "dcmon_tsdb_samples_rejected_total",
                Some(("reason", "duplicate_timestamp")),
                s.rejected_duplicate_timestamp,
            ),
            ("dcmon_tsdb_samples_duplicate_total", None, s.duplicates),
            ("dcmon_tsdb_samples_appended_total", None, s.appended),
            ("dcmon_tsdb_series", None, s.series),
            ("dcmon_tsdb_head_samples", None, s.head_samples),
            ("dcmon_tsdb_corrupt_chunks_total", None, s.corrupt_chunks),
        ];
        let labels: Vec<Labels> = series
            .iter()
            .map(|(name, pair, _)| {
                Labels::new(name, pair.iter().copied()).expect("static valid names")
            })
            .collect();
        let ids = self.resolve(&labels)?;
        let samples: Vec<(SeriesId, i64, f64)> = ids
            .iter()
            .zip(&series)
            .map(|(&id, (_, _, v))| (id, now_ms, *v as f64))
            .collect();
        self.append_report(&samples)?;
        Ok(())
    }

    pub fn stats(&self) -> Result<TsdbStats, TsdbError> {
        let c = &self.shared.counters;
        let head_samples = c.head_samples.load(Ordering::Relaxed);
        let disk_bytes = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", self.shared.path.display())).ok())
            .map(|m| m.len())
            .sum();
        Ok(TsdbStats {
            series: read_lock(&self.shared.index).len() as u64,
            samples: c.stored_samples.load(Ordering::Relaxed) + head_samples,
            head_samples,
            disk_bytes,
            appended: c.appended.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            rejected_too_old: c.too_old.load(Ordering::Relaxed),
            rejected_duplicate_timestamp: c.duplicate_timestamp.load(Ordering::Relaxed),
            corrupt_chunks: c.corrupt_chunks.load(Ordering::Relaxed),
            worst_maintenance_us: c.worst_maintenance_us.load(Ordering::Relaxed),
        })
    }
}

/// Copies the WAL into the database once a second with a PASSIVE checkpoint, which
/// never takes the write lock: the writer goes on committing meanwhile. Under constant
/// ingest the WAL never drains to empty by itself, so past `WAL_RESTART_BYTES` a RESTART
/// checkpoint briefly holds writers off (the frames left to copy are those since the
/// passive pass) and lets the WAL start over from its beginning.
fn checkpointer(conn: &Connection, wal: &Path, stop: &mpsc::Receiver<()>) {
    const WAL_RESTART_BYTES: u64 = 64 * 1024 * 1024;
    while let Err(mpsc::RecvTimeoutError::Timeout) =
        stop.recv_timeout(std::time::Duration::from_secs(1))
    {
        let mut mode = "PASSIVE";
        for _ in 0..2 {
            if let Err(e) =
                conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
            {
                tracing::warn!(error = %e, mode, "tsdb: WAL checkpoint");
            }
            if std::fs::metadata(wal).map_or(0, |m| m.len()) <= WAL_RESTART_BYTES {
                break;
            }
            mode = "RESTART";
        }
    }
}

/// A self-monitoring series: metric name, optional extra label, value.
type SelfSeries<'a> = (&'a str, Option<(&'a str, &'a str)>, u64);

/// Re-applies logged samples that are not in chunks yet; returns how many and the last seq.
fn replay_log(
    conn: &Connection,
    path: &Path,
    index: &Index,
    heads: &mut Heads,
    sealed_log_seqs: &[u64],
) -> Result<(u64, u64), TsdbError> {
    let err = sqlite_err(path);
    let mut stmt = conn
        .prepare("SELECT seq, data FROM ingest_log ORDER BY seq")
        .map_err(&err)?;
    let mut rows = stmt.query([]).map_err(&err)?;
    let (mut replayed, mut last_seq) = (0u64, 0u64);
    while let Some(r) = rows.next().map_err(&err)? {
        let seq = r.get::<_, i64>(0).map_err(&err)? as u64;
        let data: Vec<u8> = r.get(1).map_err(&err)?;
        last_seq = seq;
        let samples = match crate::log::decode(&data) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(seq, error = %e, "tsdb: ingest log row unreadable; its samples are lost (run `dcmon tsdb check`)");
                continue;
            }
        };
        for (id, t, v) in samples {
            // The table has slots past the last series (a page at a time): ask the index.
            let Some(h) = heads.get_mut(id).filter(|_| index.contains(id)) else {
                tracing::error!(
                    seq,
                    series = id,
                    "tsdb: ingest log names an unknown series; sample skipped"
                );
                continue;
            };
            let sealed_log_seq = usize::try_from(id)
                .ok()
                .and_then(|i| sealed_log_seqs.get(i))
                .copied()
                .unwrap_or(0);
            if seq <= sealed_log_seq {
                continue;
            }
            h.replay(t, v);
            if h.first_log_seq == 0 {
                h.first_log_seq = seq;
            }
            replayed += 1;
        }
    }
    Ok((replayed, last_seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MatchOp;

    const MIN: i64 = 60_000;

    fn labels(metric: &str, host: &str) -> Labels {
        Labels::new(metric, [("host", host)]).unwrap()
    }

    fn small(chunk_samples: usize) -> TsdbOptions {
        TsdbOptions {
            chunk_samples,
            ..TsdbOptions::default()
        }
    }

    fn all(db: &Tsdb, start: i64, end: i64) -> Vec<(String, Vec<(i64, f64)>)> {
        db.select(&[], start, end)
            .unwrap()
            .into_iter()
            .map(|s| (s.labels.to_string(), s.samples))
            .collect()
    }

    fn count(db: &Tsdb) -> usize {
        db.select(&[], i64::MIN, i64::MAX)
            .unwrap()
            .iter()
            .map(|s| s.samples.len())
            .sum()
    }

    fn file_len(dir: &Path) -> u64 {
        std::fs::metadata(dir.join(db::FILE_NAME)).unwrap().len()
    }

    /// Trimming the ingest log frees pages; housekeeping and close give them back to the
    /// file system, and a closed store is one file (no WAL left).
    #[test]
    fn freed_pages_are_returned_and_close_leaves_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..300).map(|i| format!("h{i}")).collect();
        let db = Tsdb::open_with(dir.path(), small(60)).unwrap();
        let ids = db
            .resolve(&names.iter().map(|h| labels("m", h)).collect::<Vec<_>>())
            .unwrap();
        for step in 0..120i64 {
            let batch: Vec<(SeriesId, i64, f64)> = ids
                .iter()
                .map(|&id| (id, step * 10_000, (step * id) as f64 * 0.37))
                .collect();
            db.append(&batch).unwrap();
        }
        let wal = dir.path().join("tsdb.sqlite-wal");
        let before = file_len(dir.path()) + std::fs::metadata(&wal).map_or(0, |m| m.len());
        // Every head reached 60 samples twice: all sealed, so the whole log is trimmable.
        db.housekeeping(130 * 10_000).unwrap();
        let conn = rusqlite::Connection::open(dir.path().join(db::FILE_NAME)).unwrap();
        let free: i64 = conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap();
        let mode: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!((free, mode), (0, 2), "free pages left after housekeeping");
        let log_rows: i64 = conn
            .query_row("SELECT count(*) FROM ingest_log", [], |r| r.get(0))
            .unwrap();
        // Only the row of the store's own counters, written after the trim.
        assert_eq!(log_rows, 1);
        drop(conn);
        drop(db);
        assert_eq!(std::fs::metadata(&wal).map_or(0, |m| m.len()), 0);
        // The log's pages are gone: the file is well under what the store took before.
        let after = file_len(dir.path());
        assert!(after < before / 2, "{after} B after, {before} B before");
        let db = Tsdb::open(dir.path()).unwrap();
        // The samples, and the 7 of the store's own counters.
        assert_eq!(count(&db), 36_007);
    }

    fn log_rows(dir: &Path) -> i64 {
        rusqlite::Connection::open(dir.join(db::FILE_NAME))
            .unwrap()
            .query_row("SELECT count(*) FROM ingest_log", [], |r| r.get(0))
            .unwrap()
    }

    /// A sparse series (one sample per pass) must not pin the log: its samples move to a
    /// fresh row, the rows of sealed series go, and nothing is lost across a crash-like
    /// reopen (the store is leaked, not closed, so only the log can restore the heads).
    #[test]
    fn a_sparse_series_does_not_pin_the_ingest_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = Tsdb::open_with(dir.path(), small(10)).unwrap();
        let ids = db
            .resolve(&[labels("sparse", "a"), labels("dense", "a")])
            .unwrap();
        let mut t = 0;
        for pass in 0..3 {
            db.append(&[(ids[0], t, pass as f64)]).unwrap();
            for _ in 0..40 {
                t += 1000;
                db.append(&[(ids[1], t, t as f64)]).unwrap();
            }
            // Housekeeping at a time that seals nothing by age.
            db.housekeeping(t).unwrap();
        }
        // 120 dense appends made 120 rows; the sparse head pinned all of them before.
        let rows = log_rows(dir.path());
        assert!(rows < 60, "{rows} log rows left");
        std::mem::forget(db);
        let db = Tsdb::open(dir.path()).unwrap();
        let sparse = db
            .select(&[Matcher::equal("__name__", "sparse")], 0, i64::MAX)
            .unwrap();
        assert_eq!(
            sparse[0].samples,
            vec![(0, 0.0), (40_000, 1.0), (80_000, 2.0)]
        );
        let dense = db
            .select(&[Matcher::equal("__name__", "dense")], 0, i64::MAX)
            .unwrap();
        assert_eq!(dense[0].samples.len(), 120);
    }

    /// A clean close leaves one compact log row per few thousand unsealed heads.
    #[test]
    fn close_compacts_the_log_to_the_unsealed_samples() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Tsdb::open_with(dir.path(), small(1000)).unwrap();
            let ids = db
                .resolve(
                    &(0..50)
                        .map(|i| labels("m", &format!("h{i}")))
                        .collect::<Vec<_>>(),
                )
                .unwrap();
            for step in 0..30i64 {
                let batch: Vec<_> = ids
                    .iter()
                    .map(|&id| (id, step * 1000, step as f64))
                    .collect();
                db.append(&batch).unwrap();
            }
            assert_eq!(log_rows(dir.path()), 30);
        }
        assert_eq!(log_rows(dir.path()), 1);
        let db = Tsdb::open(dir.path()).unwrap();
        assert_eq!(count(&db), 50 * 30);
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
            // A retransmission is a duplicate, never a second sample.
            assert_eq!(db.append(&[(ids[0], 2000, -0.0)]).unwrap(), 1);
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
        assert_eq!(
            db.label_values("host", &[Matcher::equal("__name__", "load")]),
            vec!["a"]
        );
        assert_eq!(db.stats().unwrap().samples, 4);
    }

    #[test]
    fn crash_before_seal_replays_the_log_and_sealed_samples_are_not_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let expect;
        {
            let db = Tsdb::open_with(dir.path(), small(10)).unwrap();
            let ids = db.resolve(&[labels("a", "h"), labels("b", "h")]).unwrap();
            for i in 0..25 {
                // Series a seals twice; b never fills a chunk.
                db.append(&[
                    (ids[0], i * 1000, i as f64),
                    (ids[1], i * 1000, -(i as f64)),
                ])
                .unwrap();
            }
            expect = all(&db, 0, i64::MAX);
            assert!(expect.iter().all(|(_, s)| s.len() == 25));
            // Dropped without sealing: the heads exist only in the ingest log.
        }
        let db = Tsdb::open_with(dir.path(), small(10)).unwrap();
        assert_eq!(all(&db, 0, i64::MAX), expect);
        assert_eq!(db.stats().unwrap().samples, 50);
        // Appending continues where it stopped.
        let id = db.resolve(&[labels("a", "h")]).unwrap()[0];
        assert_eq!(db.append_report(&[(id, 25_000, 25.0)]).unwrap().accepted, 1);
        drop(db);
        let db = Tsdb::open_with(dir.path(), small(10)).unwrap();
        assert_eq!(count(&db), 51);
    }

    fn report(
        accepted: usize,
        duplicates: usize,
        too_old: usize,
        duplicate_timestamp: usize,
    ) -> AppendReport {
        AppendReport {
            accepted,
            duplicates,
            too_old,
            duplicate_timestamp,
        }
    }

    #[test]
    fn out_of_order_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let db = Tsdb::open_with(dir.path(), small(4)).unwrap();
        let id = db.resolve(&[labels("m", "h")]).unwrap()[0];
        let check = |samples: &[(i64, f64)], expect: AppendReport| {
            let batch: Vec<_> = samples.iter().map(|&(t, v)| (id, t, v)).collect();
            assert_eq!(db.append_report(&batch).unwrap(), expect, "{samples:?}");
        };
        check(&[(10 * MIN, 1.0), (11 * MIN, 2.0)], report(2, 0, 0, 0));
        check(&[(10 * MIN, 1.0)], report(0, 1, 0, 0));
        check(&[(10 * MIN, 9.0)], report(0, 0, 0, 1));
        check(&[(10 * MIN + 1, 3.0)], report(1, 0, 0, 0));
        // Four samples sealed a chunk; now past it.
        check(&[(100 * MIN, 4.0)], report(1, 0, 0, 0));
        check(&[(39 * MIN, 4.0)], report(0, 0, 1, 0));
        // In the window, inside the sealed range: kept, and checked against the chunk.
        check(
            &[(50 * MIN, 5.0), (11 * MIN, 2.0), (11 * MIN, 7.0)],
            report(1, 0, 2, 0),
        );
        let db_window = TsdbOptions {
            out_of_order_window_ms: 1000 * MIN,
            ..small(4)
        };
        db.set_options(db_window);
        check(
            &[(50 * MIN, 5.0), (11 * MIN, 2.0), (11 * MIN, 7.0)],
            report(0, 2, 0, 1),
        );
        check(&[(50 * MIN, 5.0), (5 * MIN, 0.5)], report(1, 1, 0, 0));
        let s = db.stats().unwrap();
        assert_eq!((s.rejected_too_old, s.rejected_duplicate_timestamp), (3, 2));
        let expect = vec![
            (5 * MIN, 0.5),
            (10 * MIN, 1.0),
            (10 * MIN + 1, 3.0),
            (11 * MIN, 2.0),
            (50 * MIN, 5.0),
            (100 * MIN, 4.0),
        ];
        assert_eq!(all(&db, 0, i64::MAX)[0].1, expect);
        // Housekeeping merges the out-of-order samples into the sealed chunks.
        db.housekeeping(101 * MIN).unwrap();
        assert_eq!(all(&db, 0, 200 * MIN)[0].1, expect);
        drop(db);
        let db = Tsdb::open_with(dir.path(), db_window).unwrap();
        assert_eq!(all(&db, 0, 200 * MIN)[0].1, expect);
        assert!(crate::check(dir.path()).unwrap().is_ok());
    }

    #[test]
    fn retention_keeps_rollups_and_select_falls_back_to_last() {
        let dir = tempfile::tempdir().unwrap();
        let day = DAY_MS;
        let opts = TsdbOptions {
            raw_retention_ms: 2 * day,
            rollup_5m_retention_ms: 4 * day,
            rollup_1h_retention_ms: 8 * day,
            ..small(60)
        };
        let db = Tsdb::open_with(dir.path(), opts).unwrap();
        let id = db.resolve(&[labels("temp", "h")]).unwrap()[0];
        // Three days of one sample a minute: value = minute of the day.
        let samples: Vec<_> = (0..3 * 1440)
            .map(|i| (id, i * MIN, (i % 1440) as f64))
            .collect();
        for part in samples.chunks(500) {
            db.append(part).unwrap();
        }
        let r = db.housekeeping(3 * day + MIN).unwrap();
        assert!(r.chunks_expired > 0, "{r:?}");
        let got = all(&db, 0, 3 * day)[0].1.clone();
        // Before the cutoff (day 1 + 1 min): one point per 5 minutes, the bucket's last value.
        assert_eq!(got[0], (0, 4.0));
        assert_eq!(got[1], (5 * MIN, 9.0));
        let first_raw = got.iter().position(|s| s.0 % (5 * MIN) != 0).unwrap();
        assert!(got[first_raw].0 >= day - 60 * MIN, "{:?}", got[first_raw]);
        assert_eq!(got.last(), Some(&(3 * day - MIN, 1439.0)));
        let (buckets, warnings) = db
            .select_rollup(&[], 0, 3 * day, Resolution::OneHour)
            .unwrap();
        assert!(warnings.is_empty());
        let b = &buckets[0].buckets;
        assert_eq!(b.len(), 72);
        // Stored (expired) and computed (raw) hours look alike.
        for (i, h) in [(0usize, 0.0), (30, 6.0 * 60.0), (71, 23.0 * 60.0)] {
            assert_eq!(b[i].count, 60, "{i}");
            assert_eq!(b[i].min, h, "{i}");
            assert_eq!(b[i].max, h + 59.0, "{i}");
            assert_eq!(b[i].last, h + 59.0, "{i}");
        }
        // Later: the 5-minute rollups expire too, the 1-hour ones remain.
        db.housekeeping(6 * day).unwrap();
        let got = all(&db, 0, day)[0].1.clone();
        assert_eq!(got[0], (0, 59.0));
        assert_eq!(got[1], (60 * MIN, 119.0));
        drop(db);
        assert!(crate::check(dir.path()).unwrap().is_ok());
    }

    #[test]
    fn a_damaged_chunk_is_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let db = Tsdb::open_with(dir.path(), small(10)).unwrap();
        let ids = db.resolve(&[labels("m", "a"), labels("m", "b")]).unwrap();
        for i in 0..30 {
            db.append(&[(ids[0], i * 1000, i as f64), (ids[1], i * 1000, i as f64)])
                .unwrap();
        }
        drop(db);
        let conn = Connection::open(dir.path().join(db::FILE_NAME)).unwrap();
        conn.execute(
            "UPDATE chunks SET data = CAST(substr(data, 1, 30) || X'FF' || substr(data, 32) AS BLOB)
             WHERE series_id = ?1 AND min_t = 10000",
            params![ids[0]],
        )
        .unwrap();
        drop(conn);
        let report = crate::check(dir.path()).unwrap();
        assert_eq!(report.problems.len(), 1, "{report}");
        assert!(report.problems[0].contains("host=\"a\""), "{report}");
        assert!(report.problems[0].contains("10000..19000"), "{report}");
        let db = Tsdb::open_with(dir.path(), small(10)).unwrap();
        let (data, warnings) = db.select_with_warnings(&[], 0, 100_000).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("host=\"a\"") && warnings[0].contains("10000..19000"));
        assert_eq!(data[0].samples.len(), 20);
        assert_eq!(data[1].samples.len(), 30);
        assert_eq!(db.stats().unwrap().corrupt_chunks, 1);
    }

    /// Recent windows are answered from the head's in-memory tail: with the newest chunk
    /// damaged on disk after the store opened, a read of its last samples still works
    /// without touching the file, while a wider read finds and reports the damage.
    #[test]
    fn recent_sealed_samples_are_served_from_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let db = Tsdb::open_with(dir.path(), small(40)).unwrap();
        let id = db.resolve(&[labels("m", "a")]).unwrap()[0];
        for i in 0..80 {
            db.append(&[(id, i * 1000, i as f64)]).unwrap();
        }
        let conn = Connection::open(dir.path().join(db::FILE_NAME)).unwrap();
        conn.execute(
            "UPDATE chunks SET data = CAST(substr(data, 1, 30) || X'FF' || substr(data, 32) AS BLOB)
             WHERE series_id = ?1 AND min_t = 40000",
            params![id],
        )
        .unwrap();
        drop(conn);
        // The newest 32 sealed samples: 48..=79 s.
        let (recent, warnings) = db.select_with_warnings(&[], 50_000, 79_000).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(recent[0].samples.len(), 30);
        assert_eq!(recent[0].samples[0], (50_000, 50.0));
        let (_, warnings) = db.select_with_warnings(&[], 30_000, 79_000).unwrap();
        assert_eq!(
            warnings.len(),
            1,
            "the wider read goes to the damaged chunk"
        );
    }

    #[test]
    fn concurrent_appends_are_all_readable() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Tsdb::open_with(dir.path(), small(50)).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let names: Vec<Labels> = (0..20)
                        .map(|s| labels(&format!("m{s}"), &format!("h{t}")))
                        .collect();
                    let ids = db.resolve(&names).unwrap();
                    for step in 0..100 {
                        let batch: Vec<_> = ids
                            .iter()
                            .map(|&id| (id, step * 1000, step as f64))
                            .collect();
                        assert_eq!(db.append(&batch).unwrap(), 20);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(count(&db), 8 * 20 * 100);
        drop(db);
        let db = Tsdb::open_with(dir.path(), small(50)).unwrap();
        assert_eq!(count(&db), 8 * 20 * 100);
    }

    #[test]
    fn too_many_series_for_a_host_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let db = Tsdb::open_with(
            dir.path(),
            TsdbOptions {
                max_series_per_host: 3,
                ..TsdbOptions::default()
            },
        )
        .unwrap();
        db.resolve(&[labels("a", "gpu1"), labels("b", "gpu1")])
            .unwrap();
        let e = db
            .resolve(&[labels("c", "gpu1"), labels("d", "gpu1")])
            .unwrap_err();
        assert!(e.is_client_error());
        assert!(
            e.to_string()
                .starts_with("host \"gpu1\" already has 2 series; the limit is 3"),
            "{e}"
        );
        db.resolve(&[labels("c", "gpu1"), labels("a", "gpu2")])
            .unwrap();
        assert_eq!(db.stats().unwrap().series, 4);
    }

    #[test]
    fn housekeeping_seals_old_heads_trims_the_log_and_records_itself() {
        let dir = tempfile::tempdir().unwrap();
        let db = Tsdb::open(dir.path()).unwrap();
        let id = db.resolve(&[labels("m", "h")]).unwrap()[0];
        db.append(&[(id, 0, 1.0), (id, MIN, 2.0)]).unwrap();
        let r = db.housekeeping(3 * 60 * MIN).unwrap();
        assert_eq!((r.heads_sealed, r.log_rows_trimmed), (1, 1), "{r:?}");
        let own = db
            .select(
                &[Matcher::equal("__name__", "dcmon_tsdb_series")],
                0,
                i64::MAX,
            )
            .unwrap();
        assert_eq!(own[0].samples, vec![(3 * 60 * MIN, 1.0)]);
        let rejected = db.label_values("reason", &[]);
        assert_eq!(rejected, vec!["duplicate_timestamp", "too_old"]);
        drop(db);
        let report = crate::check(dir.path()).unwrap();
        assert!(report.is_ok(), "{report}");
        // The self-monitoring samples are the only ones left in the log.
        assert_eq!(report.log_rows, 1, "{report}");
    }

    #[test]
    fn version_1_data_is_migrated_into_chunks() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(db::FILE_NAME)).unwrap();
            conn.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', '1');
                 CREATE TABLE series (id INTEGER PRIMARY KEY, labels TEXT NOT NULL UNIQUE);
                 CREATE TABLE samples (series_id INTEGER NOT NULL, ts INTEGER NOT NULL, bits INTEGER NOT NULL,
                     PRIMARY KEY (series_id, ts)) WITHOUT ROWID;
                 INSERT INTO series VALUES (1, '[[\"__name__\",\"up\"],[\"host\",\"a\"]]');",
            )
            .unwrap();
            for t in 0..7i64 {
                conn.execute(
                    "INSERT INTO samples VALUES (1, ?1, ?2)",
                    params![t * 1000, (t as f64).to_bits() as i64],
                )
                .unwrap();
            }
        }
        let db = Tsdb::open_with(dir.path(), small(3)).unwrap();
        let got = all(&db, 0, i64::MAX);
        assert_eq!(
            got[0].1,
            (0..7).map(|t| (t * 1000, t as f64)).collect::<Vec<_>>()
        );
        assert_eq!(db.stats().unwrap().samples, 7);
        let id = db.resolve(&[labels("up", "a")]).unwrap()[0];
        assert_eq!(id, 1);
        let newer = db.resolve(&[labels("up", "b")]).unwrap()[0];
        assert_eq!(newer, 2);
        drop(db);
        let report = crate::check(dir.path()).unwrap();
        assert_eq!((report.chunks, report.samples), (3, 7), "{report}");
    }
}
