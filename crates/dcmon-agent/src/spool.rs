//! The on-disk spool: scrapes the server could not take yet, kept across agent restarts
//! and machine crashes, sent oldest first when the server is back.
//!
//! Layout: a directory of segment files `<16 hex digits>.seg`, numbered in write order.
//! A segment is one batch session of the wire codec (`dcmon-wire`, PROTOCOL.md): series
//! are defined once per segment and later records refer to them by index, so a spooled
//! scrape costs about what it costs on the wire. Each segment starts with the 8-byte
//! magic [`MAGIC`]; then records:
//!
//! ```text
//! u32 LE  payload length
//! u32 LE  CRC-32 of (scrape count ‖ payload)
//! u32 LE  scrape count
//! payload one wire batch of the segment's session
//! ```
//!
//! Every append is written and `fdatasync`'d before [`Spool::append`] returns. A new
//! segment is started at each agent start (the old session's encoder state is gone) and
//! when the current one passes its size; past the bound the oldest segment is deleted
//! whole and its scrapes counted as dropped. What was sent is remembered in `cursor`
//! (segment number and byte offset, replaced atomically), so a restart does not resend it;
//! a crash between the server's answer and the cursor update resends one batch, which
//! the server deduplicates (same series and timestamp).
//!
//! Damage: a record cut short at the end of a segment is what a crash during an append
//! leaves; it is dropped with a warning. Any other damage (bad checksum, undecodable
//! batch) moves the rest of the segment aside as `<n>.seg.corrupt` with one error line,
//! and sending goes on with the next segment. Nothing in the spool can stop the agent.

use crate::config::write_atomic;
use dcmon_wire::batch::{self, Decoder, Encoder};
use dcmon_wire::{Labels, MetricSample, Scrape};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// First bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"DCMSPL01";
const RECORD_HEADER: usize = 12;
/// A record larger than this is damage, not data (a scrape of 2^20 series is far less).
const MAX_RECORD: u32 = 64 << 20;

/// Why the spool could not take or give data.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spool: cannot encode scrapes: {0}")]
    Encode(#[from] batch::BatchError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the unsent data starts: segment number and the byte offset of its next record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    segment: u64,
    offset: u64,
}

struct Segment {
    number: u64,
    bytes: u64,
    /// Scrapes in it not yet sent; counted when the segment is dropped.
    scrapes: u64,
}

struct Writer {
    number: u64,
    file: File,
    encoder: Encoder,
}

/// Decoding state of the segment being sent.
struct Reader {
    number: u64,
    file: File,
    offset: u64,
    decoder: Option<Decoder>,
    series: Vec<Labels>,
}

/// What the spool holds, for the agent's own metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub bytes: u64,
    pub scrapes: u64,
    pub dropped_scrapes: u64,
    pub corrupt_segments: u64,
}

