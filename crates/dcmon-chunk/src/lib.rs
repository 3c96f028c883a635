//! Compressed columns for sealed time-series chunks: one chunk is one series' samples
//! (strictly increasing millisecond timestamps, `f64` values) in a checksummed byte string.
//!
//! Pure: bytes in, values out, no IO and no clocks. [`encode`] picks the smallest value
//! codec for each chunk; [`decode`] / [`decode_into`] verify the checksum and return the
//! samples bit for bit; [`info`] reads the header only. The byte layout, the codecs and how
//! one is chosen are in `FORMAT.md` next to this crate.

use std::fmt;

mod bits;
mod time;
mod values;

#[cfg(test)]
mod shapes;
#[cfg(test)]
mod tests;

/// The layout version this build writes and reads.
pub const VERSION: u8 = 1;
/// Most samples in one chunk: [`encode`] panics beyond it and [`decode`] refuses a header
/// that claims more, before allocating anything (16 MiB of output at most).
pub const MAX_SAMPLES: u32 = 1 << 20;
/// Header bytes: version, count, min_t, max_t, value codec.
pub const HEADER_LEN: usize = 1 + 4 + 8 + 8 + 1;
/// Trailer bytes: the CRC32.
pub const CRC_LEN: usize = 4;

/// How a chunk's values are coded (FORMAT.md § Value column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValueCodec {
    /// Every value has the same bits: stored once.
    Constant,
    /// Exact decimals `k / 10^d`: the integers `k` as offsets, deltas or deltas of deltas,
    /// divided by their common step, bit-packed in blocks.
    Decimal,
    /// Exact decimals `k / 10^d`: the integers `k` compressed by pcodec.
    PcoDecimal,
    /// Gorilla XOR of consecutive values' bits.
    Gorilla,
    /// The floats compressed by pcodec.
    PcoFloat,
    /// Raw little-endian bits, 8 bytes a value.
    Raw,
}

impl ValueCodec {
    /// Every codec, in id order.
    pub const ALL: [ValueCodec; 6] = [
        Self::Constant,
        Self::Decimal,
        Self::PcoDecimal,
        Self::Gorilla,
        Self::PcoFloat,
        Self::Raw,
    ];

    /// The id byte in the header.
    pub fn id(self) -> u8 {
        match self {
            Self::Constant => 0,
            Self::Decimal => 1,
            Self::PcoDecimal => 2,
            Self::Gorilla => 3,
            Self::PcoFloat => 4,
            Self::Raw => 5,
        }
    }

    /// The codec with this id byte.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.get(usize::from(id)).copied()
    }

    /// A short name: `const`, `decimal`, `pco-decimal`, `gorilla`, `pco-float`, `raw`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Constant => "const",
            Self::Decimal => "decimal",
            Self::PcoDecimal => "pco-decimal",
            Self::Gorilla => "gorilla",
            Self::PcoFloat => "pco-float",
            Self::Raw => "raw",
        }
    }
}

impl fmt::Display for ValueCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a chunk's header says, read without decoding the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Samples in the chunk.
    pub count: u32,
    /// First timestamp (0 in an empty chunk).
    pub min_t: i64,
    /// Last timestamp (0 in an empty chunk).
    pub max_t: i64,
    /// How the values are coded.
    pub codec: ValueCodec,
}

/// Why bytes are not a chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    #[error("chunk checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("chunk truncated in {what}: needs {needed} bytes, {available} left")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("chunk corrupt: {what}")]
    Corrupt { what: String },
    #[error("chunk version {0} is not supported (this build reads version {VERSION})")]
    UnknownVersion(u8),
    #[error("chunk value codec {0} is unknown")]
    UnknownCodec(u8),
    #[error("chunk claims {count} samples, more than the limit of {MAX_SAMPLES}")]
    TooManySamples { count: u32 },
}

fn corrupt(what: impl Into<String>) -> ChunkError {
    ChunkError::Corrupt { what: what.into() }
}

fn truncated(what: &'static str, needed: usize, available: usize) -> ChunkError {
    ChunkError::Truncated {
        what,
        needed,
        available,
    }
}

