//! The batch codec: scrapes ⇄ compact bytes within an agent session.
//!
//! A session (a random `u64` the agent picks) numbers its batches 0, 1, 2, ... and interns
//! series: a series' labels travel once, as a *definition*, and are referred to by their
//! definition index afterwards. Each value is coded against the same series' earlier
//! values in the session (unchanged, exact decimal delta or delta of deltas, exact decimal,
//! raw bits), so the receiver must have applied every earlier batch of the session; when
//! it has not, it answers `409 wire_resync` and the agent starts a new session.
//!
//! [`Encoder`] (agent) and [`Decoder`] (server) are pure: bytes in, values out. A batch is
//! checked whole before anything changes: [`Decoder::decode`] takes `&self`, and
//! [`Decoder::commit`] applies the batch once the caller has stored it.
//!
//! The byte layout, limits and session rules are in `PROTOCOL.md` next to this crate.

use crate::{LabelError, Labels, Scrape};
use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

/// First bytes of every batch.
pub const MAGIC: [u8; 3] = *b"DCB";
/// The layout version this build writes and reads.
pub const VERSION: u8 = 1;

/// Most bytes a body may hold once decompressed.
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// Most series one session may define.
pub const MAX_SESSION_SERIES: u32 = 1 << 20;
/// Most samples in one batch, all frames together.
pub const MAX_BATCH_SAMPLES: usize = 1 << 20;
/// Most frames (scrapes) in one batch.
pub const MAX_BATCH_FRAMES: usize = 1 << 16;
/// Most label pairs (`__name__` included) of one series.
pub const MAX_LABEL_PAIRS: usize = 64;
/// Longest label name or value, in bytes.
pub const MAX_LABEL_BYTES: usize = 4096;
/// Most label pairs in the new definitions of one batch, all together. With the string
/// table a pair costs two bytes on the wire but ~50 in memory: this bounds the latter.
pub const MAX_BATCH_PAIRS: usize = 1 << 20;
/// Most bytes of label names and values in the new definitions of one batch.
pub const MAX_BATCH_LABEL_BYTES: usize = 16 << 20;

/// Body stored as is (the encoder picks it when zstd would not make it smaller).
const BODY_RAW: u8 = 0;
/// Body is one zstd frame that declares its content size.
const BODY_ZSTD: u8 = 1;
/// Levels 6 to 19 save 1–2 % over 3 on 200-series batches and cost 2–20× the time
/// (`cargo xtask bench wire`).
const ZSTD_LEVEL: i32 = 3;

/// Value kinds: the high nibble is the class, the low nibble the decimal scale `s`.
const KIND_SAME: u8 = 0x00;
/// `(base(last) + d) / 10^s`.
const KIND_DELTA: u8 = 0x10;
/// `m / 10^s`.
const KIND_DECIMAL: u8 = 0x20;
/// `bits(last) ^ x`.
const KIND_RAW: u8 = 0x30;
/// `(2·base(last) − base(before) + d) / 10^s`: counters at a steady rate.
const KIND_DELTA2: u8 = 0x40;
const CLASS_MASK: u8 = 0xf0;
const SCALE_MASK: u8 = 0x0f;
const MAX_SCALE: u8 = 15;
/// Integers up to 2^53 are exact in an f64, and so is 10^s up to 10^22: `m / 10^s` is one
/// correctly rounded IEEE division of exact operands, the same bits on every machine.
const MAX_MANTISSA: i64 = 1 << 53;
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The part of a batch the server reads before deciding what to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub session_id: u64,
    /// 0 for the first batch of a session, then +1 per batch.
    pub seq: u64,
    /// How many definitions the sender assumes the receiver holds: this batch's new
    /// definitions get indices `dict_base..`.
    pub dict_base: u32,
}

/// Where in a batch a problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Header,
    Body,
    /// An entry of the batch's string table.
    String(u32),
    Definitions,
    /// The definition with this session index.
    Definition(u32),
    Frames,
    Frame(u32),
    KindCodes,
    /// A value: frame number and series index.
    Sample { frame: u32, series: u32 },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header => f.write_str("header"),
            Self::Body => f.write_str("body"),
            Self::String(i) => write!(f, "string {i}"),
            Self::Definitions => f.write_str("definitions"),
            Self::Definition(i) => write!(f, "definition {i}"),
            Self::Frames => f.write_str("frames"),
            Self::Frame(i) => write!(f, "frame {i}"),
            Self::KindCodes => f.write_str("kind codes"),
            Self::Sample { frame, series } => write!(f, "frame {frame}, series {series}"),
        }
    }
}

