//! The writer thread: the only owner of the read-write connection.
//!
//! Group commit: the thread takes every job waiting in its channel, applies the appends
//! to the heads, writes all their accepted samples as one ingest-log row, seals full
//! heads into chunks, and commits once (one WAL fsync for all of them) before it answers
//! any caller. Maintenance (sealing old heads, retention, log trimming) arrives as small
//! jobs that run between groups, so no single one holds ingest up for long.

use crate::db::{self, ChunkRow, sqlite_err};
use crate::head::Verdict;
use crate::headbuf::{FrozenBuf, SampleBuf};
use crate::log::LogEncoder;
use crate::rollup::{self, Resolution};
use crate::{AppendReport, SeriesId, Shared, TsdbError, lock, read_lock, write_lock};
use dcmon_wire::Labels;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Instant;

type Reply<T> = SyncSender<Result<T, TsdbError>>;

pub(crate) enum Job {
    Resolve(Vec<Labels>, Reply<Vec<SeriesId>>),
    Append(Vec<(SeriesId, i64, f64)>, Reply<AppendReport>),
    Maintain(Maintenance, Reply<u64>),
}

pub(crate) enum Maintenance {
    /// Seal these series' heads (old ones, or ones holding out-of-order samples).
    Seal(Vec<SeriesId>),
    /// Roll up and delete these series' chunks that ended before `raw_cutoff`, and delete
    /// rollups that ended before their cutoffs.
    Expire {
        ids: Vec<SeriesId>,
        raw_cutoff: i64,
        rollup_cutoffs: [(Resolution, i64); 2],
    },
    /// Delete a bounded number of log rows whose samples are all sealed; answers how many.
    TrimLog,
    /// Remember the retention floor (see `Shared::raw_floor`).
    SetRawFloor(i64),
    /// Give up to `VACUUM_PAGES_PER_JOB` free pages back to the file system; answers how
    /// many free pages are left.
    Vacuum,
    /// Copy the unsealed samples of these heads, where their oldest log row is below
    /// `below`, into one new log row, so the old rows can be trimmed: a sparse series
    /// must not pin the whole log until its head fills. Answers how many heads moved.
    Relog { ids: Vec<SeriesId>, below: u64 },
    /// Answers the seq the next log row will get (a mark for the next `Relog`).
    NextSeq,
}

/// Pages (4 KiB) returned to the file system per maintenance job: 2 MiB, so ingest
/// never waits long behind one.
const VACUUM_PAGES_PER_JOB: i64 = 512;

/// Most jobs in one group, so one commit never waits on an unbounded backlog.
const MAX_GROUP_JOBS: usize = 256;
/// Rollup rows grow up to this many buckets before a new row starts.
const ROLLUP_ROW_BUCKETS: usize = 288;
/// Log rows deleted per maintenance job.
const TRIM_ROWS_PER_JOB: i64 = 64;

pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) conn: Connection,
    /// Seq the next log row gets; always above every seq a series row refers to.
    pub(crate) next_seq: u64,
    pub(crate) next_id: SeriesId,
}

/// What a seal changed, applied to the head only after the commit made it durable.
struct Sealed {
    id: SeriesId,
    head_samples: usize,
    ooo_samples: usize,
    sealed_max: Option<i64>,
    /// The head's new tail, when the seal changed the newest sealed samples.
    tail: Option<FrozenBuf>,
}

type JobResult<T> = Result<Result<T, TsdbError>, TsdbError>;

