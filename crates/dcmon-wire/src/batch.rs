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
/// Measured on a 200-series host (`cargo xtask bench wire`): higher levels leave steady
/// batches (mostly varints already) unchanged and shrink first batches by 3–5 %, for up
/// to 1.5× the encode time.
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
/// Every scale the nibble can hold.
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
    Sample {
        frame: u32,
        series: u32,
    },
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
    Limit {
        at: Place,
        what: &'static str,
        count: u64,
        limit: u64,
    },
    #[error(
        "definitions: the session would have {count} series, more than the limit of \
         {MAX_SESSION_SERIES}: start a new session"
    )]
    SessionFull { count: u64 },
    #[error("body: zstd: {0}")]
    Zstd(String),
    #[error("{at}: {count} unread bytes at the end")]
    TrailingBytes { at: Place, count: usize },
    #[error("{at}: not UTF-8")]
    NotUtf8 { at: Place },
    #[error("definition {index}: string {reference} not in the string table (batch has {strings})")]
    UndefinedString {
        index: u32,
        reference: u64,
        strings: usize,
    },
    #[error("definition {index}: {source}")]
    Labels { index: u32, source: LabelError },
    #[error("frame {frame}: series index {index} not defined (session has {defined})")]
    UndefinedSeries {
        frame: u32,
        index: u64,
        defined: u32,
    },
    #[error("{at}: unknown value kind {kind:#04x}")]
    UnknownValueKind { at: Place, kind: u8 },
    #[error(
        "{at}: delta at scale {scale} from {last:?} (before it {before:?}), which have no such decimal form"
    )]
    NoDecimalBase {
        at: Place,
        scale: u8,
        last: f64,
        before: f64,
    },
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
    #[error(
        "a session starts with seq 0 and dict_base 0, this batch has seq {seq} and dict_base {dict_base}"
    )]
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
    const NEW: Self = Self {
        last: 0,
        before: 0,
        kind: KIND_DECIMAL,
        same: false,
    };

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
        Self {
            session_id,
            next_seq: 0,
            index: HashMap::new(),
            series: Vec::new(),
        }
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
    /// Fails, changing nothing, when the batch would exceed a limit (split it), a series'
    /// labels are too long, or the session is full ([`BatchError::SessionFull`]: start a
    /// new one).
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
        self.series
            .resize(self.series.len() + plan.new_series.len(), SeriesState::NEW);
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

        let header = BatchHeader {
            session_id: self.session_id,
            seq: self.next_seq,
            dict_base,
        };
        let compressed = match choice {
            BodyChoice::Smallest => zstd::bulk::compress(&body, ZSTD_LEVEL)
                .ok()
                .filter(|c| c.len() < body.len()),
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
            let n = scrapes.len();
            return Err(limit(Place::Frames, "frame count", n, MAX_BATCH_FRAMES));
        }
        let mut new_series = NewSeries {
            dict_base: self.series.len(),
            ..NewSeries::default()
        };
        let mut frames = Vec::with_capacity(scrapes.len());
        let mut total = 0;
        for (f, scrape) in scrapes.iter().enumerate() {
            total += scrape.samples.len();
            if total > MAX_BATCH_SAMPLES {
                let at = Place::Frame(f as u32);
                return Err(limit(at, "sample count", total, MAX_BATCH_SAMPLES));
            }
            let mut samples = Vec::with_capacity(scrape.samples.len());
            for sample in &scrape.samples {
                let index = match self.index.get(&sample.labels) {
                    Some(&i) => i,
                    None => new_series.index_of(&sample.labels)?,
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
            frames.push(Frame {
                timestamp_ms: scrape.timestamp_ms,
                samples,
            });
        }
        let samples = frames.iter().map(|f| f.samples.len()).sum();
        Ok(Plan {
            new_series: new_series.list,
            frames,
            samples,
        })
    }
}

/// The series a batch defines, while it is planned.
#[derive(Default)]
struct NewSeries<'a> {
    dict_base: usize,
    list: Vec<&'a Labels>,
    index: HashMap<&'a Labels, u32>,
    pairs: usize,
    label_bytes: usize,
}