/// Why a batch could not be encoded, decoded or applied. A refused batch changes nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    #[error("not a dcmon batch: bad magic")]
    BadMagic,
    #[error("header: batch version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u8),
    #[error("header: unknown body encoding {0}")]
    UnknownBodyEncoding(u8),
    #[error("{at}: truncated in {what}")]
    Truncated { at: Place, what: &'static str },
    #[error("{at}: {what} is not a valid varint (longer than 64 bits)")]
    BadVarint { at: Place, what: &'static str },
    #[error("{at}: {what} {count} exceeds the limit of {limit}")]
    Limit { at: Place, what: &'static str, count: u64, limit: u64 },
    #[error("body: zstd: {0}")]
    Zstd(String),
    #[error("{at}: {count} unread bytes at the end")]
    TrailingBytes { at: Place, count: usize },
    #[error("{at}: not UTF-8")]
    NotUtf8 { at: Place },
    #[error("definition {index}: string {reference} not in the string table (batch has {strings})")]
    UndefinedString { index: u32, reference: u64, strings: usize },
    #[error("definition {index}: {source}")]
    Labels { index: u32, source: LabelError },
    #[error("frame {frame}: series index {index} not defined (session has {defined})")]
    UndefinedSeries { frame: u32, index: u64, defined: u32 },
    #[error("{at}: unknown value kind {kind:#04x}")]
    UnknownValueKind { at: Place, kind: u8 },
    #[error("{at}: delta at scale {scale} from {last:?} (before it {before:?}), which have no such decimal form")]
    NoDecimalBase { at: Place, scale: u8, last: f64, before: f64 },
    #[error("{at}: decimal mantissa {mantissa} is beyond ±2^53")]
    MantissaOutOfRange { at: Place, mantissa: i128 },
    #[error(
        "batch seq {seq} (dict_base {dict_base}) of session {session_id:#018x} is not next: the decoder \
         has session {expected_session:#018x} and expects seq {expected_seq} with dict_base {defined}"
    )]
    OutOfSequence {
        session_id: u64,
        seq: u64,
        dict_base: u32,
        expected_session: u64,
        expected_seq: u64,
        defined: u32,
    },
    #[error("a session starts with seq 0 and dict_base 0, this batch has seq {seq} and dict_base {dict_base}")]
    NotSessionStart { seq: u64, dict_base: u32 },
}

/// How a batch relates to a decoder's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequence {
    /// The next batch: decode, store, commit.
    Next,
    /// The last committed batch again (the agent missed the answer): acknowledge it and
    /// store nothing.
    Duplicate,
    /// Another session, a gap, or definitions the decoder does not have: answer
    /// `wire_resync`.
    OutOfSync,
}

/// One scrape of a decoded batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub timestamp_ms: i64,
    /// `(series index, value)` by ascending index, each series at most once.
    pub samples: Vec<(u32, f64)>,
}

/// A checked batch, not yet applied to its decoder.
#[derive(Debug, Clone)]
pub struct DecodedBatch {
    pub header: BatchHeader,
    /// Series defined by this batch; the first has index `header.dict_base`.
    pub new_series: Vec<Labels>,
    pub frames: Vec<Frame>,
    /// The state of every series of the session after this batch.
    series: Vec<SeriesState>,
}

impl DecodedBatch {
    /// Samples in all frames.
    pub fn sample_count(&self) -> usize {
        self.frames.iter().map(|f| f.samples.len()).sum()
    }
}

/// What both ends remember of a series between its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeriesState {
    /// Bits of the last value; +0.0 before the first.
    last: u64,
    /// Bits of the value before it; +0.0 before the second.
    before: u64,
    /// The last kind other than `SAME`; decimal at scale 0 before the first.
    kind: u8,
    /// Whether the last value was coded `SAME`.
    same: bool,
}

impl SeriesState {
    const NEW: Self = Self { last: 0, before: 0, kind: KIND_DECIMAL, same: false };

    /// The kind kind code `0` stands for: the series' last kind.
    fn as_before(&self) -> u8 {
        if self.same { KIND_SAME } else { self.kind }
    }

    /// The kind kind code `10` stands for: `SAME` after a change, the last change after `SAME`.
    fn toggled(&self) -> u8 {
        if self.same { self.kind } else { KIND_SAME }
    }

    fn advance(&mut self, kind: u8, bits: u64) {
        self.before = self.last;
        self.last = bits;
        self.same = kind == KIND_SAME;
        if !self.same {
            self.kind = kind;
        }
    }
}

/// Agent side of a session: turns scrapes into batches 0, 1, 2, ...
#[derive(Debug, Clone)]
pub struct Encoder {
    session_id: u64,
    next_seq: u64,
    index: HashMap<Labels, u32>,
    series: Vec<SeriesState>,
}