/// Encodes one sealed chunk, picking the smallest value codec for it (FORMAT.md §
/// Choosing the value codec). Values are kept bit for bit: NaN payloads, infinities and
/// `-0.0` included.
///
/// # Panics
/// The caller's invariants: when `timestamps` and `values` differ in length, when
/// `timestamps` are not strictly increasing, or when there are more than [`MAX_SAMPLES`].
pub fn encode(timestamps: &[i64], values: &[f64]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(timestamps, values, &mut out);
    out
}

/// Like [`encode`], appending the chunk to `out`; returns the codec it chose.
///
/// # Panics
/// As [`encode`].
pub fn encode_into(timestamps: &[i64], values: &[f64], out: &mut Vec<u8>) -> ValueCodec {
    let start = begin(timestamps, values, out);
    let codec = values::encode_best(values, out);
    finish(out, start, codec);
    codec
}

/// Encodes with the given value codec; `None` when it cannot hold these values
/// (`Constant` for values that differ, the decimal codecs for values that are not exact
/// decimals). For tests and measurements: [`encode`] picks the smallest.
///
/// # Panics
/// As [`encode`].
pub fn encode_as(timestamps: &[i64], values: &[f64], codec: ValueCodec) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let start = begin(timestamps, values, &mut out);
    if !values::encode_with(values, codec, &mut out) {
        return None;
    }
    finish(&mut out, start, codec);
    Some(out)
}

/// Checks the caller's invariants, writes the header (codec to be set) and the timestamp
/// column; returns where the chunk starts in `out`.
fn begin(timestamps: &[i64], values: &[f64], out: &mut Vec<u8>) -> usize {
    assert_eq!(
        timestamps.len(),
        values.len(),
        "dcmon-chunk: timestamps and values differ in length"
    );
    assert!(
        timestamps.windows(2).all(|w| w[0] < w[1]),
        "dcmon-chunk: timestamps are not strictly increasing"
    );
    let count = u32::try_from(timestamps.len())
        .ok()
        .filter(|&n| n <= MAX_SAMPLES)
        .unwrap_or_else(|| {
            panic!(
                "dcmon-chunk: {} samples, more than MAX_SAMPLES ({MAX_SAMPLES}) in one chunk",
                timestamps.len()
            )
        });
    let start = out.len();
    out.reserve(HEADER_LEN + CRC_LEN + 16 + timestamps.len() * 2);
    out.push(VERSION);
    out.extend(count.to_le_bytes());
    out.extend(timestamps.first().copied().unwrap_or(0).to_le_bytes());
    out.extend(timestamps.last().copied().unwrap_or(0).to_le_bytes());
    out.push(ValueCodec::Constant.id());
    time::encode(timestamps, out);
    start
}

fn finish(out: &mut Vec<u8>, start: usize, codec: ValueCodec) {
    out[start + HEADER_LEN - 1] = codec.id();
    let crc = crc32fast::hash(&out[start..]);
    out.extend(crc.to_le_bytes());
}

/// Decodes a chunk; verifies its checksum first. Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<(Vec<i64>, Vec<f64>), ChunkError> {
    let mut ts = Vec::new();
    let mut vals = Vec::new();
    decode_into(bytes, &mut ts, &mut vals)?;
    Ok((ts, vals))
}

/// Like [`decode`], appending the samples to `out_ts` and `out_vals` (buffers a caller
/// reuses: no allocation once they are large enough, except in the pco codecs); returns
/// the header. On error both are left as they were.
pub fn decode_into(
    bytes: &[u8],
    out_ts: &mut Vec<i64>,
    out_vals: &mut Vec<f64>,
) -> Result<ChunkInfo, ChunkError> {
    let (info, body) = checked(bytes)?;
    let ts_len = out_ts.len();
    let vals_len = out_vals.len();
    let result = decode_body(&info, body, out_ts, out_vals);
    if result.is_err() {
        out_ts.truncate(ts_len);
        out_vals.truncate(vals_len);
    }
    result.map(|()| info)
}