impl<'a> NewSeries<'a> {
    /// The index of a series the session does not know yet, defining it on first use.
    fn index_of(&mut self, labels: &'a Labels) -> Result<u32, BatchError> {
        if let Some(&i) = self.index.get(labels) {
            return Ok(i);
        }
        let index = self.dict_base + self.list.len();
        if index >= MAX_SESSION_SERIES as usize {
            return Err(BatchError::SessionFull {
                count: index as u64 + 1,
            });
        }
        let at = Place::Definition(index as u32);
        let pairs = labels.pairs();
        if pairs.len() > MAX_LABEL_PAIRS {
            return Err(limit(at, "label count", pairs.len(), MAX_LABEL_PAIRS));
        }
        for (name, value) in pairs {
            for (what, s) in [("label name length", name), ("label value length", value)] {
                if s.len() > MAX_LABEL_BYTES {
                    return Err(limit(at, what, s.len(), MAX_LABEL_BYTES));
                }
            }
        }
        self.pairs += pairs.len();
        if self.pairs > MAX_BATCH_PAIRS {
            return Err(limit(
                at,
                "batch label pair count",
                self.pairs,
                MAX_BATCH_PAIRS,
            ));
        }
        self.label_bytes += pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if self.label_bytes > MAX_BATCH_LABEL_BYTES {
            let n = self.label_bytes;
            return Err(limit(at, "batch label bytes", n, MAX_BATCH_LABEL_BYTES));
        }
        self.list.push(labels);
        self.index.insert(labels, index as u32);
        Ok(index as u32)
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

fn limit(at: Place, what: &'static str, count: usize, limit: usize) -> BatchError {
    BatchError::Limit {
        at,
        what,
        count: count as u64,
        limit: limit as u64,
    }
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
            return Err(BatchError::NotSessionStart {
                seq: header.seq,
                dict_base: header.dict_base,
            });
        }
        Ok(Self {
            session_id: header.session_id,
            last_seq: None,
            series: Vec::new(),
        })
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
            _ if rest.len() > MAX_BODY_BYTES => {
                return Err(limit(Place::Body, "size", rest.len(), MAX_BODY_BYTES));
            }
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
            timestamp_ms =
                timestamp_ms.wrapping_add(unzigzag(r.varint(Place::Frame(f), "timestamp delta")?));
            let samples = read_runs(&mut r, f, defined, &mut total)?;
            frames.push(Frame {
                timestamp_ms,
                samples,
            });
        }

        let len = r.varint(Place::KindCodes, "length")?;
        if len > r.remaining() as u64 {
            return Err(BatchError::Truncated {
                at: Place::KindCodes,
                what: "codes",
            });
        }
        let mut codes = BitReader {
            bytes: r.take(len as usize, Place::KindCodes, "codes")?,
            pos: 0,
        };
        let mut series = Vec::with_capacity(defined as usize);
        series.extend_from_slice(&self.series);
        series.resize(defined as usize, SeriesState::NEW);
        for (f, frame) in frames.iter_mut().enumerate() {
            for (index, value) in &mut frame.samples {
                let at = Place::Sample {
                    frame: f as u32,
                    series: *index,
                };
                let state = &mut series[*index as usize];
                let kind = match codes.code().ok_or(BatchError::Truncated {
                    at,
                    what: "kind codes",
                })? {
                    KindCode::AsBefore => state.as_before(),
                    KindCode::Toggled => state.toggled(),
                    KindCode::Explicit => match r.byte(at, "value kind")? {
                        kind if is_kind(kind) => kind,
                        kind => return Err(BatchError::UnknownValueKind { at, kind }),
                    },
                };
                let payload = if kind == KIND_SAME {
                    0
                } else {
                    r.varint(at, "value")?
                };
                let bits = value_bits(kind, payload, state).map_err(|fault| fault.at(at, state))?;
                state.advance(kind, bits);
                *value = f64::from_bits(bits);
            }
        }
        let unread_codes = codes.bytes.len() - codes.pos.div_ceil(8);
        if unread_codes > 0 {
            return Err(BatchError::TrailingBytes {
                at: Place::KindCodes,
                count: unread_codes,
            });
        }
        if r.remaining() > 0 {
            return Err(BatchError::TrailingBytes {
                at: Place::Body,
                count: r.remaining(),
            });
        }
        Ok(DecodedBatch {
            header,
            new_series,
            frames,
            series,
        })
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
            return Err(BatchError::Limit {
                at,
                what: "length",
                count: len,
                limit: MAX_LABEL_BYTES as u64,
            });
        }
        let bytes = r.take(len as usize, at, "bytes")?;
        strings.push(std::str::from_utf8(bytes).map_err(|_| BatchError::NotUtf8 { at })?);
    }

    let count = r.varint(Place::Definitions, "definition count")?;
    let defined = u64::from(dict_base).saturating_add(count);
    if defined > u64::from(MAX_SESSION_SERIES) {
        return Err(BatchError::SessionFull { count: defined });
    }
    let mut new_series = Vec::with_capacity(r.capped(count));
    let (mut pairs_total, mut bytes_total) = (0, 0);
    for index in dict_base..defined as u32 {
        let at = Place::Definition(index);
        let count = r.varint(at, "label count")?;
        if count > MAX_LABEL_PAIRS as u64 {
            return Err(BatchError::Limit {
                at,
                what: "label count",
                count,
                limit: MAX_LABEL_PAIRS as u64,
            });
        }
        pairs_total += count as usize;
        if pairs_total > MAX_BATCH_PAIRS {
            return Err(limit(
                at,
                "batch label pair count",
                pairs_total,
                MAX_BATCH_PAIRS,
            ));
        }
        let mut pairs = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let mut string = || {
                let reference = r.varint(at, "string reference")?;
                let s = *strings
                    .get(reference as usize)
                    .ok_or(BatchError::UndefinedString {
                        index,
                        reference,
                        strings: strings.len(),
                    })?;
                bytes_total += s.len();
                if bytes_total > MAX_BATCH_LABEL_BYTES {
                    return Err(limit(
                        at,
                        "batch label bytes",
                        bytes_total,
                        MAX_BATCH_LABEL_BYTES,
                    ));
                }
                Ok(s.to_owned())
            };
            pairs.push((string()?, string()?));
        }
        new_series.push(
            Labels::from_pairs(pairs).map_err(|source| BatchError::Labels { index, source })?,
        );
    }
    Ok(new_series)
}