impl Encoder {
    /// A new session. `session_id` must be random, so that a server never takes one
    /// session for another.
    pub fn new(session_id: u64) -> Self {
        Self { session_id, next_seq: 0, index: HashMap::new(), series: Vec::new() }
    }

    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The `seq` the next [`encode`](Self::encode) writes.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Series defined so far in this session.
    pub fn series_count(&self) -> u32 {
        self.series.len() as u32
    }

    /// Encodes `scrapes` as the next batch and advances the session as if the server had
    /// accepted it: send these exact bytes until it does, or start a new session. Within a
    /// scrape, a series listed twice keeps its last value.
    ///
    /// Fails, changing nothing, when the batch would exceed a limit (split it) or a series'
    /// labels are too long.
    pub fn encode(&mut self, scrapes: &[Scrape]) -> Result<Vec<u8>, BatchError> {
        self.encode_as(scrapes, BodyChoice::Smallest)
    }

    fn encode_as(&mut self, scrapes: &[Scrape], choice: BodyChoice) -> Result<Vec<u8>, BatchError> {
        let plan = self.plan(scrapes)?;
        let dict_base = self.series_count();
        let mut body = Vec::with_capacity(64 + plan.samples * 3);
        put_definitions(&mut body, &plan.new_series);
        put_varint(&mut body, plan.frames.len() as u64);
        let mut prev_ts = 0i64;
        for frame in &plan.frames {
            put_varint(&mut body, zigzag(frame.timestamp_ms.wrapping_sub(prev_ts)));
            prev_ts = frame.timestamp_ms;
            put_runs(&mut body, &frame.samples);
        }

        // Nothing fails past this point: advance the session while coding the values.
        self.series.resize(self.series.len() + plan.new_series.len(), SeriesState::NEW);
        let mut codes = BitWriter::default();
        let mut values = Vec::with_capacity(plan.samples * 2);
        for frame in &plan.frames {
            for &(index, value) in &frame.samples {
                let state = &mut self.series[index as usize];
                let (kind, payload) = choose_value(value, state);
                if kind == state.as_before() {
                    codes.push(0, 1);
                } else if kind == state.toggled() {
                    codes.push(0b01, 2);
                } else {
                    codes.push(0b11, 2);
                    values.push(kind);
                }
                if kind != KIND_SAME {
                    put_varint(&mut values, payload);
                }
                state.advance(kind, value.to_bits());
            }
        }
        put_varint(&mut body, codes.bytes.len() as u64);
        body.extend_from_slice(&codes.bytes);
        body.extend_from_slice(&values);

        let header = BatchHeader { session_id: self.session_id, seq: self.next_seq, dict_base };
        let compressed = match choice {
            BodyChoice::Smallest => zstd::bulk::compress(&body, ZSTD_LEVEL).ok().filter(|c| c.len() < body.len()),
            BodyChoice::Raw => None,
        };
        let (encoding, body) = match &compressed {
            Some(c) => (BODY_ZSTD, c.as_slice()),
            None => (BODY_RAW, body.as_slice()),
        };
        let mut out = Vec::with_capacity(24 + body.len());
        put_header(&mut out, &header, encoding);
        out.extend_from_slice(body);

        for labels in plan.new_series {
            let index = self.index.len() as u32;
            self.index.insert(labels.clone(), index);
        }
        self.next_seq += 1;
        Ok(out)
    }

    /// Assigns indices (new series after the known ones), orders the samples and checks
    /// every limit, without changing the session.
    fn plan<'a>(&self, scrapes: &'a [Scrape]) -> Result<Plan<'a>, BatchError> {
        if scrapes.len() > MAX_BATCH_FRAMES {
            return Err(limit(Place::Frames, "frame count", scrapes.len(), MAX_BATCH_FRAMES));
        }
        let dict_base = self.series.len();
        let mut new_series: Vec<&Labels> = Vec::new();
        let mut new_index: HashMap<&Labels, u32> = HashMap::new();
        let (mut pairs, mut label_bytes) = (0, 0);
        let mut frames = Vec::with_capacity(scrapes.len());
        let mut total = 0;
        for (f, scrape) in scrapes.iter().enumerate() {
            total += scrape.samples.len();
            if total > MAX_BATCH_SAMPLES {
                return Err(limit(Place::Frame(f as u32), "sample count", total, MAX_BATCH_SAMPLES));
            }
            let mut samples = Vec::with_capacity(scrape.samples.len());
            for sample in &scrape.samples {
                let index = match self.index.get(&sample.labels) {
                    Some(&i) => i,
                    None => match new_index.entry(&sample.labels) {
                        Entry::Occupied(e) => *e.get(),
                        Entry::Vacant(e) => {
                            let index = dict_base + new_series.len();
                            if index >= MAX_SESSION_SERIES as usize {
                                let limit = MAX_SESSION_SERIES as usize;
                                return Err(self::limit(Place::Definitions, "series count", index + 1, limit));
                            }
                            let at = Place::Definition(index as u32);
                            check_labels(at, &sample.labels)?;
                            pairs += sample.labels.pairs().len();
                            if pairs > MAX_BATCH_PAIRS {
                                return Err(limit(at, "batch label pair count", pairs, MAX_BATCH_PAIRS));
                            }
                            label_bytes += sample.labels.pairs().iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
                            if label_bytes > MAX_BATCH_LABEL_BYTES {
                                return Err(limit(at, "batch label bytes", label_bytes, MAX_BATCH_LABEL_BYTES));
                            }
                            new_series.push(&sample.labels);
                            *e.insert(index as u32)
                        }
                    },
                };
                samples.push((index, sample.value));
            }
            // The wire lists a frame's series by ascending index, each once. The sort is
            // stable, so of duplicates the last one is kept.
            samples.sort_by_key(|&(i, _)| i);
            samples.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    kept.1 = later.1;
                }
                same
            });
            frames.push(Frame { timestamp_ms: scrape.timestamp_ms, samples });
        }
        let samples = frames.iter().map(|f| f.samples.len()).sum();
        Ok(Plan { new_series, frames, samples })
    }
}