/// Reads the header without decoding the samples. Does not verify the checksum (that
/// takes reading every byte): [`decode`] does.
pub fn info(bytes: &[u8]) -> Result<ChunkInfo, ChunkError> {
    let (info, _) = header(bytes)?;
    Ok(info)
}

/// The header and the body (the columns, between the header and the CRC).
fn header(bytes: &[u8]) -> Result<(ChunkInfo, &[u8]), ChunkError> {
    let Some(&version) = bytes.first() else {
        return Err(truncated("version", 1, 0));
    };
    if version != VERSION {
        return Err(ChunkError::UnknownVersion(version));
    }
    if bytes.len() < HEADER_LEN + CRC_LEN {
        return Err(truncated("header", HEADER_LEN + CRC_LEN, bytes.len()));
    }
    let count = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes"));
    let min_t = i64::from_le_bytes(bytes[5..13].try_into().expect("8 bytes"));
    let max_t = i64::from_le_bytes(bytes[13..21].try_into().expect("8 bytes"));
    let codec_id = bytes[HEADER_LEN - 1];
    let codec = ValueCodec::from_id(codec_id).ok_or(ChunkError::UnknownCodec(codec_id))?;
    if count > MAX_SAMPLES {
        return Err(ChunkError::TooManySamples { count });
    }
    let info = ChunkInfo {
        count,
        min_t,
        max_t,
        codec,
    };
    Ok((info, &bytes[HEADER_LEN..bytes.len() - CRC_LEN]))
}

/// [`header`], once the CRC matches.
fn checked(bytes: &[u8]) -> Result<(ChunkInfo, &[u8]), ChunkError> {
    if bytes.len() >= HEADER_LEN + CRC_LEN && bytes[0] == VERSION {
        let (data, crc) = bytes.split_at(bytes.len() - CRC_LEN);
        let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        let computed = crc32fast::hash(data);
        if stored != computed {
            return Err(ChunkError::Checksum { stored, computed });
        }
    }
    header(bytes)
}

fn decode_body(
    info: &ChunkInfo,
    body: &[u8],
    out_ts: &mut Vec<i64>,
    out_vals: &mut Vec<f64>,
) -> Result<(), ChunkError> {
    let n = info.count as usize;
    if n == 0 {
        if info.min_t != 0 || info.max_t != 0 || info.codec != ValueCodec::Constant {
            return Err(corrupt("empty chunk with timestamps or a value codec"));
        }
        if !body.is_empty() {
            return Err(corrupt(format!(
                "empty chunk with {} bytes of columns",
                body.len()
            )));
        }
        return Ok(());
    }
    if info.max_t < info.min_t || (info.max_t == info.min_t) != (n == 1) {
        return Err(corrupt(format!(
            "{n} samples from min_t {} to max_t {}",
            info.min_t, info.max_t
        )));
    }
    // n ≤ MAX_SAMPLES (checked with the header).
    out_ts.reserve(n);
    let ts_used = time::decode(body, n, info.min_t, info.max_t, out_ts)?;
    let col = &body[ts_used..];
    out_vals.reserve(n);
    let used = values::decode(info.codec, col, n, out_vals)?;
    if used != col.len() {
        return Err(corrupt(format!(
            "{} unread bytes after the {} column",
            col.len() - used,
            info.codec
        )));
    }
    Ok(())
}

/// A cursor over untrusted bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ChunkError> {
        let available = self.buf.len() - self.pos;
        if n > available {
            return Err(truncated(what, n, available));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// LEB128, at most 10 bytes.
    fn varint(&mut self, what: &'static str) -> Result<u64, ChunkError> {
        let mut x = 0u64;
        for i in 0..10 {
            let b = self.take(1, what)?[0];
            if i == 9 && b > 1 {
                break;
            }
            x |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(x);
            }
        }
        Err(corrupt(format!("{what}: varint longer than 64 bits")))
    }
}

fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push(x as u8 | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn unzigzag(x: u64) -> i64 {
    ((x >> 1) as i64) ^ -((x & 1) as i64)
}