/// A bounded, crash-safe queue of scrapes on disk.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    writer: Option<Writer>,
    reader: Option<Reader>,
    /// The last records read and not yet committed, returned again by the next `peek`.
    peeked: Option<(Vec<Scrape>, Position, u64)>,
    /// Where the next record to read is (at or after `sent`).
    read_pos: Position,
    sent: Position,
    stats: SpoolStats,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, bounded to `max_bytes` on disk. Scans the
    /// segments left by an earlier run; nothing in them makes this fail, only an
    /// unusable directory does.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut numbers = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
                continue;
            };
            if let Ok(n) = u64::from_str_radix(stem, 16) {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        let sent = read_cursor(&dir.join("cursor")).unwrap_or(Position {
            segment: 0,
            offset: 0,
        });
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            // At least eight segments fit under the bound, so dropping the oldest one
            // loses at most an eighth of what is kept.
            segment_bytes: (max_bytes / 8).clamp(16 << 10, 8 << 20),
            segments: VecDeque::new(),
            writer: None,
            reader: None,
            peeked: None,
            read_pos: sent,
            sent,
            stats: SpoolStats::default(),
        };
        for number in numbers {
            let path = spool.segment_path(number);
            if number < sent.segment {
                // Fully sent before the last stop; only the deletion was missed.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let from = if number == sent.segment {
                sent.offset
            } else {
                0
            };
            let (bytes, scrapes) = scan(&path, from);
            spool.segments.push_back(Segment {
                number,
                bytes,
                scrapes,
            });
        }
        spool.refresh_stats();
        if spool.stats.scrapes > 0 {
            tracing::info!(
                scrapes = spool.stats.scrapes,
                bytes = spool.stats.bytes,
                dir = %dir.display(),
                "spool holds scrapes from an earlier run; they are sent first"
            );
        }
        Ok(spool)
    }

    fn segment_path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:016x}.seg"))
    }

    fn refresh_stats(&mut self) {
        self.stats.bytes = self.segments.iter().map(|s| s.bytes).sum();
        self.stats.scrapes = self.segments.iter().map(|s| s.scrapes).sum();
    }

    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    /// Whether anything waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.stats.scrapes == 0
    }

    /// Appends scrapes as one record, durably (written and fdatasync'd) before returning.
    pub fn append(&mut self, scrapes: &[Scrape]) -> Result<(), SpoolError> {
        if scrapes.is_empty() {
            return Ok(());
        }
        let rotate = match (&self.writer, self.segments.back()) {
            (Some(w), Some(last)) => last.number != w.number || last.bytes >= self.segment_bytes,
            _ => true,
        };
        if rotate {
            self.start_segment()?;
        }
        let Some(w) = self.writer.as_mut() else {
            unreachable!("start_segment sets the writer");
        };
        let mut payload = match w.encoder.encode(scrapes) {
            Ok(p) => p,
            Err(batch::BatchError::SessionFull { .. }) => {
                self.start_segment()?;
                let Some(w) = self.writer.as_mut() else {
                    unreachable!("start_segment sets the writer");
                };
                w.encoder.encode(scrapes)?
            }
            Err(e) => return Err(e.into()),
        };
        let Some(w) = self.writer.as_mut() else {
            unreachable!("start_segment sets the writer");
        };
        let count = scrapes.len() as u32;
        let mut record = Vec::with_capacity(RECORD_HEADER + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&record_crc(count, &payload).to_le_bytes());
        record.extend_from_slice(&count.to_le_bytes());
        record.append(&mut payload);
        let path = self.dir.join(format!("{:016x}.seg", w.number));
        w.file.write_all(&record).map_err(io(&path))?;
        w.file.sync_data().map_err(io(&path))?;
        if let Some(last) = self.segments.back_mut() {
            last.bytes += record.len() as u64;
            last.scrapes += u64::from(count);
        }
        self.enforce_bound();
        self.refresh_stats();
        Ok(())
    }

    fn start_segment(&mut self) -> Result<(), SpoolError> {
        // Never reuse the number of a segment the cursor points into.
        let number = self
            .segments
            .back()
            .map_or(0, |s| s.number + 1)
            .max(self.sent.segment + 1)
            .max(self.writer.as_ref().map_or(0, |w| w.number + 1));
        let path = self.segment_path(number);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.write_all(MAGIC).map_err(io(&path))?;
        file.sync_data().map_err(io(&path))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        let mut id = [0u8; 8];
        let _ = getrandom::fill(&mut id);
        self.writer = Some(Writer {
            number,
            file,
            encoder: Encoder::new(u64::from_le_bytes(id)),
        });
        self.segments.push_back(Segment {
            number,
            bytes: MAGIC.len() as u64,
            scrapes: 0,
        });
        Ok(())
    }

    /// Deletes the oldest segments while the spool is over its bound, never the one
    /// being written.
    fn enforce_bound(&mut self) {
        while self.segments.len() > 1
            && self.segments.iter().map(|s| s.bytes).sum::<u64>() > self.max_bytes
        {
            let Some(old) = self.segments.pop_front() else {
                break;
            };
            self.stats.dropped_scrapes += old.scrapes;
            tracing::warn!(
                scrapes = old.scrapes,
                bytes = old.bytes,
                dropped_total = self.stats.dropped_scrapes,
                "spool full; dropped its oldest segment"
            );
            if self.reader.as_ref().is_some_and(|r| r.number == old.number) {
                self.reader = None;
                self.peeked = None;
            }
            let _ = std::fs::remove_file(self.segment_path(old.number));
        }
    }

    /// The oldest unsent scrapes (whole records, up to `max_scrapes` unless one record
    /// alone holds more), and the position after them for [`commit`](Self::commit).
    /// Returns the same again until committed.
    pub fn peek(&mut self, max_scrapes: usize) -> (Vec<Scrape>, Option<Position>) {
        if let Some((scrapes, pos, _)) = &self.peeked {
            return (scrapes.clone(), Some(*pos));
        }
        let mut out = Vec::new();
        let mut taken = 0u64;
        let mut end = None;
        while out.len() < max_scrapes {
            match self.next_record() {
                Some((mut scrapes, pos)) => {
                    taken += scrapes.len() as u64;
                    out.append(&mut scrapes);
                    end = Some(pos);
                }
                None => break,
            }
        }
        if let Some(pos) = end {
            self.peeked = Some((out.clone(), pos, taken));
        }
        (out, end)
    }

    /// Reads the next record, moving to later segments past the end or damage of one.
    fn next_record(&mut self) -> Option<(Vec<Scrape>, Position)> {
        loop {
            if self.reader.is_none() {
                let resume = self.read_pos;
                let seg = self.segments.iter().find(|s| s.number >= resume.segment)?;
                let number = seg.number;
                let offset = if number == resume.segment {
                    resume.offset
                } else {
                    0
                };
                match self.open_reader(number, offset) {
                    Ok(r) => self.reader = Some(r),
                    Err(e) => {
                        tracing::error!(error = %e, "spool segment unreadable; moved aside");
                        self.discard_segment(number);
                        continue;
                    }
                }
            }
            let r = self.reader.as_mut()?;
            let number = r.number;
            let writing = self.writer.as_ref().is_some_and(|w| w.number == number);
            let result = read_record(r);
            let at = r.offset;
            match result {
                Ok(Some(scrapes)) => {
                    let pos = Position {
                        segment: number,
                        offset: at,
                    };
                    self.read_pos = pos;
                    return Some((scrapes, pos));
                }
                Ok(None) if writing => {
                    // Caught up with the segment being written: keep the reader so the
                    // next call continues from here.
                    return None;
                }
                Ok(None) => {
                    self.reader = None;
                    self.finish_segment(number);
                }
                Err(RecordError::Torn) if !writing => {
                    tracing::warn!(
                        segment = %self.segment_path(number).display(),
                        "spool segment ends in a record cut short (a crash during a write); dropped it"
                    );
                    self.reader = None;
                    self.finish_segment(number);
                }
                Err(RecordError::Torn) => return None,
                Err(RecordError::Damaged(why)) => {
                    tracing::error!(
                        segment = %self.segment_path(number).display(),
                        offset = at,
                        %why,
                        "spool segment damaged; the rest of it is moved aside and sending goes on"
                    );
                    self.reader = None;
                    self.discard_segment(number);
                }
            }
        }
    }

    /// Opens segment `number` and decodes its records before `offset` to rebuild the
    /// session state the later records are coded against.
    fn open_reader(&self, number: u64, offset: u64) -> Result<Reader, SpoolError> {
        let path = self.segment_path(number);
        let mut file = File::open(&path).map_err(io(&path))?;
        let mut magic = [0u8; 8];
        file.read_exact(&mut magic).map_err(io(&path))?;
        if &magic != MAGIC {
            return Err(SpoolError::Io {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not a spool segment (bad magic)",
                ),
            });
        }
        let mut r = Reader {
            number,
            file,
            offset: MAGIC.len() as u64,
            decoder: None,
            series: Vec::new(),
        };
        while r.offset < offset {
            match read_record(&mut r) {
                Ok(Some(_)) => {}
                _ => {
                    return Err(SpoolError::Io {
                        path,
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("cannot replay the records before offset {offset}"),
                        ),
                    });
                }
            }
        }
        Ok(r)
    }

    /// A segment read to its end: reading goes on with the next one, and it is deleted
    /// now if everything in it was already committed.
    fn finish_segment(&mut self, number: u64) {
        self.read_pos = Position {
            segment: number + 1,
            offset: 0,
        };
        if let Some(i) = self
            .segments
            .iter()
            .position(|s| s.number == number && s.scrapes == 0)
        {
            self.segments.remove(i);
            let _ = std::fs::remove_file(self.segment_path(number));
        }
        self.refresh_stats();
    }

    fn discard_segment(&mut self, number: u64) {
        self.read_pos = Position {
            segment: number + 1,
            offset: 0,
        };
        let path = self.segment_path(number);
        let aside = path.with_extension("seg.corrupt");
        if let Err(e) = std::fs::rename(&path, &aside) {
            tracing::error!(error = %e, path = %path.display(), "cannot move a damaged spool segment aside; deleting it");
            let _ = std::fs::remove_file(&path);
        }
        self.stats.corrupt_segments += 1;
        if let Some(i) = self.segments.iter().position(|s| s.number == number) {
            if let Some(s) = self.segments.remove(i) {
                self.stats.dropped_scrapes += s.scrapes;
            }
        }
        if self.writer.as_ref().is_some_and(|w| w.number == number) {
            self.writer = None;
        }
        self.refresh_stats();
    }

    /// Marks everything up to `pos` (from [`peek`](Self::peek)) as sent: the cursor is
    /// replaced durably and fully sent segments are deleted.
    pub fn commit(&mut self, pos: Position) -> Result<(), SpoolError> {
        let taken = match self.peeked.take() {
            Some((_, p, taken)) if p == pos => taken,
            other => {
                self.peeked = other;
                return Ok(());
            }
        };
        self.sent = pos;
        let cursor = self.dir.join("cursor");
        write_atomic(
            &cursor,
            format!("{:016x} {}\n", pos.segment, pos.offset).as_bytes(),
            0o600,
        )
        .map_err(|e| SpoolError::Io {
            path: cursor,
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut left = taken;
        for s in self.segments.iter_mut() {
            if s.number > pos.segment {
                break;
            }
            let n = left.min(s.scrapes);
            s.scrapes -= n;
            left -= n;
        }
        let writing = self.writer.as_ref().map(|w| w.number);
        while let Some(front) = self.segments.front() {
            let done = front.number < pos.segment
                || (front.number == pos.segment
                    && front.scrapes == 0
                    && Some(front.number) != writing
                    && self
                        .reader
                        .as_ref()
                        .is_none_or(|r| r.number != front.number));
            if !done {
                break;
            }
            let n = front.number;
            self.segments.pop_front();
            let _ = std::fs::remove_file(self.segment_path(n));
        }
        self.refresh_stats();
        Ok(())
    }
}

fn record_crc(count: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&count.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn read_cursor(path: &Path) -> Option<Position> {
    let text = std::fs::read_to_string(path).ok()?;
    let (seg, off) = text.trim().split_once(' ')?;
    Some(Position {
        segment: u64::from_str_radix(seg, 16).ok()?,
        offset: off.parse().ok()?,
    })
}

/// Size and number of scrapes after `from` in a segment, reading record headers only.
fn scan(path: &Path, from: u64) -> (u64, u64) {
    let Ok(mut f) = File::open(path) else {
        return (0, 0);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut at = from.max(MAGIC.len() as u64);
    let mut scrapes = 0u64;
    let mut header = [0u8; RECORD_HEADER];
    while at + RECORD_HEADER as u64 <= len {
        if f.seek(SeekFrom::Start(at)).is_err() || f.read_exact(&mut header).is_err() {
            break;
        }
        let size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let count = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if size > MAX_RECORD {
            break;
        }
        at += RECORD_HEADER as u64 + u64::from(size);
        if at > len {
            break;
        }
        scrapes += u64::from(count);
    }
    (len, scrapes)
}

enum RecordError {
    /// The file ends inside a record.
    Torn,
    Damaged(String),
}

/// Reads and decodes the record at the reader's offset; `None` at the end of the file.
fn read_record(r: &mut Reader) -> Result<Option<Vec<Scrape>>, RecordError> {
    let mut header = [0u8; RECORD_HEADER];
    let len = r
        .file
        .metadata()
        .map_err(|e| RecordError::Damaged(e.to_string()))?
        .len();
    if r.offset == len {
        return Ok(None);
    }
    if r.offset + RECORD_HEADER as u64 > len {
        return Err(RecordError::Torn);
    }
    r.file
        .seek(SeekFrom::Start(r.offset))
        .and_then(|_| r.file.read_exact(&mut header))
        .map_err(|e| RecordError::Damaged(e.to_string()))?;
    let size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let count = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if size > MAX_RECORD {
        return Err(RecordError::Damaged(format!(
            "record length {size} is beyond any real record"
        )));
    }
    if r.offset + RECORD_HEADER as u64 + u64::from(size) > len {
        return Err(RecordError::Torn);
    }
    let mut payload = vec![0u8; size as usize];
    r.file
        .read_exact(&mut payload)
        .map_err(|e| RecordError::Damaged(e.to_string()))?;
    if record_crc(count, &payload) != crc {
        return Err(RecordError::Damaged("checksum mismatch".into()));
    }
    let scrapes = decode(r, &payload).map_err(|e| RecordError::Damaged(e.to_string()))?;
    if scrapes.len() != count as usize {
        return Err(RecordError::Damaged(format!(
            "record says {count} scrapes, holds {}",
            scrapes.len()
        )));
    }
    r.offset += RECORD_HEADER as u64 + u64::from(size);
    Ok(Some(scrapes))
}

fn decode(r: &mut Reader, payload: &[u8]) -> Result<Vec<Scrape>, batch::BatchError> {
    let header = batch::read_header(payload)?;
    if r.decoder.is_none() {
        r.decoder = Some(Decoder::start(&header)?);
    }
    let Some(decoder) = r.decoder.as_mut() else {
        unreachable!("set above");
    };
    let decoded = decoder.decode(payload)?;
    r.series.extend(decoded.new_series.iter().cloned());
    let mut scrapes = Vec::with_capacity(decoded.frames.len());
    for frame in &decoded.frames {
        let mut samples = Vec::with_capacity(frame.samples.len());
        for &(index, value) in &frame.samples {
            let Some(labels) = r.series.get(index as usize) else {
                return Err(batch::BatchError::NotSessionStart {
                    seq: header.seq,
                    dict_base: header.dict_base,
                });
            };
            samples.push(MetricSample {
                labels: labels.clone(),
                value,
            });
        }
        scrapes.push(Scrape {
            timestamp_ms: frame.timestamp_ms,
            samples,
        });
    }
    decoder.commit(decoded)?;
    Ok(scrapes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(t: i64, n: usize) -> Scrape {
        Scrape {
            timestamp_ms: t,
            samples: (0..n)
                .map(|i| MetricSample {
                    labels: Labels::new("m", [("i", i.to_string().as_str())]).unwrap(),
                    value: (t as f64) + i as f64,
                })
                .collect(),
        }
    }

    fn segment_file(dir: &Path) -> PathBuf {
        let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        segs.sort();
        segs.remove(0)
    }

    fn drain(spool: &mut Spool) -> Vec<i64> {
        let mut seen = Vec::new();
        loop {
            let (scrapes, pos) = spool.peek(7);
            let Some(pos) = pos else { break };
            seen.extend(scrapes.iter().map(|s| s.timestamp_ms));
            spool.commit(pos).unwrap();
        }
        seen
    }

    #[test]
    fn sends_oldest_first_across_restarts_without_resending() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for t in 0..20 {
            s.append(&[scrape(t, 5)]).unwrap();
        }
        let (first, pos) = s.peek(7);
        assert_eq!(first.len(), 7);
        assert_eq!(first[3], scrape(3, 5));
        // Peeking again without a commit gives the same scrapes.
        assert_eq!(s.peek(7).0, first);
        s.commit(pos.unwrap()).unwrap();
        assert_eq!(s.stats().scrapes, 13);
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.stats().scrapes, 13);
        for t in 20..25 {
            s.append(&[scrape(t, 6)]).unwrap();
        }
        assert_eq!(drain(&mut s), (7..25).collect::<Vec<_>>());
        assert!(s.is_empty());
        // Appends after draining go on in the same segment and are read from where
        // the reader stopped.
        s.append(&[scrape(30, 2)]).unwrap();
        assert_eq!(drain(&mut s), vec![30]);
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(s.is_empty());
        assert_eq!(drain(&mut s), Vec::<i64>::new());
    }

    #[test]
    fn bound_drops_oldest_segments_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 200 << 10).unwrap();
        let mut x = 1u64;
        for t in 0..400 {
            let mut sc = scrape(t * 1000, 100);
            for m in &mut sc.samples {
                // Noisy values, as full-precision gauges are.
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                m.value = (x >> 11) as f64 / (1u64 << 53) as f64;
            }
            s.append(&[sc]).unwrap();
        }
        let st = s.stats();
        assert!(st.bytes <= 200 << 10, "{st:?}");
        assert!(st.dropped_scrapes > 0, "{st:?}");
        assert_eq!(st.dropped_scrapes + st.scrapes, 400, "{st:?}");
        let got = drain(&mut s);
        assert_eq!(got.len() as u64, st.scrapes);
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*got.last().unwrap(), 399_000);
    }

    #[test]
    fn torn_tail_and_damage_lose_only_the_damaged_part() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for t in 0..5 {
            s.append(&[scrape(t, 3)]).unwrap();
        }
        drop(s);
        // A crash during an append leaves half a record.
        let seg = segment_file(dir.path());
        let mut bytes = std::fs::read(&seg).unwrap();
        let whole = bytes.len();
        bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2]);
        std::fs::write(&seg, &bytes).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for t in 10..13 {
            s.append(&[scrape(t, 3)]).unwrap();
        }
        assert_eq!(drain(&mut s), vec![0, 1, 2, 3, 4, 10, 11, 12]);
        drop(s);

        // A flipped byte inside a record: that record and the rest of its segment go.
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for t in 0..4 {
            s.append(&[scrape(t, 3)]).unwrap();
        }
        drop(s);
        let seg = segment_file(dir.path());
        let mut bytes = std::fs::read(&seg).unwrap();
        let at = whole.min(bytes.len()) - 5;
        bytes[at] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&[scrape(9, 3)]).unwrap();
        assert_eq!(drain(&mut s), vec![0, 1, 2, 9]);
        assert_eq!(s.stats().corrupt_segments, 1);
        assert!(seg.with_extension("seg.corrupt").exists());

        // Garbage where a segment should be.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0000000000000000.seg"), b"garbage!garbage").unwrap();
        std::fs::write(dir.path().join("cursor"), b"zz nonsense").unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&[scrape(1, 1)]).unwrap();
        assert_eq!(drain(&mut s), vec![1]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_segment_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let dir = tempfile::tempdir().unwrap();
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&bytes);
            std::fs::write(dir.path().join("0000000000000000.seg"), &b).unwrap();
            let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
            let _ = drain(&mut s);
            s.append(&[scrape(1, 1)]).unwrap();
            proptest::prop_assert_eq!(drain(&mut s), vec![1]);
        }
    }
}