/// A batch ready to be written.
struct Plan<'a> {
    new_series: Vec<&'a Labels>,
    frames: Vec<Frame>,
    samples: usize,
}

#[derive(Debug, Clone, Copy)]
enum BodyChoice {
    /// zstd when that is smaller, as sent on the wire.
    Smallest,
    /// Uncompressed, so tests can mutate the layout itself.
    #[cfg_attr(not(test), expect(dead_code, reason = "only tests ask for raw bodies"))]
    Raw,
}

fn check_labels(at: Place, labels: &Labels) -> Result<(), BatchError> {
    if labels.pairs().len() > MAX_LABEL_PAIRS {
        return Err(limit(at, "label count", labels.pairs().len(), MAX_LABEL_PAIRS));
    }
    for (name, value) in labels.pairs() {
        for (what, s) in [("label name length", name), ("label value length", value)] {
            if s.len() > MAX_LABEL_BYTES {
                return Err(limit(at, what, s.len(), MAX_LABEL_BYTES));
            }
        }
    }
    Ok(())
}

fn limit(at: Place, what: &'static str, count: usize, limit: usize) -> BatchError {
    BatchError::Limit { at, what, count: count as u64, limit: limit as u64 }
}

/// The string table (each distinct name and value once, in order of first use), then
/// each definition as its pair count and `(name, value)` string references.
fn put_definitions(out: &mut Vec<u8>, new_series: &[&Labels]) {
    let mut strings: Vec<&str> = Vec::new();
    let mut ids: HashMap<&str, u64> = HashMap::new();
    let mut refs = Vec::new();
    for labels in new_series {
        put_varint(&mut refs, labels.pairs().len() as u64);
        for (name, value) in labels.pairs() {
            for s in [name.as_str(), value.as_str()] {
                let id = *ids.entry(s).or_insert_with(|| {
                    strings.push(s);
                    strings.len() as u64 - 1
                });
                put_varint(&mut refs, id);
            }
        }
    }
    put_varint(out, strings.len() as u64);
    for s in strings {
        put_varint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    put_varint(out, new_series.len() as u64);
    out.extend_from_slice(&refs);
}

/// Reads the header of a batch: enough to route and classify it.
pub fn read_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    parse_header(bytes).map(|(header, _, _)| header)
}

/// Server side of a session: checks and decodes its batches in order.
#[derive(Debug, Clone)]
pub struct Decoder {
    session_id: u64,
    /// Seq of the last committed batch; `None` before the first.
    last_seq: Option<u64>,
    /// What each defined series' next value is coded against: all the per-series state
    /// a session needs (the labels are the caller's to keep).
    series: Vec<SeriesState>,
}

impl Decoder {
    /// A decoder for the session that `header` starts (seq 0, dict_base 0). Any other
    /// header belongs to a session this decoder cannot follow: answer `wire_resync`.
    pub fn start(header: &BatchHeader) -> Result<Self, BatchError> {
        if header.seq != 0 || header.dict_base != 0 {
            return Err(BatchError::NotSessionStart { seq: header.seq, dict_base: header.dict_base });
        }
        Ok(Self { session_id: header.session_id, last_seq: None, series: Vec::new() })
    }

    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Series defined so far in this session.
    pub fn series_count(&self) -> u32 {
        self.series.len() as u32
    }