/// Reads a frame's series list (runs of consecutive indices) as samples valued 0.
fn read_runs(
    r: &mut Reader<'_>,
    frame: u32,
    defined: u32,
    total: &mut usize,
) -> Result<Vec<(u32, f64)>, BatchError> {
    let at = Place::Frame(frame);
    let runs = r.varint(at, "run count")?;
    let mut samples = Vec::new();
    let mut next = 0u64;
    for _ in 0..runs {
        let start = next.saturating_add(r.varint(at, "run gap")?);
        let end = start
            .saturating_add(r.varint(at, "run length")?)
            .saturating_add(1);
        if end > u64::from(defined) {
            return Err(BatchError::UndefinedSeries {
                frame,
                index: start.max(defined.into()),
                defined,
            });
        }
        *total += (end - start) as usize;
        if *total > MAX_BATCH_SAMPLES {
            return Err(limit(at, "batch sample count", *total, MAX_BATCH_SAMPLES));
        }
        // Every sample has a kind code still to come, one bit at least: refuse counts the
        // body cannot back before allocating for them.
        if *total > r.remaining().saturating_mul(8) {
            return Err(BatchError::Truncated {
                at: Place::KindCodes,
                what: "codes",
            });
        }
        samples.extend((start as u32..end as u32).map(|i| (i, 0.0)));
        next = end;
    }
    Ok(samples)
}