impl Writer {
    pub(crate) fn run(mut self, jobs: Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP_JOBS {
                match jobs.try_recv() {
                    Ok(j) => group.push(j),
                    Err(_) => break,
                }
            }
            let mut maintenance = Vec::new();
            let mut ingest = Vec::new();
            for j in group {
                match j {
                    Job::Maintain(m, reply) => maintenance.push((m, reply)),
                    other => ingest.push(other),
                }
            }
            if !ingest.is_empty() {
                self.commit_group(ingest);
            }
            for (m, reply) in maintenance {
                let started = Instant::now();
                let result = self.maintain(m);
                let us = started.elapsed().as_micros() as u64;
                self.shared
                    .counters
                    .worst_maintenance_us
                    .fetch_max(us, Ordering::Relaxed);
                let _ = reply.send(result);
            }
        }
        // Closing: copy the WAL into the file and empty it, so a stopped store is one file.
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "tsdb: final checkpoint");
        }
    }

    fn failure(&self) -> Option<TsdbError> {
        lock(&self.shared.failed)
            .as_ref()
            .map(|m| TsdbError::Failed(m.clone()))
    }

    fn poison(&self, e: &TsdbError) {
        tracing::error!(error = %e, "tsdb: a write failed; refusing writes until restart (the ingest log replays what was acknowledged)");
        *lock(&self.shared.failed) = Some(e.to_string());
    }

    fn commit_group(&mut self, jobs: Vec<Job>) {
        if let Some(TsdbError::Failed(m)) = self.failure() {
            fail_all(jobs, &m);
            return;
        }
        let mut resolved: Vec<Result<Vec<SeriesId>, TsdbError>> = Vec::new();
        let mut appended: Vec<Result<AppendReport, TsdbError>> = Vec::new();
        let mut sealed = Vec::new();
        let path = self.shared.path.clone();
        let result = (|| -> Result<(), TsdbError> {
            let err = sqlite_err(&path);
            self.conn.execute_batch("BEGIN IMMEDIATE").map_err(&err)?;
            let seq = self.next_seq;
            let mut log = LogEncoder::new();
            let mut to_seal = Vec::new();
            for j in &jobs {
                match j {
                    Job::Resolve(labels, _) => {
                        resolved.push(self.resolve(labels)?);
                    }
                    Job::Append(samples, _) => {
                        appended.push(self.apply(samples, seq, &mut log, &mut to_seal)?);
                    }
                    Job::Maintain(..) => {}
                }
            }
            if !log.is_empty() {
                self.conn
                    .prepare_cached("INSERT INTO ingest_log (seq, data) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![seq as i64, log.bytes()]))
                    .map_err(&err)?;
                self.next_seq += 1;
            }
            to_seal.sort_unstable();
            to_seal.dedup();
            for id in to_seal {
                if let Some(s) = self.seal(id, self.next_seq - 1)? {
                    sealed.push(s);
                }
            }
            self.conn.execute_batch("COMMIT").map_err(&err)?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.poison(&e);
            fail_all(jobs, &e.to_string());
            return;
        }
        self.finish_seals(sealed);
        let mut resolved = resolved.into_iter();
        let mut appended = appended.into_iter();
        for j in jobs {
            match j {
                Job::Resolve(_, r) => {
                    if let Some(out) = resolved.next() {
                        let _ = r.send(out);
                    }
                }
                Job::Append(_, r) => {
                    if let Some(out) = appended.next() {
                        if let Ok(rep) = &out {
                            let c = &self.shared.counters;
                            c.appended.fetch_add(rep.accepted as u64, Ordering::Relaxed);
                            c.duplicates
                                .fetch_add(rep.duplicates as u64, Ordering::Relaxed);
                            c.too_old.fetch_add(rep.too_old as u64, Ordering::Relaxed);
                            c.duplicate_timestamp
                                .fetch_add(rep.duplicate_timestamp as u64, Ordering::Relaxed);
                        }
                        let _ = r.send(out);
                    }
                }
                Job::Maintain(..) => {}
            }
        }
    }

    /// Creates the missing series (in the open transaction). The outer error fails the
    /// whole group; the inner one only this call (the cardinality limit).
    fn resolve(&mut self, labels: &[Labels]) -> JobResult<Vec<SeriesId>> {
        let shared = self.shared.clone();
        let limit = lock(&shared.options).max_series_per_host;
        let mut index = write_lock(&shared.index);
        let mut out = vec![0; labels.len()];
        let mut new_per_host: HashMap<&str, usize> = HashMap::new();
        let mut fresh: HashMap<&Labels, SeriesId> = HashMap::new();
        for (i, l) in labels.iter().enumerate() {
            match index.get(l) {
                Some(id) => out[i] = id,
                None => {
                    if fresh.insert(l, 0).is_none()
                        && let Some(h) = l.get("host")
                    {
                        *new_per_host.entry(h).or_default() += 1;
                    }
                }
            }
        }
        if limit > 0 {
            for (host, n) in &new_per_host {
                let have = index.count("host", host);
                if have + n > limit {
                    return Ok(Err(TsdbError::TooManySeries {
                        host: (*host).to_owned(),
                        limit,
                        existing: have,
                    }));
                }
            }
        }
        let err = sqlite_err(&shared.path);
        let mut heads = write_lock(&shared.heads);
        for (i, l) in labels.iter().enumerate() {
            if out[i] != 0 {
                continue;
            }
            let id = match fresh.get(l) {
                Some(&id) if id != 0 => id,
                _ => {
                    let id = self.next_id;
                    self.conn
                        .prepare_cached("INSERT INTO series (id, labels) VALUES (?1, ?2)")
                        .and_then(|mut s| s.execute(params![id, db::encode_labels(l)]))
                        .map_err(&err)?;
                    self.next_id += 1;
                    index.insert(id, l.clone());
                    heads.grow_to(id);
                    fresh.insert(l, id);
                    id
                }
            };
            out[i] = id;
        }
        Ok(Ok(out))
    }

    /// Applies one append to the heads and the log row being built.
    fn apply(
        &self,
        samples: &[(SeriesId, i64, f64)],
        seq: u64,
        log: &mut LogEncoder,
        to_seal: &mut Vec<SeriesId>,
    ) -> JobResult<AppendReport> {
        let shared = self.shared.clone();
        let (window, chunk_samples) = {
            let o = lock(&shared.options);
            (o.out_of_order_window_ms, o.chunk_samples)
        };
        {
            let index = read_lock(&shared.index);
            if let Some(&(id, ..)) = samples.iter().find(|s| !index.contains(s.0)) {
                return Ok(Err(TsdbError::UnknownSeries(id)));
            }
        }
        let heads = read_lock(&shared.heads);
        let mut report = AppendReport::default();
        let mut i = 0;
        while i < samples.len() {
            let id = samples[i].0;
            let mut head = lock(
                heads
                    .get(id)
                    .expect("resolve grows the heads with the index, checked above"),
            );
            while let Some(&(sid, t, v)) = samples.get(i) {
                if sid != id {
                    break;
                }
                i += 1;
                let verdict = match head.offer(t, v, window) {
                    Verdict::Sealed => match self.sealed_conflict(id, t, v)? {
                        Some(verdict) => verdict,
                        None => {
                            head.accept_sealed(t, v);
                            Verdict::Inserted
                        }
                    },
                    v => v,
                };
                match verdict {
                    Verdict::Appended | Verdict::Inserted => {
                        log.push(id, t, v);
                        report.accepted += 1;
                        if head.first_log_seq == 0 {
                            head.first_log_seq = seq;
                        }
                    }
                    Verdict::Duplicate => report.duplicates += 1,
                    Verdict::TooOld => report.too_old += 1,
                    Verdict::DuplicateTimestamp => report.duplicate_timestamp += 1,
                    Verdict::Sealed => unreachable!("resolved above"),
                }
            }
            if head.samples.len() >= chunk_samples {
                to_seal.push(id);
            }
        }
        shared
            .counters
            .head_samples
            .fetch_add(report.accepted as u64, Ordering::Relaxed);
        Ok(Ok(report))
    }

    /// For a sample inside the sealed range: `Some(verdict)` when the chunk already has
    /// its timestamp, `None` when it is new there.
    fn sealed_conflict(&self, id: SeriesId, t: i64, v: f64) -> Result<Option<Verdict>, TsdbError> {
        let err = sqlite_err(&self.shared.path);
        let Some(row) = db::chunk_for(&self.conn, id, t).map_err(&err)? else {
            return Ok(None);
        };
        match dcmon_chunk::decode(&row.data) {
            Ok((ts, vs)) => Ok(ts.binary_search(&t).ok().map(|i| {
                if vs[i].to_bits() == v.to_bits() {
                    Verdict::Duplicate
                } else {
                    Verdict::DuplicateTimestamp
                }
            })),
            Err(e) => {
                // The damaged chunk cannot say; keep the sample (never drop acknowledged data).
                tracing::warn!(series = id, min_t = row.min_t, max_t = row.max_t, error = %e, "tsdb: damaged chunk while checking an out-of-order sample");
                Ok(None)
            }
        }
    }

    /// Writes a series' unsealed samples as a chunk and merges its out-of-order samples
    /// into the chunks they belong to (in the open transaction).
    fn seal(&self, id: SeriesId, log_seq: u64) -> Result<Option<Sealed>, TsdbError> {
        let err = sqlite_err(&self.shared.path);
        let heads = read_lock(&self.shared.heads);
        let Some(slot) = heads.get(id) else {
            return Ok(None);
        };
        let head = lock(slot);
        if !head.is_unsealed() {
            return Ok(None);
        }
        let mut sealed = Sealed {
            id,
            head_samples: head.samples.len(),
            ooo_samples: head.ooo().len(),
            sealed_max: head.sealed_max,
            tail: None,
        };
        let mut newest_rewritten = false;
        if !head.ooo().is_empty() {
            newest_rewritten = self.merge_ooo(id, head.ooo())?;
        }
        if let Some(last) = head.samples.last() {
            // A large request can leave a head far above the chunk size: split it, so
            // chunks stay small enough to read and expire piecewise.
            let size = lock(&self.shared.options).chunk_samples.max(1);
            let samples = head.samples.to_vec();
            for piece in samples.chunks(size) {
                db::insert_chunk(&self.conn, id, piece).map_err(&err)?;
            }
            sealed.sealed_max = Some(last.0);
            sealed.tail = Some(if samples.len() >= crate::head::TAIL_SAMPLES {
                crate::head::tail_of(&samples)
            } else {
                // A short seal: the tail continues the previous one.
                let mut joined = head.tail.to_vec();
                joined.extend_from_slice(&samples);
                crate::head::tail_of(&joined)
            });
        } else if newest_rewritten {
            let newest = self
                .conn
                .query_row(
                    "SELECT data FROM chunks WHERE series_id = ?1 ORDER BY min_t DESC LIMIT 1",
                    params![id],
                    |r| r.get::<_, Vec<u8>>(0),
                )
                .optional()
                .map_err(&err)?;
            sealed.tail = Some(
                newest
                    .and_then(|d| dcmon_chunk::decode(&d).ok())
                    .map(|(ts, vs)| {
                        crate::head::tail_of(&ts.into_iter().zip(vs).collect::<Vec<_>>())
                    })
                    .unwrap_or_default(),
            );
        }
        self.conn
            .prepare_cached(
                "UPDATE series SET sealed_max_t = ?2, sealed_log_seq = ?3,
                 sealed_samples = sealed_samples + ?4 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    sealed.sealed_max,
                    log_seq as i64,
                    (sealed.head_samples + sealed.ooo_samples) as i64
                ])
            })
            .map_err(&err)?;
        Ok(Some(sealed))
    }

    /// Rewrites the chunks that out-of-order samples fall into; true when the newest
    /// chunk was among them.
    fn merge_ooo(&self, id: SeriesId, ooo: &[(i64, f64)]) -> Result<bool, TsdbError> {
        let err = sqlite_err(&self.shared.path);
        let newest_min: Option<i64> = self
            .conn
            .query_row(
                "SELECT max(min_t) FROM chunks WHERE series_id = ?1",
                params![id],
                |r| r.get(0),
            )
            .map_err(&err)?;
        let mut rest = ooo;
        let mut newest_rewritten = false;
        while let Some(&(t, _)) = rest.first() {
            let target = db::chunk_for(&self.conn, id, t).map_err(&err)?;
            let Some(ChunkRow { min_t, data, .. }) = target else {
                // Every chunk expired: the samples make a chunk of their own.
                db::insert_chunk(&self.conn, id, rest).map_err(&err)?;
                return Ok(newest_rewritten);
            };
            // The samples up to the next chunk's start belong to this one.
            let next_min: Option<i64> = self
                .conn
                .query_row(
                    "SELECT min(min_t) FROM chunks WHERE series_id = ?1 AND min_t > ?2",
                    params![id, min_t],
                    |r| r.get(0),
                )
                .map_err(&err)?;
            let n = rest.partition_point(|s| next_min.is_none_or(|m| s.0 < m));
            let (mine, later) = rest.split_at(n.max(1));
            match dcmon_chunk::decode(&data) {
                Ok((ts, vs)) => {
                    let mut merged: Vec<(i64, f64)> = ts.into_iter().zip(vs).collect();
                    merged.extend_from_slice(mine);
                    merged.sort_by_key(|s| s.0);
                    merged.dedup_by_key(|s| s.0);
                    self.conn
                        .execute(
                            "DELETE FROM chunks WHERE series_id = ?1 AND min_t = ?2",
                            params![id, min_t],
                        )
                        .map_err(&err)?;
                    db::insert_chunk(&self.conn, id, &merged).map_err(&err)?;
                }
                Err(e) => {
                    // Never rewrite a damaged chunk: it stays for `check` to report, and
                    // the new samples go beside it.
                    tracing::error!(series = id, min_t, error = %e, "tsdb: out-of-order samples belong to a damaged chunk; storing them in a chunk of their own");
                    let free: Vec<(i64, f64)> =
                        mine.iter().copied().filter(|s| s.0 != min_t).collect();
                    if !free.is_empty() {
                        db::insert_chunk(&self.conn, id, &free).map_err(&err)?;
                    }
                }
            }
            if Some(min_t) == newest_min {
                newest_rewritten = true;
            }
            rest = later;
        }
        Ok(newest_rewritten)
    }

    /// After the commit: the sealed samples leave the heads.
    fn finish_seals(&self, sealed: Vec<Sealed>) {
        let heads = read_lock(&self.shared.heads);
        let mut removed = 0u64;
        for s in sealed {
            let Some(slot) = heads.get(s.id) else {
                continue;
            };
            let mut head = lock(slot);
            head.samples.drain_front(s.head_samples);
            head.drain_ooo(s.ooo_samples);
            head.sealed_max = s.sealed_max;
            if let Some(tail) = s.tail {
                head.tail = tail;
            }
            if !head.is_unsealed() {
                head.first_log_seq = 0;
                // Give the memory back: an idle series costs nothing but its labels.
                head.samples = SampleBuf::default();
            }
            removed += (s.head_samples + s.ooo_samples) as u64;
        }
        let c = &self.shared.counters;
        c.head_samples.fetch_sub(removed, Ordering::Relaxed);
        c.stored_samples.fetch_add(removed, Ordering::Relaxed);
    }

    fn maintain(&mut self, m: Maintenance) -> Result<u64, TsdbError> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        let path = self.shared.path.clone();
        let err = sqlite_err(&path);
        if matches!(m, Maintenance::NextSeq) {
            return Ok(self.next_seq);
        }
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(&err)?;
        let mut sealed = Vec::new();
        let mut relogged: Option<(u64, Vec<SeriesId>)> = None;
        let result = match m {
            Maintenance::NextSeq => Ok(self.next_seq),
            Maintenance::Relog { ids, below } => (|| {
                let mut log = LogEncoder::new();
                let mut moved = Vec::new();
                {
                    let heads = read_lock(&self.shared.heads);
                    for id in ids {
                        let Some(slot) = heads.get(id) else {
                            continue;
                        };
                        let h = lock(slot);
                        if h.first_log_seq == 0 || h.first_log_seq >= below {
                            continue;
                        }
                        for &(t, v) in h.ooo() {
                            log.push(id, t, v);
                        }
                        for (t, v) in h.samples.iter() {
                            log.push(id, t, v);
                        }
                        moved.push(id);
                    }
                }
                if moved.is_empty() {
                    return Ok(0);
                }
                let seq = self.next_seq;
                self.conn
                    .prepare_cached("INSERT INTO ingest_log (seq, data) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![seq as i64, log.bytes()]))
                    .map_err(&err)?;
                self.next_seq += 1;
                let n = moved.len() as u64;
                relogged = Some((seq, moved));
                Ok(n)
            })(),
            Maintenance::Seal(ids) => (|| {
                for id in ids {
                    if let Some(s) = self.seal(id, self.next_seq - 1)? {
                        sealed.push(s);
                    }
                }
                Ok(sealed.len() as u64)
            })(),
            Maintenance::Expire {
                ids,
                raw_cutoff,
                rollup_cutoffs,
            } => self.expire(&ids, raw_cutoff, rollup_cutoffs),
            Maintenance::TrimLog => {
                let below = self.trim_point();
                self.conn
                    .execute(
                        "DELETE FROM ingest_log WHERE seq IN
                     (SELECT seq FROM ingest_log WHERE seq < ?1 ORDER BY seq LIMIT ?2)",
                        params![i64::try_from(below).unwrap_or(i64::MAX), TRIM_ROWS_PER_JOB],
                    )
                    .map(|n| n as u64)
                    .map_err(&err)
            }
            Maintenance::Vacuum => (|| {
                // The pragma frees one page per step, and the driver steps a statement
                // that returns no columns only once: so one page per execution.
                let free = |c: &Connection| {
                    c.query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0))
                };
                let pages = free(&self.conn)?.min(VACUUM_PAGES_PER_JOB);
                let mut stmt = self.conn.prepare_cached("PRAGMA incremental_vacuum(1)")?;
                for _ in 0..pages {
                    stmt.query([])?.next()?;
                }
                drop(stmt);
                free(&self.conn).map(|n| n as u64)
            })()
            .map_err(&err),
            Maintenance::SetRawFloor(floor) => self
                .conn
                .execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('raw_floor_ms', ?1)",
                    params![floor.to_string()],
                )
                .map(|_| {
                    self.shared.raw_floor.store(floor, Ordering::Relaxed);
                    0
                })
                .map_err(&err),
        };
        match result.and_then(|n| self.conn.execute_batch("COMMIT").map(|()| n).map_err(&err)) {
            Ok(n) => {
                self.finish_seals(sealed);
                if let Some((seq, ids)) = relogged {
                    // Their samples are all in row `seq` now: older rows no longer hold
                    // anything only they have.
                    let heads = read_lock(&self.shared.heads);
                    for id in ids {
                        if let Some(slot) = heads.get(id) {
                            lock(slot).first_log_seq = seq;
                        }
                    }
                }
                Ok(n)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.poison(&e);
                Err(e)
            }
        }
    }

    /// The oldest log row still holding an unsealed sample. Computed here, on the writer
    /// thread, because only between two groups do the heads and `next_seq` agree.
    fn trim_point(&self) -> u64 {
        read_lock(&self.shared.heads)
            .iter()
            .map(|(_, h)| lock(h).first_log_seq)
            .filter(|&s| s != 0)
            .min()
            .unwrap_or(self.next_seq)
    }

    /// Rolls up and deletes expired chunks; returns how many chunks were deleted.
    fn expire(
        &self,
        ids: &[SeriesId],
        raw_cutoff: i64,
        rollup_cutoffs: [(Resolution, i64); 2],
    ) -> Result<u64, TsdbError> {
        let err = sqlite_err(&self.shared.path);
        let mut deleted = 0u64;
        for &id in ids {
            for (res, cutoff) in rollup_cutoffs {
                self.conn
                    .prepare_cached(
                        "DELETE FROM rollups WHERE series_id = ?1 AND resolution_ms = ?2 AND max_t < ?3",
                    )
                    .and_then(|mut s| s.execute(params![id, res.ms(), cutoff]))
                    .map_err(&err)?;
            }
            let expired: Vec<ChunkRow> = {
                let mut stmt = self
                    .conn
                    .prepare_cached(
                        "SELECT min_t, max_t, data FROM chunks WHERE series_id = ?1 AND min_t < ?2 ORDER BY min_t",
                    )
                    .map_err(&err)?;
                let mut rows = stmt.query(params![id, raw_cutoff]).map_err(&err)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(&err)? {
                    let max_t: i64 = r.get(1).map_err(&err)?;
                    if max_t >= raw_cutoff {
                        break;
                    }
                    out.push(ChunkRow {
                        min_t: r.get(0).map_err(&err)?,
                        max_t,
                        data: r.get(2).map_err(&err)?,
                    });
                }
                out
            };
            if expired.is_empty() {
                continue;
            }
            let mut samples = Vec::new();
            for row in &expired {
                let (mut ts, mut vs) = (Vec::new(), Vec::new());
                match dcmon_chunk::decode_into(&row.data, &mut ts, &mut vs) {
                    Ok(_) => samples.extend(ts.into_iter().zip(vs)),
                    Err(e) => {
                        self.shared
                            .counters
                            .corrupt_chunks
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::error!(series = id, min_t = row.min_t, max_t = row.max_t, error = %e, "tsdb: expired chunk is damaged; its samples are missing from the rollups");
                    }
                }
            }
            for res in Resolution::ALL {
                let buckets = rollup::aggregate(&samples, res);
                if !buckets.is_empty() {
                    self.add_rollup(id, res, buckets)?;
                }
            }
            let last_min = expired[expired.len() - 1].min_t;
            let last_max = expired[expired.len() - 1].max_t;
            self.conn
                .prepare_cached("DELETE FROM chunks WHERE series_id = ?1 AND min_t <= ?2")
                .and_then(|mut s| s.execute(params![id, last_min]))
                .map_err(&err)?;
            self.conn
                .prepare_cached(
                    "UPDATE series SET sealed_samples = max(0, sealed_samples - ?2) WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, samples.len() as i64]))
                .map_err(&err)?;
            // The in-memory tail must not outlive the chunks it copies.
            if let Some(slot) = read_lock(&self.shared.heads).get(id) {
                let mut head = lock(slot);
                if head.tail.first_time().is_some_and(|t| t <= last_max) {
                    head.tail = FrozenBuf::default();
                }
            }
            let c = &self.shared.counters;
            let _ = c
                .stored_samples
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(samples.len() as u64))
                });
            deleted += expired.len() as u64;
        }
        Ok(deleted)
    }

    /// Appends buckets to the series' newest rollup row while it is small, else starts one.
    fn add_rollup(
        &self,
        id: SeriesId,
        res: Resolution,
        buckets: Vec<rollup::Bucket>,
    ) -> Result<(), TsdbError> {
        let err = sqlite_err(&self.shared.path);
        let newest = self
            .conn
            .prepare_cached(
                "SELECT min_t, data FROM rollups WHERE series_id = ?1 AND resolution_ms = ?2 ORDER BY min_t DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![id, res.ms()], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .optional()
            })
            .map_err(&err)?;
        let mut all = buckets;
        let mut replace = None;
        if let Some((min_t, data)) = newest
            && let Ok(mut existing) = rollup::decode(&data)
            && existing.len() < ROLLUP_ROW_BUCKETS
            && existing
                .last()
                .is_some_and(|b| b.start_ms <= all[0].start_ms)
        {
            rollup::merge(&mut existing, &all);
            all = existing;
            replace = Some(min_t);
        }
        if let Some(min_t) = replace {
            self.conn
                .execute(
                    "DELETE FROM rollups WHERE series_id = ?1 AND resolution_ms = ?2 AND min_t = ?3",
                    params![id, res.ms(), min_t],
                )
                .map_err(&err)?;
        }
        let min_t = all[0].start_ms;
        let max_t = all[all.len() - 1].start_ms + res.ms() - 1;
        self.conn
            .prepare_cached(
                "INSERT INTO rollups (series_id, resolution_ms, min_t, max_t, data) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (series_id, resolution_ms, min_t) DO UPDATE SET max_t = excluded.max_t, data = excluded.data",
            )
            .and_then(|mut s| s.execute(params![id, res.ms(), min_t, max_t, rollup::encode(&all)]))
            .map_err(&err)?;
        Ok(())
    }
}

/// Answers every job of a failed group.
fn fail_all(jobs: Vec<Job>, message: &str) {
    let e = || TsdbError::Failed(message.to_owned());
    for j in jobs {
        match j {
            Job::Resolve(_, r) => drop(r.send(Err(e()))),
            Job::Append(_, r) => drop(r.send(Err(e()))),
            Job::Maintain(_, r) => drop(r.send(Err(e()))),
        }
    }
}