    /// Seq of the last committed batch.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    fn next_seq(&self) -> u64 {
        self.last_seq.map_or(0, |s| s.wrapping_add(1))
    }

    /// Where `header` stands in this session.
    pub fn classify(&self, header: &BatchHeader) -> Sequence {
        if header.session_id != self.session_id {
            Sequence::OutOfSync
        } else if self.last_seq == Some(header.seq) {
            Sequence::Duplicate
        } else if header.seq == self.next_seq() && header.dict_base == self.series_count() {
            Sequence::Next
        } else {
            Sequence::OutOfSync
        }
    }

    fn expect_next(&self, header: &BatchHeader) -> Result<(), BatchError> {
        if self.classify(header) == Sequence::Next {
            return Ok(());
        }
        Err(BatchError::OutOfSequence {
            session_id: header.session_id,
            seq: header.seq,
            dict_base: header.dict_base,
            expected_session: self.session_id,
            expected_seq: self.next_seq(),
            defined: self.series_count(),
        })
    }

    /// Decodes and checks the next batch of the session, without changing the decoder.
    pub fn decode(&self, bytes: &[u8]) -> Result<DecodedBatch, BatchError> {
        let (header, encoding, rest) = parse_header(bytes)?;
        self.expect_next(&header)?;
        let body = match encoding {
            BODY_ZSTD => Cow::Owned(decompress(rest)?),
            _ if rest.len() > MAX_BODY_BYTES => return Err(limit(Place::Body, "size", rest.len(), MAX_BODY_BYTES)),
            _ => Cow::Borrowed(rest),
        };
        let mut r = Reader { buf: &body, pos: 0 };
        let new_series = read_definitions(&mut r, header.dict_base)?;
        let defined = header.dict_base + new_series.len() as u32;

        let count = r.varint(Place::Frames, "frame count")?;
        if count > MAX_BATCH_FRAMES as u64 {
            return Err(BatchError::Limit {
                at: Place::Frames,
                what: "frame count",
                count,
                limit: MAX_BATCH_FRAMES as u64,
            });
        }
        let mut frames = Vec::with_capacity(r.capped(count));
        let mut timestamp_ms = 0i64;
        let mut total = 0;
        for f in 0..count as u32 {
            timestamp_ms = timestamp_ms.wrapping_add(unzigzag(r.varint(Place::Frame(f), "timestamp delta")?));
            let samples = read_runs(&mut r, f, defined, &mut total)?;
            frames.push(Frame { timestamp_ms, samples });
        }

        let len = r.varint(Place::KindCodes, "length")?;
        let mut codes = BitReader { bytes: r.take(r.capped(len), Place::KindCodes, "codes")?, pos: 0 };
        if len > codes.bytes.len() as u64 {
            return Err(BatchError::Truncated { at: Place::KindCodes, what: "codes" });
        }
        let mut series = Vec::with_capacity(defined as usize);
        series.extend_from_slice(&self.series);
        series.resize(defined as usize, SeriesState::NEW);
        for (f, frame) in frames.iter_mut().enumerate() {
            for (index, value) in &mut frame.samples {
                let at = Place::Sample { frame: f as u32, series: *index };
                let state = &mut series[*index as usize];
                let kind = match codes.code().ok_or(BatchError::Truncated { at, what: "kind codes" })? {
                    KindCode::AsBefore => state.as_before(),
                    KindCode::Toggled => state.toggled(),
                    KindCode::Explicit => r.byte(at, "value kind")?,
                };
                let payload = if kind == KIND_SAME { 0 } else { r.varint(at, "value")? };
                let bits = value_bits(kind, payload, state).map_err(|fault| fault.at(at, state))?;
                state.advance(kind, bits);
                *value = f64::from_bits(bits);
            }
        }
        let unread_codes = codes.bytes.len() - codes.pos.div_ceil(8);
        if unread_codes > 0 {
            return Err(BatchError::TrailingBytes { at: Place::KindCodes, count: unread_codes });
        }
        if r.remaining() > 0 {
            return Err(BatchError::TrailingBytes { at: Place::Body, count: r.remaining() });
        }
        Ok(DecodedBatch { header, new_series, frames, series })
    }

    /// Applies a batch from [`decode`](Self::decode) once its samples are stored. Fails,
    /// changing nothing, when another batch was committed since it was decoded.
    pub fn commit(&mut self, batch: DecodedBatch) -> Result<(), BatchError> {
        self.expect_next(&batch.header)?;
        self.series = batch.series;
        self.last_seq = Some(batch.header.seq);
        Ok(())
    }
}