fn decompress(frame: &[u8]) -> Result<Vec<u8>, BatchError> {
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) => size,
        Ok(None) => {
            return Err(BatchError::Zstd(
                "frame does not declare its content size".into(),
            ));
        }
        Err(_) => return Err(BatchError::Zstd("not a zstd frame".into())),
    };
    if size > MAX_BODY_BYTES as u64 {
        return Err(BatchError::Limit {
            at: Place::Body,
            what: "size",
            count: size,
            limit: MAX_BODY_BYTES as u64,
        });
    }
    match zstd::zstd_safe::find_frame_compressed_size(frame) {
        Ok(n) if n == frame.len() => {}
        Ok(n) => {
            return Err(BatchError::TrailingBytes {
                at: Place::Body,
                count: frame.len().saturating_sub(n),
            });
        }
        Err(code) => {
            return Err(BatchError::Zstd(
                zstd::zstd_safe::get_error_name(code).into(),
            ));
        }
    }
    // The buffer has exactly the declared size, so a lying frame cannot make it grow.
    let body = zstd::bulk::decompress(frame, size as usize)
        .map_err(|e| BatchError::Zstd(e.to_string()))?;
    if body.len() as u64 != size {
        return Err(BatchError::Zstd(format!(
            "frame declares {size} bytes but holds {}",
            body.len()
        )));
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
    Ok((
        BatchHeader {
            session_id,
            seq,
            dict_base,
        },
        encoding,
        &bytes[r.pos..],
    ))
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
        if !self.bit()? {
            return Some(KindCode::AsBefore);
        }
        Some(if self.bit()? {
            KindCode::Explicit
        } else {
            KindCode::Toggled
        })
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

/// Whether `kind` is one of the kinds above (any scale: the nibble holds 0 to 15).
fn is_kind(kind: u8) -> bool {
    matches!(kind & CLASS_MASK, KIND_DELTA | KIND_DECIMAL | KIND_DELTA2)
        || kind == KIND_SAME
        || kind == KIND_RAW
}

/// The value (bits) that `kind` and its payload stand for in a series' state. The encoder
/// runs this too, to check every value it writes.
fn value_bits(kind: u8, payload: u64, state: &SeriesState) -> Result<u64, ValueFault> {
    let scale = kind & SCALE_MASK;
    let base = |bits: u64| {
        scaled(f64::from_bits(bits), scale)
            .map(i128::from)
            .ok_or(ValueFault::NoDecimalBase(scale))
    };
    let change = i128::from(unzigzag(payload));
    match kind & CLASS_MASK {
        _ if !is_kind(kind) => Err(ValueFault::UnknownKind(kind)),
        KIND_DELTA => from_decimal(base(state.last)? + change, scale),
        KIND_DELTA2 => from_decimal(2 * base(state.last)? - base(state.before)? + change, scale),
        KIND_DECIMAL => from_decimal(change, scale),
        KIND_RAW => Ok(payload ^ state.last),
        _ => Ok(state.last),
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
    try_scale(preferred).or_else(|| {
        (0..=MAX_SCALE)
            .filter(|&s| s != preferred)
            .find_map(try_scale)
    })
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
    let best = *candidates[..=n]
        .iter()
        .min_by_key(|c| cost(c))
        .expect("raw is always a candidate");
    if value_bits(best.0, best.1, state) == Ok(bits) {
        best
    } else {
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricSample;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn series(metric: &str, pairs: &[(&str, &str)]) -> Labels {
        Labels::new(metric, pairs.iter().copied()).unwrap()
    }

    fn scrape(timestamp_ms: i64, samples: &[(&Labels, f64)]) -> Scrape {
        let samples = samples
            .iter()
            .map(|&(l, value)| MetricSample {
                labels: l.clone(),
                value,
            })
            .collect();
        Scrape {
            timestamp_ms,
            samples,
        }
    }

    /// The server's side of a session, as `ingest` runs it: classify, decode, commit, and
    /// keep the labels per index.
    #[derive(Default)]
    struct Receiver {
        decoder: Option<Decoder>,
        labels: Vec<Labels>,
    }

    impl Receiver {
        /// The scrapes a batch carried, or `None` for a duplicate.
        fn push(&mut self, bytes: &[u8]) -> Result<Option<Vec<Scrape>>, BatchError> {
            let header = read_header(bytes)?;
            let decoder = match &mut self.decoder {
                Some(d) if d.classify(&header) == Sequence::Duplicate => return Ok(None),
                Some(d) if d.classify(&header) == Sequence::Next => d,
                _ => {
                    self.labels.clear();
                    self.decoder.insert(Decoder::start(&header)?)
                }
            };
            let batch = decoder.decode(bytes)?;
            self.labels.extend(batch.new_series.iter().cloned());
            let scrapes = batch
                .frames
                .iter()
                .map(|f| Scrape {
                    timestamp_ms: f.timestamp_ms,
                    samples: f
                        .samples
                        .iter()
                        .map(|&(i, value)| MetricSample {
                            labels: self.labels[i as usize].clone(),
                            value,
                        })
                        .collect(),
                })
                .collect();
            decoder.commit(batch)?;
            Ok(Some(scrapes))
        }
    }

    /// Scrapes as comparable data: per scrape, samples by labels (the last of duplicates),
    /// values as bits.
    fn canonical(scrapes: &[Scrape]) -> Vec<(i64, BTreeMap<Labels, u64>)> {
        scrapes
            .iter()
            .map(|s| {
                (
                    s.timestamp_ms,
                    s.samples
                        .iter()
                        .map(|m| (m.labels.clone(), m.value.to_bits()))
                        .collect(),
                )
            })
            .collect()
    }

    /// Sends `values` of one series through a session, one batch per value and then all in
    /// one batch, and checks every bit comes back.
    fn check_values(values: &[f64]) {
        let l = series("m", &[]);
        let scrapes: Vec<Scrape> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| scrape(i as i64 * 1000, &[(&l, v)]))
            .collect();
        let mut enc = Encoder::new(1);
        let mut rx = Receiver::default();
        for s in &scrapes {
            let got = rx
                .push(&enc.encode(std::slice::from_ref(s)).unwrap())
                .unwrap()
                .unwrap();
            assert_eq!(
                canonical(&got),
                canonical(std::slice::from_ref(s)),
                "{values:?}"
            );
        }
        let got = Receiver::default()
            .push(&Encoder::new(2).encode(&scrapes).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(canonical(&got), canonical(&scrapes), "{values:?}");
    }

    #[test]
    fn tricky_values_round_trip_bit_exact() {
        let nan_payload = f64::from_bits(0x7ff8_0000_dead_beef);
        let signalling_nan = f64::from_bits(0x7ff0_0000_0000_0001);
        let negative_nan = f64::from_bits(0xfff8_0000_0000_0000);
        let two53 = 9_007_199_254_740_992.0;
        check_values(&[0.0, -0.0, 0.0, -0.0]);
        check_values(&[
            nan_payload,
            nan_payload,
            signalling_nan,
            negative_nan,
            1.0,
            f64::NAN,
        ]);
        check_values(&[f64::INFINITY, f64::NEG_INFINITY, 5.0, f64::INFINITY]);
        check_values(&[
            1e300,
            -1e300,
            1e-300,
            5e-324,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
        ]);
        check_values(&[0.1 + 0.2, 0.3, 0.1, 0.2]);
        check_values(&[
            two53 - 1.0,
            two53,
            two53 + 2.0,
            -two53,
            2f64.powi(63),
            -(2f64.powi(63)),
        ]);
        check_values(&[12345.67, 12345.68, 12345.7, 12346.0, 12345.67]);
        check_values(&[
            1e15,
            1e16,
            1e22,
            1e23,
            123_456_789.123,
            0.000_001,
            1e-15,
            1e-16,
        ]);
        check_values(&[1_760_000_000.123_456_7, 1_760_000_030.123_456_8]);
        check_values(&[100.0, 200.0, 300.0, 400.5, 500.25, 600.125, 700.0]);
    }

    fn describe((kind, payload): (u8, u64)) -> String {
        let s = kind & SCALE_MASK;
        let n = varint_len(payload);
        match kind & CLASS_MASK {
            KIND_SAME => "same".into(),
            KIND_DELTA => format!("delta s{s} {n}B"),
            KIND_DELTA2 => format!("delta2 s{s} {n}B"),
            KIND_DECIMAL => format!("decimal s{s} {n}B"),
            _ => format!("raw {n}B"),
        }
    }

    /// The coding the encoder picks for `v` after a series' earlier values `history`.
    fn check_coding(history: &[f64], v: f64, expect: &str) {
        let mut state = SeriesState::NEW;
        for &h in history {
            let (kind, _) = choose_value(h, &state);
            state.advance(kind, h.to_bits());
        }
        assert_eq!(
            describe(choose_value(v, &state)),
            expect,
            "{history:?} then {v}"
        );
    }

    #[test]
    fn encoder_picks_the_shortest_exact_coding() {
        check_coding(&[], 0.0, "same");
        check_coding(&[], -0.0, "raw 10B");
        check_coding(&[], 1.0, "decimal s0 1B");
        check_coding(&[], 12345.67, "decimal s2 4B");
        check_coding(&[12345.67], 12345.67, "same");
        check_coding(&[12345.67], 12345.68, "delta s2 1B");
        check_coding(&[12345.67], 12346.0, "delta s2 1B");
        check_coding(&[0.0, 1000.0, 2000.0], 3003.0, "delta2 s0 1B");
        check_coding(&[0.0, 1000.0, 2000.0], 2001.0, "delta s0 1B");
        check_coding(&[5.0], 0.1 + 0.2, "raw 9B");
        check_coding(&[f64::NAN], 5.0, "decimal s0 1B");
        check_coding(&[f64::INFINITY], f64::INFINITY, "same");
        check_coding(&[1e300], f64::from_bits(1e300f64.to_bits() + 1), "raw 1B");
        check_coding(&[], 9_007_199_254_740_992.0, "decimal s0 8B");
        check_coding(&[], 9_007_199_254_740_994.0, "raw 9B");
        check_coding(&[], 1e-15, "decimal s15 1B");
        check_coding(&[], 1.5e-16, "raw 9B");
    }

    #[test]
    fn session_grows_definitions_between_batches() {
        let (a, b, c) = (
            series("a", &[("x", "1")]),
            series("b", &[]),
            series("c", &[("y", "2")]),
        );
        let mut enc = Encoder::new(7);
        let b0 = enc
            .encode(&[scrape(1000, &[(&b, 1.0), (&a, 2.0)])])
            .unwrap();
        let b1 = enc
            .encode(&[
                scrape(2000, &[(&a, 2.5), (&c, 3.0), (&b, 1.0)]),
                scrape(3000, &[(&c, 4.0)]),
            ])
            .unwrap();
        let b2 = enc
            .encode(&[scrape(4000, &[(&c, 5.0), (&a, 6.0)])])
            .unwrap();

        let mut dec = Decoder::start(&read_header(&b0).unwrap()).unwrap();
        let batch = dec.decode(&b0).unwrap();
        assert_eq!(
            batch.header,
            BatchHeader {
                session_id: 7,
                seq: 0,
                dict_base: 0
            }
        );
        assert_eq!(batch.new_series, [b.clone(), a.clone()]);
        assert_eq!(
            batch.frames,
            [Frame {
                timestamp_ms: 1000,
                samples: vec![(0, 1.0), (1, 2.0)]
            }]
        );
        dec.commit(batch).unwrap();

        let batch = dec.decode(&b1).unwrap();
        assert_eq!(
            batch.header,
            BatchHeader {
                session_id: 7,
                seq: 1,
                dict_base: 2
            }
        );
        assert_eq!(batch.new_series, std::slice::from_ref(&c));
        assert_eq!(
            batch.frames,
            [
                Frame {
                    timestamp_ms: 2000,
                    samples: vec![(0, 1.0), (1, 2.5), (2, 3.0)]
                },
                Frame {
                    timestamp_ms: 3000,
                    samples: vec![(2, 4.0)]
                },
            ]
        );
        assert_eq!(batch.sample_count(), 4);
        dec.commit(batch).unwrap();

        let batch = dec.decode(&b2).unwrap();
        assert_eq!(batch.header.dict_base, 3);
        assert!(batch.new_series.is_empty());
        assert_eq!(
            batch.frames,
            [Frame {
                timestamp_ms: 4000,
                samples: vec![(1, 6.0), (2, 5.0)]
            }]
        );
        dec.commit(batch).unwrap();
        assert_eq!((dec.series_count(), dec.last_seq()), (3, Some(2)));
    }

    #[test]
    fn a_series_twice_in_one_scrape_keeps_the_last_value() {
        let a = series("a", &[]);
        let bytes = Encoder::new(1)
            .encode(&[scrape(0, &[(&a, 1.0), (&a, 2.0)])])
            .unwrap();
        let batch = Decoder::start(&read_header(&bytes).unwrap())
            .unwrap()
            .decode(&bytes)
            .unwrap();
        assert_eq!(batch.frames[0].samples, [(0, 2.0)]);
    }

    #[test]
    fn retry_is_a_duplicate_and_gaps_are_out_of_sync() {
        let a = series("a", &[]);
        let b = series("b", &[]);
        let mut enc = Encoder::new(9);
        let batches: Vec<Vec<u8>> = (0..4)
            .map(|i| enc.encode(&[scrape(i, &[(&a, i as f64)])]).unwrap())
            .collect();
        let header = |i: usize| read_header(&batches[i]).unwrap();
        let mut dec = Decoder::start(&header(0)).unwrap();
        assert_eq!(dec.classify(&header(0)), Sequence::Next);
        dec.commit(dec.decode(&batches[0]).unwrap()).unwrap();
        assert_eq!(dec.classify(&header(0)), Sequence::Duplicate);
        assert_eq!(dec.classify(&header(1)), Sequence::Next);
        assert_eq!(dec.classify(&header(2)), Sequence::OutOfSync);
        dec.commit(dec.decode(&batches[1]).unwrap()).unwrap();
        assert_eq!(dec.classify(&header(1)), Sequence::Duplicate);
        assert_eq!(dec.classify(&header(0)), Sequence::OutOfSync);
        assert_eq!(
            dec.classify(&BatchHeader {
                session_id: 8,
                ..header(2)
            }),
            Sequence::OutOfSync
        );
        assert_eq!(
            dec.classify(&BatchHeader {
                dict_base: 2,
                ..header(2)
            }),
            Sequence::OutOfSync
        );
        assert_eq!(dec.classify(&header(3)), Sequence::OutOfSync);

        // The server lost the session (restart): the retry of seq 2 cannot start one, the
        // agent resyncs with a new session that re-sends what was pending.
        let err = Decoder::start(&header(2)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a session starts with seq 0 and dict_base 0, this batch has seq 2 and dict_base 1"
        );
        let mut enc = Encoder::new(10);
        let pending = [scrape(2, &[(&a, 2.0)]), scrape(3, &[(&a, 3.0), (&b, 1.0)])];
        let mut rx = Receiver::default();
        let got = rx.push(&enc.encode(&pending).unwrap()).unwrap().unwrap();
        assert_eq!(canonical(&got), canonical(&pending));
    }

    #[test]
    fn decode_changes_nothing_and_commit_refuses_a_stale_batch() {
        let a = series("a", &[]);
        let mut enc = Encoder::new(3);
        let b0 = enc.encode(&[scrape(0, &[(&a, 1.5)])]).unwrap();
        let b1 = enc.encode(&[scrape(1, &[(&a, 2.5)])]).unwrap();
        let mut dec = Decoder::start(&read_header(&b0).unwrap()).unwrap();
        let first = dec.decode(&b0).unwrap();
        let again = dec.decode(&b0).unwrap();
        assert_eq!(first.frames, again.frames);
        let mut corrupt = b1.clone();
        corrupt.truncate(corrupt.len() - 1);
        dec.commit(first).unwrap();
        assert!(dec.decode(&corrupt).is_err());
        let next = dec.decode(&b1).unwrap();
        assert_eq!(next.frames[0].samples, [(0, 2.5)]);
        let err = dec.commit(again).unwrap_err();
        assert_eq!(
            err.to_string(),
            "batch seq 0 (dict_base 0) of session 0x0000000000000003 is not next: the decoder has \
             session 0x0000000000000003 and expects seq 1 with dict_base 1"
        );
        dec.commit(next).unwrap();
    }

    #[test]
    fn encoder_refuses_oversized_labels_and_changes_nothing() {
        let long = "x".repeat(MAX_LABEL_BYTES + 1);
        let bad = series("a", &[("v", &long)]);
        let mut enc = Encoder::new(1);
        let err = enc.encode(&[scrape(0, &[(&bad, 1.0)])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "definition 0: label value length 4097 exceeds the limit of 4096"
        );
        assert_eq!((enc.next_seq(), enc.series_count()), (0, 0));
        let ok = enc
            .encode(&[scrape(0, &[(&series("a", &[]), 1.0)])])
            .unwrap();
        assert_eq!(read_header(&ok).unwrap().seq, 0);
    }

    #[test]
    fn steady_state_batches_are_small() {
        let all: Vec<Labels> = (0..200)
            .map(|i| series("node_x", &[("i", &i.to_string())]))
            .collect();
        let at = |t: i64| {
            let samples: Vec<(&Labels, f64)> = all
                .iter()
                .enumerate()
                .map(|(i, l)| (l, (i as i64 * 7 + t) as f64 / 100.0))
                .collect();
            scrape(t * 30_000, &samples)
        };
        let mut enc = Encoder::new(1);
        enc.encode(&[at(0)]).unwrap();
        enc.encode(&[at(1)]).unwrap();
        // Every counter moved by the same step: one bit and one byte per sample at most.
        let steady = enc.encode(&[at(2)]).unwrap();
        assert!(steady.len() < 80, "{} bytes", steady.len());
    }

    /// A raw (uncompressed) batch with this header and body.
    fn raw_batch(seq: u64, dict_base: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_header(
            &mut out,
            &BatchHeader {
                session_id: 5,
                seq,
                dict_base,
            },
            BODY_RAW,
        );
        out.extend_from_slice(body);
        out
    }

    /// A body from varints, strings (`"s:text"`) and raw bytes (`"b:0x7f"`), for
    /// hand-made batches.
    fn body(parts: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            if let Some(s) = p.strip_prefix("s:") {
                put_varint(&mut out, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            } else if let Some(b) = p.strip_prefix("b:0x") {
                out.push(u8::from_str_radix(b, 16).unwrap());
            } else {
                put_varint(&mut out, p.parse().unwrap());
            }
        }
        out
    }

    /// A decoder that has committed seq 0 of session 5, defining two series `a` and `b`
    /// with values 1 and 2.
    fn primed() -> Decoder {
        let mut enc = Encoder::new(5);
        let (a, b) = (series("a", &[]), series("b", &[]));
        let bytes = enc.encode(&[scrape(0, &[(&a, 1.0), (&b, 2.0)])]).unwrap();
        let mut dec = Decoder::start(&read_header(&bytes).unwrap()).unwrap();
        dec.commit(dec.decode(&bytes).unwrap()).unwrap();
        dec
    }

    fn check_error(bytes: &[u8], expect: &str) {
        let dec = primed();
        let got = match read_header(bytes).and_then(|h| {
            if h.seq == 0 {
                Decoder::start(&h)?.decode(bytes)
            } else {
                dec.decode(bytes)
            }
        }) {
            Ok(b) => format!("accepted: {:?}", b.frames),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expect);
    }

    #[test]
    fn errors_say_what_and_where() {
        check_error(b"GET / HTTP/1.1", "not a dcmon batch: bad magic");
        check_error(
            b"DCB\x02",
            "header: batch version 2 is not supported (this build reads version 1)",
        );
        check_error(b"DCB\x01\x07", "header: unknown body encoding 7");
        check_error(
            b"DCB\x01\x00\x05\x00\x00",
            "header: truncated in session id",
        );
        check_error(
            &raw_batch(1, 2, &[]),
            "definitions: truncated in string count",
        );
        check_error(
            &raw_batch(1, 2, &body(&["0", &u64::MAX.to_string()])),
            "definitions: the session would have 18446744073709551615 series, more than the \
             limit of 1048576: start a new session",
        );
        // seq 1: no strings, no definitions, one frame at t=0 with one run of one series.
        let frame = |gap: &str| body(&["0", "0", "1", "0", "1", gap, "0"]);
        check_error(
            &raw_batch(1, 2, &[frame("5"), body(&["1", "0", "1"])].concat()),
            "frame 0: series index 5 not defined (session has 2)",
        );
        check_error(
            &raw_batch(1, 2, &[frame("1"), body(&["1", "0", "6"])].concat()),
            "accepted: [Frame { timestamp_ms: 0, samples: [(1, 3.0)] }]",
        );
        check_error(
            &raw_batch(1, 2, &[frame("1"), body(&["1", "0", "2", "9"])].concat()),
            "body: 1 unread bytes at the end",
        );
        check_error(
            &raw_batch(1, 2, &[frame("1"), body(&["1", "0"])].concat()),
            "frame 0, series 1: truncated in value",
        );
        check_error(
            &raw_batch(1, 2, &[frame("1"), body(&["1", "3", "b:0x7f"])].concat()),
            "frame 0, series 1: unknown value kind 0x7f",
        );
        check_error(
            &raw_batch(
                1,
                2,
                &[frame("1"), body(&["1", "3", "b:0x25", "0"])].concat(),
            ),
            "accepted: [Frame { timestamp_ms: 0, samples: [(1, 0.0)] }]",
        );
        check_error(
            &raw_batch(
                1,
                2,
                &[frame("1"), body(&["1", "3", "b:0x20", "18014398509481986"])].concat(),
            ),
            "frame 0, series 1: decimal mantissa 9007199254740993 is beyond ±2^53",
        );
        check_error(
            &raw_batch(1, 2, &[frame("0"), body(&["2", "0", "0", "2"])].concat()),
            "kind codes: 1 unread bytes at the end",
        );
        check_error(
            &raw_batch(1, 2, &[frame("0"), body(&["0"])].concat()),
            "frame 0, series 0: truncated in kind codes",
        );
        check_error(
            &raw_batch(1, 2, &body(&["0", "0", "70000"])),
            "frames: frame count 70000 exceeds the limit of 65536",
        );
        check_error(
            &raw_batch(1, 2, &body(&["0", "0", "1", "0", "1", "0", "2000000"])),
            "frame 0: series index 2 not defined (session has 2)",
        );

        let def = |name: &str| body(&["2", "s:__name__", name, "1", "1", "0", "1", "0", "0"]);
        check_error(
            &raw_batch(0, 0, &def("s:1a")),
            "definition 0: metric name \"1a\" is not valid: use [a-zA-Z_:][a-zA-Z0-9_:]*",
        );
        check_error(
            &raw_batch(0, 0, &body(&["1", "s:__name__", "1", "1", "0", "1"])),
            "definition 0: string 1 not in the string table (batch has 1)",
        );
        check_error(
            &raw_batch(0, 0, &body(&["1", "2", "b:0xff", "b:0xfe"])),
            "string 0: not UTF-8",
        );
        check_error(
            &raw_batch(0, 0, &body(&["1", "5000"])),
            "string 0: length 5000 exceeds the limit of 4096",
        );
        check_error(&raw_batch(0, 0, &def("s:up")), "accepted: []");

        // A delta from a value that has no decimal form: b's state after a raw value.
        let mut enc = Encoder::new(5);
        let b = series("b", &[]);
        let b0 = enc.encode(&[scrape(0, &[(&b, f64::NAN)])]).unwrap();
        let mut dec = Decoder::start(&read_header(&b0).unwrap()).unwrap();
        dec.commit(dec.decode(&b0).unwrap()).unwrap();
        let delta = raw_batch(
            1,
            1,
            &[body(&[
                "0", "0", "1", "0", "1", "0", "0", "1", "3", "b:0x12", "2",
            ])]
            .concat(),
        );
        assert_eq!(
            dec.decode(&delta).unwrap_err().to_string(),
            "frame 0, series 0: delta at scale 2 from NaN (before it 0.0), which have no such decimal form"
        );

        let mut zstd_garbage = raw_batch(1, 2, b"not zstd at all");
        zstd_garbage[4] = BODY_ZSTD;
        check_error(&zstd_garbage, "body: zstd: not a zstd frame");
    }

    #[test]
    fn hostile_sizes_are_refused_before_allocating() {
        // 2,000 samples claimed by a few bytes of runs.
        let all: Vec<Labels> = (0..2000)
            .map(|i| series("m", &[("i", &i.to_string())]))
            .collect();
        let first = scrape(0, &all.iter().map(|l| (l, 0.0)).collect::<Vec<_>>());
        let bytes = Encoder::new(5).encode(&[first]).unwrap();
        let mut dec = Decoder::start(&read_header(&bytes).unwrap()).unwrap();
        dec.commit(dec.decode(&bytes).unwrap()).unwrap();
        let runs = raw_batch(1, 2000, &body(&["0", "0", "1", "0", "1", "0", "1999", "0"]));
        assert_eq!(
            dec.decode(&runs).unwrap_err().to_string(),
            "kind codes: truncated in codes"
        );

        let mut huge = raw_batch(
            1,
            2,
            &zstd::bulk::compress(&vec![0u8; MAX_BODY_BYTES + 1], 1).unwrap(),
        );
        huge[4] = BODY_ZSTD;
        check_error(&huge, "body: size 67108865 exceeds the limit of 67108864");

        let pairs: Vec<&str> = std::iter::repeat_n(["0", "0"], 65).flatten().collect();
        let mut def = body(&["1", "s:x", "1", "65"]);
        def.extend(body(&pairs));
        check_error(
            &raw_batch(0, 0, &def),
            "definition 0: label count 65 exceeds the limit of 64",
        );
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            (-(1i64 << 53)..=1 << 53, 0..=15usize).prop_map(|(m, s)| m as f64 / POW10[s]),
            (-1000i64..1000, 0..=3usize).prop_map(|(m, s)| m as f64 / POW10[s]),
            prop::sample::select(vec![0.0, -0.0, 1.0, f64::NAN, f64::INFINITY, 0.1 + 0.2]),
        ]
    }

    /// Batches of one session, each a few scrapes over a pool of 6 series.
    fn session() -> impl Strategy<Value = Vec<Vec<Scrape>>> {
        let mut pool = vec![
            series("up", &[]),
            series("node_cpu_seconds_total", &[("cpu", "0"), ("mode", "idle")]),
        ];
        pool.extend((0..4).map(|i| series("m", &[("i", &"é".repeat(i))])));
        let sample = (prop::sample::select(pool), value())
            .prop_map(|(labels, value)| MetricSample { labels, value });
        let scrape = (any::<i64>(), prop::collection::vec(sample, 0..10)).prop_map(
            |(timestamp_ms, samples)| Scrape {
                timestamp_ms,
                samples,
            },
        );
        prop::collection::vec(prop::collection::vec(scrape, 0..4), 1..6)
    }

    proptest! {
        #[test]
        fn decode_of_encode_is_bit_exact(batches in session(), raw in any::<bool>()) {
            let mut enc = Encoder::new(42);
            let mut rx = Receiver::default();
            for scrapes in &batches {
                let bytes = enc.encode_as(scrapes, if raw { BodyChoice::Raw } else { BodyChoice::Smallest }).unwrap();
                let got = rx.push(&bytes).unwrap().unwrap();
                prop_assert_eq!(canonical(&got), canonical(scrapes));
                // A retry of the same bytes is a duplicate.
                prop_assert!(rx.push(&bytes).unwrap().is_none());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), zstd in any::<bool>()) {
            if let Ok(h) = read_header(&bytes) {
                if let Ok(d) = Decoder::start(&h) {
                    let _ = d.decode(&bytes);
                }
            }
            let mut primed_batch = raw_batch(1, 2, &bytes);
            if zstd {
                primed_batch[4] = BODY_ZSTD;
            }
            let _ = primed().decode(&primed_batch);
        }

        #[test]
        fn mutated_batches_never_panic(
            batches in session(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4),
        ) {
            let mut enc = Encoder::new(5);
            let mut dec: Option<Decoder> = None;
            for scrapes in &batches {
                let good = enc.encode_as(scrapes, BodyChoice::Raw).unwrap();
                let mut bad = good.clone();
                for (at, byte, op) in &edits {
                    match op {
                        0 if !bad.is_empty() => { let i = at.index(bad.len()); bad[i] = *byte; }
                        1 if !bad.is_empty() => bad.truncate(at.index(bad.len())),
                        _ => { let i = at.index(bad.len() + 1); bad.insert(i, *byte); }
                    }
                }
                let d = dec.get_or_insert_with(|| Decoder::start(&read_header(&good).unwrap()).unwrap());
                let _ = d.decode(&bad);
                // Whatever the damaged copy did, the decoder still takes the good one.
                let batch = d.decode(&good).unwrap();
                d.commit(batch).unwrap();
            }
        }
    }
}