fn read_definitions(r: &mut Reader<'_>, dict_base: u32) -> Result<Vec<Labels>, BatchError> {
    let count = r.varint(Place::Definitions, "string count")?;
    let mut strings = Vec::with_capacity(r.capped(count));
    for i in 0..count {
        // Each string takes a byte at least, so `i` stays below the body size.
        let at = Place::String(i as u32);
        let len = r.varint(at, "length")?;
        if len > MAX_LABEL_BYTES as u64 {
            return Err(BatchError::Limit { at, what: "length", count: len, limit: MAX_LABEL_BYTES as u64 });
        }
        let bytes = r.take(len as usize, at, "bytes")?;
        strings.push(std::str::from_utf8(bytes).map_err(|_| BatchError::NotUtf8 { at })?);
    }

    let count = r.varint(Place::Definitions, "definition count")?;
    let defined = u64::from(dict_base) + count;
    if defined > u64::from(MAX_SESSION_SERIES) {
        return Err(BatchError::Limit {
            at: Place::Definitions,
            what: "series count",
            count: defined,
            limit: MAX_SESSION_SERIES.into(),
        });
    }
    let mut new_series = Vec::with_capacity(r.capped(count));
    let (mut pairs_total, mut bytes_total) = (0, 0);
    for index in dict_base..defined as u32 {
        let at = Place::Definition(index);
        let count = r.varint(at, "label count")?;
        if count > MAX_LABEL_PAIRS as u64 {
            return Err(BatchError::Limit { at, what: "label count", count, limit: MAX_LABEL_PAIRS as u64 });
        }
        pairs_total += count as usize;
        if pairs_total > MAX_BATCH_PAIRS {
            return Err(limit(at, "batch label pair count", pairs_total, MAX_BATCH_PAIRS));
        }
        let mut pairs = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let mut string = || {
                let reference = r.varint(at, "string reference")?;
                let s = *strings.get(reference as usize).ok_or(BatchError::UndefinedString {
                    index,
                    reference,
                    strings: strings.len(),
                })?;
                bytes_total += s.len();
                if bytes_total > MAX_BATCH_LABEL_BYTES {
                    return Err(limit(at, "batch label bytes", bytes_total, MAX_BATCH_LABEL_BYTES));
                }
                Ok(s.to_owned())
            };
            pairs.push((string()?, string()?));
        }
        new_series.push(Labels::from_pairs(pairs).map_err(|source| BatchError::Labels { index, source })?);
    }
    Ok(new_series)
}

/// Reads a frame's series list (runs of consecutive indices) as samples valued 0.
fn read_runs(r: &mut Reader<'_>, frame: u32, defined: u32, total: &mut usize) -> Result<Vec<(u32, f64)>, BatchError> {
    let at = Place::Frame(frame);
    let runs = r.varint(at, "run count")?;
    let mut samples = Vec::new();
    let mut next = 0u64;
    for _ in 0..runs {
        let start = next.saturating_add(r.varint(at, "run gap")?);
        let end = start.saturating_add(r.varint(at, "run length")?).saturating_add(1);
        if end > u64::from(defined) {
            return Err(BatchError::UndefinedSeries { frame, index: start.max(defined.into()), defined });
        }
        *total += (end - start) as usize;
        if *total > MAX_BATCH_SAMPLES {
            return Err(limit(at, "batch sample count", *total, MAX_BATCH_SAMPLES));
        }
        // Every sample has a kind code still to come, one bit at least: refuse counts the
        // body cannot back before allocating for them.
        if *total > r.remaining().saturating_mul(8) {
            return Err(BatchError::Truncated { at: Place::KindCodes, what: "codes" });
        }
        samples.extend((start as u32..end as u32).map(|i| (i, 0.0)));
        next = end;
    }
    Ok(samples)
}

fn decompress(frame: &[u8]) -> Result<Vec<u8>, BatchError> {
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) => size,
        Ok(None) => return Err(BatchError::Zstd("frame does not declare its content size".into())),
        Err(_) => return Err(BatchError::Zstd("not a zstd frame".into())),
    };
    if size > MAX_BODY_BYTES as u64 {
        return Err(BatchError::Limit { at: Place::Body, what: "size", count: size, limit: MAX_BODY_BYTES as u64 });
    }
    match zstd::zstd_safe::find_frame_compressed_size(frame) {
        Ok(n) if n == frame.len() => {}
        Ok(n) => return Err(BatchError::TrailingBytes { at: Place::Body, count: frame.len().saturating_sub(n) }),
        Err(code) => return Err(BatchError::Zstd(zstd::zstd_safe::get_error_name(code).into())),
    }
    // The buffer has exactly the declared size, so a lying frame cannot make it grow.
    let body = zstd::bulk::decompress(frame, size as usize).map_err(|e| BatchError::Zstd(e.to_string()))?;
    if body.len() as u64 != size {
        return Err(BatchError::Zstd(format!("frame declares {size} bytes but holds {}", body.len())));
    }
    Ok(body)
}

fn put_header(out: &mut Vec<u8>, header: &BatchHeader, encoding: u8) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(encoding);
    out.extend_from_slice(&header.session_id.to_le_bytes());
    put_varint(out, header.seq);
    put_varint(out, header.dict_base.into());
}

fn parse_header(bytes: &[u8]) -> Result<(BatchHeader, u8, &[u8]), BatchError> {
    let at = Place::Header;
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.take(MAGIC.len(), at, "magic").ok() != Some(&MAGIC[..]) {
        return Err(BatchError::BadMagic);
    }
    let version = r.byte(at, "version")?;
    if version != VERSION {
        return Err(BatchError::UnsupportedVersion(version));
    }
    let encoding = r.byte(at, "body encoding")?;
    if encoding != BODY_RAW && encoding != BODY_ZSTD {
        return Err(BatchError::UnknownBodyEncoding(encoding));
    }
    let session = r.take(8, at, "session id")?;
    let session_id = u64::from_le_bytes(session.try_into().expect("took 8 bytes"));
    let seq = r.varint(at, "seq")?;
    let dict_base = r.varint(at, "dict_base")?;
    let dict_base = u32::try_from(dict_base).map_err(|_| BatchError::Limit {
        at,
        what: "dict_base",
        count: dict_base,
        limit: u32::MAX.into(),
    })?;
    Ok((BatchHeader { session_id, seq, dict_base }, encoding, &bytes[r.pos..]))
}

/// A cursor over untrusted bytes; every read names what it was reading, for the error.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// `count` capped by the bytes left: every element takes a byte at least, so this is a
    /// safe capacity for a count read from the input.
    fn capped(&self, count: u64) -> usize {
        count.min(self.remaining() as u64) as usize
    }

    fn take(&mut self, n: usize, at: Place, what: &'static str) -> Result<&'a [u8], BatchError> {
        if n > self.remaining() {
            return Err(BatchError::Truncated { at, what });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self, at: Place, what: &'static str) -> Result<u8, BatchError> {
        Ok(self.take(1, at, what)?[0])
    }

    /// LEB128, at most 10 bytes.
    fn varint(&mut self, at: Place, what: &'static str) -> Result<u64, BatchError> {
        let mut x = 0u64;
        for i in 0..10 {
            let b = self.byte(at, what)?;
            if i == 9 && b > 1 {
                return Err(BatchError::BadVarint { at, what });
            }
            x |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(x);
            }
        }
        Err(BatchError::BadVarint { at, what })
    }
}

/// How a sample's kind is given: `0`, `10` or `11` (bits in stream order).
enum KindCode {
    /// The series' last kind (`SAME` included).
    AsBefore,
    /// `SAME` after a change, the series' last change kind after `SAME`.
    Toggled,
    /// A kind byte in the values stream.
    Explicit,
}

/// Bits packed from the least significant end of each byte.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    bits: usize,
}

impl BitWriter {
    /// Appends the low `n` bits of `code`, least significant first.
    fn push(&mut self, code: u8, n: usize) {
        for i in 0..n {
            if self.bits % 8 == 0 {
                self.bytes.push(0);
            }
            let last = self.bytes.len() - 1;
            self.bytes[last] |= ((code >> i) & 1) << (self.bits % 8);
            self.bits += 1;
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = self.bytes.get(self.pos / 8)?;
        let bit = byte >> (self.pos % 8) & 1 == 1;
        self.pos += 1;
        Some(bit)
    }

    fn code(&mut self) -> Option<KindCode> {
        Some(match (self.bit()?, self.bit_if_first_set()?) {
            (false, _) => KindCode::AsBefore,
            (true, false) => KindCode::Toggled,
            (true, true) => KindCode::Explicit,
        })
    }

    /// Second bit of a code, read only when the first was 1.
    fn bit_if_first_set(&mut self) -> Option<bool> {
        let first = self.bytes.get((self.pos - 1) / 8)? >> ((self.pos - 1) % 8) & 1 == 1;
        if first { self.bit() } else { Some(false) }
    }
}

fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push(x as u8 | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn varint_len(x: u64) -> u32 {
    (64 - x.leading_zeros()).max(1).div_ceil(7)
}

/// Writes a frame's series indices (ascending, distinct) as runs of consecutive indices:
/// the run count, then per run the gap since the end of the previous run and
/// `length - 1`. A frame with every series of the session is one run.
fn put_runs(out: &mut Vec<u8>, samples: &[(u32, f64)]) {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &(i, _) in samples {
        match runs.last_mut() {
            Some((start, len)) if *start + *len == i => *len += 1,
            _ => runs.push((i, 1)),
        }
    }
    put_varint(out, runs.len() as u64);
    let mut next = 0;
    for (start, len) in runs {
        put_varint(out, u64::from(start - next));
        put_varint(out, u64::from(len - 1));
        next = start + len;
    }
}

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn unzigzag(x: u64) -> i64 {
    ((x >> 1) as i64) ^ -((x & 1) as i64)
}

/// Why a kind and payload stand for no value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ValueFault {
    UnknownKind(u8),
    NoDecimalBase(u8),
    Mantissa(i128),
}

impl ValueFault {
    fn at(self, at: Place, state: &SeriesState) -> BatchError {
        match self {
            Self::UnknownKind(kind) => BatchError::UnknownValueKind { at, kind },
            Self::NoDecimalBase(scale) => BatchError::NoDecimalBase {
                at,
                scale,
                last: f64::from_bits(state.last),
                before: f64::from_bits(state.before),
            },
            Self::Mantissa(mantissa) => BatchError::MantissaOutOfRange { at, mantissa },
        }
    }
}

/// The value (bits) that `kind` and its payload stand for in a series' state. The encoder
/// runs this too, to check every value it writes.
fn value_bits(kind: u8, payload: u64, state: &SeriesState) -> Result<u64, ValueFault> {
    let scale = kind & SCALE_MASK;
    let base = |bits: u64| scaled(f64::from_bits(bits), scale).map(i128::from).ok_or(ValueFault::NoDecimalBase(scale));
    let change = i128::from(unzigzag(payload));
    match kind & CLASS_MASK {
        KIND_SAME if kind == KIND_SAME => Ok(state.last),
        KIND_DELTA if scale <= MAX_SCALE => from_decimal(base(state.last)? + change, scale),
        KIND_DELTA2 if scale <= MAX_SCALE => from_decimal(2 * base(state.last)? - base(state.before)? + change, scale),
        KIND_DECIMAL if scale <= MAX_SCALE => from_decimal(change, scale),
        KIND_RAW if kind == KIND_RAW => Ok(payload ^ state.last),
        _ => Err(ValueFault::UnknownKind(kind)),
    }
}

/// `v · 10^scale` rounded to an integer, when within ±2^53: what a delta at that scale
/// applies to. Deterministic: one IEEE multiplication, round half away from zero.
fn scaled(v: f64, scale: u8) -> Option<i64> {
    let x = (v * POW10[usize::from(scale)]).round();
    (x.abs() <= MAX_MANTISSA as f64).then_some(x as i64)
}

fn from_decimal(mantissa: i128, scale: u8) -> Result<u64, ValueFault> {
    if mantissa.abs() > i128::from(MAX_MANTISSA) {
        return Err(ValueFault::Mantissa(mantissa));
    }
    Ok((mantissa as f64 / POW10[usize::from(scale)]).to_bits())
}

/// `(scale, mantissa)` with `v == mantissa / 10^scale` exactly, trying `preferred` first
/// (a series keeps its scale, and its kind), then the smallest scale that works.
fn decimal_form(v: f64, preferred: u8) -> Option<(u8, i64)> {
    let try_scale = |s: u8| {
        let m = scaled(v, s)?;
        (from_decimal(m.into(), s) == Ok(v.to_bits())).then_some((s, m))
    };
    try_scale(preferred).or_else(|| (0..=MAX_SCALE).filter(|&s| s != preferred).find_map(try_scale))
}

/// The shortest exact coding of `v` in a series' state, as `(kind, payload)`. Of equally
/// short ones the series' last kind wins (its kind code is one bit), then decimal, delta,
/// delta of deltas, raw.
fn choose_value(v: f64, state: &SeriesState) -> (u8, u64) {
    let bits = v.to_bits();
    if bits == state.last {
        return (KIND_SAME, 0);
    }
    let raw = (KIND_RAW, bits ^ state.last);
    let mut candidates = [raw; 4];
    let mut n = 0;
    if let Some((s, m)) = decimal_form(v, state.kind & SCALE_MASK) {
        let base = |bits: u64| scaled(f64::from_bits(bits), s);
        candidates[n] = (KIND_DECIMAL | s, zigzag(m));
        n += 1;
        if let Some(last) = base(state.last) {
            // Every term is within ±2^53, so no difference overflows.
            candidates[n] = (KIND_DELTA | s, zigzag(m - last));
            n += 1;
            if let Some(before) = base(state.before) {
                candidates[n] = (KIND_DELTA2 | s, zigzag(m - 2 * last + before));
                n += 1;
            }
        }
    }
    candidates[n] = raw;
    let cost = |&(kind, payload): &(u8, u64)| (varint_len(payload), kind != state.kind);
    let best = *candidates[..=n].iter().min_by_key(|c| cost(c)).expect("raw is always a candidate");
    if value_bits(best.0, best.1, state) == Ok(bits) { best } else { raw }
}
